//! Finds secrets and personal data in text, so a part can be redacted span by span instead
//! of withheld whole.
//!
//! - Secrets: rules as data (`rules.toml`, modelled on gitleaks' and detect-secrets'
//!   families: cloud keys, provider tokens, private key blocks, JWTs, credentials in URLs,
//!   `password=`/`token:` assignments), behind an Aho-Corasick keyword prefilter, with
//!   entropy thresholds and allowlists for documented examples and placeholders.
//! - Personal data: e-mail addresses, phone numbers, payment cards (Luhn), IBANs (mod 97),
//!   US SSNs, UK NINOs and public IP addresses.
//!
//! Everything is built lazily on first use, and a rule's regex only when its keyword first
//! appears: a process that scans one prompt pays for what that prompt needs.

mod personal;
mod secrets;

use pai_types::DataClass;

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

/// A secret rule of the user's own, from config.toml:
///
/// ```toml
/// [[detect.rule]]
/// id = "acme-token"            # lower case, digits, '-'; not a built-in id
/// kind = "ACME_TOKEN"          # the placeholder word: ⟨ACME_TOKEN_1⟩
/// keywords = ["acme_"]         # the regex runs only near one of these
/// regex = '\b(acme_[A-Za-z0-9]{32})\b'   # group 1, if any, is the secret
/// entropy = 3.5                # optional: minimum bits per byte of the value
/// ```
///
/// Findings of these rules are `secret`, redacted and allowlisted like the built-in ones.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// The rule's id, shown by `pai scan` and in audit rows.
    pub id: String,
    /// What it finds, upper case; the placeholder word.
    pub kind: String,
    /// Words one of which every match contains (any case unless `exact`).
    pub keywords: Vec<String>,
    /// Keywords match only as written.
    #[serde(default)]
    pub exact: bool,
    /// The pattern (Rust `regex` syntax, ASCII, the built-in `{ASSIGN}`/`{END}` macros
    /// available); its first capture group, if it has one, is the secret.
    pub regex: String,
    /// Minimum Shannon entropy (bits per byte) of the value.
    #[serde(default)]
    pub entropy: Option<f64>,
}

/// Why [`add_rules`] refused.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A rule is malformed.
    #[error("detect rule {id:?}: {reason}")]
    BadRule {
        /// The rule's id as written.
        id: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The rules were already built (something was scanned) or other rules were added.
    #[error("detector rules can be added once per process, before the first scan")]
    TooLate,
}

/// Adds the user's own secret rules to the built-in ones. Call it once per process, before
/// anything is scanned (`Workspace::open` does, from config.toml); each rule is checked
/// here, so a bad one is an error at start-up, not a silent miss later.
pub fn add_rules(rules: &[CustomRule]) -> Result<(), DetectError> {
    secrets::add(rules)
}

/// Every finding in `text`, sorted by position and never overlapping. Where two overlap, a
/// secret beats personal data and a longer match beats a shorter one.
pub fn scan(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    secrets::scan(text, &mut found);
    personal::scan(text, &mut found);
    if found.len() < 2 {
        return found;
    }
    found.sort_by_key(|f| {
        (
            std::cmp::Reverse(f.class),
            f.start,
            std::cmp::Reverse(f.end),
        )
    });
    let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        // `kept` is small; a linear overlap check is cheaper than an interval tree here.
        if !kept.iter().any(|k| f.start < k.end && k.start < f.end) {
            kept.push(f);
        }
    }
    kept.sort_by_key(|f| f.start);
    kept
}

/// The ids and kinds of the built-in secret rules, in file order (for `pai scan` listings
/// and documentation).
pub fn secret_rules() -> Vec<(&'static str, &'static str)> {
    secrets::set().map_or_else(Vec::new, |s| {
        s.rules
            .iter()
            .map(|r| (r.def.id.as_str(), r.def.kind.as_str()))
            .collect()
    })
}

#[cfg(test)]
mod tests;
