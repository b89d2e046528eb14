//! The workspace's session management: create, switch, describe, and what calls cost.
//! Every rule an embedder needs lives here (validation, the key encrypted before anything
//! is written, the switch rule that drops a key when the provider changes); the CLI only
//! parses arguments and prints.

use std::path::Path;
use std::sync::Arc;

use pai_audit::{AuditEvent, AuditSink, EventKind};
use pai_providers::{AttemptLog, DEFAULT_LOCAL_MODEL, ModelInfo, ProviderEntry, ProviderKind};
use pai_types::{Locality, Secret, SessionName, Usage, has_credentials, redact_endpoint};
use serde::Serialize;

use crate::detect::probe_local_servers;
use crate::engine::egress_recorder;
use crate::error::{CoreError, Result};
use crate::keys::{KeySource, key_source, resolve_provider_with, session_endpoint};
use crate::models::{ModelStore, looks_like_path};
use crate::pricing::{cost, price_of};
use crate::session::{SessionMeta, SessionSnapshot};
use crate::vault::Vault;
use crate::workspace::Workspace;

/// The pseudo-provider that means "whichever local server is running".
pub const LOCAL_SERVER: &str = "local-server";

/// A session to create, as the user asked for it.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// What to call it.
    pub name: SessionName,
    /// A provider name, or [`LOCAL_SERVER`].
    pub provider: String,
    /// The model; `None` only for `local` (its default) or [`LOCAL_SERVER`] (the first served).
    pub model: Option<String>,
    /// Overrides the provider's endpoint, e.g. for a server on another port.
    pub base_url: Option<String>,
    /// Encrypted with the vault before anything is written.
    pub api_key: Option<Secret<String>>,
    /// The session's token cap over its whole history.
    pub budget_tokens: Option<u64>,
    /// Replace a session of the same name.
    pub force: bool,
}

/// A move of a session to another provider (or new settings on the same one).
#[derive(Debug, Clone)]
pub struct SwitchTo {
    /// The provider to move to (may be the current one).
    pub provider: String,
    /// The new model; `None` keeps the current one (or, moving to `local`, its default).
    pub model: Option<String>,
    /// A new endpoint; moving to another provider without one drops the old.
    pub base_url: Option<String>,
    /// A new key, encrypted before it is stored; moving without one drops the old.
    pub api_key: Option<Secret<String>>,
}

/// What a session now talks to, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The session as now stored.
    pub meta: SessionMeta,
    /// The endpoint, credentials masked, and where it runs.
    pub endpoint: String,
    /// Where the model runs.
    pub locality: Locality,
    /// Where the key comes from (never the key itself).
    pub key: KeySource,
    /// The variable to set when a remote provider has no key yet.
    pub missing_key_env: Option<String>,
    /// Which local server was found, for [`LOCAL_SERVER`].
    pub found: Option<String>,
}

/// Everything `pai status` shows about a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionStatus {
    /// The session's name.
    pub session: String,
    /// True if it is the active session.
    pub active: bool,
    /// The provider's name.
    pub provider: String,
    /// The model.
    pub model: String,
    /// The endpoint, credentials masked.
    pub endpoint: String,
    /// Where the model runs.
    pub locality: Locality,
    /// The proxy requests go through (`[network] proxy`), credentials masked; none when
    /// they go directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Where the key comes from (never the key itself).
    pub key: KeySource,
    /// Messages in the history.
    pub messages: usize,
    /// Of those, how many are folded into the running summary.
    pub summarised_messages: usize,
    /// Prompt tokens over the whole history.
    pub prompt_tokens: u64,
    /// Completion tokens over the whole history.
    pub completion_tokens: u64,
    /// True when some of the counts were estimated locally.
    pub tokens_estimated: bool,
    /// The session's token cap, if it has one.
    pub budget_tokens: Option<u64>,
    /// Estimated cost in USD of the answers in the history; none when a price is unknown.
    pub cost_usd: Option<f64>,
    /// When the session was created, RFC 3339 UTC.
    pub created_at: String,
    /// When the session last changed, RFC 3339 UTC.
    pub updated_at: String,
    /// Safe mode, from the session or `policy.toml`.
    pub safe: bool,
    /// The session's allow/deny constraints.
    pub constraints: Vec<pai_policy::Constraint>,
    /// The session's own system prompt (none: the default from `[context]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// Model calls of one day, session, provider and model, with their estimated cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageLine {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The session's name.
    pub session: String,
    /// The provider's name.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Prompt tokens that day.
    pub prompt_tokens: u64,
    /// Completion tokens that day.
    pub completion_tokens: u64,
    /// True when some of the counts were estimated locally.
    pub estimated: bool,
    /// None when no price is known for the model.
    pub cost_usd: Option<f64>,
}

fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::Invalid(message.into())
}

/// An http(s) URL without credentials in it. A `user:pass@` or `?key=` would be stored in
/// plaintext in session.json and shown by every command that names the endpoint, so it is
/// refused (echoed masked) with the ways PAI keeps a key safe.
pub(crate) fn check_base_url(url: Option<&str>) -> Result<Option<String>> {
    let Some(url) = url else { return Ok(None) };
    let shown = redact_endpoint(url);
    if has_credentials(url) {
        return Err(invalid(format!(
            "--base-url '{shown}' carries a credential, which PAI would store in plaintext; pass the URL without it and the key with --api-key (stored encrypted) or the provider's key env var, or define the endpoint under [providers.<name>] in config.toml with the key in its headers"
        )));
    }
    let ok = url.starts_with("http://") || url.starts_with("https://");
    if !ok || url.split("://").nth(1).is_none_or(str::is_empty) {
        return Err(invalid(format!(
            "--base-url '{shown}' is not an http(s) URL; pass one like http://127.0.0.1:8080/v1"
        )));
    }
    Ok(Some(url.trim_end_matches('/').to_string()))
}

fn check_model(model: Option<&str>) -> Result<Option<String>> {
    match model.map(str::trim) {
        Some("") => Err(invalid(
            "--model cannot be empty; name the model to ask, e.g. --model gpt-4o-mini",
        )),
        other => Ok(other.map(str::to_string)),
    }
}

/// The key, encrypted with the vault `vault` opens (asked only when there is a key), so
/// nothing is written in plaintext.
fn encrypt(
    key: Option<&Secret<String>>,
    vault: impl FnOnce() -> Result<Vault>,
) -> Result<Option<String>> {
    let Some(key) = key else { return Ok(None) };
    let key = key.expose().trim();
    if key.is_empty() {
        return Err(invalid(
            "--api-key is empty; pass the key, or '-' to read it from stdin",
        ));
    }
    Ok(Some(vault()?.encrypt(&Secret::new(key.to_string()))))
}

impl Workspace {
    /// The model a `local` session is created with: `model` (a name, or a path made
    /// absolute), else the default. Refuses one that is not installed: a session made now
    /// would only fail at its first prompt.
    pub fn local_session_model(&self, model: Option<String>) -> Result<String> {
        if !cfg!(feature = "local") {
            return Err(pai_providers::ProviderError::LocalUnavailable.into());
        }
        let model = match model {
            None => DEFAULT_LOCAL_MODEL.to_string(),
            Some(m) if looks_like_path(&m) => {
                let path = Path::new(&m);
                if !path.is_file() {
                    return Err(invalid(format!(
                        "no model file at {m}; pass the path of a .gguf file, or the name of an installed model ('pai models local' lists them)"
                    )));
                }
                std::path::absolute(path)
                    .map_err(crate::error::io("resolve", path))?
                    .display()
                    .to_string()
            }
            Some(m) => m,
        };
        ModelStore::new(self.paths()).resolve(&model)?;
        Ok(model)
    }

    /// Creates a session and makes it the active one. A key is encrypted with the
    /// workspace's vault before anything touches disk; bad input writes nothing.
    pub async fn init(&self, new: NewSession) -> Result<Described> {
        let model = check_model(new.model.as_deref())?;
        let base_url = check_base_url(new.base_url.as_deref())?;
        let (entry, model, found) = if new.provider == LOCAL_SERVER {
            let (entry, model, found) = self.detect_local_server(model).await?;
            (entry, model, Some(found))
        } else {
            let entry = self.config().provider_entry(&new.provider)?;
            let model = if entry.kind == ProviderKind::Local {
                self.local_session_model(model)?
            } else {
                model.ok_or_else(|| {
                    invalid(format!(
                        "name the model with --model, e.g. 'pai init {} {} --model <model>'; 'pai models {}' lists what the endpoint serves",
                        new.name, entry.name, entry.name
                    ))
                })?
            };
            (entry, model, None)
        };
        let api_key = encrypt(new.api_key.as_ref(), || self.vault())?;
        let mut meta = SessionMeta::new(new.name.clone(), &entry.name, &model);
        meta.base_url = base_url;
        meta.api_key = api_key;
        meta.budget_tokens = new.budget_tokens;
        self.store().create(&meta, new.force)?;
        self.store().set_active(&new.name)?;
        Ok(Described {
            found,
            ..self.describe(meta, &entry)
        })
    }

    /// The first known local server that answers, a model it serves, and a line saying
    /// what was found.
    async fn detect_local_server(
        &self,
        model: Option<String>,
    ) -> Result<(ProviderEntry, String, String)> {
        let audit = self.egress_audit()?;
        let log_for = |entry: &ProviderEntry| {
            let template = AuditEvent::new(EventKind::Egress, "")
                .provider(entry.name.clone())
                .endpoint(entry.base_url.clone())
                .locality(entry.locality);
            AttemptLog::new().on_sent(egress_recorder(
                audit.clone(),
                template,
                serde_json::Value::Null,
                true,
            ))
        };
        let mut tried = Vec::new();
        for probe in probe_local_servers(self.config(), &log_for).await {
            let url = redact_endpoint(&probe.entry.base_url).into_owned();
            match probe.models {
                Ok(models) => {
                    let chosen = match model {
                        Some(m) => m,
                        None => match models.first() {
                            Some(m) => m.id.clone(),
                            None => {
                                return Err(invalid(format!(
                                    "{} at {url} is running but serves no models; load or pull one, then run this again",
                                    probe.entry.name
                                )));
                            }
                        },
                    };
                    let found = format!(
                        "found {} at {url} ({} model(s))",
                        probe.entry.name,
                        models.len()
                    );
                    return Ok((probe.entry, chosen, found));
                }
                Err(_) => tried.push(format!("{url} ({})", probe.entry.name)),
            }
        }
        Err(invalid(format!(
            "no local model server answered; tried {}. Start one (e.g. 'ollama serve' or 'llama-server -m model.gguf'), or name a provider",
            tried.join(", ")
        )))
    }

    /// Moves session `name` to another provider (or changes its settings on the same one),
    /// keeping its history. A stored key or endpoint belongs to the provider it was given
    /// for: moving to another provider drops them unless new ones come along.
    pub fn switch(&self, name: &SessionName, to: SwitchTo) -> Result<Described> {
        let entry = self.config().provider_entry(&to.provider)?;
        let mut model = check_model(to.model.as_deref())?;
        let base_url = check_base_url(to.base_url.as_deref())?;
        let api_key = encrypt(to.api_key.as_ref(), || self.vault())?;
        // Moving to the in-process provider without a model means its default model.
        let moves_to_local = entry.kind == ProviderKind::Local
            && self.store().load_meta(name)?.provider != entry.name;
        if entry.kind == ProviderKind::Local && (model.is_some() || moves_to_local) {
            model = Some(self.local_session_model(model)?);
        }
        let meta = self.store().update(name, |meta| {
            let same_provider = meta.provider == entry.name;
            meta.provider = entry.name.clone();
            if let Some(m) = model {
                meta.model = m;
            }
            if base_url.is_some() || !same_provider {
                meta.base_url = base_url;
            }
            if api_key.is_some() || !same_provider {
                meta.api_key = api_key;
            }
            Ok(())
        })?;
        Ok(self.describe(meta, &entry))
    }

    fn describe(&self, meta: SessionMeta, entry: &ProviderEntry) -> Described {
        let (endpoint, locality) = session_endpoint(&meta, entry, self.paths());
        let key = key_source(&meta, entry);
        let missing_key_env = (key == KeySource::None && locality == Locality::Remote)
            .then(|| entry.key_env.clone())
            .flatten();
        Described {
            endpoint: redact_endpoint(&endpoint).into_owned(),
            locality,
            key,
            missing_key_env,
            found: None,
            meta,
        }
    }

    /// Where session `name` runs, what it uses, and what it has cost.
    pub fn status(&self, name: &SessionName) -> Result<SessionStatus> {
        let snap = self.store().snapshot(name)?;
        let usage = snap.usage();
        let meta = &snap.meta;
        let entry = self.config().provider_entry(&meta.provider)?;
        let (endpoint, locality) = session_endpoint(meta, &entry, self.paths());
        Ok(SessionStatus {
            active: self.store().active()?.as_ref() == Some(name),
            session: name.to_string(),
            provider: meta.provider.clone(),
            model: meta.model.clone(),
            locality,
            proxy: (entry.kind != ProviderKind::Local)
                .then(|| pai_providers::proxy_for(&endpoint, entry.proxy.as_deref()))
                .flatten()
                .map(|p| redact_endpoint(p).into_owned()),
            // A URL from before credentials in --base-url were refused, or from config.toml.
            endpoint: redact_endpoint(&endpoint).into_owned(),
            key: key_source(meta, &entry),
            messages: snap.history.len(),
            summarised_messages: meta.folded.min(snap.history.len()),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            tokens_estimated: usage.estimated,
            budget_tokens: meta.budget_tokens,
            cost_usd: self.history_cost(&snap, locality),
            created_at: meta.created_at.clone(),
            updated_at: meta.updated_at.clone(),
            // A policy.toml that does not load is reported by the commands that use it;
            // status stays readable.
            safe: meta.safe
                || pai_policy::RulePolicy::load(&self.paths().policy_file(), None)
                    .is_ok_and(|p| pai_policy::Policy::safe(&p)),
            constraints: meta.constraints.clone(),
            system: meta.system.clone(),
        })
    }

    /// What a session's stored answers cost, by the model that gave each.
    fn history_cost(&self, snap: &SessionSnapshot, locality: Locality) -> Option<f64> {
        let mut total = 0.0;
        for entry in &snap.history {
            let Some(usage) = &entry.usage else { continue };
            let model = entry.model.as_deref().unwrap_or(&snap.meta.model);
            total += cost(
                price_of(&self.config().prices, model, Some(locality))?,
                usage,
            );
        }
        Some(total)
    }

    /// Tokens and estimated cost from the audit log, by UTC day, session, provider and
    /// model, from day `since` (`YYYY-MM-DD`) on.
    pub fn usage(&self, since: Option<&str>) -> Result<Vec<UsageLine>> {
        let path = self.paths().audit_db();
        if !path.exists() {
            return Ok(Vec::new());
        }
        let rows = self.audit()?.usage(since)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let usage = Usage {
                    prompt_tokens: r.prompt_tokens,
                    completion_tokens: r.completion_tokens,
                    estimated: r.estimated,
                };
                UsageLine {
                    cost_usd: price_of(&self.config().prices, &r.model, r.locality)
                        .map(|p| cost(p, &usage)),
                    day: r.day,
                    session: r.session,
                    provider: r.provider,
                    model: r.model,
                    prompt_tokens: r.prompt_tokens,
                    completion_tokens: r.completion_tokens,
                    estimated: r.estimated,
                }
            })
            .collect())
    }

    /// The models a remote or server endpoint serves: `provider`'s own endpoint, else
    /// session `session`'s (with the model it uses).
    pub async fn endpoint_models(
        &self,
        provider: Option<&str>,
        session: Option<&SessionName>,
    ) -> Result<(Vec<ModelInfo>, Option<String>)> {
        let (meta, in_use) = match (provider, session) {
            (Some(provider), _) => {
                let entry = self.config().provider_entry(provider)?;
                (
                    SessionMeta::new(SessionName::new("models")?, &entry.name, ""),
                    None,
                )
            }
            (None, session) => {
                let name = self.store().resolve(session)?;
                let meta = self.store().load_meta(&name)?;
                let model = meta.model.clone();
                (meta, Some(model))
            }
        };
        let vault = || self.vault();
        let config = resolve_provider_with(&meta, self.config(), self.paths(), &vault)?.config;
        self.check_listing(&meta, &config.name, &config.base_url, config.locality)?;
        let mut template = AuditEvent::new(EventKind::Egress, "")
            .provider(config.name.clone())
            .endpoint(config.base_url.clone())
            .locality(config.locality);
        if in_use.is_some() {
            template = template.session(&meta.name);
        }
        let log = AttemptLog::new().on_sent(egress_recorder(
            self.egress_audit()?,
            template,
            serde_json::Value::Null,
            true,
        ));
        let models = pai_providers::connect(config)?.models_with(log).await?;
        Ok((models, in_use))
    }

    /// A listing is an outbound request like any other: safe mode keeps it local, a
    /// session's `deny <host>` refuses it. Refusals are recorded.
    fn check_listing(
        &self,
        meta: &SessionMeta,
        provider: &str,
        endpoint: &str,
        locality: pai_types::Locality,
    ) -> Result<()> {
        let mut policy = self.policy(meta, false, None)?;
        let names = pai_tools::builtin_tool_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        policy.add_constraints(&meta.constraints, &names)?;
        let host = crate::engine::host_of(endpoint);
        let verdict = pai_policy::Policy::check(
            &policy,
            &pai_policy::Subject::list(provider, &host, locality),
        );
        if matches!(
            verdict.decision,
            pai_policy::Decision::Allow | pai_policy::Decision::Redact
        ) {
            return Ok(());
        }
        let what = format!("listing the models of {provider} ({locality})");
        self.egress_audit()?.record(&AuditEvent::new(
            EventKind::Policy,
            format!(
                "{} by {}: {what}: {}",
                verdict.decision, verdict.rule, verdict.reason
            ),
        ))?;
        Err(CoreError::Refused {
            what,
            rule: verdict.rule,
            reason: verdict.reason,
        })
    }

    /// The audit log a listing's or a probe's requests are recorded in, opened before any
    /// is sent so that nothing leaves unrecorded.
    fn egress_audit(&self) -> Result<Arc<dyn AuditSink>> {
        Ok(self.audit()?)
    }
}
