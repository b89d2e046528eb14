//! The engine of PAI. It owns sessions (stored under `PAI_HOME`, locked, appended, never
//! half-written), the key vault (API keys only ever at rest as Fernet tokens), the
//! configuration, the context manager (the one place that decides what a model sees),
//! and the [`Engine`] that runs one turn by composing a `Provider` and an `AuditSink`.
//! It never prints: everything a user sees leaves through [`Event`]s and errors.

mod approval;
mod attach;
mod audit;
mod config;
mod context;
mod detect;
mod engine;
mod error;
mod keys;
mod manage;
mod models;
mod netgate;
mod paths;
mod pricing;
mod resource_access;
mod roles;
mod schema;
mod session;
mod transcript;
mod vault;
mod workspace;

pub use approval::{Approval, ApprovalRequest, Approver, DenyAll};
pub use attach::{Attachment, MAX_ATTACHMENT};
pub use audit::{AUDIT_CHECK_WAIT, AuditCheck};
pub use config::{
    AuditSettings, BudgetSettings, Config, ContextSettings, CustomProvider, DetectSettings,
    LocalSettings, NetworkSettings, OtelSettings, ResourceSettings, RoleSettings, S3Settings,
    ToolSettings,
};
pub use context::{Context, ContextManager, model_window};
pub use detect::{Probe, probe_local_servers};
pub use engine::{
    Budget, Budgets, Cancel, DEFAULT_MAX_CALLS_PER_ROUND, DEFAULT_MAX_CHAIN, DryRun, Engine, Event,
    Limits, PartReport, Plan, StopReason, ToolOutcome, Turn, TurnEnd, TurnOutcome, UsageLedger,
    worker_input,
};
pub use error::{CoreError, Result};
pub use keys::{
    KeySource, ResolvedProvider, key_source, resolve_provider, resolve_provider_with,
    session_endpoint,
};
pub use manage::{Described, LOCAL_SERVER, NewSession, SessionStatus, SwitchTo, UsageLine};
pub use models::{Added, InstalledModel, ModelKind, ModelStore, looks_like_path, model_name};
pub use netgate::PolicyGate;
/// `text` with every secret and personal value the detectors find replaced by a
/// placeholder naming its kind (`⟨AWS_KEY⟩`): for text kept on disk outside the engine,
/// such as the chat REPL's line history.
pub fn mask_secrets(text: &str) -> String {
    replace_findings(text, |kind, _| format!("\u{27e8}{kind}\u{27e9}"))
}

/// `text` with every finding of the detectors replaced by what `with(kind, value)` gives.
pub(crate) fn replace_findings(
    text: &str,
    mut with: impl FnMut(&'static str, &str) -> String,
) -> String {
    let findings = pai_policy::detect::scan(text);
    if findings.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for f in findings {
        out.push_str(&text[last..f.start]);
        out.push_str(&with(f.kind, &text[f.start..f.end]));
        last = f.end;
    }
    out.push_str(&text[last..]);
    out
}

/// The policy crate, re-exported so an embedder needs no second dependency.
pub use pai_policy as policy;
pub use pai_policy::{Constraint, ConstraintKind, Decision};
/// The resources crate, re-exported so the CLI needs no second dependency.
pub use pai_resources as resources;
pub use paths::Paths;
pub use pricing::{Price, cost, price_of};
#[cfg(feature = "s3")]
pub use resource_access::s3_config;
pub use resource_access::{
    ResourceAccess, open_resources, open_resources_for, resolve_resources, resource_tools,
    resources_db,
};
pub use roles::{Ask, Instructions, RoleLine, fill_template};
pub use session::{HistoryEntry, SessionMeta, SessionSnapshot, SessionStore, SessionSummary};
pub use transcript::{SessionLine, TRANSCRIPT_FORMAT, Transcript};
pub use vault::Vault;
pub use workspace::{EngineOptions, VaultSource, Wired, Workspace};
