//! Ollama's native API over real HTTP: `/api/chat` as NDJSON or one JSON object,
//! `/api/tags`, Ollama's `{"error": "text"}` bodies, and streams that break part way.

use std::io::Write;
use std::time::Duration;

use pai_providers::{
    ChatEvent, ChatRequest, Endpoint, ModelInfo, ProviderConfig, ProviderError, ProviderInfo,
    ProviderKind, connect,
};
use pai_types::{Locality, Message, Secret, ToolCall, ToolSpec, Usage};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

use super::{MODEL, chat, config_at, request};

/// A keyless local Ollama at `base_url`, with the suite's fast retries.
fn ollama_config(base_url: String) -> ProviderConfig {
    ProviderConfig {
        name: "ollama".into(),
        kind: ProviderKind::Ollama,
        api_key: None,
        key_hint: String::new(),
        ..config_at(base_url)
    }
}

fn at(url: impl Into<String>) -> Endpoint {
    Endpoint {
        provider: "ollama".into(),
        url: url.into(),
    }
}

fn chat_endpoint() -> MockBuilder {
    Mock::given(method("POST")).and(path("/api/chat"))
}

/// One streamed line carrying `text`.
fn piece(text: &str) -> Value {
    json!({
        "model": MODEL,
        "created_at": "2024-07-01T12:00:00.000000Z",
        "message": { "role": "assistant", "content": text },
        "done": false
    })
}

/// The closing line, with Ollama's counts and timings.
fn done(prompt_eval_count: u64, eval_count: u64) -> Value {
    json!({
        "model": MODEL,
        "created_at": "2024-07-01T12:00:01.000000Z",
        "message": { "role": "assistant", "content": "" },
        "done": true,
        "done_reason": "stop",
        "total_duration": 4_883_583_458_u64,
        "load_duration": 1_334_875,
        "prompt_eval_count": prompt_eval_count,
        "prompt_eval_duration": 342_546_000,
        "eval_count": eval_count,
        "eval_duration": 4_535_599_000_u64
    })
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn ndjson_reply(body: impl Into<String>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.into(), "application/x-ndjson")
}

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

/// A mock Ollama answering every chat request with `reply`.
async fn ollama(reply: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    chat_endpoint().respond_with(reply).mount(&server).await;
    server
}

/// The JSON bodies of the chat requests `server` received, oldest first.
async fn chat_bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/chat")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// A one-shot server on 127.0.0.1 that answers with a chunked body, writing each part
/// separately with a pause between, so the client reads them as separate network chunks.
/// Without `complete` it drops the connection instead of ending the body.
fn chunked_once(parts: Vec<Vec<u8>>, complete: bool) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        if pai_test_support::read_request(&mut conn).is_none() {
            return;
        }
        let mut write = |bytes: &[u8]| {
            let _ = conn.write_all(bytes);
            let _ = conn.flush();
        };
        write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n\
              transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        );
        for part in parts {
            let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
            chunk.extend_from_slice(&part);
            chunk.extend_from_slice(b"\r\n");
            write(&chunk);
            std::thread::sleep(Duration::from_millis(40));
        }
        if complete {
            write(b"0\r\n\r\n");
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn streamed_ndjson_yields_deltas_then_usage_then_finished() {
    let server = ollama(ndjson_reply(ndjson(&[
        piece("Hel"),
        piece("lo"),
        piece(""),
        piece(" there."),
        done(12, 3),
    ])))
    .await;

    let events = chat(ollama_config(server.uri()), request(true))
        .await
        .events();

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
        chat_bodies(&server).await,
        vec![json!({
            "model": MODEL,
            "messages": [
                { "role": "system", "content": "You are terse." },
                { "role": "user", "content": "Say hello." }
            ],
            "stream": true
        })]
    );
}

#[tokio::test]
async fn lines_split_across_network_chunks_are_joined() {
    let body = ndjson(&[piece("Grüße"), piece(", Welt"), done(5, 2)]).into_bytes();
    // Cut inside the first line, inside 'ü' (two bytes in UTF-8), and just before a '\n'.
    let u = body.windows(2).position(|w| w == "ü".as_bytes()).unwrap();
    let newline = body.iter().position(|&b| b == b'\n').unwrap();
    let cuts = [10, u + 1, newline, body.len() - 20];
    let mut parts = Vec::new();
    let mut from = 0;
    for cut in cuts {
        parts.push(body[from..cut].to_vec());
        from = cut;
    }
    parts.push(body[from..].to_vec());

    let base = chunked_once(parts, true);
    let events = chat(ollama_config(base), request(true)).await.events();

    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("Grüße".into()),
            ChatEvent::Delta(", Welt".into()),
            usage(5, 2),
            finished(),
        ]
    );
}

#[tokio::test]
async fn crlf_blank_lines_and_a_last_line_without_newline_are_read() {
    let body = format!(
        "{}\r\n\r\n{}\r\n{}",
        piece("One"),
        piece(" two"),
        done(4, 2)
    );
    let server = ollama(ndjson_reply(body)).await;

    let events = chat(ollama_config(server.uri()), request(true))
        .await
        .events();

    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("One".into()),
            ChatEvent::Delta(" two".into()),
            usage(4, 2),
            finished(),
        ]
    );
}

#[tokio::test]
async fn non_streamed_reply_yields_text_usage_then_finished() {
    let mut reply = done(9, 4);
    reply["message"]["content"] = json!("Hello there.");
    reply["done_reason"] = json!("length");
    let server = ollama(ResponseTemplate::new(200).set_body_json(reply)).await;

    let events = chat(ollama_config(server.uri()), request(false))
        .await
        .events();

    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("Hello there.".into()),
            usage(9, 4),
            ChatEvent::Finished {
                reason: "length".into()
            },
        ]
    );
    assert_eq!(chat_bodies(&server).await[0]["stream"], json!(false));
}

#[tokio::test]
async fn a_reply_without_counts_or_reason_has_no_usage_and_stops() {
    let server = ollama(ResponseTemplate::new(200).set_body_json(json!({
        "message": { "content": "Bare." }
    })))
    .await;

    let events = chat(ollama_config(server.uri()), request(false))
        .await
        .events();

    assert_eq!(events, vec![ChatEvent::Delta("Bare.".into()), finished()]);
}

#[tokio::test]
async fn tool_calls_in_a_stream_become_tool_call_events() {
    let calls = json!({
        "model": MODEL,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                { "function": { "name": "get_weather", "arguments": { "city": "Paris", "unit": "c" } } },
                { "function": { "name": "get_time", "arguments": {} } }
            ]
        },
        "done": false
    });
    let server = ollama(ndjson_reply(ndjson(&[
        piece("Checking."),
        calls,
        done(30, 12),
    ])))
    .await;

    let events = chat(ollama_config(server.uri()), request(true))
        .await
        .events();

    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("Checking.".into()),
            ChatEvent::ToolCall(ToolCall {
                id: "call_0".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris","unit":"c"}"#.into(),
            }),
            ChatEvent::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "get_time".into(),
                arguments: "{}".into(),
            }),
            usage(30, 12),
            finished(),
        ]
    );
}

#[tokio::test]
async fn tools_and_tool_history_are_sent_in_ollama_shape() {
    let server = ollama(ndjson_reply(ndjson(&[piece("18C."), done(1, 1)]))).await;
    let mut req = ChatRequest::new(
        MODEL,
        vec![
            Message::user("Weather in Paris?"),
            Message::assistant_with_tools(
                "",
                vec![
                    ToolCall {
                        id: "call_0".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    },
                    ToolCall {
                        id: "call_1".into(),
                        name: "echo".into(),
                        arguments: "{not json".into(),
                    },
                ],
            ),
            Message::tool_result("call_0", "18C"),
            Message::tool_result("call_1", "?"),
            Message::tool_result("call_unknown", "orphan"),
        ],
        true,
    );
    req.tools = vec![ToolSpec {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({
            "type": "object",
            "properties": { "city": { "type": "string" } },
            "required": ["city"]
        }),
    }];

    chat(ollama_config(server.uri()), req).await.events();

    assert_eq!(
        chat_bodies(&server).await,
        vec![json!({
            "model": MODEL,
            "messages": [
                { "role": "user", "content": "Weather in Paris?" },
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        { "function": { "name": "get_weather", "arguments": { "city": "Paris" } } },
                        { "function": { "name": "echo", "arguments": "{not json" } }
                    ]
                },
                { "role": "tool", "content": "18C", "tool_name": "get_weather" },
                { "role": "tool", "content": "?", "tool_name": "echo" },
                { "role": "tool", "content": "orphan" }
            ],
            "stream": true,
            "tools": [{
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": { "city": { "type": "string" } },
                        "required": ["city"]
                    }
                }
            }]
        })]
    );
}

#[tokio::test]
async fn a_stream_without_done_is_cut_off_after_the_text_so_far() {
    let server = ollama(ndjson_reply(ndjson(&[piece("Half an")]))).await;

    let (events, err) = chat(ollama_config(server.uri()), request(true))
        .await
        .error();

    assert_eq!(events, vec![ChatEvent::Delta("Half an".into())]);
    let ProviderError::StreamCut { at: got, .. } = err else {
        panic!("expected StreamCut, got {err:?}");
    };
    assert_eq!(got, at(server.uri()));
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_stream_cut() {
    let base = chunked_once(vec![ndjson(&[piece("So far")]).into_bytes()], false);

    let (events, err) = chat(ollama_config(base.clone()), request(true))
        .await
        .error();

    assert_eq!(events, vec![ChatEvent::Delta("So far".into())]);
    let ProviderError::StreamCut { at: got, .. } = err else {
        panic!("expected StreamCut, got {err:?}");
    };
    assert_eq!(got, at(base));
}

#[tokio::test]
async fn an_error_line_mid_stream_ends_the_call_with_its_message() {
    let body = ndjson(&[
        piece("Start"),
        json!({ "error": "llama runner process has terminated: signal: killed" }),
        piece("never seen"),
        done(1, 1),
    ]);
    let server = ollama(ndjson_reply(body)).await;

    let (events, err) = chat(ollama_config(server.uri()), request(true))
        .await
        .error();

    assert_eq!(events, vec![ChatEvent::Delta("Start".into())]);
    let ProviderError::Malformed { at: got, detail } = err else {
        panic!("expected Malformed, got {err:?}");
    };
    assert_eq!(
        (got, detail),
        (
            at(server.uri()),
            "the server reported an error mid-stream: llama runner process has terminated: signal: killed"
                .to_string()
        )
    );
}

#[tokio::test]
async fn a_model_ollama_has_not_pulled_is_unknown_model_and_not_retried() {
    let server = MockServer::start().await;
    chat_endpoint()
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": "model 'llama9' not found, try pulling it first"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut req = request(true);
    req.model = "llama9".into();

    let (_, err) = chat(ollama_config(server.uri()), req).await.error();

    let ProviderError::UnknownModel { at: got, model } = err else {
        panic!("expected UnknownModel, got {err:?}");
    };
    assert_eq!((got, model), (at(server.uri()), "llama9".to_string()));
}

#[tokio::test]
async fn a_server_error_is_retried_then_given_up_with_its_message() {
    let server = MockServer::start().await;
    chat_endpoint()
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "error": "llama runner process has terminated: exit status 2"
        })))
        .expect(3)
        .mount(&server)
        .await;
    let req = request(false);
    let log = req.attempts.clone();

    let (_, err) = chat(ollama_config(server.uri()), req).await.error();

    let ProviderError::Server {
        at: got,
        status,
        attempts,
        message,
    } = err
    else {
        panic!("expected Server, got {err:?}");
    };
    assert_eq!(
        (got, status, attempts, message),
        (
            at(server.uri()),
            500,
            3,
            "llama runner process has terminated: exit status 2".to_string()
        )
    );
    assert_eq!(log.failures(), 3);
}

#[tokio::test]
async fn a_dead_server_is_connect_and_says_how_to_start_ollama() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");

    let (_, err) = chat(ollama_config(base.clone()), request(true))
        .await
        .error();

    let text = err.to_string();
    assert!(text.contains("is the server running?"), "{text}");
    assert!(text.contains("start it with 'ollama serve'"), "{text}");
    let ProviderError::Connect { at: got, .. } = err else {
        panic!("expected Connect, got {err:?}");
    };
    assert_eq!(got, at(base));
}

#[tokio::test]
async fn models_come_from_api_tags() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "models": [
            {
                "name": "llama3:latest",
                "model": "llama3:latest",
                "modified_at": "2024-07-01T12:00:00Z",
                "size": 4_661_224_676_u64,
                "digest": "365c0bd3c000",
                "details": { "format": "gguf", "family": "llama", "parameter_size": "8.0B" }
            },
            { "model": "qwen2.5:0.5b" },
            { "size": 1 }
        ] })))
        .mount(&server)
        .await;
    // A trailing slash in the configured URL is not doubled.
    let provider = connect(ollama_config(format!("{}/", server.uri()))).unwrap();

    let models = provider.models().await.unwrap();

    assert_eq!(
        models,
        vec![
            ModelInfo {
                id: "llama3:latest".into(),
                owned_by: None
            },
            ModelInfo {
                id: "qwen2.5:0.5b".into(),
                owned_by: None
            },
        ]
    );
    assert_eq!(
        provider.info(),
        &ProviderInfo {
            name: "ollama".into(),
            kind: ProviderKind::Ollama,
            endpoint: server.uri(),
            locality: Locality::Local,
        }
    );
}

#[tokio::test]
async fn authorization_is_sent_only_when_a_key_is_set() {
    let server = ollama(ndjson_reply(ndjson(&[done(1, 1)]))).await;
    // Ollama needs no key, even where locality says remote.
    let mut keyless = ollama_config(server.uri());
    keyless.locality = Locality::Remote;
    let mut keyed = ollama_config(server.uri());
    keyed.api_key = Some(Secret::new("proxy-token".to_string()));

    chat(keyless, request(true)).await.events();
    chat(keyed, request(true)).await.events();

    let authorizations: Vec<Option<String>> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        authorizations,
        vec![None, Some("Bearer proxy-token".to_string())]
    );
}

#[tokio::test]
async fn a_non_json_reply_is_malformed() {
    let server =
        ollama(ResponseTemplate::new(200).set_body_raw("<html>hi</html>", "text/html")).await;

    let (events, err) = chat(ollama_config(server.uri()), request(false))
        .await
        .error();

    assert_eq!(events, Vec::new());
    let ProviderError::Malformed { at: got, .. } = err else {
        panic!("expected Malformed, got {err:?}");
    };
    assert_eq!(got, at(server.uri()));
}
