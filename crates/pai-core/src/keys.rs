use pai_providers::{ProviderConfig, ProviderKind, find_builtin, infer_locality};
use pai_types::{Locality, Secret};
use serde::Serialize;

use crate::config::Config;
use crate::error::{CoreError, Result};
use crate::session::SessionMeta;
use crate::vault::Vault;

/// Where a session's API key comes from; shown by `pai status`, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum KeySource {
    /// Encrypted in the session file.
    Session,
    /// Read from this environment variable at run time.
    Env(String),
    /// No key: fine for local servers.
    None,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Session => f.write_str("encrypted in session"),
            KeySource::Env(var) => write!(f, "env var {var}"),
            KeySource::None => f.write_str("none"),
        }
    }
}

/// A session's provider, ready to connect, and how its key was found.
#[derive(Debug, Clone)]
pub struct ResolvedProvider {
    pub config: ProviderConfig,
    pub key_source: KeySource,
}

/// Where `meta`'s key would come from, without decrypting anything.
pub fn key_source(meta: &SessionMeta) -> KeySource {
    if meta.api_key.is_some() {
        return KeySource::Session;
    }
    find_builtin(&meta.provider)
        .and_then(|spec| spec.key_env)
        .filter(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
        .map_or(KeySource::None, |var| KeySource::Env(var.into()))
}

/// The endpoint, locality and key a session uses. Decrypting a stored key needs
/// `PAI_ENCRYPTION_KEY`; only then is the vault opened.
pub fn resolve_provider(meta: &SessionMeta, config: &Config) -> Result<ResolvedProvider> {
    let spec = find_builtin(&meta.provider)
        .ok_or_else(|| CoreError::UnknownProvider(meta.provider.clone()))?;
    let base_url = meta
        .base_url
        .clone()
        .unwrap_or_else(|| spec.base_url.to_string());
    let locality: Locality = infer_locality(&base_url);
    let key_source = key_source(meta);
    let api_key = match &key_source {
        KeySource::Session => meta
            .api_key
            .as_deref()
            .map(|token| Vault::from_env()?.decrypt(token))
            .transpose()?,
        KeySource::Env(var) => std::env::var(var).ok().map(Secret::new),
        KeySource::None => None,
    };
    let key_hint = match spec.key_env {
        Some(var) => format!(
            "set {var}, or store a key with 'pai init {} {} --model {} --api-key KEY --force'",
            meta.name, meta.provider, meta.model
        ),
        None => format!(
            "store a key with 'pai init {} {} --model {} --api-key KEY --force'",
            meta.name, meta.provider, meta.model
        ),
    };
    Ok(ResolvedProvider {
        config: ProviderConfig {
            name: meta.provider.clone(),
            kind: ProviderKind::OpenAiCompatible,
            base_url,
            locality,
            api_key,
            key_hint,
            net: config.network.to_net(),
        },
        key_source,
    })
}
