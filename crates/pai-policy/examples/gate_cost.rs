//! What the egress gate's policy half costs per model call, for `cargo xtask bench`:
//! every part of a 4 KB, nine-part request scanned for secrets and personal data (two
//! found and redacted), each part and the call checked against the default rules, for a
//! remote endpoint — the work `Engine::screen` does before each call leaves. Prints a
//! title line, then one time in nanoseconds per line.

use std::time::Instant;

use pai_policy::{Decision, Policy, RulePolicy, Subject, detect};
use pai_types::{DataClass, Locality, Origin};

fn main() {
    let policy = RulePolicy::defaults();
    let prose = "The quarterly report needs the revenue table from the shared drive, the \
                 three charts we discussed, and a paragraph on churn. Keep it short. ";
    let mut parts: Vec<(Origin, String)> = vec![(Origin::System, prose.repeat(2))];
    for _ in 0..6 {
        parts.push((Origin::History, prose.repeat(3)));
    }
    parts.push((Origin::Summary, prose.repeat(2)));
    parts.push((
        Origin::User,
        format!("{prose}My key is AKIAQ3EGRJ7MNOZ4V5XA, mail ana.silva@mail.pt with it."),
    ));
    let bytes: usize = parts.iter().map(|(_, t)| t.len()).sum();
    let once = || {
        let mut redacted = 0;
        for (origin, text) in &parts {
            for f in detect::scan(text) {
                let s = Subject::part(origin, f.class, Locality::Remote, "cloud");
                redacted += usize::from(policy.check(&s).decision == Decision::Redact);
            }
            let s = Subject::part(origin, DataClass::Internal, Locality::Remote, "cloud");
            std::hint::black_box(policy.check(&s));
        }
        let call = Subject::send(
            "cloud",
            "api.example.com",
            Locality::Remote,
            DataClass::Internal,
        );
        std::hint::black_box(policy.check(&call));
        redacted
    };
    // The first call also builds the detectors (lazily): it counts, as in a real process.
    let first = Instant::now();
    let found = once();
    let first = first.elapsed();
    assert_eq!(found, 2, "the bench request has two values to redact");
    println!(
        "policy gate per model call ({:.1} KB, {} parts; first call incl. set-up {:.2} ms)",
        bytes as f64 / 1024.0,
        parts.len(),
        first.as_secs_f64() * 1000.0
    );
    for _ in 0..2000 {
        let started = Instant::now();
        std::hint::black_box(once());
        println!("{}", started.elapsed().as_nanos());
    }
}
