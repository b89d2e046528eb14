//! How well the injection scorer tells attacks from ordinary text, for `cargo xtask
//! eval-inject` (which builds the labelled corpus: see xtask/src/inject_corpus.py).
//!
//! Reads JSON lines `{"set", "label": "attack"|"benign", "text"}` from the file named by
//! the first argument and prints, per set, how many texts score at least
//! [`inject::HIGH`] (what PAI shows the user and audits) and how many score anything at
//! all, then the signals that fired most often.

use std::collections::BTreeMap;

use pai_policy::inject;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: inject_eval <corpus.jsonl>");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(2);
        }
    };
    // set -> (label, texts, high, any)
    let mut sets: BTreeMap<String, (String, usize, usize, usize)> = BTreeMap::new();
    let mut signals: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(row) = serde_json::from_str::<serde_json::Value>(line) else {
            eprintln!("skipping a line that is not JSON");
            continue;
        };
        let (Some(set), Some(label), Some(body)) = (
            row["set"].as_str(),
            row["label"].as_str(),
            row["text"].as_str(),
        ) else {
            continue;
        };
        let got = inject::assess(body);
        if std::env::var_os("SHOW").is_some_and(|v| v == label) && got.is_high() {
            let head: String = body.chars().take(300).collect();
            eprintln!("{set} [{}] {head:?}", got.kinds());
        }
        let entry = sets
            .entry(set.to_string())
            .or_insert_with(|| (label.to_string(), 0, 0, 0));
        entry.1 += 1;
        entry.2 += usize::from(got.is_high());
        entry.3 += usize::from(got.score > 0);
        for s in &got.signals {
            *signals.entry((label.to_string(), s.kind)).or_default() += 1;
        }
    }
    println!(
        "| set | label | texts | flagged (score ≥ {}) | any signal |",
        inject::HIGH
    );
    println!("|---|---|---|---|---|");
    for (set, (label, n, high, any)) in &sets {
        let pct = |k: usize| 100.0 * k as f64 / (*n).max(1) as f64;
        println!(
            "| {set} | {label} | {n} | {high} ({:.1} %) | {any} ({:.1} %) |",
            pct(*high),
            pct(*any)
        );
    }
    println!();
    for ((label, kind), n) in &signals {
        println!("signal {label} {kind} {n}");
    }
}
