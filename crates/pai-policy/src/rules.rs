//! The rule engine: ordered rules in layers (safe mode, then the user's `policy.toml` and
//! session constraints, then built-in defaults). The first layer with a matching rule
//! decides; within it the strictest decision wins (deny > ask > redact > allow). Guards
//! sit beside the layers as floors: a matching guard applies when it is stricter. Every
//! rule may carry examples that must (and must not) match, checked when the file loads.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use pai_types::{DataClass, Effect, Locality, Mode, Origin};
use serde::{Deserialize, Serialize};

use crate::glob::{HostPattern, PathPattern};
use crate::{Action, Classified, Decision, Policy, Subject, Verdict, defaults};

/// Why a policy could not be loaded: one line, naming the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}{}: {message}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyError {
    /// The file (or `session constraints`).
    pub source_name: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

/// Allow or deny, for a session constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConstraintKind {
    /// `pai <session> allow …`
    Allow,
    /// `pai <session> deny …`
    Deny,
}

/// One `pai <session> allow|deny <tool|host|path>`, as stored in the session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Constraint {
    /// Allow or deny.
    pub kind: ConstraintKind,
    /// A tool name, a host pattern or a path pattern, as typed.
    pub target: String,
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ConstraintKind::Allow => "allow",
            ConstraintKind::Deny => "deny",
        };
        write!(f, "{kind} {}", self.target)
    }
}

/// A rule as `pai policy show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSummary {
    /// The rule's id.
    pub id: String,
    /// Where it came from: `safe mode`, `policy.toml:12`, `session`, `built-in`.
    pub source: String,
    /// The checkpoints it applies to.
    pub on: Vec<String>,
    /// What it decides.
    pub decision: String,
    /// Its conditions, as `field = value` pairs.
    pub when: Vec<String>,
    /// Why.
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    #[serde(default)]
    policy: SectionDef,
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleDef>>,
    #[serde(default)]
    classify: Vec<toml::Spanned<ClassifyDef>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SectionDef {
    #[serde(default)]
    safe: bool,
}

/// The conditions a rule or an example can name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    on: Option<OneOrMany>,
    tool: Option<String>,
    host: Option<String>,
    url: Option<String>,
    path: Option<String>,
    class: Option<String>,
    locality: Option<String>,
    effect: Option<String>,
    mode: Option<String>,
    origin: Option<String>,
    provider: Option<String>,
    special: Option<String>,
    command: Option<String>,
    tainted: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: Option<String>,
    decision: String,
    reason: Option<String>,
    #[serde(flatten)]
    fields: Fields,
    #[serde(default)]
    examples: Vec<Fields>,
    #[serde(default)]
    counter_examples: Vec<Fields>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyDef {
    id: Option<String>,
    path: String,
    class: String,
}

/// The conditions of one rule, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher {
    pub(crate) on: Vec<Action>,
    pub(crate) tool: Option<String>,
    pub(crate) host: Option<HostPattern>,
    pub(crate) url: Option<String>,
    pub(crate) path: Option<PathPattern>,
    pub(crate) class: Option<DataClass>,
    pub(crate) locality: Option<Locality>,
    pub(crate) effect: Option<Effect>,
    pub(crate) mode: Option<Mode>,
    pub(crate) origin: Option<String>,
    pub(crate) provider: Option<String>,
    /// `Some("*")` matches any non-public address.
    pub(crate) special: Option<String>,
    pub(crate) command: Option<String>,
    pub(crate) tainted: Option<bool>,
}

/// One rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) decision: Decision,
    pub(crate) reason: String,
    pub(crate) when: Matcher,
}

#[derive(Debug, Clone)]
pub(crate) struct ClassRule {
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) path: PathPattern,
    pub(crate) class: DataClass,
}

static DEFAULT_CLASSES: OnceLock<Vec<ClassRule>> = OnceLock::new();

/// The built-in [`Policy`]: `policy.toml`, session constraints and safe mode over the
/// defaults. Cheap to check: a few dozen rules, matched in order.
#[derive(Debug, Clone)]
pub struct RulePolicy {
    safe: bool,
    /// Floors no rule lowers: their decision applies when it is stricter than the layers'.
    guards: Vec<Rule>,
    safe_rules: Vec<Rule>,
    user: Vec<Rule>,
    defaults: Vec<Rule>,
    classify_user: Vec<ClassRule>,
    /// The built-in file classes, compiled on first use and shared by every policy of
    /// the process: two dozen globs cost milliseconds, and most commands never classify a
    /// file.
    classify_defaults: &'static OnceLock<Vec<ClassRule>>,
    home: Option<PathBuf>,
}

impl Default for RulePolicy {
    fn default() -> Self {
        Self {
            safe: false,
            guards: defaults::guard_rules(),
            safe_rules: Vec::new(),
            user: Vec::new(),
            defaults: defaults::rules(),
            classify_user: Vec::new(),
            classify_defaults: &DEFAULT_CLASSES,
            home: None,
        }
    }
}

impl RulePolicy {
    /// The built-in defaults only: today's mode behaviour, secrets kept from remote
    /// endpoints, personal data redacted for them, no private addresses for tools.
    pub fn defaults() -> Self {
        Self::default()
    }

    /// Rules from `text` (the content of `source_name`, used in errors), over the defaults.
    /// `~/` in path patterns cannot be used; see [`RulePolicy::parse_with_home`].
    pub fn parse(text: &str, source_name: &str) -> Result<Self, PolicyError> {
        Self::parse_with_home(text, source_name, None)
    }

    /// Rules from `text`, expanding `~/` in path patterns to `home`.
    pub fn parse_with_home(
        text: &str,
        source_name: &str,
        home: Option<&Path>,
    ) -> Result<Self, PolicyError> {
        let error = |line: Option<usize>, message: String| PolicyError {
            source_name: source_name.to_string(),
            line,
            message,
        };
        let file: FileDef = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            error(line, e.message().trim().to_string())
        })?;
        let mut policy = Self {
            home: home.map(Path::to_path_buf),
            ..Self::default()
        };
        for spanned in &file.rule {
            let line = line_of(text, spanned.span().start);
            let source = format!("{source_name}:{line}");
            let rule =
                compile_rule(spanned.get_ref(), &source, home).map_err(|m| error(Some(line), m))?;
            policy.user.push(rule);
        }
        for spanned in &file.classify {
            let line = line_of(text, spanned.span().start);
            let def = spanned.get_ref();
            let class =
                DataClass::from_str(&def.class).map_err(|e| error(Some(line), e.to_string()))?;
            let path = PathPattern::parse(&def.path, home).map_err(|m| error(Some(line), m))?;
            policy.classify_user.push(ClassRule {
                id: def.id.clone().unwrap_or_else(|| format!("classify:{line}")),
                source: format!("{source_name}:{line}"),
                path,
                class,
            });
        }
        policy.set_safe(file.policy.safe);
        Ok(policy)
    }

    /// Reads `path`; a missing file is the defaults, not an error.
    pub fn load(path: &Path, home: Option<&Path>) -> Result<Self, PolicyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_with_home(&text, &path.display().to_string(), home),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                home: home.map(Path::to_path_buf),
                ..Self::default()
            }),
            Err(e) => Err(PolicyError {
                source_name: path.display().to_string(),
                line: None,
                message: format!("cannot read it ({e})"),
            }),
        }
    }

    /// Turns safe mode on or off (from `--safe`, `policy.toml` or the session).
    pub fn set_safe(&mut self, safe: bool) {
        self.safe = safe;
        self.safe_rules = if safe {
            defaults::safe_rules()
        } else {
            Vec::new()
        };
    }

    /// Adds a session's constraints as rules. `tools` are the names of the tools that
    /// exist, to tell a tool from a host.
    pub fn add_constraints(
        &mut self,
        constraints: &[Constraint],
        tools: &[&str],
    ) -> Result<(), PolicyError> {
        for c in constraints {
            let rule =
                constraint_rule(c, tools, self.home.as_deref()).map_err(|message| PolicyError {
                    source_name: "session constraints".into(),
                    line: None,
                    message,
                })?;
            self.user.push(rule);
        }
        Ok(())
    }

    /// Checks that every tool a rule names exists; an unknown name is an error, not a rule
    /// that silently never matches.
    pub fn check_tools(&self, tools: &[&str]) -> Result<(), PolicyError> {
        for rule in &self.user {
            if let Some(pattern) = &rule.when.tool
                && rule.when.on.contains(&Action::Tool)
                && !tools.iter().any(|t| tool_matches(pattern, t))
            {
                return Err(PolicyError {
                    source_name: rule.source.clone(),
                    line: None,
                    message: format!(
                        "rule '{}' names tool '{pattern}', which does not exist (tools: {})",
                        rule.id,
                        tools.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// Every rule in the order it is consulted, with where it came from.
    pub fn rules(&self) -> Vec<RuleSummary> {
        self.layers()
            .into_iter()
            .flatten()
            .map(summary)
            .chain(
                self.classify_user
                    .iter()
                    .chain(self.default_classes())
                    .map(|c| RuleSummary {
                        id: c.id.clone(),
                        source: c.source.clone(),
                        on: vec!["classify".into()],
                        decision: c.class.to_string(),
                        when: vec![format!("path = {}", c.path.text())],
                        reason: format!("files matching it are {} data", c.class),
                    }),
            )
            .collect()
    }

    /// The rules that match `subject`, in consultation order: what `pai policy explain`
    /// shows next to the verdict.
    pub fn matching(&self, subject: &Subject<'_>) -> Vec<RuleSummary> {
        self.layers()
            .into_iter()
            .flatten()
            .filter(|r| matches(&r.when, subject))
            .map(summary)
            .collect()
    }

    fn default_classes(&self) -> &'static [ClassRule] {
        self.classify_defaults.get_or_init(defaults::classify)
    }

    fn layers(&self) -> [&[Rule]; 4] {
        [&self.guards, &self.safe_rules, &self.user, &self.defaults]
    }
}

impl Policy for RulePolicy {
    fn check(&self, subject: &Subject<'_>) -> Verdict {
        let decided = [&self.safe_rules, &self.user, &self.defaults]
            .into_iter()
            .find_map(|layer| strictest(layer, subject));
        // A guard is a floor: it applies when it is stricter than what the layers decided
        // (a tainted write in prompt mode stays denied, not merely asked about).
        let guard = strictest(&self.guards, subject);
        let rule = match (decided, guard) {
            (Some(d), Some(g)) if g.decision > d.decision => Some(g),
            (None, Some(g)) if g.decision > Decision::Allow => Some(g),
            (d, _) => d,
        };
        match rule {
            Some(rule) => Verdict {
                decision: rule.decision,
                rule: rule.id.clone(),
                reason: rule.reason.clone(),
            },
            None => Verdict {
                decision: Decision::Allow,
                rule: "default:allow".into(),
                reason: "no rule applies".into(),
            },
        }
    }

    fn classify_path(&self, path: &Path) -> Classified {
        self.classify_user
            .iter()
            .chain(self.default_classes())
            .find(|c| c.path.matches(path))
            .map(|c| Classified {
                class: c.class,
                rule: c.id.clone(),
            })
            .unwrap_or(Classified {
                class: DataClass::Internal,
                rule: "default:files-are-internal".into(),
            })
    }

    fn safe(&self) -> bool {
        self.safe
    }
}

/// The strictest rule of `rules` that matches `subject`; the first of equals.
fn strictest<'r>(rules: &'r [Rule], subject: &Subject<'_>) -> Option<&'r Rule> {
    let mut best: Option<&Rule> = None;
    for rule in rules.iter().filter(|r| matches(&r.when, subject)) {
        if best.is_none_or(|b| rule.decision > b.decision) {
            best = Some(rule);
        }
    }
    best
}

fn summary(rule: &Rule) -> RuleSummary {
    let m = &rule.when;
    let mut when = Vec::new();
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            when.push(format!("{k} = {v}"));
        }
    };
    push("tool", m.tool.clone());
    push("host", m.host.as_ref().map(|h| h.text().to_string()));
    push("url", m.url.clone());
    push("path", m.path.as_ref().map(|p| p.text().to_string()));
    push("class", m.class.map(|c| format!("{c} or higher")));
    push("locality", m.locality.map(|l| l.to_string()));
    push("effect", m.effect.map(|e| e.to_string()));
    push("mode", m.mode.map(|e| e.to_string()));
    push("origin", m.origin.clone());
    push("provider", m.provider.clone());
    push("special", m.special.clone());
    push("command", m.command.clone());
    push("tainted", m.tainted.map(|t| t.to_string()));
    RuleSummary {
        id: rule.id.clone(),
        source: rule.source.clone(),
        on: m.on.iter().map(|a| a.to_string()).collect(),
        decision: rule.decision.to_string(),
        when,
        reason: rule.reason.clone(),
    }
}

/// Whether every condition `m` names holds for `s`.
pub(crate) fn matches(m: &Matcher, s: &Subject<'_>) -> bool {
    fn opt<T, U: ?Sized>(want: &Option<T>, have: Option<&U>, f: impl Fn(&T, &U) -> bool) -> bool {
        match want {
            None => true,
            Some(w) => have.is_some_and(|h| f(w, h)),
        }
    }
    m.on.contains(&s.action)
        && opt(&m.tool, s.tool, |w, h| tool_matches(w, h))
        && opt(&m.host, s.host, |w, h| w.matches(h, s.port))
        && opt(&m.url, s.url, |w, h| h.starts_with(w.as_str()))
        && opt(&m.path, s.path, |w, h| w.matches(h))
        && opt(&m.class, s.class.as_ref(), |w, h| h >= w)
        && opt(&m.locality, s.locality.as_ref(), |w, h| w == h)
        && opt(&m.effect, Some(&s.effects), |w, h| h.contains(w))
        && opt(&m.mode, s.mode.as_ref(), |w, h| w == h)
        && opt(&m.origin, s.origin, |w, h| origin_name(h) == w)
        && opt(&m.provider, s.provider, |w, h| w == h)
        && opt(&m.special, s.special, |w, h| w == "*" || w == h)
        && opt(&m.command, s.command, |w, h| w == h)
        && opt(&m.tainted, Some(&s.tainted), |w, h| w == h)
}

/// An exact tool name, or a prefix ending in `*` (`mcp_files_*`).
fn tool_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

pub(crate) fn origin_name(origin: &Origin) -> &'static str {
    match origin {
        Origin::System => "system",
        Origin::User => "user",
        Origin::Summary => "summary",
        Origin::History => "history",
        Origin::Answer => "answer",
        Origin::ToolResult { .. } => "tool_result",
        Origin::Resource { .. } => "resource",
        Origin::File { .. } => "file",
    }
}

const ORIGINS: [&str; 8] = [
    "system",
    "user",
    "summary",
    "history",
    "answer",
    "tool_result",
    "resource",
    "file",
];

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn parse_decision(s: &str) -> Result<Decision, String> {
    Ok(match s {
        "allow" => Decision::Allow,
        "redact" => Decision::Redact,
        "ask" => Decision::Ask,
        "deny" => Decision::Deny,
        other => {
            return Err(format!(
                "decision '{other}' is not one of allow, redact, ask, deny"
            ));
        }
    })
}

fn parse_action(s: &str) -> Result<Action, String> {
    Action::ALL
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| {
            format!(
                "on = '{s}' is not a checkpoint; use one of {}",
                Action::ALL.map(|a| a.as_str()).join(", ")
            )
        })
}

/// Compiles the conditions; `on` is inferred from them when not given.
fn compile_fields(f: &Fields, home: Option<&Path>) -> Result<Matcher, String> {
    let mut m = Matcher {
        tool: f.tool.clone(),
        host: f.host.as_deref().map(HostPattern::parse).transpose()?,
        url: f.url.clone(),
        path: f
            .path
            .as_deref()
            .map(|p| PathPattern::parse(p, home))
            .transpose()?,
        class: f
            .class
            .as_deref()
            .map(|c| DataClass::from_str(c).map_err(|e| e.to_string()))
            .transpose()?,
        locality: f
            .locality
            .as_deref()
            .map(|l| match l {
                "local" => Ok(Locality::Local),
                "remote" => Ok(Locality::Remote),
                other => Err(format!("locality '{other}' is not local or remote")),
            })
            .transpose()?,
        effect: f
            .effect
            .as_deref()
            .map(|e| match e {
                "read" => Ok(Effect::Read),
                "write" => Ok(Effect::Write),
                "network" => Ok(Effect::Network),
                "exec" => Ok(Effect::Exec),
                other => Err(format!(
                    "effect '{other}' is not one of read, write, network, exec"
                )),
            })
            .transpose()?,
        mode: f
            .mode
            .as_deref()
            .map(|m| match m {
                "chat" => Ok(Mode::Chat),
                "prompt" => Ok(Mode::Prompt),
                "agent" => Ok(Mode::Agent),
                other => Err(format!("mode '{other}' is not one of chat, prompt, agent")),
            })
            .transpose()?,
        origin: f.origin.clone(),
        provider: f.provider.clone(),
        special: f.special.clone(),
        command: f.command.clone(),
        tainted: f.tainted,
        on: Vec::new(),
    };
    if let Some(o) = &m.origin
        && !ORIGINS.contains(&o.as_str())
    {
        return Err(format!("origin '{o}' is not one of {}", ORIGINS.join(", ")));
    }
    if let Some(u) = &m.url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(format!(
            "url '{u}' must start with http:// or https:// (it matches URLs by prefix)"
        ));
    }
    m.on = match &f.on {
        Some(OneOrMany::One(a)) => vec![parse_action(a)?],
        Some(OneOrMany::Many(list)) => list
            .iter()
            .map(|a| parse_action(a))
            .collect::<Result<_, _>>()?,
        None => infer_on(&m)?,
    };
    Ok(m)
}

/// The checkpoints a rule without `on` applies to, from what it names.
fn infer_on(m: &Matcher) -> Result<Vec<Action>, String> {
    let mut on = Vec::new();
    if m.class.is_some() || m.origin.is_some() {
        on.push(Action::Part);
    }
    if m.tool.is_some() || m.effect.is_some() || m.path.is_some() {
        on.push(Action::Tool);
    }
    if m.host.is_some() || m.url.is_some() || m.special.is_some() {
        on.extend([Action::Fetch, Action::Tool]);
    }
    if m.command.is_some() {
        on.push(Action::Spawn);
    }
    on.sort();
    on.dedup();
    if on.is_empty() {
        return Err(
            "the rule names no condition; say what it applies to (tool, host, url, path, class, …) or which checkpoint with on = \"…\""
                .into(),
        );
    }
    Ok(on)
}

fn compile_rule(def: &RuleDef, source: &str, home: Option<&Path>) -> Result<Rule, String> {
    let decision = parse_decision(&def.decision)?;
    let when = compile_fields(&def.fields, home)?;
    let id = def.id.clone().unwrap_or_else(|| source.to_string());
    if ["default:", "safe:", "session:", "guard:"]
        .iter()
        .any(|p| id.starts_with(p))
    {
        return Err(format!(
            "rule id '{id}' uses a reserved prefix (default:, guard:, safe:, session:)"
        ));
    }
    for (i, ex) in def.examples.iter().enumerate() {
        if !example_matches(&when, ex, home)? {
            return Err(format!(
                "rule '{id}': example {} does not match the rule; fix the rule or the example",
                i + 1
            ));
        }
    }
    for (i, ex) in def.counter_examples.iter().enumerate() {
        if example_matches(&when, ex, home)? {
            return Err(format!(
                "rule '{id}': counter-example {} matches the rule; fix the rule or the example",
                i + 1
            ));
        }
    }
    Ok(Rule {
        id,
        source: source.to_string(),
        decision,
        reason: def
            .reason
            .clone()
            .unwrap_or_else(|| format!("{} by your policy.toml", def.decision)),
        when,
    })
}

/// Whether the rule matches the subject an example describes. The example's checkpoint
/// is its `on`, or the rule's first one.
fn example_matches(rule: &Matcher, ex: &Fields, home: Option<&Path>) -> Result<bool, String> {
    let action = match &ex.on {
        Some(OneOrMany::One(a)) => parse_action(a)?,
        Some(OneOrMany::Many(_)) => return Err("an example has one `on`, not a list".into()),
        None => rule.on.first().copied().unwrap_or(Action::Tool),
    };
    let facts = compile_fields(
        &Fields {
            on: Some(OneOrMany::One(action.as_str().into())),
            ..ex.clone()
        },
        home,
    )?;
    let (host, port) = match &ex.host {
        Some(h) => {
            let (h, p) = split_host_port(h);
            (Some(h), p)
        }
        None => (None, None),
    };
    let path = match &ex.path {
        Some(p) => Some(expand(p, home)?),
        None => None,
    };
    let origin = ex.origin.as_deref().map(|o| match o {
        "system" => Origin::System,
        "summary" => Origin::Summary,
        "history" => Origin::History,
        "answer" => Origin::Answer,
        "tool_result" => Origin::ToolResult {
            tool: String::new(),
        },
        "resource" => Origin::Resource { id: String::new() },
        "file" => Origin::File {
            path: String::new(),
        },
        _ => Origin::User,
    });
    let mut s = Subject::new(action);
    s.tool = ex.tool.as_deref();
    s.host = host.as_deref();
    s.port = port;
    s.url = ex.url.as_deref();
    s.path = path.as_deref();
    s.class = facts.class;
    s.locality = facts.locality;
    s.effects = facts.effect.into_iter().collect();
    s.mode = facts.mode;
    s.origin = origin.as_ref();
    s.provider = ex.provider.as_deref();
    s.special = ex.special.as_deref();
    s.command = ex.command.as_deref();
    s.tainted = ex.tainted.unwrap_or(false);
    Ok(matches(rule, &s))
}

fn split_host_port(h: &str) -> (String, Option<u16>) {
    if let Some((host, port)) = h.rsplit_once(':')
        && !host.contains(':')
        && let Ok(port) = port.parse()
    {
        return (host.to_string(), Some(port));
    }
    (h.to_string(), None)
}

fn expand(p: &str, home: Option<&Path>) -> Result<PathBuf, String> {
    match p.strip_prefix("~/") {
        Some(rest) => home
            .map(|h| h.join(rest))
            .ok_or_else(|| format!("'{p}' starts with ~ but there is no home directory")),
        None => Ok(PathBuf::from(p)),
    }
}

/// A session constraint as a rule: a known tool name, else a path (has a `/` or starts
/// with `~` or `.`), else a host pattern.
fn constraint_rule(c: &Constraint, tools: &[&str], home: Option<&Path>) -> Result<Rule, String> {
    let target = c.target.trim();
    let decision = match c.kind {
        ConstraintKind::Allow => Decision::Allow,
        ConstraintKind::Deny => Decision::Deny,
    };
    let mut when = Matcher::default();
    let what;
    if tools.iter().any(|t| tool_matches(target, t)) {
        when.tool = Some(target.to_string());
        when.on = vec![Action::Tool];
        what = "tool";
    } else if target.contains('/') || target.starts_with('~') || target.starts_with('.') {
        when.path = Some(PathPattern::parse(target, home)?);
        when.on = vec![Action::Tool];
        what = "path";
    } else {
        when.host = Some(
            HostPattern::parse(target)
                .map_err(|e| format!("{e}; or name a tool ({})", tools.join(", ")))?,
        );
        when.on = vec![Action::Fetch, Action::Tool, Action::Send, Action::List];
        what = "host";
    }
    Ok(Rule {
        id: format!("session:{c}"),
        source: "session".into(),
        decision,
        reason: format!(
            "this session's constraint: {} {what} {target}",
            match c.kind {
                ConstraintKind::Allow => "allow",
                ConstraintKind::Deny => "deny",
            }
        ),
        when,
    })
}

/// Checks a constraint before it is stored: the same parse the policy does at load.
pub fn validate_constraint(c: &Constraint, tools: &[&str]) -> Result<(), String> {
    constraint_rule(c, tools, None).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let text = "[[rule]]\ndecision = \"allow\"\nhost = \"a.com\"\n\n[[rule]]\ndecision = \"maybe\"\ntool = \"x\"\n";
        let err = RulePolicy::parse(text, "policy.toml").unwrap_err();
        assert_eq!(err.line, Some(5));
        assert!(
            err.to_string()
                .starts_with("policy.toml:5: decision 'maybe'"),
            "{err}"
        );
        let err = RulePolicy::parse("[[rule]]\ndecision = \"deny\"\nclas = \"secret\"\n", "p")
            .unwrap_err();
        assert!(err.to_string().contains("clas"), "{err}");
        let err =
            RulePolicy::parse("[[rule]]\ndecision = \"deny\"\nclass = \"top\"\n", "p").unwrap_err();
        assert!(
            err.to_string().contains("'top' is not a data class"),
            "{err}"
        );
    }
}
