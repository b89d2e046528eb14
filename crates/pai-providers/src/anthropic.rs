use async_trait::async_trait;
use pai_types::{Locality, Message, Role, ToolCall, ToolSpec, Usage};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Endpoint, ProviderError, Result, one_line};
use crate::http::{ErrorContext, HttpClient, classify, transport};
use crate::provider::{
    ChatEvent, ChatRequest, ChatStream, ModelInfo, Provider, ProviderConfig, ProviderInfo,
};
use crate::retry::AttemptLog;
use crate::stream::{Frame, Framing, ToolPart, Wire, WireError, WireFormat};

/// The Messages API version PAI speaks; Anthropic refuses requests without one.
const API_VERSION: &str = "2023-06-01";
/// Anthropic requires a cap on the answer's length; this one leaves room for long answers.
const MAX_TOKENS: u32 = 4096;
/// The most models one listing asks for (the API's own cap), so no paging is needed.
const MODEL_PAGE: u32 = 1000;

/// A provider speaking Anthropic's native Messages API (`/messages` as SSE, `/models`).
#[derive(Debug)]
pub struct AnthropicProvider {
    info: ProviderInfo,
    http: HttpClient,
    settings: ProviderConfig,
}

impl AnthropicProvider {
    /// A client for `settings`: checks them, sends nothing yet.
    pub fn new(settings: ProviderConfig) -> Result<Self> {
        let base = settings.base_url.trim_end_matches('/').to_string();
        if reqwest::Url::parse(&base).is_err() {
            return Err(ProviderError::Config {
                at: crate::http::endpoint(&settings),
                detail: format!(
                    "'{base}' is not a URL; pass one like https://api.anthropic.com/v1 to --base-url"
                ),
            });
        }
        let key = settings.api_key.as_ref().map(|k| k.expose().as_str());
        let headers = crate::http::headers(
            &settings,
            &[("x-api-key", key), ("anthropic-version", Some(API_VERSION))],
        )?;
        let http = crate::http::client(&settings, headers)?;
        Ok(Self {
            info: ProviderInfo {
                name: settings.name.clone(),
                kind: settings.kind,
                endpoint: base,
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

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.info.endpoint)
    }

    fn context(&self, model: &str, log: AttemptLog) -> ErrorContext {
        ErrorContext::new(&self.settings, model, log)
    }

    /// A remote endpoint with no key would only bounce the request: say so before sending.
    fn check_key(&self) -> Result<()> {
        if self.settings.api_key.is_none() && self.info.locality == Locality::Remote {
            return Err(ProviderError::MissingKey {
                at: self.endpoint(),
                hint: self.settings.key_hint.clone(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatStream> {
        let cx = self.context(&request.model, request.attempts.clone());
        let schema = request.schema.is_some();
        let events = self
            .open_chat(request, &cx)
            .await
            .map_err(|e| cx.redact(e))?;
        Ok(if schema {
            answer_from_schema_tool(events)
        } else {
            events
        })
    }

    async fn models(&self) -> Result<Vec<ModelInfo>> {
        self.models_with(AttemptLog::new()).await
    }

    async fn models_with(&self, log: AttemptLog) -> Result<Vec<ModelInfo>> {
        let cx = self.context("", log);
        self.list_models(&cx).await.map_err(|e| cx.redact(e))
    }
}

impl AnthropicProvider {
    async fn open_chat(&self, request: ChatRequest, cx: &ErrorContext) -> Result<ChatStream> {
        self.check_key()?;
        // Serialised once: every attempt sends (and reports the hash of) these bytes.
        let body = request_body(&request).to_string().into_bytes();
        let url = self.url("messages");
        let response = crate::http::send(&self.http, &self.settings.net.retry, cx, || {
            self.http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await?;
        if request.stream {
            return Ok(crate::stream::drive(
                Box::pin(response.bytes_stream()),
                Sse,
                cx.clone(),
            ));
        }
        let bytes = response.bytes().await.map_err(|e| transport(&e, cx))?;
        let reply: WireReply = serde_json::from_slice(&bytes).map_err(|e| malformed(cx, &e))?;
        let events = reply.into_events(cx)?;
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }

    async fn list_models(&self, cx: &ErrorContext) -> Result<Vec<ModelInfo>> {
        self.check_key()?;
        let url = self.url(&format!("models?limit={MODEL_PAGE}"));
        let response = crate::http::send(&self.http, &self.settings.net.retry, cx, || {
            self.http.get(&url)
        })
        .await?;
        let bytes = response.bytes().await.map_err(|e| transport(&e, cx))?;
        let list: WireModelList = serde_json::from_slice(&bytes).map_err(|e| malformed(cx, &e))?;
        Ok(list
            .data
            .into_iter()
            .map(|m| ModelInfo {
                id: m.id,
                owned_by: None,
            })
            .collect())
    }
}

fn malformed(cx: &ErrorContext, err: &serde_json::Error) -> ProviderError {
    ProviderError::Malformed {
        at: cx.at.clone(),
        detail: one_line(&err.to_string()),
    }
}

/// The Messages API body for `request`.
fn request_body(request: &ChatRequest) -> Value {
    let system = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System && !m.content.is_empty())
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut body = json!({
        "model": request.model,
        "max_tokens": MAX_TOKENS,
        "messages": wire_messages(&request.messages),
        "stream": request.stream,
    });
    if !system.is_empty() {
        body["system"] = json!(system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request.tools.iter().map(wire_tool).collect();
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    // Anthropic has no response format: a tool whose input is the schema, which the model
    // must call, carries the answer (see `answer_from_schema_tool`).
    if let Some(schema) = &request.schema {
        body["tools"] = json!([{
            "name": SCHEMA_TOOL,
            "description": "Give your answer as this tool's input, matching its schema.",
            "input_schema": schema,
        }]);
        body["tool_choice"] = json!({ "type": "tool", "name": SCHEMA_TOOL });
    }
    body
}

/// The forced tool that carries a `--schema` answer.
const SCHEMA_TOOL: &str = "answer";

/// A `--schema` answer arrives as a call of [`SCHEMA_TOOL`]: its input is the answer's text.
fn answer_from_schema_tool(events: ChatStream) -> ChatStream {
    use futures::StreamExt;
    Box::pin(events.map(|event| match event {
        Ok(ChatEvent::ToolCall(call)) if call.name == SCHEMA_TOOL => {
            Ok(ChatEvent::Delta(call.arguments))
        }
        other => other,
    }))
}

/// PAI's conversation as Anthropic's alternating user/assistant turns: system messages
/// go to `system`, tool results become user turns, and neighbours with the same role are
/// merged because the API refuses two user (or assistant) turns in a row.
fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => {
                // Images first, then the text about them, as Anthropic recommends.
                let mut blocks: Vec<Value> = m
                    .images
                    .iter()
                    .map(|i| {
                        json!({
                            "type": "image",
                            "source": { "type": "base64", "media_type": i.media_type, "data": i.data }
                        })
                    })
                    .collect();
                blocks.extend(text_block(&m.content));
                ("user", blocks)
            }
            Role::Assistant => {
                let mut blocks: Vec<Value> = text_block(&m.content).into_iter().collect();
                blocks.extend(m.tool_calls.iter().map(|c| {
                    json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(&c.arguments) })
                }));
                ("assistant", blocks)
            }
            Role::Tool => match &m.tool_call_id {
                Some(id) => {
                    let mut block = json!({ "type": "tool_result", "tool_use_id": id });
                    if !m.content.is_empty() {
                        block["content"] = json!(m.content);
                    }
                    ("user", vec![block])
                }
                // Nothing to pair it with: still let the model read it.
                None => ("user", text_block(&m.content).into_iter().collect()),
            },
        };
        // The API refuses empty text, so an empty message says nothing worth sending.
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, so_far)) if *last == role => so_far.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, mut blocks)| {
            // A turn that is one piece of text goes as a plain string, the API's short form.
            let content = match blocks.as_mut_slice() {
                [block] if block["type"] == "text" => block["text"].take(),
                _ => Value::Array(blocks),
            };
            json!({ "role": role, "content": content })
        })
        .collect()
}

fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "type": "text", "text": text }))
}

/// A tool call's arguments as the JSON object `input` must be; arguments the model got
/// wrong are sent as `{}` rather than failing the whole conversation.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

fn wire_tool(tool: &ToolSpec) -> Value {
    let schema = if tool.parameters.is_object() {
        tool.parameters.clone()
    } else {
        json!({ "type": "object", "properties": {} })
    };
    json!({ "name": tool.name, "description": tool.description, "input_schema": schema })
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Every token the prompt cost, cached or not; `None` when this report has no input count.
    fn prompt_tokens(&self) -> Option<u64> {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().flatten().sum())
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Option<Value>,
    },
    /// Thinking, server tools and whatever comes next: not PAI's to show.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

impl ApiError {
    /// The HTTP status Anthropic documents for this error type, if it is one it documents.
    fn status(&self) -> Option<StatusCode> {
        let status = match self.kind.as_str() {
            "invalid_request_error" => 400,
            "authentication_error" => 401,
            "permission_error" => 403,
            "not_found_error" => 404,
            "request_too_large" => 413,
            "rate_limit_error" => 429,
            "api_error" => 500,
            "overloaded_error" => 529,
            _ => return None,
        };
        StatusCode::from_u16(status).ok()
    }

    /// The error in a stream: what its status would have meant, else its own words.
    fn into_wire(self) -> WireError {
        match self.status() {
            Some(status) => WireError::Reported {
                status: Some(status),
                message: self.message,
            },
            None => WireError::Reported {
                status: None,
                message: format!("{} {}", self.kind, self.message),
            },
        }
    }

    /// The error in a whole reply.
    fn into_error(self, cx: &ErrorContext) -> ProviderError {
        match self.status() {
            Some(status) => classify(status, &self.message, "", cx),
            None => ProviderError::Malformed {
                at: cx.at.clone(),
                detail: format!(
                    "the server reported an error: {}",
                    one_line(&format!("{} {}", self.kind, self.message))
                ),
            },
        }
    }
}

/// A whole (non-streamed) reply.
#[derive(Debug, Deserialize)]
struct WireReply {
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
    error: Option<ApiError>,
}

impl WireReply {
    fn into_events(self, cx: &ErrorContext) -> Result<Vec<ChatEvent>> {
        if let Some(error) = self.error {
            return Err(error.into_error(cx));
        }
        let mut text = String::new();
        let mut calls = Vec::new();
        for (index, block) in self.content.into_iter().enumerate() {
            match block {
                WireBlock::Text { text: t } => text.push_str(&t),
                WireBlock::ToolUse { id, name, input } => {
                    calls.push(ChatEvent::ToolCall(ToolCall {
                        id: if id.is_empty() {
                            format!("{}_{index}", Sse::ID_PREFIX)
                        } else {
                            id
                        },
                        name,
                        arguments: input_text(input),
                    }))
                }
                WireBlock::Other => {}
            }
        }
        let mut events = Vec::with_capacity(calls.len() + 3);
        if !text.is_empty() {
            events.push(ChatEvent::Delta(text));
        }
        events.extend(calls);
        if let Some(u) = self.usage {
            events.push(ChatEvent::Usage(Usage {
                prompt_tokens: u.prompt_tokens().unwrap_or(0),
                completion_tokens: u.output_tokens.unwrap_or(0),
                estimated: false,
            }));
        }
        events.push(ChatEvent::Finished {
            reason: self.stop_reason.unwrap_or_else(|| "end_turn".into()),
        });
        Ok(events)
    }
}

/// A tool call's `input` as argument text; anything but an object means no arguments.
fn input_text(input: Option<Value>) -> String {
    match input {
        Some(v @ Value::Object(_)) => v.to_string(),
        _ => "{}".into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        #[serde(default)]
        message: WireStart,
    },
    ContentBlockStart {
        #[serde(default)]
        index: usize,
        content_block: WireBlock,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: usize,
        delta: WireDelta,
    },
    /// Tool calls are complete when the message stops, so a block's end says nothing new.
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        delta: WireMessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ApiError,
    },
    /// `ping` and event types added after this was written.
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct WireStart {
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct WireMessageDelta {
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireModelList {
    #[serde(default)]
    data: Vec<WireModel>,
}

#[derive(Debug, Deserialize)]
struct WireModel {
    id: String,
}

/// Anthropic's SSE events as wire events: text as it arrives, tool calls from their
/// JSON fragments, usage as running totals, and the end at `message_stop`.
#[derive(Debug)]
struct Sse;

impl WireFormat for Sse {
    const FRAMING: Framing = Framing::Sse;
    const ID_PREFIX: &'static str = "toolu";
    const DEFAULT_REASON: &'static str = "end_turn";

    fn decode(&mut self, frame: Frame<'_>, out: &mut Vec<Wire>) -> Result<(), WireError> {
        let unreadable = |e: serde_json::Error| WireError::Unreadable(e.to_string());
        let mut data: Value = serde_json::from_str(frame.data).map_err(unreadable)?;
        // Anthropic repeats the event name as `type` in the data; trust the SSE name if not.
        if let Some(obj) = data.as_object_mut()
            && !obj.contains_key("type")
        {
            obj.insert("type".into(), Value::String(frame.event.to_string()));
        }
        match serde_json::from_value::<WireEvent>(data).map_err(unreadable)? {
            WireEvent::MessageStart { message } => out.extend(message.usage.map(usage)),
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireBlock::Text { text } => out.push(Wire::Text(text)),
                WireBlock::ToolUse { id, name, input } => out.push(Wire::Tool(ToolPart {
                    index,
                    id: Some(id),
                    name: Some(name),
                    arguments: None,
                    fallback: Some(input_text(input)),
                })),
                WireBlock::Other => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => match delta {
                WireDelta::TextDelta { text } => out.push(Wire::Text(text)),
                WireDelta::InputJsonDelta { partial_json } => out.push(Wire::Tool(ToolPart {
                    index,
                    arguments: Some(partial_json),
                    ..ToolPart::default()
                })),
                WireDelta::Other => {}
            },
            WireEvent::MessageDelta { delta, usage: u } => {
                out.extend(delta.stop_reason.map(Wire::Reason));
                out.extend(u.map(usage));
            }
            WireEvent::MessageStop => out.extend([Wire::Finish, Wire::End]),
            WireEvent::Error { error } => return Err(error.into_wire()),
            WireEvent::ContentBlockStop {} | WireEvent::Other => {}
        }
        Ok(())
    }
}

/// Anthropic's counts are running totals, so a later report replaces an earlier one.
fn usage(u: WireUsage) -> Wire {
    Wire::Usage {
        prompt: u.prompt_tokens(),
        completion: u.output_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_single_text_block_is_sent_as_a_string() {
        let messages = vec![Message::user("hi"), Message::assistant("hello")];
        assert_eq!(
            wire_messages(&messages),
            vec![
                json!({ "role": "user", "content": "hi" }),
                json!({ "role": "assistant", "content": "hello" }),
            ]
        );
    }

    #[test]
    fn tool_input_is_always_an_object() {
        assert_eq!(tool_input(r#"{"a":1}"#), json!({ "a": 1 }));
        assert_eq!(tool_input(""), json!({}));
        assert_eq!(tool_input("[1]"), json!({}));
        assert_eq!(tool_input("{broken"), json!({}));
    }

    #[test]
    fn prompt_tokens_include_cached_input() {
        let u = WireUsage {
            input_tokens: Some(3),
            cache_read_input_tokens: Some(10),
            ..WireUsage::default()
        };
        assert_eq!(u.prompt_tokens(), Some(13));
        assert_eq!(WireUsage::default().prompt_tokens(), None);
    }
}
