use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use pai_types::{Message, Role, ToolCall, Usage};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Endpoint, ProviderError, Result, one_line};
use crate::http::{ErrorContext, root_cause, send, transport};
use crate::openai::wire_tools;
use crate::provider::{
    ChatEvent, ChatRequest, ChatStream, ModelInfo, Provider, ProviderConfig, ProviderInfo,
};
use crate::retry::AttemptLog;

/// A provider speaking Ollama's native API: `/api/chat` (NDJSON when streamed) and
/// `/api/tags`. Ollama needs no key; one is sent as a bearer token when configured, for
/// an Ollama behind an authenticating proxy.
#[derive(Debug)]
pub struct OllamaProvider {
    info: ProviderInfo,
    http: reqwest::Client,
    settings: ProviderConfig,
}

impl OllamaProvider {
    pub fn new(settings: ProviderConfig) -> Result<Self> {
        let at = crate::http::endpoint(&settings);
        if reqwest::Url::parse(&at.url).is_err() {
            return Err(ProviderError::Config {
                detail: format!(
                    "'{}' is not a URL; pass one like http://127.0.0.1:11434 to --base-url",
                    at.url
                ),
                at,
            });
        }
        let bearer = settings
            .api_key
            .as_ref()
            .map(|key| format!("Bearer {}", key.expose()));
        let headers = crate::http::headers(&settings, &[("authorization", bearer.as_deref())])?;
        let http = crate::http::client(&settings, headers)?;
        Ok(Self {
            info: ProviderInfo {
                name: settings.name.clone(),
                kind: settings.kind,
                endpoint: at.url,
                locality: settings.locality,
            },
            http,
            settings,
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            provider: self.info.name.clone(),
            url: self.info.endpoint.clone(),
        }
    }

    fn context<'a>(&'a self, model: &'a str, log: &'a AttemptLog) -> ErrorContext<'a> {
        ErrorContext {
            at: self.endpoint(),
            model,
            key_hint: &self.settings.key_hint,
            read_timeout: self.settings.net.read_timeout,
            log,
        }
    }

    /// Sends through the shared retry path; a refused connection also says how Ollama starts.
    async fn send(
        &self,
        cx: &ErrorContext<'_>,
        build: impl Fn() -> reqwest::RequestBuilder + Send + Sync + 'static,
    ) -> Result<reqwest::Response> {
        send(&self.http, &self.settings, cx, build)
            .await
            .map_err(|err| match err {
                ProviderError::Connect { at, detail } => ProviderError::Connect {
                    at,
                    detail: format!("{detail}; start it with 'ollama serve'"),
                },
                other => other,
            })
    }
}

#[async_trait]
impl Provider for OllamaProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatStream> {
        let log = request.attempts.clone();
        let cx = self.context(&request.model, &log);
        let body = wire_request(&request).to_string();
        let url = format!("{}/api/chat", self.info.endpoint);
        let http = self.http.clone();
        let response = self
            .send(&cx, move || {
                http.post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        let mut decoder = Decoder::new(self.endpoint());
        if request.stream {
            let body = Box::pin(response.bytes_stream());
            return Ok(Box::pin(events(
                body,
                decoder,
                self.settings.net.read_timeout,
            )));
        }
        let bytes = response.bytes().await.map_err(|e| transport(&e, &cx))?;
        let mut reply: WireReply =
            serde_json::from_slice(&bytes).map_err(|e| ProviderError::Malformed {
                at: self.endpoint(),
                detail: one_line(&format!("the reply is not the JSON Ollama sends ({e})")),
            })?;
        // A whole reply is complete even if it forgot to say so.
        reply.done = Some(true);
        let mut events = Vec::new();
        decoder.absorb(reply, &mut events);
        let events = events.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }

    async fn models(&self) -> Result<Vec<ModelInfo>> {
        let log = AttemptLog::new();
        let cx = self.context("", &log);
        let url = format!("{}/api/tags", self.info.endpoint);
        let http = self.http.clone();
        let response = self.send(&cx, move || http.get(&url)).await?;
        let bytes = response.bytes().await.map_err(|e| transport(&e, &cx))?;
        let tags: WireTags =
            serde_json::from_slice(&bytes).map_err(|e| ProviderError::Malformed {
                at: self.endpoint(),
                detail: one_line(&format!(
                    "the model list is not the JSON Ollama sends ({e})"
                )),
            })?;
        Ok(tags
            .models
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.name.or(m.model).filter(|id| !id.is_empty()))
            .map(|id| ModelInfo { id, owned_by: None })
            .collect())
    }
}

/// The body of `POST /api/chat`.
fn wire_request(request: &ChatRequest) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": wire_messages(&request.messages),
        "stream": request.stream,
    });
    if !request.tools.is_empty() {
        body["tools"] = wire_tools(&request.tools);
    }
    body
}

/// PAI's messages in Ollama's shape: tool-call arguments as objects, and tool results
/// named by tool (Ollama has no call ids).
fn wire_messages(messages: &[Message]) -> Vec<Value> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut v = json!({ "role": m.role.as_str(), "content": m.content });
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "function": { "name": c.name, "arguments": wire_arguments(&c.arguments) }
                        })
                    })
                    .collect();
            }
            if m.role == Role::Tool
                && let Some(name) = m
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| tool_name(&messages[..i], id))
            {
                v["tool_name"] = json!(name);
            }
            v
        })
        .collect()
}

/// The name of the call `id`, from the nearest earlier assistant turn: ids restart with
/// each reply, so the nearest one is the call this result answers.
fn tool_name<'a>(earlier: &'a [Message], id: &str) -> Option<&'a str> {
    earlier
        .iter()
        .rev()
        .flat_map(|m| &m.tool_calls)
        .find(|c| c.id == id)
        .map(|c| c.name.as_str())
}

/// Ollama wants arguments as an object; text that is not one goes as it was written,
/// for the server to judge.
fn wire_arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::String(text.to_string()),
    }
}

/// One object of Ollama's reply: a line of a stream, or the whole non-streamed reply.
/// Everything is optional so older servers and look-alikes still parse.
#[derive(Debug, Default, Deserialize)]
struct WireReply {
    message: Option<WireMessage>,
    done: Option<bool>,
    done_reason: Option<String>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    content: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    /// Newer servers may send one; Ollama has historically not.
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: Option<String>,
    /// An object; text is passed on as it came.
    arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireTags {
    models: Option<Vec<WireTag>>,
}

#[derive(Debug, Deserialize)]
struct WireTag {
    name: Option<String>,
    model: Option<String>,
}

fn arguments_text(v: Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => "{}".into(),
        Some(other) => other.to_string(),
    }
}

/// Splits a byte stream into lines. A line may arrive in several chunks and a chunk may
/// hold several lines, or end inside a multi-byte character: only whole lines come out.
#[derive(Debug, Default)]
struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    /// The lines `chunk` completes, without their `\n`.
    fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        // Only the new bytes can hold a newline the buffer has not seen.
        let mut from = self.buf.len();
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let mut lines = Vec::new();
        while let Some(pos) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + pos;
            lines.push(self.buf[start..end].to_vec());
            start = end + 1;
            from = start;
        }
        self.buf.drain(..start);
        lines
    }

    /// What is left when the stream ends: a last line with no newline after it.
    fn rest(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buf);
        (!rest.trim_ascii().is_empty()).then_some(rest)
    }
}

/// Turns Ollama's reply objects into [`ChatEvent`]s. Tool calls are held until the
/// `done` object so they follow the text, as [`ChatEvent`] promises.
#[derive(Debug)]
struct Decoder {
    at: Endpoint,
    lines: LineBuffer,
    calls: Vec<ToolCall>,
    /// Set after `done`, an error or the end of the stream: nothing more is read.
    closed: bool,
}

impl Decoder {
    fn new(at: Endpoint) -> Self {
        Self {
            at,
            lines: LineBuffer::default(),
            calls: Vec::new(),
            closed: false,
        }
    }

    /// The events a chunk of the stream completes; an `Err` is the last one.
    fn feed(&mut self, chunk: &[u8]) -> Vec<Result<ChatEvent>> {
        let mut out = Vec::new();
        for line in self.lines.push(chunk) {
            if self.closed {
                break;
            }
            self.line(&line, &mut out);
        }
        out
    }

    /// The stream closed: a last unterminated line still counts, but without `done` the
    /// answer was cut off.
    fn end(&mut self) -> Vec<Result<ChatEvent>> {
        let mut out = Vec::new();
        if !self.closed
            && let Some(rest) = self.lines.rest()
        {
            self.line(&rest, &mut out);
        }
        if !self.closed {
            out.push(self.fail(ProviderError::StreamCut {
                at: self.at.clone(),
                detail: "the stream ended before Ollama said it was done".into(),
            }));
        }
        out
    }

    fn fail(&mut self, err: ProviderError) -> Result<ChatEvent> {
        self.closed = true;
        Err(err)
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Result<ChatEvent>>) {
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        match serde_json::from_slice::<WireReply>(line) {
            Ok(reply) => self.absorb(reply, out),
            Err(e) => {
                let err = ProviderError::Malformed {
                    at: self.at.clone(),
                    detail: one_line(&format!("a line of the stream is not JSON ({e})")),
                };
                out.push(self.fail(err));
            }
        }
    }

    fn absorb(&mut self, reply: WireReply, out: &mut Vec<Result<ChatEvent>>) {
        if let Some(error) = reply.error {
            let message = match &error {
                Value::String(s) => s.clone(),
                other => other
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| other.to_string()),
            };
            let err = ProviderError::Malformed {
                at: self.at.clone(),
                detail: format!(
                    "the server reported an error mid-stream: {}",
                    one_line(&message)
                ),
            };
            out.push(self.fail(err));
            return;
        }
        if let Some(message) = reply.message {
            if let Some(text) = message.content.filter(|t| !t.is_empty()) {
                out.push(Ok(ChatEvent::Delta(text)));
            }
            for call in message.tool_calls.unwrap_or_default() {
                let number = self.calls.len();
                let function = call.function.unwrap_or(WireFunction {
                    name: None,
                    arguments: None,
                });
                self.calls.push(ToolCall {
                    id: call
                        .id
                        .filter(|id| !id.is_empty())
                        .unwrap_or_else(|| format!("call_{number}")),
                    name: function.name.unwrap_or_default(),
                    arguments: arguments_text(function.arguments),
                });
            }
        }
        if reply.done != Some(true) {
            return;
        }
        self.closed = true;
        out.extend(self.calls.drain(..).map(|c| Ok(ChatEvent::ToolCall(c))));
        // Half a count would be reported as exact; without both the engine estimates.
        if let (Some(prompt_tokens), Some(completion_tokens)) =
            (reply.prompt_eval_count, reply.eval_count)
        {
            out.push(Ok(ChatEvent::Usage(Usage {
                prompt_tokens,
                completion_tokens,
                estimated: false,
            })));
        }
        out.push(Ok(ChatEvent::Finished {
            reason: reply
                .done_reason
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "stop".into()),
        }));
    }
}

/// Reads the NDJSON body chunk by chunk and yields its events; a transport failure part
/// way is a cut-off answer.
fn events<B: AsRef<[u8]>>(
    body: impl Stream<Item = reqwest::Result<B>> + Send + Unpin + 'static,
    decoder: Decoder,
    read_timeout: Duration,
) -> impl Stream<Item = Result<ChatEvent>> + Send {
    let pending = VecDeque::new();
    futures::stream::unfold(
        (body, decoder, pending),
        move |(mut body, mut decoder, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    return Some((event, (body, decoder, pending)));
                }
                if decoder.closed {
                    return None;
                }
                match body.next().await {
                    Some(Ok(chunk)) => pending.extend(decoder.feed(chunk.as_ref())),
                    Some(Err(e)) => {
                        let detail = if e.is_timeout() {
                            format!(
                                "nothing arrived for {}s; raise [network] read_timeout_secs in config.toml for slow models",
                                read_timeout.as_secs()
                            )
                        } else {
                            one_line(&root_cause(&e))
                        };
                        let at = decoder.at.clone();
                        pending.push_back(decoder.fail(ProviderError::StreamCut { at, detail }));
                    }
                    None => pending.extend(decoder.end()),
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Endpoint {
        Endpoint {
            provider: "ollama".into(),
            url: "http://127.0.0.1:11434".into(),
        }
    }

    const BODY: &str = concat!(
        r#"{"model":"m","message":{"role":"assistant","content":"Grüße, "},"done":false}"#,
        "\n",
        r#"{"model":"m","message":{"role":"assistant","content":"Welt"},"done":false}"#,
        "\r\n\n",
        r#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"clock","arguments":{}}}]},"done":false}"#,
        "\n",
        r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":7,"eval_count":2}"#,
        "\n",
    );

    fn expected() -> Vec<ChatEvent> {
        vec![
            ChatEvent::Delta("Grüße, ".into()),
            ChatEvent::Delta("Welt".into()),
            ChatEvent::ToolCall(ToolCall {
                id: "call_0".into(),
                name: "clock".into(),
                arguments: "{}".into(),
            }),
            ChatEvent::Usage(Usage {
                prompt_tokens: 7,
                completion_tokens: 2,
                estimated: false,
            }),
            ChatEvent::Finished {
                reason: "stop".into(),
            },
        ]
    }

    /// Feeds `chunks` then ends the stream; panics on an error event.
    fn decode(chunks: &[&[u8]]) -> Vec<ChatEvent> {
        let mut decoder = Decoder::new(at());
        let mut out: Vec<_> = chunks.iter().flat_map(|c| decoder.feed(c)).collect();
        out.extend(decoder.end());
        out.into_iter().map(|e| e.unwrap()).collect()
    }

    #[test]
    fn line_buffer_joins_lines_split_across_chunks() {
        let mut lines = LineBuffer::default();
        assert_eq!(lines.push(b"{\"a\":"), Vec::<Vec<u8>>::new());
        assert_eq!(lines.push(b"1}\n{\"b\""), vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(
            lines.push(b":2}\n\n{\"c\":3}\n{\"d\""),
            vec![b"{\"b\":2}".to_vec(), Vec::new(), b"{\"c\":3}".to_vec()]
        );
        assert_eq!(lines.rest(), Some(b"{\"d\"".to_vec()));
        assert_eq!(lines.rest(), None);
    }

    #[test]
    fn a_body_split_anywhere_decodes_the_same() {
        let body = BODY.as_bytes();
        assert_eq!(decode(&[body]), expected());
        // Every split point, including inside 'ü' (two bytes) and inside "\r\n".
        for cut in 1..body.len() {
            assert_eq!(
                decode(&[&body[..cut], &body[cut..]]),
                expected(),
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode(&bytes), expected());
    }

    #[test]
    fn a_last_line_without_newline_still_counts() {
        let body = BODY.trim_end();
        assert_eq!(decode(&[body.as_bytes()]), expected());
    }

    #[test]
    fn nothing_after_done_is_read() {
        let body = format!("{BODY}not json at all\n");
        assert_eq!(decode(&[body.as_bytes()]), expected());
    }

    #[test]
    fn a_stream_without_done_is_cut_off_after_its_text() {
        let mut decoder = Decoder::new(at());
        let mut out = decoder.feed(BODY.lines().next().unwrap().as_bytes());
        out.extend(decoder.end());
        assert!(
            matches!(&out[..], [Ok(ChatEvent::Delta(t)), Err(ProviderError::StreamCut { .. })] if t == "Grüße, "),
            "{out:?}"
        );
    }

    #[test]
    fn a_line_that_is_not_json_is_malformed() {
        let mut decoder = Decoder::new(at());
        let out = decoder.feed(b"<html>\n");
        assert!(
            matches!(&out[..], [Err(ProviderError::Malformed { .. })]),
            "{out:?}"
        );
        assert!(decoder.closed);
    }

    #[test]
    fn missing_counts_and_reason_mean_no_usage_and_stop() {
        let events = decode(&[b"{\"done\":true,\"eval_count\":3}\n"]);
        assert_eq!(
            events,
            vec![ChatEvent::Finished {
                reason: "stop".into()
            }]
        );
    }

    #[test]
    fn arguments_become_objects_where_they_can() {
        assert_eq!(wire_arguments(r#"{"a":1}"#), json!({ "a": 1 }));
        assert_eq!(wire_arguments(""), json!({}));
        assert_eq!(wire_arguments("{oops"), json!("{oops"));
        assert_eq!(wire_arguments("[1]"), json!("[1]"));
    }
}
