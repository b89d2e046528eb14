//! Finds secrets and personal data in text, so a part can be redacted span by span
//! instead of withheld whole. A small, high-confidence rule set: provider key formats with
//! fixed prefixes, private key blocks, `password=`-style assignments and e-mail
//! addresses. Placeholder example keys (`AKIAIOSFODNN7EXAMPLE`, `xxxx…`) are not findings.

use std::sync::LazyLock;

use pai_types::DataClass;
use regex::Regex;

/// One thing found: what it is, which rule found it, its class and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was found, upper case, used in placeholders (`AWS_KEY`, `EMAIL`).
    pub kind: &'static str,
    /// The rule's id.
    pub rule: &'static str,
    /// `secret` or `personal`.
    pub class: DataClass,
    /// Byte offset where the value starts.
    pub start: usize,
    /// Byte offset just past the value.
    pub end: usize,
}

struct Rule {
    id: &'static str,
    kind: &'static str,
    class: DataClass,
    regex: Regex,
    /// Which capture group is the value (0 = the whole match).
    group: usize,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let secret = DataClass::Secret;
    let table: [(&str, &str, DataClass, &str, usize); 11] = [
        (
            "private-key",
            "PRIVATE_KEY",
            secret,
            r"-----BEGIN[ A-Z0-9_-]*PRIVATE KEY( BLOCK)?-----[\s\S]*?-----END[ A-Z0-9_-]*PRIVATE KEY( BLOCK)?-----",
            0,
        ),
        (
            "aws-access-key",
            "AWS_KEY",
            secret,
            r"\b((?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b",
            1,
        ),
        (
            "aws-secret-key",
            "AWS_SECRET",
            secret,
            r#"(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})\b"#,
            1,
        ),
        (
            "github-token",
            "GITHUB_TOKEN",
            secret,
            r"\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255})\b",
            1,
        ),
        (
            "github-fine-grained",
            "GITHUB_TOKEN",
            secret,
            r"\b(github_pat_[A-Za-z0-9_]{60,255})\b",
            1,
        ),
        (
            "anthropic-key",
            "ANTHROPIC_KEY",
            secret,
            r"\b(sk-ant-[A-Za-z0-9_-]{32,})",
            1,
        ),
        (
            "openai-key",
            "OPENAI_KEY",
            secret,
            r"\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,})",
            1,
        ),
        (
            "slack-token",
            "SLACK_TOKEN",
            secret,
            r"\b(xox[abposr]-[0-9A-Za-z-]{10,})",
            1,
        ),
        (
            "stripe-key",
            "STRIPE_KEY",
            secret,
            r"\b((?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,})",
            1,
        ),
        (
            "generic-assignment",
            "SECRET",
            secret,
            r#"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)["']?\s*[:=]\s*["']?([^\s"'`,;]{8,})"#,
            1,
        ),
        (
            "email",
            "EMAIL",
            DataClass::Personal,
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
            0,
        ),
    ];
    table
        .into_iter()
        .filter_map(|(id, kind, class, pattern, group)| {
            Some(Rule {
                id,
                kind,
                class,
                regex: Regex::new(pattern).ok()?,
                group,
            })
        })
        .collect()
});

/// Documented example values and obvious placeholders: never findings.
fn placeholder(value: &str) -> bool {
    const EXAMPLES: [&str; 3] = [
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "user@example.com",
    ];
    let lower = value.to_ascii_lowercase();
    EXAMPLES.contains(&value)
        || lower.contains("example")
        || lower.contains("xxxx")
        || lower.contains("changeme")
        || lower.contains("placeholder")
        || lower.starts_with("${")
        || lower.starts_with('<')
        || value.starts_with('\u{27e8}')
}

/// Every finding in `text`, in order, overlapping ones merged into the first.
pub fn scan(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    for rule in RULES.iter() {
        for caps in rule.regex.captures_iter(text) {
            let Some(m) = caps.get(rule.group) else {
                continue;
            };
            if placeholder(m.as_str()) {
                continue;
            }
            found.push(Finding {
                kind: rule.kind,
                rule: rule.id,
                class: rule.class,
                start: m.start(),
                end: m.end(),
            });
        }
    }
    found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut merged: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        match merged.last() {
            Some(last) if f.start < last.end => {}
            _ => merged.push(f),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(&'static str, String)> {
        scan(text)
            .into_iter()
            .map(|f| (f.kind, text[f.start..f.end].to_string()))
            .collect()
    }

    #[test]
    fn finds_keys_blocks_assignments_and_emails() {
        let key = "AKIAQ3EGRJ7MNOZ4V5XA";
        let text = format!(
            "my key is {key} and mail me at ana.silva@mail.pt\npassword = hunter2hunter2\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"
        );
        let found = kinds(&text);
        assert_eq!(found[0], ("AWS_KEY", key.to_string()));
        assert_eq!(found[1], ("EMAIL", "ana.silva@mail.pt".to_string()));
        assert_eq!(found[2], ("SECRET", "hunter2hunter2".to_string()));
        assert_eq!(found[3].0, "PRIVATE_KEY");
        assert_eq!(found.len(), 4);
    }

    #[test]
    fn documented_examples_and_placeholders_are_not_findings() {
        assert!(scan("AKIAIOSFODNN7EXAMPLE user@example.com password=xxxxxxxxxx").is_empty());
        assert!(scan("fn main() { let x = 1; }").is_empty());
    }
}
