//! `cargo xtask bench-audit [--write]`: the audit log at scale, measured in release by
//! `crates/pai-audit/examples/audit_bench.rs` (see its doc) on a generated log of
//! 1,000,000 events (`PAI_AUDIT_BENCH_EVENTS=N` for a quicker run): append p50/p99 (no
//! fsync), `audit list --since 1d --session s`, `audit search` (a rare and a common word),
//! `audit verify` rows/s, and bytes per event. `--write` records them in
//! docs/benchmarks.md.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub fn run(write_docs: bool) -> Result<()> {
    let root = crate::bench::workspace_root()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "pai-audit",
            "--example",
            "audit_bench",
        ])
        .output()
        .context("could not run cargo")?;
    if !out.status.success() {
        bail!(
            "the audit_bench example failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let got: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once(' ')).collect();
    let get = |k: &str| -> Result<&str> {
        got.get(k)
            .copied()
            .with_context(|| format!("audit_bench printed no {k}"))
    };
    let events: u64 = get("events")?.parse()?;
    let rows = [
        (
            "append one event, p50 / p99 (no per-row sync; p99 holds SQLite's periodic WAL checkpoints, which sync; target p50 ≤ 0.5 ms)".to_string(),
            format!("{} / {} µs", get("append_p50_us")?, get("append_p99_us")?),
        ),
        (
            "`audit list --since 1d --session s` (50 newest of 1 session in 50; target ≤ 50 ms)"
                .to_string(),
            format!("{} ms", get("list_ms")?),
        ),
        (
            format!(
                "`audit search` a rare word ({} hits; target ≤ 100 ms)",
                get("search_hits")?
            ),
            format!("{} ms", get("search_ms")?),
        ),
        (
            "`audit search` a word in most events (50 newest)".to_string(),
            format!("{} ms", get("search_common_ms")?),
        ),
        (
            "`audit verify` (hash, content digest and MAC of every row; target ≥ 200,000/s)"
                .to_string(),
            match got.get("verify_rows_per_cpu_s") {
                Some(cpu) => format!(
                    "{} rows/s (wall clock), {cpu} rows per CPU-second",
                    get("verify_rows_per_s")?
                ),
                None => format!("{} rows/s", get("verify_rows_per_s")?),
            },
        ),
        (
            "per-turn check before: the full verify each turn ran (then waited for up to 500 ms)"
                .to_string(),
            format!("{} ms", get("verify_ms")?),
        ),
        (
            "per-turn check now, first run (no mark yet: a full check that records one)"
                .to_string(),
            format!("{} ms", get("check_first_full_ms")?),
        ),
        (
            "per-turn check now: open the log afresh, check the 6 rows of the last turn, median of 21"
                .to_string(),
            format!("{} ms", get("check_turn_ms")?),
        ),
        (
            "file size per event (database + WAL, indexes and FTS included)".to_string(),
            format!("{} bytes", get("bytes_per_event")?),
        ),
    ];
    let load = got.get("load_1min").copied().unwrap_or("?");
    println!("{events} events, 1-minute load average {load}");
    for (what, value) in &rows {
        println!("{what:<90} {value}");
    }
    if write_docs {
        let mut table = format!(
            "{events} events; the machine's 1-minute load average at the end: {load}.\n\n| what | result |\n|---|---|\n"
        );
        for (what, value) in &rows {
            table.push_str(&format!("| {what} | {value} |\n"));
        }
        let path = root.join("docs/benchmarks.md");
        let doc = std::fs::read_to_string(&path)?;
        let (start, end) = ("<!-- bench-audit:start -->", "<!-- bench-audit:end -->");
        let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
            bail!("{} lacks the {start} … {end} markers", path.display());
        };
        std::fs::write(&path, format!("{}{start}\n{table}{}", &doc[..a], &doc[b..]))?;
        println!("updated {}", path.display());
    }
    Ok(())
}
