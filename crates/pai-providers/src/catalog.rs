use std::collections::BTreeMap;

use pai_types::Locality;
use serde::{Deserialize, Serialize};

use crate::locality::infer_locality;

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI's Chat Completions API, spoken by OpenAI and most other servers.
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// Ollama's native API (`/api/chat` as NDJSON, `/api/tags`).
    Ollama,
    /// Anthropic's Messages API.
    Anthropic,
    /// A GGUF model run inside the `pai` process (candle); its endpoint is the model file.
    Local,
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Local => "local",
        })
    }
}

/// A provider as the user can pick it: built in, or defined in `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderEntry {
    /// What the user types to pick it (`openai`, `groq`, or a `[providers.<name>]` key).
    pub name: String,
    /// Which API it speaks.
    pub kind: ProviderKind,
    /// Where the endpoint lives.
    pub base_url: String,
    /// The environment variable read for the API key when the session stores none.
    pub key_env: Option<String>,
    /// Extra headers sent with every request. Values may be credentials, so only the
    /// names are ever shown.
    #[serde(serialize_with = "header_names")]
    pub headers: BTreeMap<String, String>,
    /// Where prompts sent to it go.
    pub locality: Locality,
    /// One line on what it is, for `pai providers`.
    pub about: String,
    /// True for the presets compiled into PAI, false for `config.toml` entries.
    pub builtin: bool,
    /// The proxy configured under `[network] proxy`, which requests to this provider go
    /// through unless its URL is this machine's loopback (see [`crate::proxy_for`]).
    /// Shown with credentials masked.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "masked_proxy"
    )]
    pub proxy: Option<String>,
}

fn masked_proxy<S: serde::Serializer>(proxy: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match proxy {
        Some(proxy) => s.serialize_str(&pai_types::redact_endpoint(proxy)),
        None => s.serialize_none(),
    }
}

fn header_names<S: serde::Serializer>(
    headers: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(headers.keys())
}

/// A built-in provider: a name the user types, where it lives and which env var holds its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProviderSpec {
    /// What the user types to pick it.
    pub name: &'static str,
    /// Which API it speaks.
    pub kind: ProviderKind,
    /// Where the endpoint lives.
    pub base_url: &'static str,
    /// The environment variable read for the API key when the session stores none.
    pub key_env: Option<&'static str>,
    /// One line on what it is, for `pai providers`.
    pub about: &'static str,
}

const fn openai_compatible(
    name: &'static str,
    base_url: &'static str,
    key_env: Option<&'static str>,
    about: &'static str,
) -> ProviderSpec {
    ProviderSpec {
        name,
        kind: ProviderKind::OpenAiCompatible,
        base_url,
        key_env,
        about,
    }
}

/// Every provider PAI knows by name. Any other OpenAI-compatible server works through
/// `openai` with `--base-url`.
pub const BUILTIN: &[ProviderSpec] = &[
    openai_compatible(
        "openai",
        "https://api.openai.com/v1",
        Some("OPENAI_API_KEY"),
        "OpenAI, or any OpenAI-compatible server with --base-url",
    ),
    openai_compatible(
        "lmstudio",
        "http://127.0.0.1:1234/v1",
        None,
        "LM Studio's local server",
    ),
    openai_compatible(
        "llamacpp",
        "http://127.0.0.1:8080/v1",
        None,
        "llama.cpp's llama-server",
    ),
    openai_compatible(
        "vllm",
        "http://127.0.0.1:8000/v1",
        None,
        "a local vLLM server",
    ),
    ProviderSpec {
        name: "ollama",
        kind: ProviderKind::Ollama,
        base_url: "http://127.0.0.1:11434",
        key_env: None,
        about: "Ollama's native API (OLLAMA_HOST honoured)",
    },
    openai_compatible(
        "openrouter",
        "https://openrouter.ai/api/v1",
        Some("OPENROUTER_API_KEY"),
        "OpenRouter",
    ),
    openai_compatible(
        "groq",
        "https://api.groq.com/openai/v1",
        Some("GROQ_API_KEY"),
        "Groq",
    ),
    openai_compatible(
        "mistral",
        "https://api.mistral.ai/v1",
        Some("MISTRAL_API_KEY"),
        "Mistral AI",
    ),
    openai_compatible(
        "deepseek",
        "https://api.deepseek.com/v1",
        Some("DEEPSEEK_API_KEY"),
        "DeepSeek",
    ),
    openai_compatible(
        "together",
        "https://api.together.xyz/v1",
        Some("TOGETHER_API_KEY"),
        "Together AI",
    ),
    ProviderSpec {
        name: "anthropic",
        kind: ProviderKind::Anthropic,
        base_url: "https://api.anthropic.com/v1",
        key_env: Some("ANTHROPIC_API_KEY"),
        about: "Anthropic's Messages API",
    },
    ProviderSpec {
        name: "local",
        kind: ProviderKind::Local,
        // Stands for this process; the real endpoint is the session's model file.
        base_url: "in-process:",
        key_env: None,
        about: "a GGUF model run inside pai itself (default SmolLM2-135M-Instruct)",
    },
];

/// Looks a built-in provider up by the name the user typed.
pub fn find_builtin(name: &str) -> Option<&'static ProviderSpec> {
    BUILTIN.iter().find(|p| p.name == name)
}

impl ProviderSpec {
    /// This provider as it applies now: Ollama's endpoint follows `OLLAMA_HOST`.
    pub fn entry(&self) -> ProviderEntry {
        let base_url = match self.kind {
            ProviderKind::Ollama => ollama_url(std::env::var("OLLAMA_HOST").ok().as_deref()),
            _ => self.base_url.to_string(),
        };
        ProviderEntry {
            name: self.name.to_string(),
            kind: self.kind,
            // In-process means on this machine, whatever the URL says.
            locality: match self.kind {
                ProviderKind::Local => Locality::Local,
                _ => infer_locality(&base_url),
            },
            base_url,
            key_env: self.key_env.map(str::to_string),
            headers: BTreeMap::new(),
            about: self.about.to_string(),
            builtin: true,
            proxy: None,
        }
    }
}

/// Ollama's URL from `OLLAMA_HOST` (`host`, `host:port` or a URL; `0.0.0.0` means this
/// machine), or its default `http://127.0.0.1:11434`.
pub fn ollama_url(host: Option<&str>) -> String {
    let Some(host) = host.map(str::trim).filter(|h| !h.is_empty()) else {
        return "http://127.0.0.1:11434".into();
    };
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", host),
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest
        .strip_prefix("0.0.0.0")
        .map(|port| format!("127.0.0.1{port}"))
        .unwrap_or_else(|| rest.to_string());
    // No port given: Ollama's default.
    let has_port = rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !rest.ends_with(']');
    if has_port {
        format!("{scheme}://{rest}")
    } else {
        format!("{scheme}://{rest}:11434")
    }
}

/// Whether `model` on a `kind` endpoint takes images, or why not. Only models known to
/// read text alone are refused here; any other is tried, and a server that refuses the
/// image says so in its error.
pub fn accepts_images(kind: ProviderKind, model: &str) -> std::result::Result<(), String> {
    if kind == ProviderKind::Local {
        return Err("the in-process model reads text only".into());
    }
    const TEXT_ONLY: &[&str] = &[
        "gpt-3.5",
        "o1-mini",
        "o3-mini",
        "text-",
        "davinci",
        "babbage",
        "deepseek-chat",
        "deepseek-reasoner",
        "deepseek-coder",
        "claude-2",
        "claude-instant",
    ];
    let lower = model.to_ascii_lowercase();
    // `openai/gpt-3.5-turbo` on a router is the same model.
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    if TEXT_ONLY.iter().any(|p| base.starts_with(p)) {
        return Err(format!("model '{model}' reads text only"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_forms() {
        assert_eq!(ollama_url(None), "http://127.0.0.1:11434");
        assert_eq!(ollama_url(Some("")), "http://127.0.0.1:11434");
        assert_eq!(ollama_url(Some("0.0.0.0")), "http://127.0.0.1:11434");
        assert_eq!(ollama_url(Some("0.0.0.0:9999")), "http://127.0.0.1:9999");
        assert_eq!(
            ollama_url(Some("gpu.local:11500")),
            "http://gpu.local:11500"
        );
        assert_eq!(
            ollama_url(Some("https://ollama.example.com/")),
            "https://ollama.example.com:11434"
        );
        assert_eq!(
            ollama_url(Some("http://10.0.0.2:8080")),
            "http://10.0.0.2:8080"
        );
    }

    #[test]
    fn every_builtin_has_a_parsable_url_and_unique_name() {
        let mut names = std::collections::HashSet::new();
        for spec in BUILTIN {
            assert!(names.insert(spec.name), "{} twice", spec.name);
            assert!(
                reqwest::Url::parse(spec.base_url).is_ok(),
                "{}",
                spec.base_url
            );
        }
    }

    #[test]
    fn text_only_models_and_the_local_one_refuse_images() {
        use super::accepts_images;
        assert!(accepts_images(ProviderKind::OpenAiCompatible, "gpt-4o").is_ok());
        assert!(accepts_images(ProviderKind::OpenAiCompatible, "openai/gpt-3.5-turbo").is_err());
        assert!(accepts_images(ProviderKind::Anthropic, "claude-sonnet-4-5").is_ok());
        assert!(accepts_images(ProviderKind::Local, "smollm2").is_err());
    }
}
