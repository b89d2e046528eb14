//! Finds secrets and personal data in text, so a part can be redacted span by span
//! instead of withheld whole. A small, high-confidence rule set: provider key formats with
//! fixed prefixes, private key blocks, `password=`-style assignments and e-mail
//! addresses. Placeholder example keys (`AKIAIOSFODNN7EXAMPLE`, `xxxx…`) are not findings.

use std::sync::OnceLock;

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
    /// Lowercase words one of which any match contains: a text holding none of them is
    /// not searched with this rule, and the regex is only built once one shows up.
    keywords: &'static [&'static str],
    pattern: &'static str,
    /// Which capture group is the value (0 = the whole match).
    group: usize,
    regex: OnceLock<Option<Regex>>,
}

impl Rule {
    const fn new(
        id: &'static str,
        kind: &'static str,
        class: DataClass,
        keywords: &'static [&'static str],
        pattern: &'static str,
        group: usize,
    ) -> Self {
        Self {
            id,
            kind,
            class,
            keywords,
            pattern,
            group,
            regex: OnceLock::new(),
        }
    }

    fn regex(&self) -> Option<&Regex> {
        // ASCII-only matching ((?-u) in the patterns): Unicode tables make the regexes
        // several times slower to build, and every format here is ASCII.
        self.regex
            .get_or_init(|| Regex::new(self.pattern).ok())
            .as_ref()
    }
}

const SECRET: DataClass = DataClass::Secret;

/// The rules. A value in an assignment is printable ASCII without quotes, commas or
/// semicolons. Patterns are ASCII-only (`(?-u)`), so that building one costs tens of
/// microseconds, not a millisecond; the keywords keep most texts from building any.
static RULES: [Rule; 11] = [
    Rule::new(
        "private-key",
        "PRIVATE_KEY",
        SECRET,
        &["private key"],
        r"(?s)-----BEGIN[ A-Z0-9_-]*PRIVATE KEY( BLOCK)?-----.*?-----END[ A-Z0-9_-]*PRIVATE KEY( BLOCK)?-----",
        0,
    ),
    Rule::new(
        "aws-access-key",
        "AWS_KEY",
        SECRET,
        &["akia", "asia", "abia", "acca"],
        r"(?-u)\b((?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b",
        1,
    ),
    Rule::new(
        "aws-secret-key",
        "AWS_SECRET",
        SECRET,
        &["aws"],
        r#"(?i-u)aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})\b"#,
        1,
    ),
    Rule::new(
        "github-token",
        "GITHUB_TOKEN",
        SECRET,
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        r"(?-u)\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}[A-Za-z0-9]*)",
        1,
    ),
    Rule::new(
        "github-fine-grained",
        "GITHUB_TOKEN",
        SECRET,
        &["github_pat_"],
        r"(?-u)\b(github_pat_[A-Za-z0-9_]{60}[A-Za-z0-9_]*)",
        1,
    ),
    Rule::new(
        "anthropic-key",
        "ANTHROPIC_KEY",
        SECRET,
        &["sk-ant-"],
        r"(?-u)\b(sk-ant-[A-Za-z0-9_-]{32}[A-Za-z0-9_-]*)",
        1,
    ),
    Rule::new(
        "openai-key",
        "OPENAI_KEY",
        SECRET,
        &["sk-"],
        r"(?-u)\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32}[A-Za-z0-9_-]*)",
        1,
    ),
    Rule::new(
        "slack-token",
        "SLACK_TOKEN",
        SECRET,
        &["xox"],
        r"(?-u)\b(xox[abposr]-[0-9A-Za-z-]{10}[0-9A-Za-z-]*)",
        1,
    ),
    Rule::new(
        "stripe-key",
        "STRIPE_KEY",
        SECRET,
        &["_live_", "_test_"],
        r"(?-u)\b((?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16}[0-9A-Za-z]*)",
        1,
    ),
    Rule::new(
        "generic-assignment",
        "SECRET",
        SECRET,
        &[
            "passw",
            "pwd",
            "secret",
            "apikey",
            "api_key",
            "api-key",
            "_token",
            "-token",
            "accesstoken",
            "authtoken",
        ],
        r#"(?i-u)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)["']?\s*[:=]\s*["']?([!#-&(-+\--:<-_a-~]{8,})"#,
        1,
    ),
    Rule::new(
        "email",
        "EMAIL",
        DataClass::Personal,
        &["@"],
        r"(?-u)\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
        0,
    ),
];

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
    let lower = text.to_ascii_lowercase();
    for rule in &RULES {
        if !rule.keywords.iter().any(|k| lower.contains(k)) {
            continue;
        }
        let Some(regex) = rule.regex() else {
            continue;
        };
        for caps in regex.captures_iter(text) {
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
    fn every_rule_compiles() {
        for rule in &RULES {
            assert!(rule.regex().is_some(), "{}", rule.id);
        }
    }

    #[test]
    fn documented_examples_and_placeholders_are_not_findings() {
        assert!(scan("AKIAIOSFODNN7EXAMPLE user@example.com password=xxxxxxxxxx").is_empty());
        assert!(scan("fn main() { let x = 1; }").is_empty());
    }
}
