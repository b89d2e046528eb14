//! PAI's policy: what may leave the machine, which tool calls run, and what a model may
//! see — decided at four checkpoints (a prompt part, an egress, a tool call, a resource
//! read), each decision naming the rule that made it.
//!
//! The engine asks [`Policy::check`] with a [`Subject`] and gets a [`Verdict`]. The one
//! implementation here, [`RulePolicy`], reads ordered rules from `policy.toml` and the
//! session's constraints over built-in defaults (see docs/policy.md); another engine can be
//! plugged in behind the trait.
//!
//! ```
//! use pai_policy::{Decision, Policy, RulePolicy, Subject};
//! use pai_types::{DataClass, Locality, Origin};
//!
//! let policy = RulePolicy::parse(
//!     r#"
//!     [[rule]]
//!     id = "no-paste"
//!     decision = "deny"
//!     host = "*.pastebin.com"
//!     reason = "paste sites are where leaks go"
//!     examples = [{ host = "x.pastebin.com" }]
//!     "#,
//!     "policy.toml",
//! )
//! .unwrap();
//! let verdict = policy.check(&Subject::fetch("https://x.pastebin.com/raw/1", "x.pastebin.com", None));
//! assert_eq!(verdict.decision, Decision::Deny);
//! assert_eq!(verdict.rule, "no-paste");
//!
//! // Defaults: a secret never reaches a remote endpoint.
//! let part = Subject::part(&Origin::User, DataClass::Secret, Locality::Remote, "openai");
//! assert_eq!(policy.check(&part).decision, Decision::Redact);
//! ```

mod defaults;
pub mod detect;
mod glob;
pub mod inject;
mod rules;

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

pub use pai_types::{DataClass, Effect, Locality, Mode, Origin};
pub use rules::{
    Constraint, ConstraintKind, PolicyError, RulePolicy, RuleSummary, validate_constraint,
};

/// What a checkpoint does with a subject, ordered from least to most strict: when several
/// rules of one layer match, the strictest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Go ahead with the sensitive parts replaced (parts of a request only; elsewhere it
    /// counts as Deny).
    Redact,
    /// Only if the user says yes; refused when nobody can be asked.
    Ask,
    /// Refused.
    Deny,
}

impl Decision {
    /// The lowercase name used in rules and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Redact => "redact",
            Decision::Ask => "ask",
            Decision::Deny => "deny",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A decision and why: the rule's id (`default:…`, `safe:…`, `session:…` or an id from
/// `policy.toml`) and a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What to do.
    pub decision: Decision,
    /// The rule that decided.
    pub rule: String,
    /// Why, in one sentence.
    pub reason: String,
}

impl Verdict {
    /// Whether anything other than a plain allow came out (worth an audit row).
    pub fn is_trivial(&self) -> bool {
        self.decision == Decision::Allow && self.rule.starts_with("default:")
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} by rule {}: {}",
            self.decision, self.rule, self.reason
        )
    }
}

/// Which checkpoint a subject comes from; a rule can name one with `on = "…"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// A call to a model endpoint (the fold included).
    Send,
    /// One part of a request about to leave for a model endpoint.
    Part,
    /// A tool call the model asked for.
    Tool,
    /// One outbound hop of a network tool (every redirect too).
    Fetch,
    /// Starting a process (an MCP server).
    Spawn,
    /// Asking an endpoint for its models, or probing for local servers.
    List,
    /// Reading a stored resource into a context.
    Read,
}

impl Action {
    /// Every action, in rule-file order.
    pub const ALL: [Action; 7] = [
        Action::Send,
        Action::Part,
        Action::Tool,
        Action::Fetch,
        Action::Spawn,
        Action::List,
        Action::Read,
    ];

    /// The lowercase name used in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Part => "part",
            Action::Tool => "tool",
            Action::Fetch => "fetch",
            Action::Spawn => "spawn",
            Action::List => "list",
            Action::Read => "read",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a checkpoint asks about. Every field but `action` is optional: a rule that names
/// a field matches only subjects that have it and whose value matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    /// The checkpoint.
    pub action: Action,
    /// The mode the turn runs in.
    pub mode: Option<Mode>,
    /// The tool's name (tool calls; `http_get` for its hops).
    pub tool: Option<&'a str>,
    /// What the tool may do.
    pub effects: BTreeSet<Effect>,
    /// The provider a request goes to.
    pub provider: Option<&'a str>,
    /// The host a request goes to (no port).
    pub host: Option<&'a str>,
    /// The port, when known.
    pub port: Option<u16>,
    /// The full URL.
    pub url: Option<&'a str>,
    /// Why the address is not public (`loopback`, `private`, …); `None` for public ones.
    pub special: Option<&'a str>,
    /// A file the subject touches, absolute.
    pub path: Option<&'a Path>,
    /// Where the target runs.
    pub locality: Option<Locality>,
    /// The highest class of the data involved.
    pub class: Option<DataClass>,
    /// Where the data came from.
    pub origin: Option<&'a Origin>,
    /// The program a spawn runs.
    pub command: Option<&'a str>,
    /// Untrusted content (tool output, fetched pages) or secret data is already in the
    /// turn's context.
    pub tainted: bool,
}

impl<'a> Subject<'a> {
    /// A subject of `action` with nothing else known yet.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            mode: None,
            tool: None,
            effects: BTreeSet::new(),
            provider: None,
            host: None,
            port: None,
            url: None,
            special: None,
            path: None,
            locality: None,
            class: None,
            origin: None,
            command: None,
            tainted: false,
        }
    }

    /// A model call to `provider` at `host`, which runs `locality`, carrying data of at most
    /// `class`.
    pub fn send(provider: &'a str, host: &'a str, locality: Locality, class: DataClass) -> Self {
        Self {
            provider: Some(provider),
            host: Some(host),
            locality: Some(locality),
            class: Some(class),
            ..Self::new(Action::Send)
        }
    }

    /// One part of a request, from `origin`, of class `class`, about to go to `provider`.
    pub fn part(
        origin: &'a Origin,
        class: DataClass,
        locality: Locality,
        provider: &'a str,
    ) -> Self {
        Self {
            origin: Some(origin),
            class: Some(class),
            locality: Some(locality),
            provider: Some(provider),
            ..Self::new(Action::Part)
        }
    }

    /// A call of `tool`, which may have `effects`, in `mode`.
    pub fn tool(tool: &'a str, effects: impl IntoIterator<Item = Effect>, mode: Mode) -> Self {
        Self {
            tool: Some(tool),
            effects: effects.into_iter().collect(),
            mode: Some(mode),
            ..Self::new(Action::Tool)
        }
    }

    /// A network hop to `url` at `host`; `special` says why its address is not public.
    pub fn fetch(url: &'a str, host: &'a str, special: Option<&'a str>) -> Self {
        Self {
            url: Some(url),
            host: Some(host),
            special,
            effects: [Effect::Network].into(),
            ..Self::new(Action::Fetch)
        }
    }

    /// Starting `command` for the MCP server `server`.
    pub fn spawn(server: &'a str, command: &'a str) -> Self {
        Self {
            tool: Some(server),
            command: Some(command),
            effects: [Effect::Exec].into(),
            ..Self::new(Action::Spawn)
        }
    }

    /// A model listing or probe of `provider` at `host`.
    pub fn list(provider: &'a str, host: &'a str, locality: Locality) -> Self {
        Self {
            provider: Some(provider),
            host: Some(host),
            locality: Some(locality),
            ..Self::new(Action::List)
        }
    }

    /// This subject with `path` set.
    pub fn with_path(mut self, path: &'a Path) -> Self {
        self.path = Some(path);
        self
    }

    /// This subject with `host` (and the port, if known) set.
    pub fn with_host(mut self, host: &'a str, port: Option<u16>) -> Self {
        self.host = Some(host);
        self.port = port;
        self
    }

    /// This subject with its URL set.
    pub fn with_url(mut self, url: &'a str) -> Self {
        self.url = Some(url);
        self
    }

    /// This subject with the mode set.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// This subject marked as tainted (or not).
    pub fn tainted(mut self, tainted: bool) -> Self {
        self.tainted = tainted;
        self
    }
}

/// A file's class and the rule that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The class.
    pub class: DataClass,
    /// `default:…` or the `policy.toml` rule.
    pub rule: String,
}

/// Decides. Implementations are cheap to call (the engine asks once per part, call and
/// hop) and never do I/O.
pub trait Policy: Send + Sync + fmt::Debug {
    /// The verdict on `subject`.
    fn check(&self, subject: &Subject<'_>) -> Verdict;
    /// The class of a file's content, from path rules.
    fn classify_path(&self, path: &Path) -> Classified;
    /// Whether safe mode is on: local endpoints only, read tools only, no network, no MCP.
    fn safe(&self) -> bool;
}
