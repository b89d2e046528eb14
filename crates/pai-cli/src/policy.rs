//! The policy's commands: session constraints (`allow`, `deny`, `constraints`), safe mode,
//! and `pai policy show|explain`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pai_core::policy::{Policy, RulePolicy, RuleSummary, Subject, Verdict};
use pai_core::{Constraint, ConstraintKind, SessionMeta};
use pai_types::Mode;

use crate::cli::{ConstraintArgs, ConstraintsArgs, PolicyAction, PolicyArgs, SafeArgs};
use crate::turn::Env;

/// `pai <session> allow|deny <target>`.
pub fn constrain(kind: ConstraintKind, args: ConstraintArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.as_deref())?;
    let constraint = Constraint {
        kind,
        target: args.target.trim().to_string(),
    };
    let names = pai_tools::builtin_tool_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    pai_core::policy::validate_constraint(&constraint, &names)
        .map_err(|e| anyhow::anyhow!("cannot {constraint}: {e}"))?;
    let mut replaced = false;
    env.store().update(&name, |meta| {
        // One constraint per target: the newest decides.
        let before = meta.constraints.len();
        meta.constraints.retain(|c| c.target != constraint.target);
        replaced = meta.constraints.len() != before;
        meta.constraints.push(constraint.clone());
        Ok(())
    })?;
    outln!(
        "session '{name}': {constraint}{}",
        if replaced {
            " (replaces the earlier constraint on it)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `pai <session> constraints [--clear] [--json]`.
pub fn constraints(args: ConstraintsArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.as_deref())?;
    if args.clear {
        env.store().update(&name, |meta| {
            meta.constraints.clear();
            Ok(())
        })?;
        outln!("session '{name}' has no constraints now");
        return Ok(ExitCode::SUCCESS);
    }
    let meta = env.store().load_meta(&name)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&meta.constraints)?);
    } else if meta.constraints.is_empty() {
        outln!(
            "session '{name}' has no constraints ('pai {name} allow|deny <tool|host|path>' adds one)"
        );
    } else {
        for c in &meta.constraints {
            outln!("{c}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pai <session> safe on|off`.
pub fn safe(args: SafeArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.as_deref())?;
    let on = args.state == "on";
    env.store().update(&name, |meta| {
        meta.safe = on;
        Ok(())
    })?;
    if on {
        outln!(
            "session '{name}' is in safe mode: local endpoints and read-only tools inside the roots only; no network tools, no MCP servers"
        );
    } else {
        outln!("session '{name}' is out of safe mode");
    }
    Ok(ExitCode::SUCCESS)
}

/// The policy a session's turns would run under (or the files' alone, with no session).
fn effective(env: &Env, session: Option<&str>) -> Result<(RulePolicy, Option<SessionMeta>)> {
    let meta = match env.session(session) {
        Ok(name) => Some(env.store().load_meta(&name)?),
        // No active session: the files and defaults alone.
        Err(pai_core::CoreError::NoActiveSession) if session.is_none() => None,
        Err(e) => return Err(e.into()),
    };
    let home = dirs::home_dir();
    let mut policy = match &meta {
        Some(meta) => env.policy(meta, false, home.as_deref())?,
        None => RulePolicy::load(&env.paths().policy_file(), home.as_deref())?,
    };
    let names = pai_tools::builtin_tool_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    policy.check_tools(&names)?;
    if let Some(meta) = &meta {
        policy.add_constraints(&meta.constraints, &names)?;
    }
    Ok((policy, meta))
}

pub fn policy(args: PolicyArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let (policy, meta) = effective(&env, args.session.as_deref())?;
    match args.action {
        PolicyAction::Show { json } => show(&env, &policy, meta.as_ref(), json),
        PolicyAction::Explain { target, mode } => {
            let mode = match mode.as_str() {
                "chat" => Mode::Chat,
                "agent" => Mode::Agent,
                _ => Mode::Prompt,
            };
            explain(&policy, &target, mode)
        }
    }
}

fn show(
    env: &Env,
    policy: &RulePolicy,
    meta: Option<&SessionMeta>,
    json: bool,
) -> Result<ExitCode> {
    let rules = policy.rules();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": env.paths().policy_file(),
                "session": meta.map(|m| m.name.as_str()),
                "safe": policy.safe(),
                "rules": rules,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let file = env.paths().policy_file();
    outln!(
        "policy file: {}{}",
        file.display(),
        if file.exists() {
            ""
        } else {
            " (none; built-in defaults only)"
        }
    );
    if let Some(meta) = meta {
        outln!("session: {}", meta.name);
    }
    outln!("safe mode: {}", if policy.safe() { "on" } else { "off" });
    outln!(
        "Rules, in the order they are consulted: the first layer with a matching rule decides (guards and safe mode, then policy.toml and session constraints, then built-in defaults); within a layer the strictest wins (deny > ask > redact > allow)."
    );
    let mut layer = String::new();
    for r in &rules {
        let source = layer_of(r);
        if source != layer {
            outln!("\n[{source}]");
            layer = source;
        }
        outln!("{}", rule_line(r));
    }
    Ok(ExitCode::SUCCESS)
}

fn layer_of(r: &RuleSummary) -> String {
    if r.on == ["classify"] {
        "file classes".into()
    } else if r.id.starts_with("guard:") {
        "guards (no rule loosens them; --allow answers their question up front)".into()
    } else if r.id.starts_with("safe:") {
        "safe mode".into()
    } else if r.source == "built-in" {
        "built-in defaults".into()
    } else {
        "your rules".into()
    }
}

fn rule_line(r: &RuleSummary) -> String {
    let source = if r.source == "built-in" || r.source.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.source)
    };
    format!(
        "  {:<6} {}{source}: on {} when {} — {}",
        r.decision,
        r.id,
        r.on.join("/"),
        if r.when.is_empty() {
            "always".to_string()
        } else {
            r.when.join(", ")
        },
        r.reason
    )
}

/// Why an address is not public, from its literal (names other than `localhost` are
/// resolved only when a tool really connects; the tool checks every address it gets).
fn special_of(host: &str) -> Option<&'static str> {
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Some("loopback");
    }
    let ip: IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
    pai_tools::classify_addr(ip)
}

fn verdict_line(what: &str, v: &Verdict) -> String {
    format!("{what}: {} — rule {}: {}", v.decision, v.rule, v.reason)
}

fn explain(policy: &RulePolicy, target: &str, mode: Mode) -> Result<ExitCode> {
    let target = target.trim();
    let tools = pai_tools::builtin_tools();
    if let Some(tool) = tools.iter().find(|t| t.info().spec.name == target) {
        let info = tool.info();
        let subject = Subject::tool(target, info.effects.iter().copied(), mode);
        outln!(
            "{}",
            verdict_line(
                &format!("a {target} call in {mode} mode"),
                &policy.check(&subject)
            )
        );
        let tainted = subject.clone().tainted(true);
        let after = policy.check(&tainted);
        if after.decision != policy.check(&subject).decision {
            outln!(
                "{}",
                verdict_line("  once secret or untrusted data is in the turn", &after)
            );
        }
        print_matching(policy, &subject);
        return Ok(ExitCode::SUCCESS);
    }
    if target.starts_with("http://") || target.starts_with("https://") {
        let (host, port) = pai_tools::url_host(target)
            .with_context(|| format!("'{target}' is not a URL PAI can read"))?;
        let port = Some(port);
        let special = special_of(&host);
        let call = Subject::tool("http_get", [pai_types::Effect::Network], mode)
            .with_url(target)
            .with_host(&host, port);
        outln!(
            "{}",
            verdict_line(
                &format!("an http_get call for it in {mode} mode"),
                &policy.check(&call)
            )
        );
        let hop = Subject::fetch(target, &host, special).with_host(&host, port);
        outln!(
            "{}",
            verdict_line(
                &format!(
                    "the request to {host}{}",
                    special
                        .map(|s| format!(" ({s} address)"))
                        .unwrap_or_default()
                ),
                &policy.check(&hop)
            )
        );
        print_matching(policy, &hop);
        return Ok(ExitCode::SUCCESS);
    }
    let path = expand(target);
    let class = policy.classify_path(&path);
    outln!(
        "{}: {} data — rule {}",
        path.display(),
        class.class,
        class.rule
    );
    for locality in [pai_types::Locality::Local, pai_types::Locality::Remote] {
        let origin = pai_types::Origin::File {
            path: path.display().to_string(),
        };
        let part = Subject::part(&origin, class.class, locality, "");
        outln!(
            "{}",
            verdict_line(
                &format!("  its content in a request to a {locality} endpoint"),
                &policy.check(&part)
            )
        );
    }
    for tool in ["read_file", "write_file"] {
        if let Some(t) = tools.iter().find(|t| t.info().spec.name == tool) {
            let s = Subject::tool(tool, t.info().effects.iter().copied(), mode).with_path(&path);
            outln!(
                "{}",
                verdict_line(&format!("  {tool} on it in {mode} mode"), &policy.check(&s))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_matching(policy: &RulePolicy, subject: &Subject<'_>) {
    let matching: Vec<RuleSummary> = policy.matching(subject);
    if matching.is_empty() {
        return;
    }
    outln!("rules that match, in the order they are consulted:");
    for r in matching {
        outln!("{}", rule_line(&r));
    }
}

fn expand(p: &str) -> PathBuf {
    let path = match p.strip_prefix("~/") {
        Some(rest) => dirs::home_dir().map_or_else(|| PathBuf::from(p), |h| h.join(rest)),
        None => PathBuf::from(p),
    };
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(&path))
            .unwrap_or(path)
    }
}
