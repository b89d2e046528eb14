use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pai_providers::{BUILTIN, NetSettings, ProviderEntry, ProviderKind, RetryPolicy, locality_via};
use pai_types::{Locality, SessionName};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// `config.toml`: every key optional, unknown keys refused so a typo is caught.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[network]`: timeouts and retries.
    pub network: NetworkSettings,
    /// `[context]`: system prompt, window and summaries.
    pub context: ContextSettings,
    /// User-defined endpoints, by the name sessions use for them.
    pub providers: BTreeMap<String, CustomProvider>,
    /// The in-process `local` provider.
    pub local: LocalSettings,
    /// `[tools]`: where tools may work and how much they may return.
    pub tools: ToolSettings,
    /// `[budget]`: token caps across sessions.
    pub budget: BudgetSettings,
    /// Model prices (USD per million tokens) by model-name prefix, over PAI's defaults.
    pub prices: BTreeMap<String, crate::pricing::Price>,
    /// MCP servers whose tools the model may use, by the name that prefixes their tools.
    pub mcp: BTreeMap<String, pai_tools::McpServerConfig>,
    /// `[detect]`: the user's own secret rules, beside the built-in ones.
    pub detect: DetectSettings,
    /// Named roles (`[roles.<name>]`), used with `--role <name>`.
    pub roles: BTreeMap<String, RoleSettings>,
    /// `[audit]`: how long the audit log keeps content, and how much of it.
    pub audit: AuditSettings,
    /// HTTP APIs the `http_request` tool may call by name (`[apis.<name>]`), with the
    /// credential PAI attaches; the model never sees it.
    pub apis: BTreeMap<String, ApiSettings>,
    /// `[resources]`: where `pai resources add` may import from besides files.
    pub resources: ResourceSettings,
}

/// `[resources]` in config.toml.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceSettings {
    /// `[resources.s3.<name>]`: S3-compatible stores, each for one bucket.
    pub s3: BTreeMap<String, S3Settings>,
    /// Whether an installed embedding model is used (vectors at import, hybrid search);
    /// on unless `false`. Off, imports store no vectors and searches are BM25 alone.
    pub embeddings: Option<bool>,
}

/// `[resources.s3.<name>]`: how to reach one bucket. Credentials are never written here
/// in plaintext: they come from environment variables, or from Fernet tokens made with
/// `pai encrypt` under `PAI_ENCRYPTION_KEY` (unknown keys such as a plaintext
/// `secret_access_key` are refused).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// The bucket this entry is for (`s3://<bucket>/…`); default: the entry's name.
    pub bucket: Option<String>,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`, `https://minio.lan`); none
    /// means AWS.
    pub endpoint: Option<String>,
    /// The region; default `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// The variable holding the access key id; default `AWS_ACCESS_KEY_ID`.
    pub access_key_id_env: Option<String>,
    /// The variable holding the secret access key; default `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key_env: Option<String>,
    /// The access key id as a Fernet token (instead of the variable).
    pub access_key_id_encrypted: Option<String>,
    /// The secret access key as a Fernet token (instead of the variable).
    pub secret_access_key_encrypted: Option<String>,
}

/// `[apis.<name>]` in config.toml: an HTTP API for the `http_request` tool.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Requests naming the API go to URLs under this one only.
    pub base_url: String,
    /// The environment variable holding the credential.
    pub auth_env: Option<String>,
    /// The credential as a Fernet token under `PAI_ENCRYPTION_KEY` (`pai encrypt` makes one).
    pub auth_secret: Option<String>,
    /// The header the credential goes in; `Authorization` when not set.
    pub auth_header: Option<String>,
    /// Written before the credential with a space (`Bearer`, `token`); `Bearer` when the
    /// header is `Authorization` and this is not set, nothing for any other header.
    pub auth_scheme: Option<String>,
    /// One line for the model about what the API is for.
    pub about: Option<String>,
}

/// `[detect]` in config.toml.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectSettings {
    /// `[[detect.rule]]`: secret formats of the user's own (an internal token, a company
    /// key format), redacted like the built-in ones. See `pai_policy::detect::CustomRule`.
    pub rule: Vec<pai_policy::detect::CustomRule>,
}

/// `[roles.<name>]`: a system prompt, a prompt template and model settings a run takes
/// with `--role <name>`. Templates may hold placeholders (see [`crate::fill_template`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleSettings {
    /// The system prompt runs with this role get (over the session's and the default).
    pub system: Option<String>,
    /// A template the run's input is put into, e.g. `"Summarise:\n\n{{input}}"`.
    pub prompt: Option<String>,
    /// The model to ask (a run's `--model` still wins).
    pub model: Option<String>,
    /// Sampling temperature sent to the model.
    pub temperature: Option<f64>,
    /// One line shown by `pai roles`.
    pub about: Option<String>,
}

/// `[audit]`: how long the audit log keeps content, and how much of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Days an event keeps its content; older events are purged to tombstones (hash and
    /// MAC kept) when the log is opened. None: kept until `pai audit purge`.
    pub keep_days: Option<u32>,
    /// `redacted` (default: the text as sent, secrets and personal data masked), `hash`
    /// (only each event's SHA-256) or `full` (unmasked: every secret typed stays in the log).
    pub content: pai_audit::ContentMode,
    /// `[audit.otel]`: send each turn as an OpenTelemetry trace (pai built with `otel`).
    pub otel: Option<OtelSettings>,
    /// Milliseconds a command waits at its end for the turn's audit check to report (see
    /// [`AuditSettings::check_wait`]). None: [`crate::AUDIT_CHECK_WAIT`].
    pub check_wait_ms: Option<u64>,
}

impl AuditSettings {
    /// How long a command waits at its end for the turn's audit check: a check still
    /// running then is abandoned (it only reads; the next turn's check starts over).
    pub fn check_wait(&self) -> std::time::Duration {
        self.check_wait_ms
            .map_or(crate::AUDIT_CHECK_WAIT, std::time::Duration::from_millis)
    }
}

/// `[audit.otel]`: where each turn's trace goes (OTLP over HTTP, JSON bodies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtelSettings {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; traces are sent to
    /// `<endpoint>/v1/traces` (a URL that already ends so is used as it is).
    pub endpoint: String,
}

/// `[tools]`: where file tools may work and how much a tool may return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolSettings {
    /// Directories file tools may use; empty means the current directory.
    pub roots: Vec<PathBuf>,
    /// A tool result longer than this is cut, with a marker, before the model sees it.
    pub max_output_kib: usize,
    /// A tool call running longer than this is stopped.
    pub timeout_secs: u64,
    /// Tool calls run from one model reply; the rest are refused (the model is told).
    pub max_calls_per_round: u32,
    /// SQLite databases `sqlite_query` may open by name, wherever they are
    /// (`[tools.databases] crm = "/srv/crm.db"`), besides files under the roots.
    pub databases: BTreeMap<String, PathBuf>,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            max_output_kib: 32,
            timeout_secs: 30,
            max_calls_per_round: crate::DEFAULT_MAX_CALLS_PER_ROUND,
            databases: BTreeMap::new(),
        }
    }
}

/// `[budget]`: token caps across sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    /// Tokens all sessions together may use per (UTC) day; none means no cap.
    pub daily_tokens: Option<u64>,
}

/// `[local]`: how the in-process model runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalSettings {
    /// CPU threads for generation; 0 picks for this machine (see [`LocalSettings::threads`]).
    pub threads: usize,
}

impl LocalSettings {
    /// The thread count to run with: the configured one, else half the cores (1 to 8).
    /// candle's workers wait for each other spinning, so more threads than idle cores is
    /// ruinous: on 2 cores with one busy, 2 threads fell to 7 tokens/s where 1 kept 50
    /// (idle, 2 threads give 65). Half the cores is safe on a busy machine; on an idle
    /// one, `threads` = the core count is faster.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8)),
            n => n,
        }
    }
}

/// An endpoint defined in `config.toml` under `[providers.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomProvider {
    /// `openai-compatible`, `ollama` or `anthropic`.
    pub kind: ProviderKind,
    /// Where the endpoint lives, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The environment variable holding its API key, if it needs one.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `local` or `remote`; inferred from the URL's host when absent.
    #[serde(default)]
    pub locality: Option<Locality>,
    /// One line shown for it by `pai providers`.
    #[serde(default)]
    pub about: Option<String>,
}

/// `[network]`: timeouts, retries and the proxy for every HTTP provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSettings {
    /// Longest wait for a connection to open.
    pub connect_timeout_secs: u64,
    /// Longest silence tolerated while a reply or stream is being read.
    pub read_timeout_secs: u64,
    /// Tries after the first on 408/409/429/5xx and refused connections.
    pub max_retries: u32,
    /// Cap on any single wait between tries, whatever the server's `Retry-After` says.
    pub max_retry_wait_secs: u64,
    /// The HTTP(S) proxy model requests go through (`http://host:port`), except to this
    /// machine's loopback. Without it the `HTTP(S)_PROXY`/`ALL_PROXY` variables are
    /// ignored: a proxy sees everything, so it is used only when configured here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 10,
            read_timeout_secs: 120,
            max_retries: 3,
            max_retry_wait_secs: 20,
            proxy: None,
        }
    }
}

impl NetworkSettings {
    /// The provider-side settings these describe (zero timeouts raised to one second).
    pub fn to_net(&self) -> NetSettings {
        NetSettings {
            connect_timeout: Duration::from_secs(self.connect_timeout_secs.max(1)),
            read_timeout: Duration::from_secs(self.read_timeout_secs.max(1)),
            retry: RetryPolicy {
                max_retries: self.max_retries,
                max_wait: Duration::from_secs(self.max_retry_wait_secs),
                ..RetryPolicy::default()
            },
            proxy: self.proxy.clone(),
        }
    }
}

/// `[context]`: what every request starts with and how history is kept within the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextSettings {
    /// The system prompt sent first in every request.
    pub system_prompt: String,
    /// In prompt mode, once the turns not yet in the summary pass this many tokens,
    /// the model folds them into the summary (one extra, audited call).
    pub summary_threshold_tokens: u64,
    /// Tokens of the model's window kept free for its answer.
    pub reserve_output_tokens: u64,
    /// Overrides the context window PAI assumes for every model (0 = PAI's table).
    pub context_window: u64,
    /// Store found secrets in the session history as they were typed. Off by default:
    /// the history keeps placeholders (`⟨AWS_KEY_1⟩`), so it never becomes a secret store.
    pub keep_secrets_in_history: bool,
}

impl Default for ContextSettings {
    fn default() -> Self {
        Self {
            system_prompt: "You are PAI, a concise and helpful personal assistant.".into(),
            summary_threshold_tokens: 2000,
            reserve_output_tokens: 1024,
            context_window: 0,
            keep_secrets_in_history: false,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file means all defaults. Its `[[detect.rule]]` rules are
    /// checked and added to the detectors (once per process, before anything is scanned).
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(CoreError::Config {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                });
            }
        };
        let config: Config = toml::from_str(&text).map_err(|e| CoreError::Config {
            path: path.to_path_buf(),
            detail: e.message().to_string() + &location(&text, e.span()),
        })?;
        config.validate(path)?;
        pai_policy::detect::add_rules(&config.detect.rule).map_err(|e| CoreError::Config {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |detail: String| CoreError::Config {
            path: PathBuf::from(path),
            detail,
        };
        if let Some(proxy) = &self.network.proxy
            && !reqwest_like_url(proxy)
        {
            return Err(bad(format!(
                "[network] proxy '{}' is not an http(s) URL; write it like proxy = \"http://proxy.example:3128\"",
                pai_types::redact_endpoint(proxy)
            )));
        }
        for (name, role) in &self.roles {
            if SessionName::new(name).is_err() {
                return Err(bad(format!(
                    "[roles.{name}]: a role name uses letters, digits, '-', '_' and '.'"
                )));
            }
            if let Some(t) = role.temperature
                && !(0.0..=2.0).contains(&t)
            {
                return Err(bad(format!(
                    "[roles.{name}] temperature {t} is out of range; use a value from 0 to 2"
                )));
            }
        }
        for (name, db) in &self.tools.databases {
            if SessionName::new(name).is_err() || name.contains('.') {
                return Err(bad(format!(
                    "[tools.databases] '{name}': a database name uses letters, digits, '-' and '_'"
                )));
            }
            if !db.is_absolute() {
                return Err(bad(format!(
                    "[tools.databases] {name} = '{}' is not an absolute path; give the full path of the database file",
                    db.display()
                )));
            }
        }
        for (name, api) in &self.apis {
            if SessionName::new(name).is_err() {
                return Err(bad(format!(
                    "[apis.{name}]: an API name uses letters, digits, '-', '_' and '.'"
                )));
            }
            match url::Url::parse(&api.base_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    if !u.username().is_empty() || u.password().is_some() || u.query().is_some() {
                        return Err(bad(format!(
                            "[apis.{name}] base_url must not hold credentials or a query; put the credential in auth_env or auth_secret"
                        )));
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "[apis.{name}] base_url '{}' is not an http(s) URL; write it like base_url = \"https://api.example.com/v1\"",
                        pai_types::redact_endpoint(&api.base_url)
                    )));
                }
            }
            if api.auth_env.is_some() && api.auth_secret.is_some() {
                return Err(bad(format!(
                    "[apis.{name}] has both auth_env and auth_secret; keep one"
                )));
            }
            if let Some(header) = &api.auth_header
                && (header.is_empty()
                    || !header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b)))
            {
                return Err(bad(format!(
                    "[apis.{name}] auth_header '{header}' is not a valid header name"
                )));
            }
        }
        for (name, p) in &self.providers {
            if BUILTIN.iter().any(|b| b.name == name) {
                return Err(bad(format!(
                    "[providers.{name}] has the name of a built-in provider; give it another name"
                )));
            }
            if SessionName::new(name).is_err() {
                return Err(bad(format!(
                    "[providers.{name}]: a provider name uses letters, digits, '-', '_' and '.'"
                )));
            }
            let url_ok = reqwest_like_url(&p.base_url);
            if !url_ok {
                return Err(bad(format!(
                    "[providers.{name}] base_url '{}' is not an http(s) URL",
                    p.base_url
                )));
            }
        }
        Ok(())
    }

    /// Every provider a session can use: the built-in ones, then those from `config.toml`.
    /// With `[network] proxy` set, an endpoint reached through it counts as remote (the
    /// proxy sees everything) unless its `[providers.<name>]` declares a locality.
    pub fn provider_entries(&self) -> Vec<ProviderEntry> {
        let proxy = self.network.proxy.as_deref();
        let mut out: Vec<ProviderEntry> = BUILTIN
            .iter()
            .map(|b| {
                let mut entry = b.entry();
                if entry.kind != ProviderKind::Local {
                    entry.locality = locality_via(&entry.base_url, proxy);
                    entry.proxy = proxy.map(str::to_string);
                }
                entry
            })
            .collect();
        out.extend(self.providers.iter().map(|(name, p)| {
            ProviderEntry {
                name: name.clone(),
                kind: p.kind,
                base_url: p.base_url.trim_end_matches('/').to_string(),
                key_env: p.key_env.clone(),
                headers: p.headers.clone(),
                locality: p
                    .locality
                    .unwrap_or_else(|| locality_via(&p.base_url, proxy)),
                about: p
                    .about
                    .clone()
                    .unwrap_or_else(|| format!("{} endpoint from config.toml", p.kind)),
                builtin: false,
                proxy: proxy.map(str::to_string),
            }
        }));
        out
    }

    /// The provider called `name`.
    pub fn provider_entry(&self, name: &str) -> Result<ProviderEntry> {
        self.provider_entries()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| CoreError::UnknownProvider(name.to_string()))
    }
}

fn reqwest_like_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line}); fix it or remove the file to use the defaults")
        }
        None => "; fix it or remove the file to use the defaults".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_defaults_and_partial_file_merges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
        std::fs::write(&path, "[network]\nmax_retries = 0\n").unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.network.max_retries, 0);
        assert_eq!(cfg.network.read_timeout_secs, 120);
        assert_eq!(cfg.context, ContextSettings::default());
    }

    #[test]
    fn the_audit_check_wait_defaults_to_half_a_second_and_is_configurable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(
            Config::load(&path).unwrap().audit.check_wait(),
            crate::AUDIT_CHECK_WAIT
        );
        std::fs::write(&path, "[audit]\ncheck_wait_ms = 2500\n").unwrap();
        assert_eq!(
            Config::load(&path).unwrap().audit.check_wait(),
            std::time::Duration::from_millis(2500)
        );
    }

    #[test]
    fn custom_providers_are_listed_after_builtins_with_locality() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            r#"
[providers.lab]
kind = "openai-compatible"
base_url = "http://192.168.1.20:8000/v1/"
key_env = "LAB_KEY"
headers = { "X-Team" = "research" }

[providers.tunnel]
kind = "ollama"
base_url = "http://127.0.0.1:9000"
locality = "remote"
"#,
        )
        .unwrap();
        let cfg = Config::load(&path).unwrap();
        let lab = cfg.provider_entry("lab").unwrap();
        assert_eq!(lab.base_url, "http://192.168.1.20:8000/v1");
        assert_eq!(lab.locality, Locality::Local);
        assert_eq!(lab.key_env.as_deref(), Some("LAB_KEY"));
        assert!(!lab.builtin);
        // An explicit locality wins over the host.
        assert_eq!(
            cfg.provider_entry("tunnel").unwrap().locality,
            Locality::Remote
        );
        let names: Vec<_> = cfg.provider_entries().into_iter().map(|p| p.name).collect();
        assert_eq!(names.first().map(String::as_str), Some("openai"));
        assert_eq!(&names[names.len() - 2..], ["lab", "tunnel"]);
        assert!(cfg.provider_entry("nope").is_err());
    }

    #[test]
    fn custom_providers_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for (body, needle) in [
            (
                "[providers.openai]\nkind = \"ollama\"\nbase_url = \"http://x\"\n",
                "built-in",
            ),
            (
                "[providers.x]\nkind = \"ollama\"\nbase_url = \"ftp://x\"\n",
                "not an http(s) URL",
            ),
            (
                "[providers.x]\nkind = \"grpc\"\nbase_url = \"http://x\"\n",
                "unknown variant",
            ),
            (
                "[providers.x]\nkind = \"ollama\"\nbase_url = \"http://x\"\nlocal = true\n",
                "unknown field",
            ),
        ] {
            std::fs::write(&path, body).unwrap();
            let err = Config::load(&path).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn local_threads_are_configurable_and_default_to_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[local]\nthreads = 3\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().local.threads(), 3);
        assert!(LocalSettings::default().threads() >= 1);
        std::fs::write(&path, "[local]\nthread = 3\n").unwrap();
        assert!(Config::load(&path).is_err());
    }

    #[test]
    fn a_proxy_makes_what_it_carries_remote_unless_declared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            r#"
[network]
proxy = "http://proxy.example:3128"

[providers.lab]
kind = "openai-compatible"
base_url = "http://192.168.1.20:8000/v1"

[providers.declared]
kind = "openai-compatible"
base_url = "http://192.168.1.21:8000/v1"
locality = "local"
"#,
        )
        .unwrap();
        let cfg = Config::load(&path).unwrap();
        let proxy = Some("http://proxy.example:3128".to_string());
        assert_eq!(cfg.network.to_net().proxy, proxy);
        let entry = |name: &str| cfg.provider_entry(name).unwrap();
        assert_eq!(entry("lab").locality, Locality::Remote);
        assert_eq!(entry("lab").proxy, proxy);
        // Declared in config.toml: the user said where it runs.
        assert_eq!(entry("declared").locality, Locality::Local);
        // A loopback server is reached directly, so it stays local.
        assert_eq!(entry("lmstudio").locality, Locality::Local);
        assert_eq!(entry("local").locality, Locality::Local);
        assert_eq!(entry("local").proxy, None);
        // Without the setting nothing changes.
        std::fs::write(
            &path,
            "[providers.lab]\nkind = \"ollama\"\nbase_url = \"http://192.168.1.20\"\n",
        )
        .unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.provider_entry("lab").unwrap().locality, Locality::Local);
        assert_eq!(cfg.network.to_net().proxy, None);
    }

    #[test]
    fn a_proxy_that_is_not_an_http_url_is_one_error_line_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for proxy in [
            "socks5://bob:hunter2@proxy:1080",
            "proxy.example:3128",
            "http://",
        ] {
            std::fs::write(&path, format!("[network]\nproxy = \"{proxy}\"\n")).unwrap();
            let err = Config::load(&path).unwrap_err().to_string();
            assert!(
                err.contains("[network] proxy") && err.contains("not an http(s) URL"),
                "{err}"
            );
            assert!(err.contains("config.toml") && !err.contains('\n'), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn typos_and_garbage_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[network]\nmax_retry = 1\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `max_retry`"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert!(Config::load(&path).is_err());
    }
}
