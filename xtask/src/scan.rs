//! `cargo xtask bench-scan [--write]`: how fast the detectors are, measured in release by
//! `crates/pai-policy/examples/scan_speed.rs` (see its doc): the first 4 KB prompt of a
//! fresh process, lazy set-up included, and MB/s on one core over the workspace's own
//! sources, docs and Cargo.lock. `--write` records the numbers in docs/benchmarks.md.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// Fresh processes measured for the first-prompt time (each builds everything anew).
const PROCESSES: usize = 9;

pub fn run(write_docs: bool) -> Result<()> {
    let root = crate::bench::workspace_root()?;
    let mut runs: Vec<BTreeMap<String, f64>> = Vec::new();
    for _ in 0..PROCESSES {
        let out = crate::bench::run_policy_example(&root, "scan_speed")?;
        runs.push(
            out.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect(),
        );
    }
    let median = |key: &str| -> Result<f64> {
        let mut v: Vec<f64> = runs.iter().filter_map(|r| r.get(key).copied()).collect();
        if v.is_empty() {
            bail!("scan_speed printed no {key}");
        }
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    };
    let rows = [
        (
            format!(
                "first {:.1} KB prompt of a fresh process (lazy set-up included)",
                median("prompt_bytes")? / 1024.0
            ),
            format!("{:.2} ms", median("first_prompt_us")? / 1000.0),
        ),
        (
            "the same prompt again (everything built)".to_string(),
            format!("{:.3} ms", median("prompt_us")? / 1000.0),
        ),
        (
            format!(
                "throughput, one core: the workspace's sources, docs and Cargo.lock ({:.1} MB, repeated to {:.1} MB)",
                median("corpus_unit_bytes")? / 1e6,
                median("corpus_bytes")? / 1e6
            ),
            format!("{:.0} MB/s", median("mb_per_s")?),
        ),
    ];
    for (what, value) in &rows {
        println!("{what:<100} {value}");
    }
    if write_docs {
        let mut table = String::from("| what | median of 9 processes |\n|---|---|\n");
        for (what, value) in &rows {
            table.push_str(&format!("| {what} | {value} |\n"));
        }
        let path = root.join("docs/benchmarks.md");
        let doc = std::fs::read_to_string(&path)?;
        let (start, end) = ("<!-- bench-scan:start -->", "<!-- bench-scan:end -->");
        let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
            bail!("{} lacks the {start} … {end} markers", path.display());
        };
        std::fs::write(&path, format!("{}{start}\n{table}{}", &doc[..a], &doc[b..]))?;
        println!("updated {}", path.display());
    }
    Ok(())
}
