//! Model endpoints. One narrow trait, [`Provider`], stands for one model endpoint: it
//! turns a [`ChatRequest`] into a stream of [`ChatEvent`]s and lists the models the
//! endpoint serves. This crate owns the wire formats, retries, timeouts and the mapping
//! of every failure to an error that names the provider, the endpoint and the next step.
//! It never touches sessions, keys at rest or the audit log: callers hand it a ready
//! [`ProviderConfig`] and record what it did.

mod anthropic;
mod catalog;
mod error;
mod http;
mod local;
mod locality;
mod ollama;
mod openai;
mod provider;
mod retry;
mod stream;

pub use anthropic::AnthropicProvider;
pub use catalog::{
    BUILTIN, ProviderEntry, ProviderKind, ProviderSpec, accepts_images, find_builtin, ollama_url,
};
pub use error::{Endpoint, ProviderError, Result};
pub use local::{
    DEFAULT_LOCAL_MODEL, GET_DEFAULT_MODEL, LocalModelInfo, LocalProvider, inspect_model,
};
pub use locality::{infer_locality, locality_via, proxy_for};
pub use ollama::OllamaProvider;
pub use openai::OpenAiProvider;
#[cfg(feature = "mock")]
pub use provider::MockProvider;
pub use provider::{
    ChatEvent, ChatRequest, ChatStream, MaxTokens, ModelInfo, NetSettings, Provider,
    ProviderConfig, ProviderInfo, Temperature, connect,
};
pub use retry::{
    Attempt, AttemptLog, RetryPolicy, RetryWait, SendNotifier, SentRequest, WaitNotifier,
};
