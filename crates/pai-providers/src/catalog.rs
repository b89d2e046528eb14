use serde::Serialize;

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI's Chat Completions API, spoken by OpenAI and most other servers.
    OpenAiCompatible,
}

/// A built-in provider: a name the user types, where it lives and which env var holds its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProviderSpec {
    pub name: &'static str,
    pub kind: ProviderKind,
    pub base_url: &'static str,
    /// The environment variable read for the API key when the session stores none.
    pub key_env: Option<&'static str>,
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
];

/// Looks a built-in provider up by the name the user typed.
pub fn find_builtin(name: &str) -> Option<&'static ProviderSpec> {
    BUILTIN.iter().find(|p| p.name == name)
}
