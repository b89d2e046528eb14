//! The egress gate's policy half for model calls: before a request leaves, every part is
//! screened — found secrets and personal data become placeholders, parts whose class the
//! endpoint may not see are withheld — and the call as a whole is checked. What it
//! decided goes to the audit as `policy` rows; what it sent is described in the prompt row.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use pai_audit::EventKind;
use pai_policy::{Decision, Subject, Verdict, detect};
use pai_types::{DataClass, Effect, Locality, Message, Origin};

use super::{Engine, Scope};
use crate::approval::{Approval, ApprovalRequest};
use crate::error::{CoreError, Result};

/// What screening a request found and did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Screened {
    /// The highest class of what is sent, after redaction.
    pub class: DataClass,
    /// One entry per part: origin, size, class and what was done.
    pub parts: Vec<PartReport>,
    /// Values replaced by placeholders, by kind.
    pub redacted: BTreeMap<&'static str, usize>,
    /// Parts withheld whole.
    pub withheld: usize,
    /// The rule that let the call itself go (for `-v`).
    pub call_rule: String,
}

/// One part of a screened request, for the audit and for `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReport {
    /// Where it came from.
    pub origin: Origin,
    /// Its class before screening.
    pub class: DataClass,
    /// Its size as sent, in bytes.
    pub bytes: usize,
    /// What the policy decided for it, and the deciding rule.
    pub decision: Decision,
    /// The rule.
    pub rule: String,
    /// Values in it replaced by placeholders.
    pub redactions: usize,
}

impl Screened {
    /// The prompt row's description of what left: one entry per part.
    pub(crate) fn manifest(&self) -> String {
        let mut out = String::from("[sent:");
        for (i, p) in self.parts.iter().enumerate() {
            let sep = if i == 0 { " " } else { "; " };
            let _ = write!(out, "{sep}{} {} B {}", p.origin, p.bytes, p.class);
            // A part withheld whole says so even when values in it were found first: what
            // left is the note, not the redacted text.
            if p.decision == Decision::Redact {
                let _ = write!(out, ", withheld by {}", p.rule);
            } else if p.redactions > 0 {
                let _ = write!(out, ", {} redacted", p.redactions);
            }
        }
        out.push(']');
        out
    }
}

/// Placeholders for redacted values: the same value gets the same placeholder for as
/// long as the engine runs, so the model can still refer to it. Kept in memory only.
#[derive(Debug, Default)]
pub(crate) struct Placeholders {
    by_value: HashMap<String, String>,
    counts: HashMap<&'static str, usize>,
}

impl Placeholders {
    fn get(&mut self, kind: &'static str, value: &str) -> String {
        if let Some(p) = self.by_value.get(value) {
            return p.clone();
        }
        let n = self.counts.entry(kind).or_insert(0);
        *n += 1;
        let p = format!("\u{27e8}{kind}_{n}\u{27e9}");
        self.by_value.insert(value.to_string(), p.clone());
        p
    }
}

/// Turns placeholders in a streamed answer back into their values. A placeholder split
/// across two pieces is held back until it is whole.
pub(crate) struct Restorer {
    pairs: Vec<(String, String)>,
    pending: String,
}

/// The longest placeholder there is: `⟨` + a kind + `_` + a number + `⟩`.
const MAX_PLACEHOLDER: usize = 48;

impl Restorer {
    /// What of `text` can be shown now, restored.
    pub(crate) fn push(&mut self, text: &str) -> String {
        self.pending.push_str(text);
        let hold = match self.pending.rfind('\u{27e8}') {
            Some(at)
                if !self.pending[at..].contains('\u{27e9}')
                    && self.pending.len() - at < MAX_PLACEHOLDER =>
            {
                at
            }
            _ => self.pending.len(),
        };
        let ready: String = self.pending.drain(..hold).collect();
        self.restore(ready)
    }

    /// Whatever is still held back, restored.
    pub(crate) fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.restore(rest)
    }

    fn restore(&self, mut text: String) -> String {
        if !text.contains('\u{27e8}') {
            return text;
        }
        for (placeholder, value) in &self.pairs {
            if text.contains(placeholder.as_str()) {
                text = text.replace(placeholder.as_str(), value);
            }
        }
        text
    }
}

/// The host of an endpoint URL, for rules (`api.openai.com`), parsed as `http_get`'s hops
/// are; an endpoint that is not a URL (the in-process model) is its own name.
pub(crate) fn host_of(url: &str) -> String {
    pai_tools::url_host(url).map_or_else(|| url.to_ascii_lowercase(), |(host, _)| host)
}

impl Engine {
    /// Screens `messages` for the session's endpoint, in place. Fails, sending nothing,
    /// when a part or the call itself is denied.
    pub(crate) async fn screen(
        &self,
        scope: &Scope<'_>,
        messages: &mut [Message],
    ) -> Result<Screened> {
        let info = self.provider.info();
        let locality = info.locality;
        let provider = info.name.as_str();
        let mut screened = Screened::default();
        // One row per rule, decision and finding kind, with a count: the audit records what
        // was found and what was done (kind, detector rule, count), never the value.
        let mut notable: BTreeMap<(String, Decision, String), (String, usize)> = BTreeMap::new();
        let mut note = |v: &Verdict, what: String| {
            if !v.is_trivial() {
                let e = notable
                    .entry((v.rule.clone(), v.decision, what))
                    .or_insert_with(|| (v.reason.clone(), 0));
                e.1 += 1;
            }
        };
        for m in messages.iter_mut() {
            let origin = m.provenance.origin.clone();
            let base = m.class();
            let mut sent_class = DataClass::Public;
            let mut redactions = 0;
            let findings = detect::scan(&m.content);
            if !findings.is_empty() {
                let mut out = String::with_capacity(m.content.len());
                let mut last = 0;
                for f in &findings {
                    let verdict = self
                        .policy
                        .check(&Subject::part(&origin, f.class, locality, provider));
                    match verdict.decision {
                        Decision::Allow => sent_class = sent_class.max(f.class),
                        Decision::Redact => {
                            let value = &m.content[f.start..f.end];
                            out.push_str(&m.content[last..f.start]);
                            out.push_str(&self.placeholders().get(f.kind, value));
                            last = f.end;
                            redactions += 1;
                            *screened.redacted.entry(f.kind).or_insert(0) += 1;
                            note(
                                &verdict,
                                format!("{} ({}) in {origin} redacted", f.kind, f.rule),
                            );
                        }
                        Decision::Ask | Decision::Deny => {
                            return Err(self.refuse(
                                scope,
                                format!(
                                    "sending {} found in {origin} to {provider} ({locality})",
                                    f.kind
                                ),
                                verdict,
                            ));
                        }
                    }
                }
                out.push_str(&m.content[last..]);
                m.content = out;
            }
            let verdict = self
                .policy
                .check(&Subject::part(&origin, base, locality, provider));
            match verdict.decision {
                Decision::Allow => sent_class = sent_class.max(base),
                Decision::Redact => {
                    m.content = format!(
                        "[withheld: this {origin} is {base} data, which policy rule '{}' keeps from {provider} ({locality}): {}]",
                        verdict.rule, verdict.reason
                    );
                    // An image cannot be redacted, only withheld with its text.
                    m.images.clear();
                    screened.withheld += 1;
                    note(&verdict, format!("{origin} ({base}) withheld"));
                }
                Decision::Ask | Decision::Deny => {
                    let what = format!("sending {origin} ({base}) to {provider} ({locality})");
                    if !self.asked_yes(&what, &info.endpoint, &verdict).await {
                        return Err(self.refuse(scope, what, verdict));
                    }
                    sent_class = sent_class.max(base);
                }
            }
            screened.class = screened.class.max(sent_class);
            screened.parts.push(PartReport {
                origin,
                class: base,
                bytes: m.content.len() + m.images.iter().map(|i| i.data.len()).sum::<usize>(),
                decision: verdict.decision,
                rule: verdict.rule,
                redactions,
            });
        }
        let host = host_of(&info.endpoint);
        let call = Subject::send(provider, &host, locality, screened.class).with_mode(scope.mode);
        let verdict = self.policy.check(&call);
        screened.call_rule.clone_from(&verdict.rule);
        match verdict.decision {
            Decision::Allow | Decision::Redact => note(&verdict, format!("call to {provider}")),
            Decision::Ask | Decision::Deny => {
                let what = format!(
                    "a call to {provider} ({locality}{})",
                    if locality == Locality::Remote {
                        format!(", {host}")
                    } else {
                        String::new()
                    }
                );
                if !self.asked_yes(&what, &info.endpoint, &verdict).await {
                    return Err(self.refuse(scope, what, verdict));
                }
            }
        }
        for ((rule, decision, what), (reason, count)) in notable {
            let times = if count > 1 {
                format!(" ({count} times)")
            } else {
                String::new()
            };
            // Deferred: the prompt row written next is durable and covers these.
            self.audit.record_deferred(&self.event(
                scope,
                EventKind::Policy,
                format!("{decision} by {rule}: {what}{times}: {reason}"),
            ))?;
        }
        Ok(screened)
    }

    /// For an Ask: the approver's answer (an Ask with nobody to ask is a no). A Deny is
    /// never asked about.
    async fn asked_yes(&self, what: &str, endpoint: &str, verdict: &Verdict) -> bool {
        if verdict.decision != Decision::Ask {
            return false;
        }
        let request = ApprovalRequest {
            tool: "send".into(),
            arguments: what.to_string(),
            effects: [Effect::Network].into(),
            target: Some(endpoint.to_string()),
            rule: verdict.rule.clone(),
            reason: verdict.reason.clone(),
        };
        matches!(
            self.approver.approve(&request).await,
            Approval::Yes | Approval::Always
        )
    }

    /// Records a refusal (durably: nothing else will follow it) and builds its error.
    fn refuse(&self, scope: &Scope<'_>, what: String, verdict: Verdict) -> CoreError {
        let row = self.event(
            scope,
            EventKind::Policy,
            format!(
                "{} by {}: {what}: {}",
                verdict.decision, verdict.rule, verdict.reason
            ),
        );
        if let Err(e) = self.audit.record(&row) {
            return CoreError::Audit(e);
        }
        CoreError::Refused {
            what,
            rule: verdict.rule,
            reason: verdict.reason,
        }
    }

    /// `text` with every finding replaced by its placeholder: what the audit keeps of
    /// typed input, so the log never becomes a secret store.
    pub(crate) fn mask(&self, text: &str) -> String {
        crate::replace_findings(text, |kind, value| self.placeholders().get(kind, value))
    }

    /// A restorer for the placeholders handed out so far; `None` when there are none.
    pub(crate) fn restorer(&self) -> Option<Restorer> {
        let placeholders = self.placeholders();
        if placeholders.by_value.is_empty() {
            return None;
        }
        Some(Restorer {
            pairs: placeholders
                .by_value
                .iter()
                .map(|(value, placeholder)| (placeholder.clone(), value.clone()))
                .collect(),
            pending: String::new(),
        })
    }

    /// `text` with every placeholder handed out so far replaced by its value.
    pub(crate) fn restore(&self, text: &str) -> String {
        match self.restorer() {
            Some(mut r) => {
                let mut out = r.push(text);
                out.push_str(&r.finish());
                out
            }
            None => text.to_string(),
        }
    }

    fn placeholders(&self) -> std::sync::MutexGuard<'_, Placeholders> {
        self.placeholders.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_endpoints() {
        assert_eq!(host_of("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(host_of("http://127.0.0.1:8080/v1"), "127.0.0.1");
        assert_eq!(host_of("http://[::1]:8080/v1"), "::1");
        assert_eq!(host_of("https://u:p@Example.org"), "example.org");
        assert_eq!(host_of("in-process"), "in-process");
    }

    #[test]
    fn placeholders_split_across_pieces_are_restored_whole() {
        let mut r = Restorer {
            pairs: vec![
                ("\u{27e8}EMAIL_1\u{27e9}".into(), "ana@mail.pt".into()),
                (
                    "\u{27e8}AWS_KEY_1\u{27e9}".into(),
                    "AKIAQ3EGRJ7MNOZ4V5XA".into(),
                ),
            ],
            pending: String::new(),
        };
        let pieces = [
            "Write to \u{27e8}EM",
            "AIL_1\u{27e9} about ",
            "\u{27e8}",
            "AWS_KEY_1\u{27e9}.",
            " \u{27e8}odd",
        ];
        let shown: String = pieces.iter().map(|p| r.push(p)).collect::<String>() + &r.finish();
        assert_eq!(
            shown,
            "Write to ana@mail.pt about AKIAQ3EGRJ7MNOZ4V5XA. \u{27e8}odd"
        );
        // A lone bracket far from its end is not held forever.
        let long = format!("\u{27e8}{}", "x".repeat(60));
        assert_eq!(r.push(&long), long);
    }

    #[test]
    fn the_same_value_keeps_its_placeholder() {
        let mut p = Placeholders::default();
        let a = p.get("EMAIL", "a@b.pt");
        assert_eq!(a, "\u{27e8}EMAIL_1\u{27e9}");
        assert_eq!(p.get("EMAIL", "c@d.pt"), "\u{27e8}EMAIL_2\u{27e9}");
        assert_eq!(p.get("EMAIL", "a@b.pt"), a);
    }
}
