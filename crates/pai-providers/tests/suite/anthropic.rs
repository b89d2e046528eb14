//! Anthropic's Messages API against a mock server on 127.0.0.1: the request PAI sends,
//! SSE and JSON replies with text and tool calls, and each failure's error.

use pai_providers::{
    ChatEvent, ChatRequest, Endpoint, ModelInfo, ProviderConfig, ProviderError, ProviderKind,
    connect,
};
use pai_types::{Locality, Message, ToolCall, ToolSpec, Usage};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

use super::{KEY, MODEL, Outcome, chat, config_at, request};

const HINT: &str = "set ANTHROPIC_API_KEY, or store a key with 'pai <session> key'";

/// A mock Anthropic API; requests go to `{base_url}/messages` and `{base_url}/models`.
struct MockAnthropic {
    server: MockServer,
}

impl MockAnthropic {
    async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// A remote Anthropic endpoint with [`KEY`].
    fn config(&self) -> ProviderConfig {
        ProviderConfig {
            name: "anthropic".into(),
            kind: ProviderKind::Anthropic,
            locality: Locality::Remote,
            key_hint: HINT.into(),
            ..config_at(self.base_url())
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            provider: "anthropic".into(),
            url: self.base_url(),
        }
    }

    async fn mount(&self, mock: Mock) {
        mock.mount(&self.server).await;
    }

    /// Every `POST /messages` gets `template`.
    async fn reply(&self, template: ResponseTemplate) {
        self.mount(messages_endpoint().respond_with(template)).await;
    }

    async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    /// The JSON bodies of the requests received so far.
    async fn bodies(&self) -> Vec<Value> {
        self.requests()
            .await
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("a JSON body"))
            .collect()
    }

    /// Fails unless every request carried the key and version Anthropic wants, and no
    /// OpenAI-style bearer token.
    async fn assert_anthropic_headers(&self) {
        let requests = self.requests().await;
        assert!(!requests.is_empty(), "no request was sent");
        for r in requests {
            let header = |name: &str| {
                r.headers
                    .get(name)
                    .map(|v| v.to_str().unwrap_or("<not text>").to_string())
            };
            assert_eq!(
                (
                    header("x-api-key"),
                    header("anthropic-version"),
                    header("authorization")
                ),
                (Some(KEY.to_string()), Some("2023-06-01".to_string()), None),
                "{} {}",
                r.method,
                r.url
            );
        }
    }
}

fn messages_endpoint() -> MockBuilder {
    Mock::given(method("POST")).and(path("/v1/messages"))
}

/// An SSE body of `(event name, data)` pairs.
fn sse(events: &[(&str, Value)]) -> ResponseTemplate {
    let body: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

/// An Anthropic error reply.
fn error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "type": "error",
        "error": { "type": kind, "message": message }
    }))
}

fn message_start(input_tokens: u64) -> (&'static str, Value) {
    (
        "message_start",
        json!({ "type": "message_start", "message": {
            "id": "msg_01", "type": "message", "role": "assistant", "content": [],
            "model": MODEL, "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": input_tokens, "output_tokens": 1 }
        } }),
    )
}

fn text_start(index: usize) -> (&'static str, Value) {
    (
        "content_block_start",
        json!({ "type": "content_block_start", "index": index,
                "content_block": { "type": "text", "text": "" } }),
    )
}

fn text_delta(index: usize, text: &str) -> (&'static str, Value) {
    (
        "content_block_delta",
        json!({ "type": "content_block_delta", "index": index,
                "delta": { "type": "text_delta", "text": text } }),
    )
}

fn tool_start(index: usize, id: &str, name: &str) -> (&'static str, Value) {
    (
        "content_block_start",
        json!({ "type": "content_block_start", "index": index,
                "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} } }),
    )
}

fn json_delta(index: usize, partial_json: &str) -> (&'static str, Value) {
    (
        "content_block_delta",
        json!({ "type": "content_block_delta", "index": index,
                "delta": { "type": "input_json_delta", "partial_json": partial_json } }),
    )
}

fn block_stop(index: usize) -> (&'static str, Value) {
    (
        "content_block_stop",
        json!({ "type": "content_block_stop", "index": index }),
    )
}

fn message_delta(stop_reason: &str, output_tokens: u64) -> (&'static str, Value) {
    (
        "message_delta",
        json!({ "type": "message_delta",
                "delta": { "stop_reason": stop_reason, "stop_sequence": null },
                "usage": { "output_tokens": output_tokens } }),
    )
}

fn message_stop() -> (&'static str, Value) {
    ("message_stop", json!({ "type": "message_stop" }))
}

fn ping() -> (&'static str, Value) {
    ("ping", json!({ "type": "ping" }))
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> ChatEvent {
    ChatEvent::Usage(Usage {
        prompt_tokens,
        completion_tokens,
        estimated: false,
    })
}

fn finished(reason: &str) -> ChatEvent {
    ChatEvent::Finished {
        reason: reason.into(),
    }
}

fn delta(text: &str) -> ChatEvent {
    ChatEvent::Delta(text.into())
}

fn call(id: &str, name: &str, arguments: &str) -> ChatEvent {
    ChatEvent::ToolCall(ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    })
}

fn read_file_tool() -> ToolSpec {
    ToolSpec {
        name: "read_file".into(),
        description: "Read a file in the workspace.".into(),
        parameters: json!({
            "type": "object",
            "properties": { "path": { "type": "string" } },
            "required": ["path"]
        }),
    }
}

/// A streamed reply cut off after "Half an": no message_delta, no message_stop.
async fn cut_off(mock: &MockAnthropic) -> Outcome {
    mock.reply(sse(&[
        message_start(5),
        text_start(0),
        text_delta(0, "Half"),
        text_delta(0, " an"),
    ]))
    .await;
    chat(mock.config(), request(true)).await
}

#[tokio::test]
async fn streamed_text_yields_deltas_then_usage_then_finished() {
    let mock = MockAnthropic::start().await;
    mock.reply(sse(&[
        message_start(12),
        text_start(0),
        ping(),
        text_delta(0, "Hel"),
        text_delta(0, "lo"),
        text_delta(0, " there."),
        block_stop(0),
        message_delta("end_turn", 3),
        message_stop(),
    ]))
    .await;

    let events = chat(mock.config(), request(true)).await.events();

    assert_eq!(
        events,
        vec![
            delta("Hel"),
            delta("lo"),
            delta(" there."),
            usage(12, 3),
            finished("end_turn"),
        ]
    );
    assert_eq!(
        mock.bodies().await,
        vec![json!({
            "model": MODEL,
            "max_tokens": 4096,
            "system": "You are terse.",
            "messages": [{ "role": "user", "content": "Say hello." }],
            "stream": true
        })]
    );
    mock.assert_anthropic_headers().await;
}

#[tokio::test]
async fn streamed_tool_use_is_assembled_from_json_fragments() {
    let mock = MockAnthropic::start().await;
    mock.reply(sse(&[
        message_start(40),
        text_start(0),
        text_delta(0, "Reading it."),
        block_stop(0),
        tool_start(1, "toolu_01", "read_file"),
        json_delta(1, ""),
        json_delta(1, "{\"pa"),
        json_delta(1, "th\": \"a."),
        json_delta(1, "txt\"}"),
        block_stop(1),
        // A tool without arguments sends no fragments at all.
        tool_start(2, "toolu_02", "list_files"),
        block_stop(2),
        message_delta("tool_use", 25),
        message_stop(),
    ]))
    .await;

    let events = chat(mock.config(), request(true)).await.events();

    assert_eq!(
        events,
        vec![
            delta("Reading it."),
            call("toolu_01", "read_file", r#"{"path": "a.txt"}"#),
            call("toolu_02", "list_files", "{}"),
            usage(40, 25),
            finished("tool_use"),
        ]
    );
}

#[tokio::test]
async fn a_whole_reply_yields_its_text_tool_calls_usage_and_stop_reason() {
    let mock = MockAnthropic::start().await;
    mock.reply(ResponseTemplate::new(200).set_body_json(json!({
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            { "type": "text", "text": "Let me " },
            { "type": "text", "text": "read that." },
            { "type": "tool_use", "id": "toolu_01", "name": "read_file",
              "input": { "path": "a.txt" } }
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": { "input_tokens": 30, "output_tokens": 9 }
    })))
    .await;

    let events = chat(mock.config(), request(false)).await.events();

    assert_eq!(
        events,
        vec![
            delta("Let me read that."),
            call("toolu_01", "read_file", r#"{"path":"a.txt"}"#),
            usage(30, 9),
            finished("tool_use"),
        ]
    );
    mock.assert_anthropic_headers().await;
}

#[tokio::test]
async fn a_sparse_whole_reply_still_finishes() {
    let mock = MockAnthropic::start().await;
    mock.reply(ResponseTemplate::new(200).set_body_json(json!({
        "content": [{ "type": "text", "text": "ok" }]
    })))
    .await;

    let events = chat(mock.config(), request(false)).await.events();

    assert_eq!(events, vec![delta("ok"), finished("end_turn")]);
}

#[tokio::test]
async fn the_request_extracts_system_merges_turns_and_converts_tools() {
    let mock = MockAnthropic::start().await;
    mock.reply(ResponseTemplate::new(200).set_body_json(json!({
        "content": [{ "type": "text", "text": "Done." }],
        "stop_reason": "end_turn"
    })))
    .await;
    let mut req = ChatRequest::new(
        MODEL,
        vec![
            Message::system("You are terse."),
            Message::system("Answer in English."),
            Message::user("Read a.txt"),
            Message::user("and b.txt."),
            Message::assistant_with_tools(
                "Reading both.",
                vec![
                    ToolCall {
                        id: "toolu_a".into(),
                        name: "read_file".into(),
                        arguments: r#"{"path":"a.txt"}"#.into(),
                    },
                    ToolCall {
                        id: "toolu_b".into(),
                        name: "read_file".into(),
                        arguments: "not json".into(),
                    },
                ],
            ),
            Message::tool_result("toolu_a", "alpha"),
            Message::tool_result("toolu_b", "beta"),
            Message::user("Compare them."),
            Message::assistant_with_tools(
                "",
                vec![ToolCall {
                    id: "toolu_c".into(),
                    name: "read_file".into(),
                    arguments: String::new(),
                }],
            ),
            Message::tool_result("toolu_c", "gamma"),
        ],
        false,
    );
    req.tools = vec![read_file_tool()];

    chat(mock.config(), req).await.events();

    assert_eq!(
        mock.bodies().await,
        vec![json!({
            "model": MODEL,
            "max_tokens": 4096,
            "system": "You are terse.\n\nAnswer in English.",
            "stream": false,
            "tools": [{
                "name": "read_file",
                "description": "Read a file in the workspace.",
                "input_schema": {
                    "type": "object",
                    "properties": { "path": { "type": "string" } },
                    "required": ["path"]
                }
            }],
            "messages": [
                { "role": "user", "content": [
                    { "type": "text", "text": "Read a.txt" },
                    { "type": "text", "text": "and b.txt." }
                ] },
                { "role": "assistant", "content": [
                    { "type": "text", "text": "Reading both." },
                    { "type": "tool_use", "id": "toolu_a", "name": "read_file",
                      "input": { "path": "a.txt" } },
                    { "type": "tool_use", "id": "toolu_b", "name": "read_file", "input": {} }
                ] },
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "toolu_a", "content": "alpha" },
                    { "type": "tool_result", "tool_use_id": "toolu_b", "content": "beta" },
                    { "type": "text", "text": "Compare them." }
                ] },
                { "role": "assistant", "content": [
                    { "type": "tool_use", "id": "toolu_c", "name": "read_file", "input": {} }
                ] },
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "toolu_c", "content": "gamma" }
                ] }
            ]
        })]
    );
}

#[tokio::test]
async fn a_stream_without_message_stop_is_cut() {
    let mock = MockAnthropic::start().await;

    let (events, err) = cut_off(&mock).await.error();

    assert_eq!(events, vec![delta("Half"), delta(" an")]);
    let ProviderError::StreamCut { at, .. } = err else {
        panic!("expected StreamCut, got {err:?}");
    };
    assert_eq!(at, mock.endpoint());
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_it_with_that_error() {
    let mock = MockAnthropic::start().await;
    mock.reply(sse(&[
        message_start(5),
        text_start(0),
        text_delta(0, "Half"),
        (
            "error",
            json!({ "type": "error",
                    "error": { "type": "overloaded_error", "message": "Overloaded" } }),
        ),
        text_delta(0, " never seen"),
        message_stop(),
    ]))
    .await;

    let (events, err) = chat(mock.config(), request(true)).await.error();

    assert_eq!(events, vec![delta("Half")]);
    let ProviderError::Server {
        at,
        status,
        message,
        ..
    } = err
    else {
        panic!("expected Server, got {err:?}");
    };
    assert_eq!(
        (at, status, message),
        (mock.endpoint(), 529, "Overloaded".to_string())
    );
}

#[tokio::test]
async fn a_refused_key_is_auth_and_is_not_retried() {
    let mock = MockAnthropic::start().await;
    mock.mount(
        messages_endpoint()
            .respond_with(error(401, "authentication_error", "invalid x-api-key"))
            .expect(1),
    )
    .await;

    let (_, err) = chat(mock.config(), request(false)).await.error();

    assert!(err.to_string().contains(HINT), "{err}");
    let ProviderError::Auth { at, status, hint } = err else {
        panic!("expected Auth, got {err:?}");
    };
    assert_eq!((at, status, hint), (mock.endpoint(), 401, HINT.to_string()));
}

#[tokio::test]
async fn an_unknown_model_is_named() {
    let mock = MockAnthropic::start().await;
    mock.reply(error(404, "not_found_error", "model: claude-nine"))
        .await;
    let mut req = request(true);
    req.model = "claude-nine".into();

    let (_, err) = chat(mock.config(), req).await.error();

    let ProviderError::UnknownModel { at, model } = err else {
        panic!("expected UnknownModel, got {err:?}");
    };
    assert_eq!((at, model), (mock.endpoint(), "claude-nine".to_string()));
}

#[tokio::test]
async fn rate_limiting_is_retried_then_reported_with_the_attempts() {
    let mock = MockAnthropic::start().await;
    mock.mount(
        messages_endpoint()
            .respond_with(
                error(
                    429,
                    "rate_limit_error",
                    "Number of requests has exceeded your rate limit",
                )
                .insert_header("retry-after", "0"),
            )
            .expect(3),
    )
    .await;
    let req = request(false);
    let log = req.attempts.clone();

    let (_, err) = chat(mock.config(), req).await.error();

    let ProviderError::RateLimited { at, attempts, .. } = err else {
        panic!("expected RateLimited, got {err:?}");
    };
    // fast_net allows 2 retries: 3 tries, all logged for the audit.
    assert_eq!((at, attempts), (mock.endpoint(), 3));
    let outcomes: Vec<String> = log.take().into_iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, vec!["429 Too Many Requests".to_string(); 3]);
}

#[tokio::test]
async fn overloaded_is_a_server_error_after_retries() {
    let mock = MockAnthropic::start().await;
    mock.mount(
        messages_endpoint()
            .respond_with(error(529, "overloaded_error", "Overloaded"))
            .expect(3),
    )
    .await;

    let (_, err) = chat(mock.config(), request(true)).await.error();

    let ProviderError::Server {
        at,
        status,
        attempts,
        message,
    } = err
    else {
        panic!("expected Server, got {err:?}");
    };
    assert_eq!(
        (at, status, attempts, message),
        (mock.endpoint(), 529, 3, "Overloaded".to_string())
    );
}

#[tokio::test]
async fn a_prompt_too_long_is_context_too_long() {
    let mock = MockAnthropic::start().await;
    mock.mount(
        messages_endpoint()
            .respond_with(error(
                400,
                "invalid_request_error",
                "prompt is too long: 208310 tokens > 200000 maximum",
            ))
            .expect(1),
    )
    .await;

    let (_, err) = chat(mock.config(), request(false)).await.error();

    let ProviderError::ContextTooLong { at, model } = err else {
        panic!("expected ContextTooLong, got {err:?}");
    };
    assert_eq!((at, model), (mock.endpoint(), MODEL.to_string()));
}

#[tokio::test]
async fn a_remote_endpoint_without_a_key_sends_nothing() {
    let mock = MockAnthropic::start().await;
    let config = ProviderConfig {
        api_key: None,
        ..mock.config()
    };

    let (_, chat_err) = chat(config.clone(), request(false)).await.error();
    let models_err = connect(config)
        .unwrap()
        .models()
        .await
        .expect_err("no key, no listing");

    for err in [chat_err, models_err] {
        let ProviderError::MissingKey { at, hint } = err else {
            panic!("expected MissingKey, got {err:?}");
        };
        assert_eq!((at, hint), (mock.endpoint(), HINT.to_string()));
    }
    assert_eq!(mock.requests().await.len(), 0);
}

#[tokio::test]
async fn a_local_endpoint_without_a_key_sends_no_key_header() {
    let mock = MockAnthropic::start().await;
    mock.reply(sse(&[
        message_start(1),
        text_start(0),
        text_delta(0, "ok"),
        block_stop(0),
        message_delta("end_turn", 1),
        message_stop(),
    ]))
    .await;
    let config = ProviderConfig {
        api_key: None,
        locality: Locality::Local,
        ..mock.config()
    };

    chat(config, request(true)).await.events();

    let requests = mock.requests().await;
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].headers.get("x-api-key").is_none(),
        "{:?}",
        requests[0].headers
    );
}

#[tokio::test]
async fn models_lists_the_ids_the_endpoint_serves() {
    let mock = MockAnthropic::start().await;
    mock.mount(
        Mock::given(method("GET"))
            .and(path("/v1/models"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "data": [
                    { "type": "model", "id": "claude-sonnet-4-5",
                      "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z" },
                    { "id": "claude-haiku-4-5" }
                ],
                "has_more": false,
                "first_id": "claude-sonnet-4-5",
                "last_id": "claude-haiku-4-5"
            }))),
    )
    .await;

    let models = connect(mock.config()).unwrap().models().await.unwrap();

    assert_eq!(
        models,
        vec![
            ModelInfo {
                id: "claude-sonnet-4-5".into(),
                owned_by: None
            },
            ModelInfo {
                id: "claude-haiku-4-5".into(),
                owned_by: None
            },
        ]
    );
    mock.assert_anthropic_headers().await;
}
