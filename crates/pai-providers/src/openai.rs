use std::collections::{BTreeMap, VecDeque};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::{ApiErrorResponse, OpenAIError};
use async_openai::middleware::HttpRequestFactory;
use async_trait::async_trait;
use futures::StreamExt;
use pai_types::{Locality, ToolCall, Usage};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Endpoint, ProviderError, Result, one_line};
use crate::http::{ErrorContext, classify, transport};
use crate::provider::{
    ChatEvent, ChatRequest, ChatStream, ModelInfo, Provider, ProviderConfig, ProviderInfo,
};
use crate::retry::{AttemptLog, send_with_retries};

/// A provider speaking OpenAI's Chat Completions API, through async-openai.
///
/// Responses are read into PAI's own lenient types (async-openai's `byot`), so servers
/// that omit fields OpenAI always sends (`object`, `created`, …) still work.
#[derive(Debug)]
pub struct OpenAiProvider {
    info: ProviderInfo,
    config: OpenAIConfig,
    http: reqwest::Client,
    settings: ProviderConfig,
}

impl OpenAiProvider {
    pub fn new(settings: ProviderConfig) -> Result<Self> {
        let at = Endpoint {
            provider: settings.name.clone(),
            url: settings.base_url.clone(),
        };
        let base = settings.base_url.trim_end_matches('/').to_string();
        if reqwest::Url::parse(&base).is_err() {
            return Err(ProviderError::Config {
                at,
                detail: format!(
                    "'{base}' is not a URL; pass one like http://127.0.0.1:8080/v1 to --base-url"
                ),
            });
        }
        // async-openai builds the Authorization header with `unwrap`: a key it cannot carry
        // (a pasted trailing newline, say) must fail here rather than panic on first use.
        if let Some(key) = &settings.api_key
            && format!("Bearer {}", key.expose())
                .parse::<http::HeaderValue>()
                .is_err()
        {
            return Err(ProviderError::Config {
                at,
                detail: "the API key holds characters an HTTP header cannot carry \
                         (a stray newline from pasting?); set the key again"
                    .into(),
            });
        }
        // Every field set explicitly, so a stray OPENAI_BASE_URL or OPENAI_ORG_ID in the
        // environment cannot redirect or tag a session's traffic.
        let config = OpenAIConfig::new()
            .with_api_base(base.clone())
            .with_api_key(
                settings
                    .api_key
                    .as_ref()
                    .map(|k| k.expose().clone())
                    .unwrap_or_default(),
            )
            .with_org_id("")
            .with_project_id("");
        let http = crate::http::client(&settings, crate::http::headers(&settings, &[])?)?;
        Ok(Self {
            info: ProviderInfo {
                name: settings.name.clone(),
                kind: settings.kind,
                endpoint: base,
                locality: settings.locality,
            },
            config,
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

    /// A client for one call; `log` collects the failed HTTP attempts that call makes.
    fn client(&self, log: AttemptLog) -> Client<OpenAIConfig> {
        let http = self.http.clone();
        let policy = self.settings.net.retry.clone();
        let service = tower::service_fn(move |factory: HttpRequestFactory| {
            send_with_retries(http.clone(), policy.clone(), factory, log.clone())
        });
        Client::build(self.http.clone(), self.config.clone()).with_http_service(service)
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

    fn map_error(&self, err: OpenAIError, model: &str, log: &AttemptLog) -> ProviderError {
        map_error(
            err,
            self.endpoint(),
            model,
            log,
            &self.settings.key_hint,
            self.settings.net.read_timeout,
        )
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatStream> {
        self.check_key()?;
        let log = request.attempts.clone();
        let client = self.client(log.clone());
        let mut body = json!({
            "model": request.model,
            "messages": wire_messages(&request.messages),
            "stream": request.stream,
        });
        if !request.tools.is_empty() {
            body["tools"] = wire_tools(&request.tools);
        }
        if let Some(max) = request.max_tokens {
            body["max_tokens"] = json!(max);
        }
        if request.stream {
            body["stream_options"] = json!({ "include_usage": true });
            let inner = client
                .chat()
                .create_stream_byot::<_, WireChunk>(body)
                .await
                .map_err(|e| self.map_error(e, &request.model, &log))?;
            Ok(Box::pin(
                ChunkStream::new(inner, self.endpoint()).into_stream(),
            ))
        } else {
            let response: WireResponse = client
                .chat()
                .create_byot(body)
                .await
                .map_err(|e| self.map_error(e, &request.model, &log))?;
            let events = response.into_events(&self.endpoint())?;
            Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
        }
    }

    async fn models(&self) -> Result<Vec<ModelInfo>> {
        self.check_key()?;
        let log = AttemptLog::new();
        let list: WireModelList = self
            .client(log.clone())
            .models()
            .list_byot()
            .await
            .map_err(|e| self.map_error(e, "", &log))?;
        Ok(list
            .data
            .into_iter()
            .map(|m| ModelInfo {
                id: m.id,
                owned_by: m.owned_by,
            })
            .collect())
    }
}

fn map_error(
    err: OpenAIError,
    at: Endpoint,
    model: &str,
    log: &AttemptLog,
    key_hint: &str,
    read_timeout: std::time::Duration,
) -> ProviderError {
    let cx = ErrorContext {
        at: at.clone(),
        model,
        key_hint,
        read_timeout,
        log,
    };
    match err {
        OpenAIError::ApiError(ApiErrorResponse {
            status_code,
            api_error,
        }) => classify(
            status_code,
            &api_error.message,
            api_error.code.as_deref().unwrap_or_default(),
            &cx,
        ),
        OpenAIError::Reqwest(e) => transport(&e, &cx),
        OpenAIError::JSONDeserialize(e, _) => ProviderError::Malformed {
            at,
            detail: one_line(&e.to_string()),
        },
        OpenAIError::StreamError(e) => ProviderError::StreamCut {
            at,
            detail: one_line(&e.to_string()),
        },
        other => ProviderError::Malformed {
            at,
            detail: one_line(&other.to_string()),
        },
    }
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            estimated: false,
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireResponse {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    message: Option<WireMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

/// A tool call as OpenAI sends it; in streams each field may come in pieces, and local
/// servers often omit `type` and `index`.
#[derive(Debug, Deserialize)]
struct WireToolCall {
    index: Option<usize>,
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: Option<String>,
    /// JSON text; some servers send an object instead.
    arguments: Option<serde_json::Value>,
}

fn arguments_text(v: Option<serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// PAI's messages in OpenAI's shape.
fn wire_messages(messages: &[pai_types::Message]) -> Vec<serde_json::Value> {
    messages
        .iter()
        .map(|m| {
            let mut v = json!({ "role": m.role.as_str(), "content": m.content });
            if !m.tool_calls.is_empty() {
                if m.content.is_empty() {
                    v["content"] = serde_json::Value::Null;
                }
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": { "name": c.name, "arguments": c.arguments }
                        })
                    })
                    .collect();
            }
            if let Some(id) = &m.tool_call_id {
                v["tool_call_id"] = json!(id);
            }
            v
        })
        .collect()
}

/// Tools in OpenAI's function-calling shape, which Ollama's native API shares.
pub(crate) fn wire_tools(tools: &[pai_types::ToolSpec]) -> serde_json::Value {
    tools
        .iter()
        .map(|t| {
            json!({
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters
                }
            })
        })
        .collect()
}

impl WireResponse {
    fn into_events(self, at: &Endpoint) -> Result<Vec<ChatEvent>> {
        let Some(choice) = self.choices.into_iter().next() else {
            return Err(ProviderError::Malformed {
                at: at.clone(),
                detail: "the reply has no choices".into(),
            });
        };
        let mut events = Vec::with_capacity(3);
        let (text, calls) = match choice.message {
            Some(m) => (m.content.unwrap_or_default(), m.tool_calls),
            None => (String::new(), Vec::new()),
        };
        if !text.is_empty() {
            events.push(ChatEvent::Delta(text));
        }
        for (i, call) in calls.into_iter().enumerate() {
            let function = call.function.unwrap_or(WireFunction {
                name: None,
                arguments: None,
            });
            events.push(ChatEvent::ToolCall(ToolCall {
                id: call.id.unwrap_or_else(|| format!("call_{i}")),
                name: function.name.unwrap_or_default(),
                arguments: arguments_text(function.arguments),
            }));
        }
        if let Some(u) = self.usage {
            events.push(ChatEvent::Usage(u.into()));
        }
        events.push(ChatEvent::Finished {
            reason: choice.finish_reason.unwrap_or_else(|| "stop".into()),
        });
        Ok(events)
    }
}

#[derive(Debug, Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct WireChunkChoice {
    delta: Option<WireDelta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireDelta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Debug, Deserialize)]
struct WireModelList {
    #[serde(default)]
    data: Vec<WireModel>,
}

#[derive(Debug, Deserialize)]
struct WireModel {
    id: String,
    owned_by: Option<String>,
}

type Inner = std::pin::Pin<
    Box<dyn futures::Stream<Item = std::result::Result<WireChunk, OpenAIError>> + Send>,
>;

/// Turns SSE chunks into [`ChatEvent`]s. The finish reason is held back until the
/// stream ends, because the usage chunk comes after it; a stream that ends without a
/// finish reason was cut off and yields an error instead.
struct ChunkStream {
    inner: Inner,
    at: Endpoint,
    pending: VecDeque<Result<ChatEvent>>,
    /// Tool-call fragments by index: id, name, argument text so far.
    calls: BTreeMap<usize, ToolCall>,
    finish: Option<String>,
    done: bool,
}

impl ChunkStream {
    fn new(inner: Inner, at: Endpoint) -> Self {
        Self {
            inner,
            at,
            pending: VecDeque::new(),
            calls: BTreeMap::new(),
            finish: None,
            done: false,
        }
    }

    fn into_stream(self) -> impl futures::Stream<Item = Result<ChatEvent>> + Send {
        futures::stream::unfold(self, |mut s| async move {
            loop {
                if let Some(ev) = s.pending.pop_front() {
                    return Some((ev, s));
                }
                if s.done {
                    return None;
                }
                match s.inner.next().await {
                    Some(Ok(chunk)) => s.absorb(chunk),
                    Some(Err(e)) => {
                        s.done = true;
                        let err = map_error(
                            e,
                            s.at.clone(),
                            "",
                            &AttemptLog::new(),
                            "",
                            Default::default(),
                        );
                        // Already a stream error: wrapping it again would say "cut off" twice.
                        let err = match err {
                            err @ (ProviderError::Malformed { .. }
                            | ProviderError::StreamCut { .. }) => err,
                            other => ProviderError::StreamCut {
                                at: s.at.clone(),
                                detail: other.to_string(),
                            },
                        };
                        s.pending.push_back(Err(err));
                    }
                    None => {
                        s.done = true;
                        for (_, call) in std::mem::take(&mut s.calls) {
                            s.pending.push_back(Ok(ChatEvent::ToolCall(call)));
                        }
                        match s.finish.take() {
                            Some(reason) => s.pending.push_back(Ok(ChatEvent::Finished { reason })),
                            None => s.pending.push_back(Err(ProviderError::StreamCut {
                                at: s.at.clone(),
                                detail: "the stream ended without a finish reason".into(),
                            })),
                        }
                    }
                }
            }
        })
    }

    fn absorb(&mut self, chunk: WireChunk) {
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| error.to_string());
            self.pending.push_back(Err(ProviderError::Malformed {
                at: self.at.clone(),
                detail: format!(
                    "the server reported an error mid-stream: {}",
                    one_line(&message)
                ),
            }));
            self.done = true;
            return;
        }
        for choice in chunk.choices {
            let (text, calls) = match choice.delta {
                Some(d) => (d.content, d.tool_calls),
                None => (None, Vec::new()),
            };
            if let Some(text) = text
                && !text.is_empty()
            {
                self.pending.push_back(Ok(ChatEvent::Delta(text)));
            }
            for (pos, fragment) in calls.into_iter().enumerate() {
                let index = fragment.index.unwrap_or(pos);
                let call = self.calls.entry(index).or_insert_with(|| ToolCall {
                    id: format!("call_{index}"),
                    name: String::new(),
                    arguments: String::new(),
                });
                if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
                    call.id = id;
                }
                if let Some(f) = fragment.function {
                    if let Some(name) = f.name {
                        call.name.push_str(&name);
                    }
                    call.arguments.push_str(&arguments_text(f.arguments));
                }
            }
            if let Some(reason) = choice.finish_reason {
                // Calls are complete once the choice finishes; they come before usage.
                for (_, call) in std::mem::take(&mut self.calls) {
                    self.pending.push_back(Ok(ChatEvent::ToolCall(call)));
                }
                self.finish = Some(reason);
            }
        }
        if let Some(u) = chunk.usage {
            self.pending.push_back(Ok(ChatEvent::Usage(u.into())));
        }
    }
}
