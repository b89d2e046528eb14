use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

/// A mock OpenAI-compatible server on 127.0.0.1 with helpers to script its replies.
#[derive(Debug)]
pub struct MockOpenAi {
    /// The wiremock server, for mounting mocks the helpers do not cover.
    pub server: MockServer,
}

impl MockOpenAi {
    /// Starts the server on a free port of 127.0.0.1, with no mocks mounted.
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    /// The base URL a client is configured with (includes `/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// Non-streamed requests get `text` with the given usage.
    pub async fn reply_json(&self, text: &str, prompt_tokens: u64, completion_tokens: u64) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_partial_json(json!({ "stream": false })))
            .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion(
                text,
                prompt_tokens,
                completion_tokens,
            )))
            .mount(&self.server)
            .await;
    }

    /// Streamed requests get `pieces` as SSE deltas, then a usage chunk and `[DONE]`.
    pub async fn reply_stream(&self, pieces: &[&str], prompt_tokens: u64, completion_tokens: u64) {
        self.reply_stream_raw(sse_body(
            &sse_chunks(pieces, prompt_tokens, completion_tokens),
            true,
        ))
        .await;
    }

    /// Streamed requests get exactly this SSE body.
    pub async fn reply_stream_raw(&self, body: String) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_partial_json(json!({ "stream": true })))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "text/event-stream")
                    .set_body_raw(body, "text/event-stream"),
            )
            .mount(&self.server)
            .await;
    }

    /// Every chat request gets this status and JSON body.
    pub async fn reply_status(&self, status: u16, body: Value) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.server)
            .await;
    }

    /// Mounts any response template on the chat endpoint (for headers, delays, raw bodies).
    pub async fn reply_with(&self, template: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(template)
            .mount(&self.server)
            .await;
    }

    /// Mounts a mock built with wiremock's own controls (`expect`, `up_to_n_times`,
    /// `with_priority`), usually one started from [`chat_endpoint`].
    pub async fn mount(&self, mock: Mock) {
        mock.mount(&self.server).await;
    }

    /// `GET /v1/models` lists these ids.
    pub async fn serve_models(&self, ids: &[&str]) {
        let data: Vec<Value> = ids
            .iter()
            .map(|id| json!({ "id": id, "object": "model", "owned_by": "test" }))
            .collect();
        Mock::given(method("GET"))
            .and(path("/v1/models"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({ "object": "list", "data": data })),
            )
            .mount(&self.server)
            .await;
    }

    /// The JSON bodies of the chat requests received so far, oldest first.
    #[allow(clippy::expect_used)]
    pub async fn chat_requests(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .expect("request recording is on")
            .into_iter()
            .filter(|r| r.url.path() == "/v1/chat/completions")
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// The `Authorization` header of each chat request received so far, oldest first.
    pub async fn chat_authorizations(&self) -> Vec<Option<String>> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| r.url.path() == "/v1/chat/completions")
            .map(|r| {
                r.headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .collect()
    }

    /// The raw requests received so far (headers included).
    #[allow(clippy::expect_used)]
    pub async fn requests(&self) -> Vec<wiremock::Request> {
        self.server
            .received_requests()
            .await
            .expect("request recording is on")
    }
}

/// A mock of the chat endpoint, matching every chat request; finish it with
/// `.respond_with(..)` and hand it to [`MockOpenAi::mount`].
pub fn chat_endpoint() -> MockBuilder {
    Mock::given(method("POST")).and(path("/v1/chat/completions"))
}

/// A non-streamed chat completion body, as OpenAI sends it.
pub fn chat_completion(text: &str, prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    })
}

/// Stream chunks for `pieces`: a delta each, a finish chunk, then a usage-only chunk.
pub fn sse_chunks(pieces: &[&str], prompt_tokens: u64, completion_tokens: u64) -> Vec<Value> {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "test-model",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        })
    };
    let mut out = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    )];
    out.extend(
        pieces
            .iter()
            .map(|p| chunk(json!({ "content": p }), Value::Null)),
    );
    out.push(chunk(json!({}), json!("stop")));
    out.push(json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "test-model", "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    }));
    out
}

/// An SSE body of `data:` frames, optionally closed by `data: [DONE]`.
pub fn sse_body(chunks: &[Value], done: bool) -> String {
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    body
}

/// A one-shot HTTP server on 127.0.0.1 for replies wiremock cannot script, such as a body
/// that stops mid-chunk: it reads one request, writes `response` byte for byte, then drops
/// the connection. Returns the base URL (with `/v1`).
#[allow(clippy::expect_used)]
pub fn raw_http_once(response: impl Into<Vec<u8>>) -> String {
    use std::io::Write;

    let response = response.into();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        if read_request(&mut conn).is_none() {
            return;
        }
        let _ = conn.write_all(&response);
        let _ = conn.flush();
    });
    format!("http://{addr}/v1")
}

/// Reads one HTTP request (its head, then as much body as it announces) from `conn`, so a
/// raw test server answers only once the client's request is taken. `None` if the
/// client went away first.
pub fn read_request(conn: &mut impl std::io::Read) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let body_len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while seen.len() < head_end + body_len {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Some(seen)
}

/// A base URL on 127.0.0.1 where nothing listens, so connecting is refused at once.
/// The port was free a moment ago; another test could take it, which is rare enough.
#[allow(clippy::expect_used)]
pub fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{addr}/v1")
}
