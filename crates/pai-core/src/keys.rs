use pai_providers::{ProviderConfig, ProviderEntry, ProviderKind, locality_via};
use pai_types::{Locality, Secret};
use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::models::ModelStore;
use crate::paths::Paths;
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
    /// Everything needed to connect, key included.
    pub config: ProviderConfig,
    /// Where the key came from, to show the user (never the key itself).
    pub key_source: KeySource,
}

/// Where `meta`'s key would come from, without decrypting anything.
pub fn key_source(meta: &SessionMeta, entry: &ProviderEntry) -> KeySource {
    if meta.api_key.is_some() {
        return KeySource::Session;
    }
    entry
        .key_env
        .as_deref()
        .filter(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
        .map_or(KeySource::None, |var| KeySource::Env(var.into()))
}

/// The endpoint a session talks to and where it runs: its own `--base-url` (locality
/// judged from that host) or its provider's; for the in-process provider, the model file
/// in `paths`' model store. The URL is returned as it is, credentials and all: pass it
/// through [`pai_types::redact_endpoint`] before showing it.
pub fn session_endpoint(
    meta: &SessionMeta,
    entry: &ProviderEntry,
    paths: &Paths,
) -> (String, Locality) {
    // The in-process provider's endpoint is the session's model file.
    if entry.kind == ProviderKind::Local {
        let path = ModelStore::new(paths).resolve(&meta.model);
        let shown = path.map_or_else(
            |_| format!("{} (not installed)", meta.model),
            |p| p.display().to_string(),
        );
        return (shown, Locality::Local);
    }
    match &meta.base_url {
        // Through `[network] proxy` (the entry carries it) a session's own URL is remote too.
        Some(url) => (url.clone(), locality_via(url, entry.proxy.as_deref())),
        None => (entry.base_url.clone(), entry.locality),
    }
}

/// The endpoint, locality and key a session uses; a `local` session's model is looked up
/// in `paths`' model store (never in `$PAI_HOME`: an embedder's paths are the ones that
/// count). Decrypting a stored key needs `PAI_ENCRYPTION_KEY`; only then is the vault opened.
pub fn resolve_provider(
    meta: &SessionMeta,
    config: &Config,
    paths: &Paths,
) -> Result<ResolvedProvider> {
    resolve_provider_with(meta, config, paths, &Vault::from_env)
}

/// [`resolve_provider`] with the vault a stored key is decrypted with coming from `vault`
/// (asked only when the session stores a key), not from the environment.
pub fn resolve_provider_with(
    meta: &SessionMeta,
    config: &Config,
    paths: &Paths,
    vault: &dyn Fn() -> Result<Vault>,
) -> Result<ResolvedProvider> {
    let entry = config.provider_entry(&meta.provider)?;
    if entry.kind == ProviderKind::Local && !cfg!(feature = "local") {
        return Err(pai_providers::ProviderError::LocalUnavailable.into());
    }
    let (base_url, locality) = match entry.kind {
        ProviderKind::Local => (
            ModelStore::new(paths)
                .resolve(&meta.model)?
                .display()
                .to_string(),
            Locality::Local,
        ),
        _ => session_endpoint(meta, &entry, paths),
    };
    let key_source = key_source(meta, &entry);
    let api_key = match &key_source {
        KeySource::Session => meta
            .api_key
            .as_deref()
            .map(|token| vault()?.decrypt(token))
            .transpose()?,
        KeySource::Env(var) => std::env::var(var).ok().map(Secret::new),
        KeySource::None => None,
    };
    let store = format!(
        "store one with 'pai {} switch {} --api-key KEY'",
        meta.name, meta.provider
    );
    let key_hint = match &entry.key_env {
        Some(var) => format!("set {var}, or {store}"),
        None => store,
    };
    Ok(ResolvedProvider {
        config: ProviderConfig {
            name: meta.provider.clone(),
            kind: entry.kind,
            base_url,
            locality,
            api_key,
            key_hint,
            headers: entry
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
                .collect(),
            net: config.network.to_net(),
        },
        key_source,
    })
}
