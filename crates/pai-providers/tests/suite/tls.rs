//! reqwest is built without a TLS crypto provider of its own (`rustls-no-provider`, which
//! keeps aws-lc's C build out) and panics building a client when the process has none.
//! Each provider builds its client when it is connected, so connecting each kind, for an
//! https endpoint and through a proxy, proves that path installs one first.

use pai_providers::{ProviderKind, connect};

use super::config_at;

#[test]
fn every_http_provider_builds_its_client_for_https_endpoints() {
    for kind in [
        ProviderKind::OpenAiCompatible,
        ProviderKind::Ollama,
        ProviderKind::Anthropic,
    ] {
        for proxy in [None, Some("http://127.0.0.1:9/".to_string())] {
            let mut config = config_at("https://api.example.org/v1".into());
            config.kind = kind;
            config.net.proxy = proxy.clone();
            if let Err(e) = connect(config) {
                panic!("{kind:?} (proxy {proxy:?}) did not build its client: {e}");
            }
        }
    }
}
