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
