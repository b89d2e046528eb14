use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use pai_types::{Locality, Message, Role, ToolCall, ToolSpec, Usage};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Endpoint, ProviderError, Result, one_line};
use crate::http::{ErrorContext, classify, transport};
use crate::provider::{
    ChatEvent, ChatRequest, ChatStream, ModelInfo, Provider, ProviderConfig, ProviderInfo,
};
use crate::retry::AttemptLog;

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
    http: reqwest::Client,
    settings: ProviderConfig,
}

impl AnthropicProvider {
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

    fn context<'a>(&'a self, model: &'a str, log: &'a AttemptLog) -> ErrorContext<'a> {
        ErrorContext {
            at: self.endpoint(),
            model,
            key_hint: &self.settings.key_hint,
            read_timeout: self.settings.net.read_timeout,
            log,
        }
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
        self.check_key()?;
        let body = request_body(&request);
        let cx = self.context(&request.model, &request.attempts);
        let (http, url) = (self.http.clone(), self.url("messages"));
        let response = crate::http::send(&self.http, &self.settings, &cx, move || {
            http.post(url.as_str()).json(&body)
        })
        .await?;
        if request.stream {
            let reader = EventReader::new(
                Box::pin(response.bytes_stream().eventsource()),
                StreamContext {
                    at: cx.at.clone(),
                    model: request.model.clone(),
                    key_hint: self.settings.key_hint.clone(),
                    read_timeout: self.settings.net.read_timeout,
                },
            );
            return Ok(Box::pin(reader.into_stream()));
        }
        let bytes = response.bytes().await.map_err(|e| transport(&e, &cx))?;
        let reply: WireReply = serde_json::from_slice(&bytes).map_err(|e| malformed(&cx, &e))?;
        let events = reply.into_events(&cx)?;
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }

    async fn models(&self) -> Result<Vec<ModelInfo>> {
        self.check_key()?;
        let log = AttemptLog::new();
        let cx = self.context("", &log);
        let (http, url) = (
            self.http.clone(),
            self.url(&format!("models?limit={MODEL_PAGE}")),
        );
        let response = crate::http::send(&self.http, &self.settings, &cx, move || {
            http.get(url.as_str())
        })
        .await?;
        let bytes = response.bytes().await.map_err(|e| transport(&e, &cx))?;
        let list: WireModelList = serde_json::from_slice(&bytes).map_err(|e| malformed(&cx, &e))?;
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

fn malformed(cx: &ErrorContext<'_>, err: &serde_json::Error) -> ProviderError {
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
    body
}

/// PAI's conversation as Anthropic's alternating user/assistant turns: system messages
/// go to `system`, tool results become user turns, and neighbours with the same role are
/// merged because the API refuses two user (or assistant) turns in a row.
fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => ("user", text_block(&m.content).into_iter().collect()),
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
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

impl WireError {
    /// The error the HTTP status Anthropic documents for this error type would have meant.
    fn into_error(self, cx: &ErrorContext<'_>) -> ProviderError {
        let status = match self.kind.as_str() {
            "invalid_request_error" => 400,
            "authentication_error" => 401,
            "permission_error" => 403,
            "not_found_error" => 404,
            "request_too_large" => 413,
            "rate_limit_error" => 429,
            "api_error" => 500,
            "overloaded_error" => 529,
            _ => {
                return ProviderError::Malformed {
                    at: cx.at.clone(),
                    detail: format!(
                        "the server reported an error: {}",
                        one_line(&format!("{} {}", self.kind, self.message))
                    ),
                };
            }
        };
        match StatusCode::from_u16(status) {
            Ok(status) => classify(status, &self.message, "", cx),
            Err(_) => ProviderError::Malformed {
                at: cx.at.clone(),
                detail: one_line(&self.message),
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
    error: Option<WireError>,
}

impl WireReply {
    fn into_events(self, cx: &ErrorContext<'_>) -> Result<Vec<ChatEvent>> {
        if let Some(error) = self.error {
            return Err(error.into_error(cx));
        }
        let mut text = String::new();
        let mut calls = Vec::new();
        for (index, block) in self.content.into_iter().enumerate() {
            match block {
                WireBlock::Text { text: t } => text.push_str(&t),
                WireBlock::ToolUse { id, name, input } => calls.push(ChatEvent::ToolCall(
                    tool_call(index, id, name, String::new(), input),
                )),
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

/// A complete tool call: the streamed argument text, else the `input` object, else `{}`.
fn tool_call(
    index: usize,
    id: String,
    name: String,
    json: String,
    input: Option<Value>,
) -> ToolCall {
    let arguments = if !json.trim().is_empty() {
        json
    } else {
        match input {
            Some(v @ Value::Object(_)) => v.to_string(),
            _ => "{}".into(),
        }
    };
    ToolCall {
        id: if id.is_empty() {
            format!("toolu_{index}")
        } else {
            id
        },
        name,
        arguments,
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
    ContentBlockStop {
        #[serde(default)]
        index: usize,
    },
    MessageDelta {
        #[serde(default)]
        delta: WireMessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
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

type Events = Pin<
    Box<dyn Stream<Item = std::result::Result<Event, EventStreamError<reqwest::Error>>> + Send>,
>;

/// What a stream needs to name its errors, owned because it outlives the call.
#[derive(Debug)]
struct StreamContext {
    at: Endpoint,
    model: String,
    key_hint: String,
    read_timeout: Duration,
}

/// A tool_use block being streamed: its argument JSON arrives in fragments.
#[derive(Debug)]
struct ToolBlock {
    id: String,
    name: String,
    json: String,
    input: Option<Value>,
}

/// Turns Anthropic's SSE events into [`ChatEvent`]s: text as it arrives, each tool call
/// when its block closes, usage and the stop reason at `message_stop`. A stream that ends
/// before `message_stop` was cut off and yields an error instead.
struct EventReader {
    inner: Events,
    cx: StreamContext,
    pending: VecDeque<Result<ChatEvent>>,
    tools: BTreeMap<usize, ToolBlock>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    stop_reason: Option<String>,
    done: bool,
}

impl EventReader {
    fn new(inner: Events, cx: StreamContext) -> Self {
        Self {
            inner,
            cx,
            pending: VecDeque::new(),
            tools: BTreeMap::new(),
            prompt_tokens: None,
            completion_tokens: None,
            stop_reason: None,
            done: false,
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<ChatEvent>> + Send {
        futures::stream::unfold(self, |mut s| async move {
            loop {
                if let Some(ev) = s.pending.pop_front() {
                    return Some((ev, s));
                }
                if s.done {
                    return None;
                }
                match s.inner.next().await {
                    Some(Ok(event)) => s.absorb(event),
                    Some(Err(err)) => {
                        let err = s.stream_error(err);
                        s.fail(err);
                    }
                    None => s.fail(ProviderError::StreamCut {
                        at: s.cx.at.clone(),
                        detail: "the stream ended before message_stop".into(),
                    }),
                }
            }
        })
    }

    fn fail(&mut self, err: ProviderError) {
        self.pending.push_back(Err(err));
        self.done = true;
    }

    fn stream_error(&self, err: EventStreamError<reqwest::Error>) -> ProviderError {
        let at = self.cx.at.clone();
        match err {
            EventStreamError::Transport(e) => {
                let log = AttemptLog::new();
                match transport(&e, &self.error_context(&log)) {
                    // Mid-stream, a broken connection means a cut-off answer.
                    ProviderError::Connect { detail, .. } => {
                        ProviderError::StreamCut { at, detail }
                    }
                    other => other,
                }
            }
            EventStreamError::Utf8(e) => ProviderError::Malformed {
                at,
                detail: one_line(&e.to_string()),
            },
            EventStreamError::Parser(e) => ProviderError::Malformed {
                at,
                detail: one_line(&e.to_string()),
            },
        }
    }

    fn error_context<'a>(&'a self, log: &'a AttemptLog) -> ErrorContext<'a> {
        ErrorContext {
            at: self.cx.at.clone(),
            model: &self.cx.model,
            key_hint: &self.cx.key_hint,
            read_timeout: self.cx.read_timeout,
            log,
        }
    }

    fn absorb(&mut self, event: Event) {
        let mut data: Value = match serde_json::from_str(&event.data) {
            Ok(v) => v,
            Err(e) => {
                return self.fail(ProviderError::Malformed {
                    at: self.cx.at.clone(),
                    detail: format!(
                        "'{}' event is not JSON: {}",
                        event.event,
                        one_line(&e.to_string())
                    ),
                });
            }
        };
        // Anthropic repeats the event name as `type` in the data; trust the SSE name if not.
        if let Some(obj) = data.as_object_mut()
            && !obj.contains_key("type")
        {
            obj.insert("type".into(), Value::String(event.event.clone()));
        }
        let parsed = match serde_json::from_value::<WireEvent>(data) {
            Ok(parsed) => parsed,
            Err(e) => {
                return self.fail(ProviderError::Malformed {
                    at: self.cx.at.clone(),
                    detail: format!(
                        "unreadable '{}' event: {}",
                        event.event,
                        one_line(&e.to_string())
                    ),
                });
            }
        };
        match parsed {
            WireEvent::MessageStart { message } => {
                if let Some(u) = message.usage {
                    self.absorb_usage(&u);
                }
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireBlock::Text { text } => self.text(text),
                WireBlock::ToolUse { id, name, input } => {
                    self.tools.insert(
                        index,
                        ToolBlock {
                            id,
                            name,
                            json: String::new(),
                            input,
                        },
                    );
                }
                WireBlock::Other => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => match delta {
                WireDelta::TextDelta { text } => self.text(text),
                WireDelta::InputJsonDelta { partial_json } => {
                    if let Some(tool) = self.tools.get_mut(&index) {
                        tool.json.push_str(&partial_json);
                    }
                }
                WireDelta::Other => {}
            },
            WireEvent::ContentBlockStop { index } => self.close_tool(index),
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.stop_reason = Some(reason);
                }
                if let Some(u) = usage {
                    self.absorb_usage(&u);
                }
            }
            WireEvent::MessageStop => {
                let open: Vec<usize> = self.tools.keys().copied().collect();
                for index in open {
                    self.close_tool(index);
                }
                if self.prompt_tokens.is_some() || self.completion_tokens.is_some() {
                    self.pending.push_back(Ok(ChatEvent::Usage(Usage {
                        prompt_tokens: self.prompt_tokens.unwrap_or(0),
                        completion_tokens: self.completion_tokens.unwrap_or(0),
                        estimated: false,
                    })));
                }
                let reason = self.stop_reason.take().unwrap_or_else(|| "end_turn".into());
                self.pending.push_back(Ok(ChatEvent::Finished { reason }));
                self.done = true;
            }
            WireEvent::Error { error } => {
                let log = AttemptLog::new();
                let err = error.into_error(&self.error_context(&log));
                self.fail(err);
            }
            WireEvent::Other => {}
        }
    }

    fn text(&mut self, text: String) {
        if !text.is_empty() {
            self.pending.push_back(Ok(ChatEvent::Delta(text)));
        }
    }

    fn close_tool(&mut self, index: usize) {
        if let Some(t) = self.tools.remove(&index) {
            self.pending.push_back(Ok(ChatEvent::ToolCall(tool_call(
                index, t.id, t.name, t.json, t.input,
            ))));
        }
    }

    /// Anthropic's counts are running totals, so a later report replaces an earlier one.
    fn absorb_usage(&mut self, usage: &WireUsage) {
        if let Some(prompt) = usage.prompt_tokens() {
            self.prompt_tokens = Some(prompt);
        }
        if let Some(output) = usage.output_tokens {
            self.completion_tokens = Some(output);
        }
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
