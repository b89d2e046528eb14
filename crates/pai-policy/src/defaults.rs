//! The built-in rules: today's modes table, secrets kept from remote endpoints, personal
//! data redacted for them, tools kept off private addresses, and the files everyone
//! agrees are secret. Each has an id starting `default:` (or `safe:` for safe mode).

use pai_types::{DataClass, Effect, Locality, Mode};

use crate::glob::PathPattern;
use crate::rules::{ClassRule, Matcher, Rule};
use crate::{Action, Decision};

fn rule(id: &str, decision: Decision, reason: &str, when: Matcher) -> Rule {
    Rule {
        id: id.to_string(),
        source: "built-in".into(),
        decision,
        reason: reason.to_string(),
        when,
    }
}

fn on(actions: &[Action]) -> Matcher {
    Matcher {
        on: actions.to_vec(),
        ..Matcher::default()
    }
}

pub(crate) fn rules() -> Vec<Rule> {
    use Decision::*;
    let tool_in = |effect: Effect, mode: Mode| Matcher {
        effect: Some(effect),
        mode: Some(mode),
        ..on(&[Action::Tool])
    };
    vec![
        rule(
            "default:secret-stays-local",
            Redact,
            "secret data never reaches a remote endpoint",
            Matcher {
                class: Some(DataClass::Secret),
                locality: Some(Locality::Remote),
                ..on(&[Action::Part])
            },
        ),
        rule(
            "default:personal-redacted-for-remote",
            Redact,
            "personal data is redacted before it reaches a remote endpoint",
            Matcher {
                class: Some(DataClass::Personal),
                locality: Some(Locality::Remote),
                ..on(&[Action::Part])
            },
        ),
        rule(
            "default:no-private-addresses",
            Deny,
            "tools reach public addresses only; a rule allowing the host (pai <session> allow <host>) can open one",
            Matcher {
                special: Some("*".into()),
                ..on(&[Action::Fetch])
            },
        ),
        rule(
            "default:chat-reads-only",
            Deny,
            "chat mode runs read-only tools only; use prompt or agent mode",
            tool_in(Effect::Write, Mode::Chat),
        ),
        rule(
            "default:chat-reads-only",
            Deny,
            "chat mode runs read-only tools only; use prompt or agent mode",
            tool_in(Effect::Network, Mode::Chat),
        ),
        rule(
            "default:chat-reads-only",
            Deny,
            "chat mode runs read-only tools only; use prompt or agent mode",
            tool_in(Effect::Exec, Mode::Chat),
        ),
        rule(
            "default:prompt-never-writes",
            Deny,
            "prompt mode never writes or runs programs; use agent mode",
            tool_in(Effect::Write, Mode::Prompt),
        ),
        rule(
            "default:prompt-never-runs",
            Deny,
            "prompt mode never writes or runs programs; use agent mode",
            tool_in(Effect::Exec, Mode::Prompt),
        ),
        rule(
            "default:network-asks-in-prompt",
            Ask,
            "network tools in prompt mode need your approval unless a rule allows the host",
            tool_in(Effect::Network, Mode::Prompt),
        ),
        rule(
            "default:agent-asks-to-write",
            Ask,
            "agent mode asks before a tool changes files",
            tool_in(Effect::Write, Mode::Agent),
        ),
        rule(
            "default:agent-asks-to-run",
            Ask,
            "agent mode asks before a tool runs programs",
            tool_in(Effect::Exec, Mode::Agent),
        ),
    ]
}

/// Floors no user rule can lower (only `--allow <effect>` answers their Ask up front):
/// once the model has seen secret data or untrusted content (any tool output) in a turn,
/// a network call could carry it out and a write or exec could act on an injected
/// instruction, whatever a rule allows.
pub(crate) fn guard_rules() -> Vec<Rule> {
    use Decision::*;
    let reason = "this turn already holds secret data or untrusted content (tool output), so tools that could send it out or act on it need your approval";
    [
        ("guard:tainted-turn-asks-network", Effect::Network),
        ("guard:tainted-turn-asks-write", Effect::Write),
        ("guard:tainted-turn-asks-exec", Effect::Exec),
    ]
    .into_iter()
    .map(|(id, effect)| {
        rule(
            id,
            Ask,
            reason,
            Matcher {
                effect: Some(effect),
                tainted: Some(true),
                ..on(&[Action::Tool])
            },
        )
    })
    .collect()
}

pub(crate) fn safe_rules() -> Vec<Rule> {
    use Decision::*;
    let reason = "safe mode: local endpoints and read-only tools inside the roots only (pai <session> safe off, or drop --safe)";
    vec![
        rule(
            "safe:local-only",
            Deny,
            reason,
            Matcher {
                locality: Some(Locality::Remote),
                ..on(&[Action::Send, Action::List])
            },
        ),
        rule(
            "safe:no-network",
            Deny,
            reason,
            Matcher {
                effect: Some(Effect::Network),
                ..on(&[Action::Tool, Action::Fetch])
            },
        ),
        rule(
            "safe:no-writes",
            Deny,
            reason,
            Matcher {
                effect: Some(Effect::Write),
                ..on(&[Action::Tool])
            },
        ),
        rule(
            "safe:no-programs",
            Deny,
            reason,
            Matcher {
                effect: Some(Effect::Exec),
                ..on(&[Action::Tool])
            },
        ),
        rule("safe:no-mcp", Deny, reason, on(&[Action::Spawn])),
    ]
}

/// Files that hold credentials, whatever the directory.
const SECRET_FILES: &[&str] = &[
    "**/.ssh/**",
    "**/.aws/**",
    "**/.gnupg/**",
    "**/.docker/config.json",
    "**/.kube/config",
    ".env",
    ".env.*",
    ".envrc",
    "*credentials*",
    "*secret*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
];

pub(crate) fn classify() -> Vec<ClassRule> {
    SECRET_FILES
        .iter()
        .filter_map(|p| {
            let path = PathPattern::parse(p, None).ok()?;
            Some(ClassRule {
                id: format!("default:secret-file {p}"),
                source: "built-in".into(),
                path,
                class: DataClass::Secret,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_pattern_compiles() {
        assert_eq!(classify().len(), SECRET_FILES.len());
    }
}
