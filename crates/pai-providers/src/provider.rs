use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use pai_types::{Locality, Message, Secret, ToolCall, ToolSpec, Usage};
use serde::Serialize;

use crate::catalog::ProviderKind;
use crate::error::Result;
use crate::retry::{AttemptLog, RetryPolicy};

/// What a provider is and where it runs; shown to the user wherever it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    /// The provider's name as the user knows it.
    pub name: String,
    /// Which API it speaks.
    pub kind: ProviderKind,
    /// The base URL, credentials masked, for display.
    pub endpoint: String,
    /// Where prompts sent to it go.
    pub locality: Locality,
}

/// One call to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The model id as the endpoint names it.
    pub model: String,
    /// The whole conversation to send, system prompt first.
    pub messages: Vec<Message>,
    /// Ask the server to stream tokens as they are produced.
    pub stream: bool,
    /// Tools the model may call; empty means none are offered.
    pub tools: Vec<ToolSpec>,
    /// Collects the failed HTTP attempts of this call, for the audit log.
    pub attempts: AttemptLog,
    /// Most tokens the answer may have; `None` leaves it to the provider.
    pub max_tokens: Option<u32>,
    /// Sampling temperature; `None` leaves it to the provider.
    pub temperature: Option<f64>,
    /// A JSON Schema the answer must match (`--schema`): OpenAI-compatible servers get it
    /// as `response_format`, Ollama as `format`, Anthropic as a forced tool whose input
    /// comes back as the answer's text.
    pub schema: Option<serde_json::Value>,
}

impl ChatRequest {
    /// A request with no tools, no token cap and a fresh attempt log.
    pub fn new(model: impl Into<String>, messages: Vec<Message>, stream: bool) -> Self {
        Self {
            model: model.into(),
            messages,
            stream,
            tools: Vec::new(),
            attempts: AttemptLog::new(),
            max_tokens: None,
            temperature: None,
            schema: None,
        }
    }
}

/// What a model call yields, in order: text deltas, then complete tool calls (assembled
/// from the server's fragments), then usage (when the server reports it), then
/// `Finished`. A stream that ends without `Finished` was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A piece of the answer's text.
    Delta(String),
    /// A complete tool call, assembled from the server's fragments.
    ToolCall(ToolCall),
    /// Token counts for the call.
    Usage(Usage),
    /// The model stopped; nothing follows.
    Finished {
        /// The server's finish reason as it gave it (`stop`, `length`, `tool_calls`, …).
        reason: String,
    },
}

/// The events of one model call, as they arrive.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatEvent>> + Send>>;

/// A model the endpoint serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// The id to pass as `ChatRequest::model`.
    pub id: String,
    /// The organisation the server says owns it, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
}

/// One model endpoint.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Provider: Send + Sync {
    /// Who this provider is and where it runs.
    fn info(&self) -> &ProviderInfo;
    /// Sends one request; the stream yields its events as they arrive.
    async fn chat(&self, request: ChatRequest) -> Result<ChatStream>;
    /// The models the endpoint serves.
    async fn models(&self) -> Result<Vec<ModelInfo>>;
    /// [`Provider::models`], with the listing's HTTP requests reported to `log` (see
    /// [`AttemptLog::on_sent`]). HTTP providers override it; the default, for providers
    /// that send nothing, is the plain listing.
    async fn models_with(&self, log: AttemptLog) -> Result<Vec<ModelInfo>> {
        drop(log);
        self.models().await
    }
}

/// Network behaviour shared by every HTTP provider.
#[derive(Clone, PartialEq, Eq)]
pub struct NetSettings {
    /// Longest wait for a connection to open.
    pub connect_timeout: Duration,
    /// Longest silence tolerated while reading a response or a stream.
    pub read_timeout: Duration,
    /// How failed requests are retried.
    pub retry: RetryPolicy,
    /// The proxy every request goes through (`[network] proxy`), except to this machine's
    /// loopback (see [`crate::proxy_for`]). The proxy environment variables are never
    /// read. May hold credentials: `Debug` masks them.
    pub proxy: Option<String>,
}

impl Default for NetSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            proxy: None,
        }
    }
}

impl std::fmt::Debug for NetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("retry", &self.retry)
            .field(
                "proxy",
                &self.proxy.as_deref().map(pai_types::redact_endpoint),
            )
            .finish()
    }
}

/// Everything needed to talk to one endpoint, resolved by the caller (session + config + env).
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The provider's name as the user knows it (`openai`, `groq`, …).
    pub name: String,
    /// Which API the endpoint speaks.
    pub kind: ProviderKind,
    /// Where the endpoint lives; may hold credentials, never printed unmasked.
    pub base_url: String,
    /// Where prompts sent to it go.
    pub locality: Locality,
    /// The key sent with every request; `None` for endpoints that need none.
    pub api_key: Option<Secret<String>>,
    /// Tells the user how to supply a key when the server refuses the one it got.
    pub key_hint: String,
    /// Extra headers sent with every request (values may be credentials: never printed).
    pub headers: Vec<(String, Secret<String>)>,
    /// Timeouts and retries.
    pub net: NetSettings,
}

/// Builds the provider a config describes.
pub fn connect(config: ProviderConfig) -> Result<Box<dyn Provider>> {
    match config.kind {
        ProviderKind::OpenAiCompatible => Ok(Box::new(crate::OpenAiProvider::new(config)?)),
        ProviderKind::Ollama => Ok(Box::new(crate::OllamaProvider::new(config)?)),
        ProviderKind::Anthropic => Ok(Box::new(crate::AnthropicProvider::new(config)?)),
        ProviderKind::Local => crate::local::connect(config),
    }
}

/// A provider whose every answer is capped at `max_tokens` (`--max-tokens`), for callers
/// that pass requests through code that builds them (the engine) without that setting.
pub struct MaxTokens {
    inner: std::sync::Arc<dyn Provider>,
    max_tokens: u32,
}

impl MaxTokens {
    /// Caps every answer of `inner` at `max_tokens`.
    pub fn new(inner: std::sync::Arc<dyn Provider>, max_tokens: u32) -> Self {
        Self { inner, max_tokens }
    }
}

impl std::fmt::Debug for MaxTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaxTokens")
            .field("provider", self.inner.info())
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

#[async_trait]
impl Provider for MaxTokens {
    fn info(&self) -> &ProviderInfo {
        self.inner.info()
    }

    async fn chat(&self, mut request: ChatRequest) -> Result<ChatStream> {
        let cap = self.max_tokens;
        request.max_tokens = Some(request.max_tokens.map_or(cap, |m| m.min(cap)));
        self.inner.chat(request).await
    }

    async fn models(&self) -> Result<Vec<ModelInfo>> {
        self.inner.models().await
    }

    async fn models_with(&self, log: AttemptLog) -> Result<Vec<ModelInfo>> {
        self.inner.models_with(log).await
    }
}

/// A provider whose every request carries `temperature` (a role's setting), for callers
/// that pass requests through code that builds them without it.
pub struct Temperature {
    inner: std::sync::Arc<dyn Provider>,
    temperature: f64,
}

impl Temperature {
    /// Sends `temperature` with every request to `inner`.
    pub fn new(inner: std::sync::Arc<dyn Provider>, temperature: f64) -> Self {
        Self { inner, temperature }
    }
}

impl std::fmt::Debug for Temperature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Temperature")
            .field("provider", self.inner.info())
            .field("temperature", &self.temperature)
            .finish()
    }
}

#[async_trait]
impl Provider for Temperature {
    fn info(&self) -> &ProviderInfo {
        self.inner.info()
    }

    async fn chat(&self, mut request: ChatRequest) -> Result<ChatStream> {
        request.temperature = Some(self.temperature);
        self.inner.chat(request).await
    }

    async fn models(&self) -> Result<Vec<ModelInfo>> {
        self.inner.models().await
    }

    async fn models_with(&self, log: AttemptLog) -> Result<Vec<ModelInfo>> {
        self.inner.models_with(log).await
    }
}
