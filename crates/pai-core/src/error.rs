use std::path::PathBuf;

use pai_types::NameError;

/// Everything pai-core can fail at; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The resource store failed or was asked for something it does not have.
    #[error(transparent)]
    Resources(#[from] pai_resources::ResourceError),
    /// A session name was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Input the user can correct; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// The key vault failed: no key, a wrong key, or a damaged entry.
    #[error("{0}")]
    Vault(String),
    /// No session by this name.
    #[error(
        "session '{0}' does not exist; create it with 'pai init {0} <provider> --model <model>'"
    )]
    NoSuchSession(String),
    /// Creating a session would replace one of the same name.
    #[error(
        "session '{0}' already exists; pass --force to replace it, or pick another name ('pai sessions' lists them)"
    )]
    SessionExists(String),
    /// A command needs a session and none is active.
    #[error(
        "no active session; create one with 'pai init <session> <provider> --model <model>' or pick one with 'pai use <session>'"
    )]
    NoActiveSession,
    /// A file PAI wrote no longer parses.
    #[error("{what} at {path} is corrupt ({detail}); fix or remove it")]
    Corrupt {
        /// What the file is, for the message ("session file").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What failed to parse.
        detail: String,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// The operation, as a verb for the message ("read", "create").
        action: &'static str,
        /// The file or directory it was on.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `config.toml` does not parse or holds a bad value.
    #[error("config file {path} is invalid: {detail}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// Which setting is wrong, and why.
        detail: String,
    },
    /// Neither a built-in provider nor one from `config.toml`.
    #[error(
        "unknown provider '{0}'; 'pai providers' lists the ones PAI knows, and any OpenAI-compatible server works with 'openai --base-url URL'"
    )]
    UnknownProvider(String),
    /// The user's input alone overflows the model's context window.
    #[error(
        "the input is about {tokens} tokens, more than model '{model}' can take ({window}); shorten it"
    )]
    InputTooLong {
        /// The input's estimated size.
        tokens: u64,
        /// The model's context window, in tokens.
        window: u64,
        /// The model.
        model: String,
    },
    /// The configured system prompt alone overflows the model's context window.
    #[error(
        "the system prompt is about {tokens} tokens, more than model '{model}' can take ({window}); shorten [context] system_prompt in config.toml or raise [context] context_window"
    )]
    SystemPromptTooLong {
        /// The system prompt's estimated size.
        tokens: u64,
        /// The model's context window, in tokens.
        window: u64,
        /// The model.
        model: String,
    },
    /// `PAI_HOME` is unset and the platform has no data directory.
    #[error(
        "PAI_HOME could not be determined on this platform; set PAI_HOME to a directory for PAI's data"
    )]
    NoHome,
    /// A budget was spent before the first request of the turn.
    #[error("nothing was sent: {0}; {hint}", hint = .0.hint())]
    BudgetExhausted(crate::StopReason),
    /// The planner of an agent run (`--planner`) gave no usable plan.
    #[error("{0}")]
    Planner(String),
    /// The session names a local model that is not in the model index.
    #[error("local model '{model}' is not installed; {hint}")]
    ModelNotInstalled {
        /// The model's name.
        model: String,
        /// How to install it.
        hint: String,
    },
    /// A file given to `pai models add` holds no usable model.
    #[error("{path} is not a model PAI can add: {detail}")]
    ModelArchive {
        /// The file given.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The policy refused a model call: nothing was sent.
    #[error(
        "nothing was sent: {what} is refused by policy rule '{rule}' ({reason}); 'pai policy explain' shows why, 'pai policy show' lists the rules"
    )]
    Refused {
        /// What was refused ("a call to openai (remote)").
        what: String,
        /// The rule that decided.
        rule: String,
        /// The rule's reason.
        reason: String,
    },
    /// `policy.toml` or a session constraint is malformed: nothing is sent.
    #[error("policy {0}")]
    Policy(#[from] pai_policy::PolicyError),
    /// The model endpoint failed.
    #[error(transparent)]
    Provider(#[from] pai_providers::ProviderError),
    /// A `--root` for the tools does not exist.
    #[error("tool root '{}' does not exist; create it or pass another --root", .0.display())]
    NoToolRoot(PathBuf),
    /// The tool registry could not be built (two tools share a name).
    #[error(transparent)]
    Tool(#[from] pai_tools::ToolError),
    /// A `--schema` answer did not match, even after one retry told what was wrong.
    #[error(
        "the answer does not match the schema, even when asked again ({0}); simplify the schema or try a stronger model"
    )]
    SchemaMismatch(String),
    /// The audit log failed before anything was sent.
    #[error("the audit log refused the record, so nothing was sent: {0}")]
    Audit(#[from] pai_audit::AuditError),
    /// The audit log failed after something already happened that cannot be taken back.
    #[error(
        "{done}, but the audit log could not record it ({source}); nothing was saved to the session — fix the audit log (free disk space?) before going on"
    )]
    Unrecorded {
        /// What happened before the record failed, e.g. "the request was sent and answered".
        done: &'static str,
        /// Why the record failed.
        source: pai_audit::AuditError,
    },
}

/// The result of every fallible pai-core operation.
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
