use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::{ApiErrorResponse, OpenAIError};
use async_openai::middleware::HttpRequestFactory;
use async_trait::async_trait;
use pai_types::{Locality, ToolCall, Usage};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Endpoint, ProviderError, Result, one_line};
use crate::http::{ErrorContext, HttpClient, classify, transport};
use crate::provider::{
    ChatEvent, ChatRequest, ChatStream, ModelInfo, Provider, ProviderConfig, ProviderInfo,
};
use crate::retry::AttemptLog;
use crate::stream::{Frame, Framing, ToolPart, Wire, WireError, WireFormat};

/// A provider speaking OpenAI's Chat Completions API.
///
/// Whole replies and model lists go through async-openai, whose HTTP service is PAI's
/// retry path; responses are read into PAI's own lenient types (async-openai's `byot`),
/// so servers that omit fields OpenAI always sends (`object`, `created`, …) still work.
/// Streams are opened on the same retry path and read by PAI's one stream driver, which
/// needs the body's own transport errors (async-openai turns them into text).
#[derive(Debug)]
pub struct OpenAiProvider {
    info: ProviderInfo,
    config: OpenAIConfig,
    http: HttpClient,
    settings: ProviderConfig,
}

impl OpenAiProvider {
    /// A client for `settings`: checks them, sends nothing yet.
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

    /// A client for one call whose HTTP goes through PAI's retry path; errors from it
    /// come back as the [`ProviderError`] they already are.
    fn client(&self, cx: &ErrorContext) -> Client<OpenAIConfig> {
        let http = self.http.clone();
        let policy = self.settings.net.retry.clone();
        let cx = cx.clone();
        let service = tower::service_fn(move |factory: HttpRequestFactory| {
            let (http, policy, cx) = (http.clone(), policy.clone(), cx.clone());
            async move {
                let template = factory.build().await?;
                // async-openai's JSON bodies are bytes, so the request can be replayed.
                let build = || {
                    template.try_clone().ok_or_else(|| ProviderError::Config {
                        at: cx.at.clone(),
                        detail: "the request cannot be sent twice".into(),
                    })
                };
                crate::http::send_request(&http, &policy, &cx, &build)
                    .await
                    .map_err(|e| OpenAIError::Boxed(Box::new(e)))
            }
        });
        Client::build(self.http.for_async_openai(), self.config.clone()).with_http_service(service)
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

    async fn open_chat(&self, request: ChatRequest, cx: &ErrorContext) -> Result<ChatStream> {
        self.check_key()?;
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
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(schema) = &request.schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": { "name": "answer", "schema": schema },
            });
        }
        if request.stream {
            body["stream_options"] = json!({ "include_usage": true });
            let url = format!("{}/chat/completions", self.info.endpoint);
            let key = self.settings.api_key.clone();
            let http = self.http.clone();
            // Serialised once: every attempt sends (and reports the hash of) these bytes.
            let body = body.to_string().into_bytes();
            let response = crate::http::send(&self.http, &self.settings.net.retry, cx, || {
                let request = http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                match &key {
                    Some(key) => request.bearer_auth(key.expose()),
                    None => request,
                }
            })
            .await?;
            return Ok(crate::stream::drive(
                Box::pin(response.bytes_stream()),
                Sse,
                cx.clone(),
            ));
        }
        let response: WireResponse = self
            .client(cx)
            .chat()
            .create_byot(body)
            .await
            .map_err(|e| map_error(e, cx))?;
        let events = response.into_events(&cx.at)?;
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }

    async fn list_models(&self, cx: &ErrorContext) -> Result<Vec<ModelInfo>> {
        self.check_key()?;
        let list: WireModelList = self
            .client(cx)
            .models()
            .list_byot()
            .await
            .map_err(|e| map_error(e, cx))?;
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

#[async_trait]
impl Provider for OpenAiProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatStream> {
        let cx = ErrorContext::new(&self.settings, &request.model, request.attempts.clone());
        self.open_chat(request, &cx).await.map_err(|e| cx.redact(e))
    }

    async fn models(&self) -> Result<Vec<ModelInfo>> {
        self.models_with(AttemptLog::new()).await
    }

    async fn models_with(&self, log: AttemptLog) -> Result<Vec<ModelInfo>> {
        let cx = ErrorContext::new(&self.settings, "", log);
        self.list_models(&cx).await.map_err(|e| cx.redact(e))
    }
}

/// The error an async-openai call ended with. Failures on PAI's own send path come back
/// boxed and whole; the rest happened while async-openai read a successful response.
fn map_error(err: OpenAIError, cx: &ErrorContext) -> ProviderError {
    let at = cx.at.clone();
    match err {
        OpenAIError::Boxed(err) => match err.downcast::<ProviderError>() {
            Ok(err) => *err,
            Err(other) => ProviderError::Malformed {
                at,
                detail: one_line(&other.to_string()),
            },
        },
        OpenAIError::ApiError(ApiErrorResponse {
            status_code,
            api_error,
        }) => classify(
            status_code,
            &api_error.message,
            api_error.code.as_deref().unwrap_or_default(),
            cx,
        ),
        OpenAIError::Reqwest(e) => transport(&e, cx),
        OpenAIError::JSONDeserialize(e, _) => ProviderError::Malformed {
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
            if !m.images.is_empty() {
                // Content parts: the text, then each image as a data URL.
                let mut parts = vec![json!({ "type": "text", "text": m.content })];
                parts.extend(m.images.iter().map(|i| {
                    json!({
                        "type": "image_url",
                        "image_url": { "url": format!("data:{};base64,{}", i.media_type, i.data) }
                    })
                }));
                v["content"] = json!(parts);
            }
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

/// OpenAI's SSE chunks as wire events: text, tool-call fragments keyed by index, the
/// finish reason, then (asked for with `include_usage`) a usage chunk and `[DONE]`.
#[derive(Debug)]
struct Sse;

impl WireFormat for Sse {
    const FRAMING: Framing = Framing::Sse;
    const ID_PREFIX: &'static str = "call";
    const DEFAULT_REASON: &'static str = "stop";

    fn decode(&mut self, frame: Frame<'_>, out: &mut Vec<Wire>) -> Result<(), WireError> {
        if frame.data == "[DONE]" {
            out.push(Wire::End);
            return Ok(());
        }
        if frame.event == "keepalive" {
            return Ok(());
        }
        let chunk: WireChunk =
            serde_json::from_str(frame.data).map_err(|e| WireError::Unreadable(e.to_string()))?;
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| error.to_string());
            return Err(WireError::Reported {
                status: None,
                message,
            });
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                out.extend(delta.content.map(Wire::Text));
                for (pos, fragment) in delta.tool_calls.into_iter().enumerate() {
                    let (name, arguments) = match fragment.function {
                        Some(f) => (f.name, Some(arguments_text(f.arguments))),
                        None => (None, None),
                    };
                    out.push(Wire::Tool(ToolPart {
                        index: fragment.index.unwrap_or(pos),
                        id: fragment.id,
                        name,
                        arguments,
                        fallback: None,
                    }));
                }
            }
            if let Some(reason) = choice.finish_reason {
                out.extend([Wire::Reason(reason), Wire::Finish]);
            }
        }
        if let Some(u) = chunk.usage {
            out.push(Wire::Usage {
                prompt: Some(u.prompt_tokens),
                completion: Some(u.completion_tokens),
            });
        }
        Ok(())
    }
}
