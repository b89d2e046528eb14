//! The facade an embedder opens: PAI's files and settings, and engines wired from them.
//! Nothing here reads the environment or prints: the caller passes paths, the working
//! directory and who answers approvals, and gets warnings back as values.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pai_audit::{AuditSink, SqliteAudit};
use pai_policy::{Decision, Policy, RulePolicy, Subject, Verdict};
use pai_providers::{MaxTokens, Provider, Temperature, WaitNotifier};
use pai_tools::{ToolContext, ToolRegistry};
use pai_types::{Mode, Secret, SessionName};

use crate::approval::{Approver, DenyAll};
use crate::config::Config;
use crate::context::ContextManager;
use crate::engine::{Budgets, Engine, Limits, UsageLedger};
use crate::error::{CoreError, Result};
use crate::keys::resolve_provider_with;
use crate::netgate::PolicyGate;
use crate::paths::Paths;
use crate::session::{SessionMeta, SessionStore};
use crate::vault::Vault;

/// Opens the vault API keys are stored under; asked only when a key must be encrypted or
/// decrypted.
pub type VaultSource = Arc<dyn Fn() -> Result<Vault> + Send + Sync>;

/// PAI's data and settings, opened once per command (or once per embedding program).
#[derive(Clone)]
pub struct Workspace {
    paths: Paths,
    config: Config,
    store: SessionStore,
    vault: VaultSource,
    /// The secret the audit key is derived from; `None` uses the key file.
    audit_secret: Option<Secret<String>>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// How an engine for one run is wired beyond the workspace's settings.
#[derive(Clone)]
pub struct EngineOptions {
    /// Most tokens each answer may have (`--max-tokens`).
    pub max_tokens: Option<u32>,
    /// Offer the model no tools at all.
    pub no_tools: bool,
    /// Directories file tools may use; empty means `[tools] roots`, else `cwd`.
    pub roots: Vec<PathBuf>,
    /// The working directory, the default tool root (unless it is `/`, `user_home` or
    /// holds PAI's own files: then file tools get no root unless one is given).
    pub cwd: PathBuf,
    /// Who answers when a tool needs consent (default: nobody, so refused).
    pub approver: Arc<dyn Approver>,
    /// Told before each wait between two tries of a model call.
    pub on_wait: Option<WaitNotifier>,
    /// Safe mode for this run (`--safe`): local endpoints and read-only tools only.
    pub safe: bool,
    /// The user's home directory, for `~/` in policy path rules; never a default tool
    /// root (the CLI passes `$HOME`).
    pub user_home: Option<PathBuf>,
    /// Sampling temperature sent with every model call (a role's `temperature`).
    pub temperature: Option<f64>,
    /// Resources attached to the turn (`-r`): ids or tags.
    pub resources: Vec<String>,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("max_tokens", &self.max_tokens)
            .field("no_tools", &self.no_tools)
            .field("roots", &self.roots)
            .field("cwd", &self.cwd)
            .field("user_home", &self.user_home)
            .finish_non_exhaustive()
    }
}

impl EngineOptions {
    /// Defaults for a run in `cwd`: tools on, nobody to approve, no caps.
    pub fn new(cwd: impl Into<PathBuf>) -> Self {
        Self {
            max_tokens: None,
            no_tools: false,
            roots: Vec::new(),
            cwd: cwd.into(),
            approver: Arc::new(DenyAll),
            on_wait: None,
            safe: false,
            user_home: None,
            temperature: None,
            resources: Vec::new(),
        }
    }
}

/// An engine ready to run turns, and what the caller should tell the user about it.
#[derive(Debug)]
pub struct Wired {
    /// The engine, ready for [`Engine::run`] or [`Engine::run_until`].
    pub engine: Engine,
    /// MCP servers that could not be started, with why (the turn goes on without them),
    /// and an audit log whose checkpoint disagrees with it.
    pub warnings: Vec<String>,
    /// What the user should know about how the engine was set up (file tools given no
    /// directory, and why).
    pub notes: Vec<String>,
}

impl Workspace {
    /// Opens the workspace at `paths`, reading `config.toml` from its config dir.
    pub fn open(paths: Paths) -> Result<Self> {
        let config = Config::load(&paths.config_file())?;
        Ok(Self::with_config(paths, config))
    }

    /// A workspace with settings the caller made.
    pub fn with_config(paths: Paths, config: Config) -> Self {
        let store = SessionStore::new(paths.clone());
        Self {
            paths,
            config,
            store,
            vault: Arc::new(|| {
                Err(CoreError::Vault(
                    "this program gave PAI no encryption key, so stored API keys cannot be used; \
                     use the provider's key env var instead"
                        .into(),
                ))
            }),
            audit_secret: None,
        }
    }

    /// The secret the audit log's MAC key is derived from (the CLI: `PAI_ENCRYPTION_KEY`
    /// when set); without one, the key file in the config dir is used.
    pub fn with_audit_secret(mut self, secret: Option<Secret<String>>) -> Self {
        self.audit_secret = secret;
        self
    }

    pub(crate) fn audit_secret(&self) -> Option<&Secret<String>> {
        self.audit_secret.as_ref()
    }

    /// Where stored API keys are encrypted and decrypted (the CLI: `Vault::from_env`,
    /// i.e. `PAI_ENCRYPTION_KEY`). Without one, sessions can use env-var keys only.
    pub fn with_vault(mut self, vault: impl Fn() -> Result<Vault> + Send + Sync + 'static) -> Self {
        self.vault = Arc::new(vault);
        self
    }

    /// Opens the vault (see [`Self::with_vault`]).
    pub fn vault(&self) -> Result<Vault> {
        (self.vault)()
    }

    /// Where the workspace keeps its files.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The settings from `config.toml` (or the caller).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The sessions.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// The named session (validated), else the active one.
    pub fn session(&self, name: Option<&str>) -> Result<SessionName> {
        let name = name.map(SessionName::new).transpose()?;
        self.store.resolve(name.as_ref())
    }

    /// The limits a run gets from the settings, over `limits` the caller set.
    pub fn limits(&self, limits: Limits) -> Limits {
        Limits {
            max_calls_per_round: limits
                .max_calls_per_round
                .or(Some(self.config.tools.max_calls_per_round)),
            ..limits
        }
    }

    /// An engine for `meta` (as it runs this turn) in `mode`: its provider, the audit
    /// log, the tools `mode` may offer, the approver, and the session and daily budgets.
    pub async fn engine(
        &self,
        meta: &SessionMeta,
        mode: Mode,
        opts: &EngineOptions,
    ) -> Result<Wired> {
        let resolved = resolve_provider_with(meta, &self.config, &self.paths, &*self.vault)?;
        let mut provider: Arc<dyn Provider> = Arc::from(pai_providers::connect(resolved.config)?);
        if let Some(max) = opts.max_tokens {
            provider = Arc::new(MaxTokens::new(provider, max));
        }
        if let Some(t) = opts.temperature {
            provider = Arc::new(Temperature::new(provider, t));
        }
        let audit = self.audit()?;
        // Today's use is read from the audit log before every call, not once here.
        let daily = self
            .config
            .budget
            .daily_tokens
            .map(|cap| (cap, audit.clone() as Arc<dyn UsageLedger>));
        let base = self.policy(meta, opts.safe, opts.user_home.as_deref())?;
        let (mut tools, mut warnings, spawned) = if opts.no_tools {
            (ToolRegistry::new(), Vec::new(), Vec::new())
        } else {
            self.tools_with(mode, &base).await?
        };
        // Budgets and the daily cap read this log: say so when it cannot be trusted.
        warnings.extend(audit.head_warning());
        let mut policy = base;
        let names: Vec<String> = pai_tools::builtin_tool_names()
            .into_iter()
            .chain(tools.infos().iter().map(|i| i.spec.name.clone()))
            .chain(
                crate::resource_access::TOOL_NAMES
                    .iter()
                    .map(|n| n.to_string()),
            )
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        policy.check_tools(&names)?;
        policy.add_constraints(&meta.constraints, &names)?;
        for (server, command, verdict) in spawned {
            let row = pai_audit::AuditEvent::new(
                pai_audit::EventKind::Egress,
                format!(
                    "spawn MCP server '{server}': {command} ({} by {})",
                    verdict.decision, verdict.rule
                ),
            )
            .session(meta.name.as_str());
            if let Err(e) = audit.record_deferred(&row) {
                warnings.push(format!(
                    "could not record the start of MCP server '{server}': {e}"
                ));
            }
        }
        let policy: Arc<dyn Policy> = Arc::new(policy);
        let (mut cx, no_root) =
            self.tool_setup(&opts.roots, &opts.cwd, opts.user_home.as_deref())?;
        let notes = no_root.filter(|_| !opts.no_tools).into_iter().collect();
        cx.net = Arc::new(PolicyGate::new(
            policy.clone(),
            audit.clone(),
            opts.approver.clone(),
            meta.name.clone(),
            mode,
        ));
        let resources = self.resource_access(meta, mode, opts, &provider, &policy, &audit)?;
        if let Some(access) = &resources {
            for tool in access.tools() {
                tools.register(tool)?;
            }
        }
        let mut engine = Engine::new(
            provider,
            audit,
            self.store.clone(),
            ContextManager::new(self.config.context.clone()),
        )
        .with_tools(tools, cx)
        .with_approver(opts.approver.clone())
        .with_audit_content(self.config.audit.content)
        .with_policy(policy)
        .with_budgets(Budgets {
            session: meta.budget_tokens,
            daily,
        });
        if let Some(notify) = &opts.on_wait {
            engine = engine.with_wait_notifier(notify.clone());
        }
        if let Some(access) = resources {
            engine = engine.with_resources(access);
        }
        Ok(Wired {
            engine,
            warnings,
            notes,
        })
    }

    /// The resources an engine offers: when some are attached or any exist (no database
    /// is created otherwise), and tools are on.
    fn resource_access(
        &self,
        meta: &SessionMeta,
        mode: Mode,
        opts: &EngineOptions,
        provider: &Arc<dyn Provider>,
        policy: &Arc<dyn Policy>,
        audit: &Arc<SqliteAudit>,
    ) -> Result<Option<Arc<crate::resource_access::ResourceAccess>>> {
        let db = crate::resource_access::resources_db(&self.paths);
        if opts.no_tools
            || (opts.resources.is_empty() && !crate::resource_access::has_resources(&db))
        {
            return Ok(None);
        }
        let store = Arc::new(crate::resource_access::open_resources_for(
            &self.paths,
            &self.config.resources,
        )?);
        let attached = crate::resource_access::resolve_resources(store.as_ref(), &opts.resources)?;
        let info = provider.info();
        let cx = crate::resource_access::ReadContext {
            policy: policy.clone(),
            audit: audit.clone(),
            session: meta.name.clone(),
            provider: info.name.clone(),
            locality: info.locality,
        };
        Ok(Some(Arc::new(crate::resource_access::ResourceAccess::new(
            store, attached, mode, cx,
        ))))
    }

    /// Built-in tools, plus the tools of configured MCP servers whose declared effects
    /// `mode` could offer (a server is only started when its tools could be used), and a
    /// warning for each server that could not be started.
    pub async fn tools(&self, mode: Mode) -> Result<(ToolRegistry, Vec<String>)> {
        let (registry, warnings, _) = self.tools_with(mode, &RulePolicy::defaults()).await?;
        Ok((registry, warnings))
    }

    /// The policy a session's turns run under: `policy.toml` from the config dir over the
    /// defaults, safe mode from `safe`, the file or the session. A malformed file is an
    /// error naming its line; a missing one is the defaults. (Constraints are added when
    /// the tools are known, in [`Workspace::engine`].)
    pub fn policy(
        &self,
        meta: &SessionMeta,
        safe: bool,
        user_home: Option<&Path>,
    ) -> Result<RulePolicy> {
        let mut policy = RulePolicy::load(&self.paths.policy_file(), user_home)?;
        if safe || meta.safe || policy.safe() {
            policy.set_safe(true);
        }
        Ok(policy)
    }

    /// [`Workspace::tools`] under `policy`: an MCP server whose start the policy refuses
    /// is not started (a warning says why). Returns each start decided, for the audit.
    async fn tools_with(
        &self,
        mode: Mode,
        policy: &RulePolicy,
    ) -> Result<(ToolRegistry, Vec<String>, Vec<(String, String, Verdict)>)> {
        let mut registry = ToolRegistry::new();
        for tool in pai_tools::builtin_tools_with(self.apis(), self.config.tools.databases.clone())
        {
            registry.register(tool)?;
        }
        let servers: std::collections::BTreeMap<_, _> = self
            .config
            .mcp
            .iter()
            .filter(|(_, cfg)| cfg.effects().iter().all(|e| mode.offers(*e)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut warnings = Vec::new();
        let mut spawned = Vec::new();
        let mut servers = servers;
        servers.retain(|name, cfg| {
            let verdict = policy.check(&Subject::spawn(name, &cfg.command));
            let allowed = matches!(verdict.decision, Decision::Allow);
            if !allowed {
                warnings.push(format!(
                    "MCP server '{name}' was not started: {} (policy rule '{}')",
                    verdict.reason, verdict.rule
                ));
            }
            spawned.push((name.clone(), cfg.command.clone(), verdict));
            allowed
        });
        for (name, client) in pai_tools::connect_mcp_servers(&servers).await {
            match client {
                Ok(client) => {
                    for tool in client.tools() {
                        registry.register(tool.clone())?;
                    }
                }
                // One broken server must not take the others (or the answer) down.
                Err(e) => warnings.push(format!("MCP server '{name}' is not available: {e}")),
            }
        }
        Ok((registry, warnings, spawned))
    }

    /// The `[apis.<name>]` of config.toml with their credentials resolved: from the
    /// environment variable, or decrypted from the Fernet token with `PAI_ENCRYPTION_KEY`.
    /// An API whose credential cannot be had is still listed; a call naming it is refused
    /// with the reason, so the model can tell the user what to set.
    fn apis(&self) -> Vec<pai_tools::Api> {
        self.config
            .apis
            .iter()
            .filter_map(|(name, settings)| {
                // Validated when the config was read.
                let base_url = url::Url::parse(&settings.base_url).ok()?;
                Some(pai_tools::Api {
                    name: name.clone(),
                    base_url,
                    about: settings.about.clone(),
                    auth: api_credential(name, settings),
                })
            })
            .collect()
    }

    /// Where file tools may work: `roots`, else `[tools] roots`, else `cwd`; each must exist.
    /// `cwd` is not used when it is `/` or holds PAI's own files (see
    /// [`EngineOptions::cwd`]). PAI's home, config dir and audit log are protected from
    /// the tools whatever the roots.
    pub fn tool_context(&self, roots: &[PathBuf], cwd: &Path) -> Result<ToolContext> {
        Ok(self.tool_setup(roots, cwd, None)?.0)
    }

    /// The tool context, and a note for the user when `cwd` was withheld as the root.
    fn tool_setup(
        &self,
        roots: &[PathBuf],
        cwd: &Path,
        user_home: Option<&Path>,
    ) -> Result<(ToolContext, Option<String>)> {
        let (roots, note) = if !roots.is_empty() {
            (roots.to_vec(), None)
        } else if !self.config.tools.roots.is_empty() {
            (self.config.tools.roots.clone(), None)
        } else {
            let cwd = cwd
                .canonicalize()
                .map_err(|_| CoreError::NoToolRoot(cwd.to_path_buf()))?;
            match self.unsafe_default_root(&cwd, user_home) {
                None => (vec![cwd], None),
                Some(why) => (
                    Vec::new(),
                    Some(format!(
                        "file tools have no directory: the current one ({}) is {why}, which \
                         PAI does not open on its own; pass --root DIR to allow one",
                        cwd.display()
                    )),
                ),
            }
        };
        let roots = roots
            .iter()
            .map(|r| {
                r.canonicalize()
                    .map_err(|_| CoreError::NoToolRoot(r.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        let ctx = ToolContext {
            roots,
            protected: self.protected_paths(),
            max_output_bytes: self.config.tools.max_output_kib.max(1) * 1024,
            timeout: Duration::from_secs(self.config.tools.timeout_secs.max(1)),
            ..ToolContext::default()
        };
        Ok((ctx, note))
    }

    /// Why `cwd` (canonical) must not be a tool root by default, if it must not: the
    /// whole filesystem, the user's home, or a directory holding PAI's home or config
    /// (a model could read other sessions and the audit log, or rewrite config.toml).
    fn unsafe_default_root(&self, cwd: &Path, user_home: Option<&Path>) -> Option<&'static str> {
        if cwd.parent().is_none() {
            return Some("the filesystem root");
        }
        if user_home
            .and_then(|h| h.canonicalize().ok())
            .is_some_and(|h| h == cwd)
        {
            return Some("your home directory");
        }
        let holds = |dir: &Path| {
            dir.canonicalize()
                .unwrap_or_else(|_| dir.to_path_buf())
                .starts_with(cwd)
        };
        if holds(&self.paths.home) || holds(&self.paths.config_dir) {
            return Some("a directory holding PAI's own data");
        }
        None
    }

    /// PAI's own files, which no tool may touch: its home (sessions, keys, models), the
    /// config dir and the audit log (listed on its own in case it is moved elsewhere).
    fn protected_paths(&self) -> Vec<PathBuf> {
        [
            self.paths.home.clone(),
            self.paths.config_dir.clone(),
            self.paths.audit_db(),
        ]
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect()
    }
}

/// The header and value an API's requests carry, or why there are none.
fn api_credential(
    name: &str,
    settings: &crate::config::ApiSettings,
) -> std::result::Result<Option<(String, pai_types::Secret<String>)>, String> {
    let raw = if let Some(var) = &settings.auth_env {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
            _ => {
                return Err(format!(
                    "{var} is not set (the credential of [apis.{name}])"
                ));
            }
        }
    } else if let Some(token) = &settings.auth_secret {
        let vault = crate::vault::Vault::from_env().map_err(|e| e.to_string())?;
        let secret = vault
            .decrypt(token.trim())
            .map_err(|e| format!("[apis.{name}] auth_secret cannot be decrypted: {e}"))?;
        secret.expose().trim().to_string()
    } else {
        return Ok(None);
    };
    let header = settings
        .auth_header
        .clone()
        .unwrap_or_else(|| "Authorization".into());
    let scheme = match &settings.auth_scheme {
        Some(s) => s.trim().to_string(),
        None if header.eq_ignore_ascii_case("authorization") => "Bearer".into(),
        None => String::new(),
    };
    let value = if scheme.is_empty() {
        raw
    } else {
        format!("{scheme} {raw}")
    };
    Ok(Some((header, pai_types::Secret::new(value))))
}
