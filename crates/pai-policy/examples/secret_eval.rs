//! Recall and false positives of the secret detectors on samples somebody else labelled:
//! JSON lines `{"file", "label": "tps"|"fps", "text"}` (the first argument), e.g. the literal
//! true- and false-positive samples in gitleaks' rule definitions, extracted by
//! `xtask/src/gitleaks_samples.py`. A true positive counts as found when the text yields at
//! least one secret finding; a false positive counts when it yields any. Prints totals, then
//! per source file, then (with `SHOW=1`) the texts each side got wrong.

use std::collections::BTreeMap;

use pai_policy::DataClass;
use pai_policy::detect;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: secret_eval <samples.jsonl>");
        std::process::exit(2);
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("cannot read {path}");
        std::process::exit(2);
    };
    let show = std::env::var_os("SHOW").is_some();
    // file -> (tps, found, fps, flagged)
    let mut files: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for line in text.lines() {
        let Ok(row) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(file), Some(label), Some(body)) = (
            row["file"].as_str(),
            row["label"].as_str(),
            row["text"].as_str(),
        ) else {
            continue;
        };
        let secret = detect::scan(body)
            .iter()
            .any(|f| f.class == DataClass::Secret);
        let e = files.entry(file.to_string()).or_default();
        if label == "tps" {
            e[0] += 1;
            e[1] += usize::from(secret);
            if show && !secret {
                eprintln!("missed {file}: {body:?}");
            }
        } else {
            e[2] += 1;
            e[3] += usize::from(secret);
            if show && secret {
                eprintln!("flagged {file}: {body:?}");
            }
        }
    }
    let total = files.values().fold([0; 4], |mut a, e| {
        for i in 0..4 {
            a[i] += e[i];
        }
        a
    });
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    println!(
        "true positives found: {} of {} ({:.1} %)",
        total[1],
        total[0],
        pct(total[1], total[0])
    );
    println!(
        "false positives flagged: {} of {} ({:.1} %)",
        total[3],
        total[2],
        pct(total[3], total[2])
    );
    println!();
    println!("| source | true positives found | false positives flagged |");
    println!("|---|---|---|");
    for (file, e) in &files {
        println!("| {file} | {}/{} | {}/{} |", e[1], e[0], e[3], e[2]);
    }
}
