use std::path::PathBuf;

use pai_types::NameError;

/// Everything pai-core can fail at; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Name(#[from] NameError),
    /// Input the user can correct; the message says how.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Vault(String),
    #[error(
        "session '{0}' does not exist; create it with 'pai init {0} <provider> --model <model>'"
    )]
    NoSuchSession(String),
    #[error(
        "session '{0}' already exists; pass --force to replace it, or pick another name ('pai sessions' lists them)"
    )]
    SessionExists(String),
    #[error(
        "no active session; create one with 'pai init <session> <provider> --model <model>' or pick one with 'pai use <session>'"
    )]
    NoActiveSession,
    #[error("{what} at {path} is corrupt ({detail}); fix or remove it")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error(
        "unknown provider '{0}'; 'pai providers' lists the ones PAI knows, and any OpenAI-compatible server works with 'openai --base-url URL'"
    )]
    UnknownProvider(String),
    #[error(
        "the input is about {tokens} tokens, more than model '{model}' can take ({window}); shorten it"
    )]
    InputTooLong {
        tokens: u64,
        window: u64,
        model: String,
    },
    #[error(
        "the system prompt is about {tokens} tokens, more than model '{model}' can take ({window}); shorten [context] system_prompt in config.toml or raise [context] context_window"
    )]
    SystemPromptTooLong {
        tokens: u64,
        window: u64,
        model: String,
    },
    #[error(
        "PAI_HOME could not be determined on this platform; set PAI_HOME to a directory for PAI's data"
    )]
    NoHome,
    #[error("nothing was sent: {0}; {hint}", hint = .0.hint())]
    BudgetExhausted(crate::StopReason),
    #[error("local model '{model}' is not installed; {hint}")]
    ModelNotInstalled { model: String, hint: String },
    #[error("{path} is not a model PAI can add: {detail}")]
    ModelArchive { path: PathBuf, detail: String },
    #[error(transparent)]
    Provider(#[from] pai_providers::ProviderError),
    #[error("tool root '{}' does not exist; create it or pass another --root", .0.display())]
    NoToolRoot(PathBuf),
    #[error(transparent)]
    Tool(#[from] pai_tools::ToolError),
    #[error("the audit log refused the record, so nothing was sent: {0}")]
    Audit(#[from] pai_audit::AuditError),
    /// The audit log failed after something already happened that cannot be taken back.
    #[error(
        "{done}, but the audit log could not record it ({source}); nothing was saved to the session — fix the audit log (free disk space?) before going on"
    )]
    Unrecorded {
        /// What happened before the record failed, e.g. "the request was sent and answered".
        done: &'static str,
        source: pai_audit::AuditError,
    },
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> CoreError {
    let path = path.into();
    move |source| CoreError::Io {
        action,
        path,
        source,
    }
}
