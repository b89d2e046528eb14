//! Replies that arrive: JSON and SSE, OpenAI's exact shape and looser local servers,
//! and streams that break part way.

use pai_providers::{ChatEvent, ModelInfo, OpenAiProvider, ProviderError, connect};
use pai_test_support::{MockOpenAi, chat_endpoint, raw_http_once, sse_body, sse_chunks};
use pai_types::Usage;
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::ResponseTemplate;

use super::{KEY, MODEL, Outcome, chat, config, config_at, endpoint, request};

fn usage(prompt_tokens: u64, completion_tokens: u64) -> ChatEvent {
    ChatEvent::Usage(Usage {
        prompt_tokens,
        completion_tokens,
        estimated: false,
    })
}

fn finished() -> ChatEvent {
    ChatEvent::Finished {
        reason: "stop".into(),
    }
}

fn sse(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

#[tokio::test]
async fn non_streamed_reply_yields_text_usage_then_finished() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("Hello there.", 12, 3).await;

    let events = chat(config(&mock), request(false)).await.events();

    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("Hello there.".into()),
            usage(12, 3),
            finished()
        ]
    );
    assert_eq!(
        mock.chat_requests().await,
        vec![json!({
            "model": MODEL,
            "messages": [
                { "role": "system", "content": "You are terse." },
                { "role": "user", "content": "Say hello." }
            ],
            "stream": false
        })]
    );
}

#[tokio::test]
async fn requests_carry_the_key_and_no_organisation_or_project() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;

    chat(config(&mock), request(false)).await.events();

    let requests = mock.requests().await;
    assert_eq!(requests.len(), 1);
    let header = |name: &str| {
        requests[0]
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<not text>").to_string())
    };
    assert_eq!(header("authorization"), Some(format!("Bearer {KEY}")));
    assert_eq!(header("openai-organization"), None);
    assert_eq!(header("openai-project"), None);
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
}

#[tokio::test]
async fn streamed_reply_yields_deltas_in_order_then_usage_then_finished() {
    let mock = MockOpenAi::start().await;
    mock.reply_stream(&["Hel", "lo", " there."], 12, 3).await;

    let events = chat(config(&mock), request(true)).await.events();

    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("Hel".into()),
            ChatEvent::Delta("lo".into()),
            ChatEvent::Delta(" there.".into()),
            usage(12, 3),
            finished(),
        ]
    );
    assert_eq!(
        mock.chat_requests().await,
        vec![json!({
            "model": MODEL,
            "messages": [
                { "role": "system", "content": "You are terse." },
                { "role": "user", "content": "Say hello." }
            ],
            "stream": true,
            "stream_options": { "include_usage": true }
        })]
    );
}

#[tokio::test]
async fn a_server_that_omits_id_object_created_and_index_still_works() {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .and(wiremock::matchers::body_partial_json(
                json!({ "stream": false }),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "choices": [{
                    "message": { "role": "assistant", "content": "Plain reply." },
                    "finish_reason": "stop"
                }],
                "usage": { "prompt_tokens": 7, "completion_tokens": 2 }
            }))),
    )
    .await;
    mock.mount(
        chat_endpoint()
            .and(wiremock::matchers::body_partial_json(json!({ "stream": true })))
            .respond_with(sse(sse_body(
                &[
                    json!({ "choices": [{ "delta": { "content": "Plain" } }] }),
                    json!({ "choices": [{ "delta": { "content": " stream." } }] }),
                    json!({ "choices": [{ "delta": {}, "finish_reason": "stop" }] }),
                    json!({ "choices": [], "usage": { "prompt_tokens": 7, "completion_tokens": 2 } }),
                ],
                true,
            ))),
    )
    .await;

    let json_events = chat(config(&mock), request(false)).await.events();
    let sse_events = chat(config(&mock), request(true)).await.events();

    assert_eq!(
        json_events,
        vec![
            ChatEvent::Delta("Plain reply.".into()),
            usage(7, 2),
            finished()
        ]
    );
    assert_eq!(
        sse_events,
        vec![
            ChatEvent::Delta("Plain".into()),
            ChatEvent::Delta(" stream.".into()),
            usage(7, 2),
            finished(),
        ]
    );
}

/// A stream without a finish reason and without `[DONE]`: the server went away mid-answer.
pub(super) async fn stream_cut_off() -> Outcome {
    let mock = MockOpenAi::start().await;
    let chunks = sse_chunks(&["Half", " an"], 5, 2);
    // The role chunk and the two deltas; no finish chunk, no usage, no [DONE].
    mock.reply_stream_raw(sse_body(&chunks[..3], false)).await;
    chat(config(&mock), request(true)).await
}

#[tokio::test]
async fn a_stream_cut_off_ends_in_stream_cut_after_the_text_so_far() {
    let (events, err) = stream_cut_off().await.error();

    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("Half".into()),
            ChatEvent::Delta(" an".into())
        ]
    );
    assert!(
        matches!(err, ProviderError::StreamCut { .. }),
        "expected StreamCut, got {err:?}"
    );
}

/// The connection drops part way through a chunked SSE body.
pub(super) async fn connection_dropped_mid_stream() -> Outcome {
    let frame = sse_body(&sse_chunks(&["Half"], 5, 1)[1..2], false);
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x}\r\n{frame}\r\n",
        frame.len()
    );
    chat(config_at(raw_http_once(response)), request(true)).await
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_stream_cut_said_once() {
    let (events, err) = connection_dropped_mid_stream().await.error();

    assert_eq!(events, vec![ChatEvent::Delta("Half".into())]);
    assert!(
        matches!(err, ProviderError::StreamCut { .. }),
        "expected StreamCut, got {err:?}"
    );
    let text = err.to_string();
    assert_eq!(text.matches("cut off").count(), 1, "{text}");
}

pub(super) async fn error_mid_stream() -> Outcome {
    let mock = MockOpenAi::start().await;
    let chunks = sse_chunks(&["Start"], 5, 1);
    let mut body = sse_body(&chunks[..2], false);
    body.push_str("data: {\"error\":{\"message\":\"boom\"}}\n\n");
    mock.reply_stream_raw(body).await;
    chat(config(&mock), request(true)).await
}

#[tokio::test]
async fn an_error_chunk_mid_stream_ends_the_stream_with_an_error() {
    let (events, err) = error_mid_stream().await.error();

    assert_eq!(events, vec![ChatEvent::Delta("Start".into())]);
    assert!(err.to_string().contains("boom"), "{err}");
}

pub(super) async fn garbage_body() -> (MockOpenAi, ProviderError) {
    let mock = MockOpenAi::start().await;
    mock.reply_with(ResponseTemplate::new(200).set_body_raw("<html>It works!</html>", "text/html"))
        .await;
    let (_, err) = chat(config(&mock), request(false)).await.error();
    (mock, err)
}

#[tokio::test]
async fn a_non_json_reply_is_malformed() {
    let (mock, err) = garbage_body().await;

    let ProviderError::Malformed { at, .. } = err else {
        panic!("expected Malformed, got {err:?}");
    };
    assert_eq!(at, endpoint(&mock));
}

#[tokio::test]
async fn models_lists_the_ids_the_server_serves() {
    let mock = MockOpenAi::start().await;
    mock.serve_models(&["llama-3.1-8b", "qwen2.5-7b"]).await;

    let provider = connect(config(&mock)).expect("valid config");
    let models = provider.models().await.expect("models listed");

    assert_eq!(
        models,
        vec![
            ModelInfo {
                id: "llama-3.1-8b".into(),
                owned_by: Some("test".into()),
            },
            ModelInfo {
                id: "qwen2.5-7b".into(),
                owned_by: Some("test".into()),
            },
        ]
    );
}

#[tokio::test]
async fn debug_output_never_shows_the_key() {
    let mock = MockOpenAi::start().await;
    let cfg = config(&mock);

    let config_debug = format!("{cfg:?}");
    assert!(
        config_debug.contains("api_key: Some([REDACTED])"),
        "{config_debug}"
    );
    let provider_debug = format!("{:?}", OpenAiProvider::new(cfg).expect("valid config"));

    for text in [config_debug, provider_debug] {
        assert!(!text.contains(KEY), "key leaked: {text}");
        assert!(
            !text.contains("0123456789"),
            "part of the key leaked: {text}"
        );
    }
}
