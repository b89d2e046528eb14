//! `cargo xtask bench-resources [--write]`: the resource store at scale. Generates a
//! corpus of Markdown documents (`PAI_BENCH_DOCS`, default 10,000, of about
//! `PAI_BENCH_DOC_BYTES`, default 10,000 bytes each; 100,000 × 10,000 ≈ 1 GB is the issue's
//! target), imports it with the release `pai` (`PAI_BENCH_BIN` to use another, with the
//! `examples/search_latency` beside it when there is one), and
//! measures import throughput, index size, peak RSS, the unchanged re-import, search
//! latency inside one process (pai-resources' `search_latency` example) and the whole
//! `pai resources search` command. `--write` records the results in docs/benchmarks.md.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Words so common every document has them (the tail the store must handle).
const COMMON: &[&str] = &[
    "the", "and", "of", "to", "in", "is", "that", "for", "it", "with", "as", "on", "time",
    "people", "year", "work", "system", "data", "report", "project",
];
/// Invented words, Zipf-distributed.
const VOCABULARY: usize = 30_000;

/// xorshift64*: deterministic, so every run measures the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The invented word of rank `i`: pronounceable, unique.
fn word(i: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ren", "tu", "sa", "vor", "el", "qui", "dan", "po", "fi", "gar", "nu",
        "the", "zo",
    ];
    let mut n = i + 16;
    let mut w = String::new();
    while n > 0 {
        w.push_str(SYL[n % 16]);
        n /= 16;
    }
    w
}

struct Words {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Words {
    fn new() -> Self {
        let words: Vec<String> = (0..VOCABULARY).map(word).collect();
        let mut total = 0.0;
        let cumulative = (0..VOCABULARY)
            .map(|r| {
                total += 1.0 / (r as f64 + 1.0);
                total
            })
            .collect();
        Self { words, cumulative }
    }

    fn pick(&self, rng: &mut Rng) -> &str {
        if rng.below(4) == 0 {
            return COMMON[rng.below(COMMON.len())];
        }
        let total = self.cumulative[VOCABULARY - 1];
        let x = rng.unit() * total;
        let i = self
            .cumulative
            .partition_point(|c| *c < x)
            .min(VOCABULARY - 1);
        &self.words[i]
    }
}

fn document(words: &Words, rng: &mut Rng, i: usize, bytes: usize) -> String {
    let mut out = format!("# Document {i} {}\n\n", words.pick(rng));
    while out.len() < bytes {
        if rng.below(5) == 0 {
            let _ = write!(out, "## {} {}\n\n", words.pick(rng), words.pick(rng));
        }
        let n = 40 + rng.below(80);
        for k in 0..n {
            if k > 0 {
                out.push(' ');
            }
            out.push_str(words.pick(rng));
        }
        out.push_str(".\n\n");
    }
    out
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

pub fn run(write_docs: bool) -> Result<()> {
    let root = crate::bench::workspace_root()?;
    let docs = env_usize("PAI_BENCH_DOCS", 10_000)?;
    let doc_bytes = env_usize("PAI_BENCH_DOC_BYTES", 10_000)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let pai = match std::env::var_os("PAI_BENCH_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            // Resources need no in-process model: the slim build is the same code path.
            let status = Command::new(&cargo)
                // `cargo run` set it for xtask; ring's build script tracks it, and a
                // changed value rebuilds ring and everything over rustls (half an hour
                // here) — once for this build, once more for the next one from a shell.
                .env_remove("CARGO_MANIFEST_DIR")
                .current_dir(&root)
                .args([
                    "build",
                    "--release",
                    "-p",
                    "pai-cli",
                    "--no-default-features",
                ])
                .status()?;
            if !status.success() {
                bail!("cargo build --release failed");
            }
            target.join("release/pai")
        }
    };
    // With PAI_BENCH_BIN, a search_latency built next to it is used as it is (a measured
    // binary is not rebuilt behind the caller's back).
    let beside = pai
        .parent()
        .map(|d| d.join("examples/search_latency"))
        .filter(|p| std::env::var_os("PAI_BENCH_BIN").is_some() && p.is_file());
    let latency_bin = match beside {
        Some(bin) => bin,
        None => {
            let status = Command::new(&cargo)
                .env_remove("CARGO_MANIFEST_DIR")
                .current_dir(&root)
                .args([
                    "build",
                    "--release",
                    "-p",
                    "pai-resources",
                    "--example",
                    "search_latency",
                ])
                .status()?;
            if !status.success() {
                bail!("building the search_latency example failed");
            }
            target.join("release/examples/search_latency")
        }
    };

    let work = std::env::temp_dir().join(format!("pai-bench-resources-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let corpus = work.join("corpus");
    eprintln!(
        "generating {docs} documents of ~{doc_bytes} bytes in {}",
        corpus.display()
    );
    let words = Words::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut corpus_bytes = 0u64;
    for i in 0..docs {
        let dir = corpus.join(format!("{:04}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let text = document(&words, &mut rng, i, doc_bytes);
        corpus_bytes += text.len() as u64;
        std::fs::write(dir.join(format!("doc{i}.md")), text)?;
    }
    let env = [
        ("PAI_HOME", work.join("home")),
        ("PAI_CONFIG_DIR", work.join("config")),
    ];
    let corpus_arg = corpus.display().to_string();
    eprintln!("importing");
    let (import, import_rss) = timed(&pai, &env, &["resources", "add", &corpus_arg])?;
    let db = work.join("home/resources.db");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let index_bytes = size(&db) + size(&work.join("home/resources.db-wal"));
    eprintln!("re-importing the unchanged corpus");
    let (reimport, _) = timed(&pai, &env, &["resources", "add", &corpus_arg])?;

    // Queries: a rare word, two mid-frequency words, two common words, stopwords only.
    let mut queries = String::new();
    let mut qrng = Rng(7);
    for _ in 0..20 {
        let rare = word(5_000 + qrng.below(20_000));
        let a = word(50 + qrng.below(2_000));
        let b = word(50 + qrng.below(2_000));
        let c = COMMON[10 + qrng.below(COMMON.len() - 10)];
        let d = COMMON[10 + qrng.below(COMMON.len() - 10)];
        let _ = writeln!(queries, "1 rare word\t{rare}");
        let _ = writeln!(queries, "2 two mid-frequency words\t{a} {b}");
        let _ = writeln!(queries, "3 two very common words\t{c} {d}");
        let _ = writeln!(queries, "4 stopwords only\tthe and of");
    }
    let mut child = Command::new(&latency_bin)
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("could not run the search_latency example")?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(queries.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("search_latency failed");
    }
    let latency = String::from_utf8_lossy(&out.stdout).into_owned();

    // The whole command, process start included.
    let mut whole = Vec::new();
    let mut whole_rss = 0u64;
    for i in 0..20 {
        let q = format!("{} {}", word(50 + i * 37), word(90 + i * 53));
        let (t, rss) = timed(&pai, &env, &["resources", "search", &q])?;
        whole.push(t);
        whole_rss = whole_rss.max(rss.unwrap_or(0));
    }
    whole.sort();

    let mut rows: Vec<(String, String)> = vec![
        (
            "corpus".into(),
            format!(
                "{docs} Markdown documents, {:.1} MB",
                corpus_bytes as f64 / 1e6
            ),
        ),
        (
            "import (`pai resources add DIR`, whole command)".into(),
            format!(
                "{:.1} s: {:.0} documents/s, {:.1} MB/s; peak RSS {}",
                import.as_secs_f64(),
                docs as f64 / import.as_secs_f64(),
                corpus_bytes as f64 / 1e6 / import.as_secs_f64(),
                import_rss.map_or("–".into(), mib)
            ),
        ),
        (
            "index size on disk (text included)".into(),
            format!(
                "{:.1} MB ({:.2}× the corpus)",
                index_bytes as f64 / 1e6,
                index_bytes as f64 / corpus_bytes as f64
            ),
        ),
        (
            "re-import of the unchanged corpus".into(),
            format!("{:.1} s", reimport.as_secs_f64()),
        ),
    ];
    for line in latency.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts.first() == Some(&"peak_rss_kib") {
            let kib: u64 = parts.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            rows.push(("peak RSS of the searching process".into(), mib(kib)));
            continue;
        }
        let n = parts.len();
        if n < 5 {
            continue;
        }
        let kind = parts[1..n - 4].join(" ");
        let us = |s: &str| s.parse::<f64>().unwrap_or(0.0) / 1000.0;
        rows.push((
            format!("search, in process: {kind}"),
            format!(
                "p50 {:.2} ms, p99 {:.2} ms (approximate: {:.0}% of queries)",
                us(parts[n - 4]),
                us(parts[n - 3]),
                parts[n - 2].parse::<f64>().unwrap_or(0.0) * 100.0
            ),
        ));
    }
    rows.push((
        "`pai resources search` whole command (process start included)".into(),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms; peak RSS {}",
            ms(whole[whole.len() / 2]),
            ms(whole[(whole.len() * 99 / 100).min(whole.len() - 1)]),
            mib(whole_rss)
        ),
    ));
    for (what, value) in &rows {
        println!("{what:<70} {value}");
    }
    let _ = std::fs::remove_dir_all(&work);
    if write_docs {
        let mut table = String::from("| what | result |\n|---|---|\n");
        for (what, value) in &rows {
            let _ = writeln!(table, "| {what} | {value} |");
        }
        let path = root.join("docs/benchmarks.md");
        let doc = std::fs::read_to_string(&path)?;
        let (start, end) = (
            "<!-- bench-resources:start -->",
            "<!-- bench-resources:end -->",
        );
        let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
            bail!("{} lacks the {start} … {end} markers", path.display());
        };
        std::fs::write(&path, format!("{}{start}\n{table}{}", &doc[..a], &doc[b..]))?;
        println!("updated {}", path.display());
    }
    Ok(())
}

/// Runs `pai args` under GNU time (when installed): wall time and peak RSS in KiB.
fn timed(pai: &Path, env: &[(&str, PathBuf); 2], args: &[&str]) -> Result<(Duration, Option<u64>)> {
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "peak-rss-kib %M", "--"]).arg(pai);
        c
    } else {
        Command::new(pai)
    };
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = cmd.output()?;
    let elapsed = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    // `search` exits 1 when nothing matches: a result, not a failure of the benchmark.
    if !out.status.success() && !err.contains("no resource matches") {
        bail!("pai {} failed: {err}", args.join(" "));
    }
    let rss = err
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|v| v.trim().parse().ok());
    Ok((elapsed, rss))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
