//! Tool calling over OpenAI's wire format: tools offered in the request, calls in a JSON
//! reply, calls assembled from streamed fragments, and tool history sent back.

use pai_providers::{ChatEvent, ChatRequest};
use pai_test_support::{MockOpenAi, chat_completion, sse_body};
use pai_types::{Message, ToolCall, ToolSpec, Usage};
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::ResponseTemplate;

use super::{MODEL, chat, config};

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({
            "type": "object",
            "properties": { "city": { "type": "string" } },
            "required": ["city"]
        }),
    }
}

fn call(id: &str, args: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: "get_weather".into(),
        arguments: args.into(),
    }
}

#[tokio::test]
async fn a_streamed_tool_call_is_assembled_from_fragments() {
    let mock = MockOpenAi::start().await;
    // Fragments as OpenAI sends them: id and name first, arguments in pieces, keyed by
    // index; the second call omits `type` and `id`, as some local servers do.
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| json!({ "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
    let body = sse_body(
        &[
            chunk(json!({ "role": "assistant", "content": null }), json!(null)),
            chunk(
                json!({ "tool_calls": [{ "index": 0, "id": "call_abc", "type": "function",
                    "function": { "name": "get_weather", "arguments": "" } }] }),
                json!(null),
            ),
            chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"ci" } }] }),
                json!(null),
            ),
            chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "ty\":\"Paris\"}" } }] }),
                json!(null),
            ),
            chunk(
                json!({ "tool_calls": [{ "index": 1,
                    "function": { "name": "get_weather", "arguments": "{\"city\":\"Rome\"}" } }] }),
                json!(null),
            ),
            chunk(json!({}), json!("tool_calls")),
            json!({ "choices": [], "usage": { "prompt_tokens": 30, "completion_tokens": 12 } }),
        ],
        true,
    );
    mock.reply_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .await;
    let mut request = ChatRequest::new(MODEL, vec![Message::user("Weather?")], true);
    request.tools = vec![weather_tool()];

    let events = chat(config(&mock), request).await.events();

    assert_eq!(
        events,
        vec![
            ChatEvent::ToolCall(call("call_abc", r#"{"city":"Paris"}"#)),
            ChatEvent::ToolCall(call("call_1", r#"{"city":"Rome"}"#)),
            ChatEvent::Usage(Usage {
                prompt_tokens: 30,
                completion_tokens: 12,
                estimated: false
            }),
            ChatEvent::Finished {
                reason: "tool_calls".into()
            },
        ]
    );
    let sent = &mock.chat_requests().await[0];
    assert_eq!(
        sent["tools"],
        json!([{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": weather_tool().parameters
            }
        }])
    );
}

#[tokio::test]
async fn tool_calls_in_a_json_reply_and_tool_history_in_the_request() {
    let mock = MockOpenAi::start().await;
    let mut reply = chat_completion("", 5, 7);
    reply["choices"][0]["message"] = json!({
        "role": "assistant",
        "content": null,
        // No `type`: tolerated. Arguments as an object: turned into JSON text.
        "tool_calls": [{ "id": "call_1", "function": { "name": "get_weather", "arguments": { "city": "Oslo" } } }]
    });
    reply["choices"][0]["finish_reason"] = json!("tool_calls");
    mock.reply_with(ResponseTemplate::new(200).set_body_json(reply))
        .await;
    let history = vec![
        Message::user("Weather in Paris?"),
        Message::assistant_with_tools("", vec![call("call_0", r#"{"city":"Paris"}"#)]),
        Message::tool_result("call_0", "18°C, clear"),
        Message::user("And Oslo?"),
    ];
    let mut request = ChatRequest::new(MODEL, history, false);
    request.tools = vec![weather_tool()];

    let events = chat(config(&mock), request).await.events();

    assert_eq!(
        events,
        vec![
            ChatEvent::ToolCall(call("call_1", r#"{"city":"Oslo"}"#)),
            ChatEvent::Usage(Usage {
                prompt_tokens: 5,
                completion_tokens: 7,
                estimated: false
            }),
            ChatEvent::Finished {
                reason: "tool_calls".into()
            },
        ]
    );
    assert_eq!(
        mock.chat_requests().await[0]["messages"],
        json!([
            { "role": "user", "content": "Weather in Paris?" },
            { "role": "assistant", "content": null, "tool_calls": [{
                "id": "call_0", "type": "function",
                "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" }
            }] },
            { "role": "tool", "content": "18°C, clear", "tool_call_id": "call_0" },
            { "role": "user", "content": "And Oslo?" }
        ])
    );
}
