use async_trait::async_trait;
use pai_types::{Message, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ProviderError, Result, one_line};
use crate::http::{ErrorContext, HttpClient, send, transport};
use crate::openai::wire_tools;
use crate::provider::{ChatRequest, ChatStream, ModelInfo, Provider, ProviderConfig, ProviderInfo};
use crate::retry::AttemptLog;
use crate::stream::{Frame, Framing, ToolPart, Wire, WireError, WireFormat};

/// A provider speaking Ollama's native API: `/api/chat` (NDJSON when streamed) and
/// `/api/tags`. Ollama needs no key; one is sent as a bearer token when configured, for
/// an Ollama behind an authenticating proxy.
#[derive(Debug)]
pub struct OllamaProvider {
    info: ProviderInfo,
    http: HttpClient,
    settings: ProviderConfig,
}

impl OllamaProvider {
    /// A client for `settings`: checks them, sends nothing yet.
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

    fn context(&self, model: &str, log: AttemptLog) -> ErrorContext {
        ErrorContext::new(&self.settings, model, log)
    }

    /// Sends through the shared retry path; a refused connection also says how Ollama starts.
    async fn send(
        &self,
        cx: &ErrorContext,
        build: impl Fn() -> reqwest::RequestBuilder + Send + Sync,
    ) -> Result<reqwest::Response> {
        send(&self.http, &self.settings.net.retry, cx, build)
            .await
            .map_err(|err| match err {
                ProviderError::Connect { at, detail } => ProviderError::Connect {
                    at,
                    detail: format!("{detail}; start it with 'ollama serve'"),
                },
                other => other,
            })
    }

    async fn open_chat(&self, request: ChatRequest, cx: &ErrorContext) -> Result<ChatStream> {
        // Serialised once: every attempt sends (and reports the hash of) these bytes.
        let body = wire_request(&request).to_string().into_bytes();
        let url = format!("{}/api/chat", self.info.endpoint);
        let response = self
            .send(cx, || {
                self.http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        if request.stream {
            return Ok(crate::stream::drive(
                Box::pin(response.bytes_stream()),
                Ndjson::default(),
                cx.clone(),
            ));
        }
        let bytes = response.bytes().await.map_err(|e| transport(&e, cx))?;
        let mut reply: WireReply =
            serde_json::from_slice(&bytes).map_err(|e| ProviderError::Malformed {
                at: cx.at.clone(),
                detail: one_line(&format!("the reply is not the JSON Ollama sends ({e})")),
            })?;
        // A whole reply is complete even if it forgot to say so.
        reply.done = Some(true);
        let mut wires = Vec::new();
        Ndjson::default()
            .reply(reply, &mut wires)
            .map_err(|e| ProviderError::Malformed {
                at: cx.at.clone(),
                detail: match e {
                    WireError::Unreadable(why) | WireError::Reported { message: why, .. } => {
                        one_line(&format!("the server reported an error: {why}"))
                    }
                },
            })?;
        let events = crate::stream::assemble(Ndjson::default(), cx.clone(), wires)?;
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }

    async fn list_models(&self, cx: &ErrorContext) -> Result<Vec<ModelInfo>> {
        let url = format!("{}/api/tags", self.info.endpoint);
        let response = self.send(cx, || self.http.get(&url)).await?;
        let bytes = response.bytes().await.map_err(|e| transport(&e, cx))?;
        let tags: WireTags =
            serde_json::from_slice(&bytes).map_err(|e| ProviderError::Malformed {
                at: cx.at.clone(),
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

#[async_trait]
impl Provider for OllamaProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatStream> {
        let cx = self.context(&request.model, request.attempts.clone());
        self.open_chat(request, &cx).await.map_err(|e| cx.redact(e))
    }

    async fn models(&self) -> Result<Vec<ModelInfo>> {
        self.models_with(AttemptLog::new()).await
    }

    async fn models_with(&self, log: AttemptLog) -> Result<Vec<ModelInfo>> {
        let cx = self.context("", log);
        self.list_models(&cx).await.map_err(|e| cx.redact(e))
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
    if let Some(t) = request.temperature {
        body["options"] = json!({ "temperature": t });
    }
    if let Some(schema) = &request.schema {
        body["format"] = schema.clone();
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
            if !m.images.is_empty() {
                v["images"] = m.images.iter().map(|i| json!(i.data)).collect();
            }
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

/// Ollama's reply objects as wire events. Its tool calls come whole, so each gets the
/// next index; Ollama has no call ids.
#[derive(Debug, Default)]
struct Ndjson {
    calls: usize,
}

impl Ndjson {
    fn reply(&mut self, reply: WireReply, out: &mut Vec<Wire>) -> Result<(), WireError> {
        if let Some(error) = reply.error {
            let message = match &error {
                Value::String(s) => s.clone(),
                other => other
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| other.to_string()),
            };
            return Err(WireError::Reported {
                status: None,
                message,
            });
        }
        if let Some(message) = reply.message {
            out.extend(message.content.map(Wire::Text));
            for call in message.tool_calls.unwrap_or_default() {
                let function = call.function.unwrap_or(WireFunction {
                    name: None,
                    arguments: None,
                });
                out.push(Wire::Tool(ToolPart {
                    index: self.calls,
                    id: call.id,
                    name: function.name,
                    arguments: Some(arguments_text(function.arguments)),
                    fallback: None,
                }));
                self.calls += 1;
            }
        }
        if reply.done != Some(true) {
            return Ok(());
        }
        // Half a count would be reported as exact; without both the engine estimates.
        if let (Some(prompt), Some(completion)) = (reply.prompt_eval_count, reply.eval_count) {
            out.push(Wire::Usage {
                prompt: Some(prompt),
                completion: Some(completion),
            });
        }
        out.extend(
            reply
                .done_reason
                .filter(|r| !r.is_empty())
                .map(Wire::Reason),
        );
        out.extend([Wire::Finish, Wire::End]);
        Ok(())
    }
}

impl WireFormat for Ndjson {
    const FRAMING: Framing = Framing::Lines;
    const ID_PREFIX: &'static str = "call";
    const DEFAULT_REASON: &'static str = "stop";

    fn decode(&mut self, frame: Frame<'_>, out: &mut Vec<Wire>) -> Result<(), WireError> {
        let reply = serde_json::from_str::<WireReply>(frame.data)
            .map_err(|e| WireError::Unreadable(e.to_string()))?;
        self.reply(reply, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Endpoint;
    use crate::provider::ChatEvent;
    use futures::StreamExt;
    use pai_types::{ToolCall, Usage};

    fn cx() -> ErrorContext {
        ErrorContext {
            at: Endpoint {
                provider: "ollama".into(),
                url: "http://127.0.0.1:11434".into(),
            },
            model: "m".into(),
            key_hint: String::new(),
            read_timeout: std::time::Duration::from_secs(5),
            log: AttemptLog::new(),
            secrets: Default::default(),
            proxy: None,
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

    /// What the stream driver makes of `chunks` in Ollama's format.
    fn events(chunks: &[&[u8]]) -> Vec<Result<ChatEvent>> {
        let body = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, reqwest::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        futures::executor::block_on(crate::stream::drive(body, Ndjson::default(), cx()).collect())
    }

    /// Like [`events`]; panics on an error event.
    fn decode(chunks: &[&[u8]]) -> Vec<ChatEvent> {
        events(chunks).into_iter().map(|e| e.unwrap()).collect()
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
        let out = events(&[BODY.lines().next().unwrap().as_bytes()]);
        assert!(
            matches!(&out[..], [Ok(ChatEvent::Delta(t)), Err(ProviderError::StreamCut { .. })] if t == "Grüße, "),
            "{out:?}"
        );
    }

    #[test]
    fn a_line_that_is_not_json_is_malformed() {
        let out = events(&[b"<html>\n", b"{\"done\":true}\n"]);
        assert!(
            matches!(&out[..], [Err(ProviderError::Malformed { .. })]),
            "{out:?}"
        );
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
