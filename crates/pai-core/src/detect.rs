use std::time::Duration;

use pai_providers::{
    AttemptLog, ModelInfo, NetSettings, ProviderConfig, ProviderEntry, ProviderKind, RetryPolicy,
    connect,
};
use pai_types::Locality;

use crate::config::Config;

/// What probing one local server found.
#[derive(Debug)]
pub struct Probe {
    /// The server asked.
    pub entry: ProviderEntry,
    /// Its models, or why it could not be asked (usually: nothing is listening).
    pub models: Result<Vec<ModelInfo>, pai_providers::ProviderError>,
}

/// Asks every known local server (LM Studio, llama.cpp, vLLM, Ollama, and local
/// endpoints from `config.toml`) for its models, all at once and briefly; returns the
/// probes in catalogue order. Nothing is sent beyond a model listing, and each listing's
/// requests are reported to the log `log_for` gives for its server (for the audit).
pub async fn probe_local_servers(
    config: &Config,
    log_for: &(dyn Fn(&ProviderEntry) -> AttemptLog + Sync),
) -> Vec<Probe> {
    let entries: Vec<ProviderEntry> = config
        .provider_entries()
        .into_iter()
        // Servers only: the in-process model is not something to find running.
        .filter(|e| e.locality == Locality::Local && e.kind != ProviderKind::Local)
        .collect();
    let probes = entries.into_iter().map(|entry| async move {
        let settings = ProviderConfig {
            name: entry.name.clone(),
            kind: entry.kind,
            base_url: entry.base_url.clone(),
            locality: entry.locality,
            api_key: None,
            key_hint: String::new(),
            headers: Vec::new(),
            net: NetSettings {
                connect_timeout: Duration::from_millis(500),
                read_timeout: Duration::from_secs(3),
                retry: RetryPolicy {
                    max_retries: 0,
                    ..RetryPolicy::default()
                },
                proxy: config.network.proxy.clone(),
            },
        };
        let log = log_for(&entry);
        let models = match connect(settings) {
            Ok(provider) => provider.models_with(log).await,
            Err(e) => Err(e),
        };
        Probe { entry, models }
    });
    futures::future::join_all(probes).await
}
