//! How fast the detectors are, for `cargo xtask bench-scan` (run it in release):
//!
//! 1. A 4 KB prompt (prose with code, one key and one address in it) scanned once by this
//!    fresh process: the time includes everything built lazily (rules parsed, keyword
//!    automaton, the regexes that prompt needs), as in a `pai prompt` process.
//! 2. Throughput on a mixed prose + code corpus: the workspace's own Rust sources, docs and
//!    Cargo.lock (the root is the first argument, default: this crate's workspace), repeated
//!    to at least 8 MB.
//!
//! Prints `key value` lines: `first_prompt_us`, `prompt_us` (median of later scans of the
//! same prompt), `corpus_bytes`, `mb_per_s` (median of 5 passes, one core), `findings`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use pai_policy::detect;

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let prompt = prompt();
    let started = Instant::now();
    let found = detect::scan(&prompt);
    let first = started.elapsed();
    assert_eq!(found.len(), 2, "the bench prompt has two values: {found:?}");
    let mut later: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(detect::scan(&prompt));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    later.sort_by(f64::total_cmp);

    let mut corpus = String::new();
    collect(&root, &mut corpus);
    let unit = corpus.clone();
    while corpus.len() < 8 << 20 {
        corpus.push_str(&unit);
    }
    let mut rates: Vec<f64> = Vec::new();
    let mut findings = 0;
    for _ in 0..5 {
        let t = Instant::now();
        findings = std::hint::black_box(detect::scan(&corpus)).len();
        rates.push(corpus.len() as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!("prompt_bytes {}", prompt.len());
    println!("first_prompt_us {:.0}", first.as_secs_f64() * 1e6);
    println!("prompt_us {:.1}", later[later.len() / 2]);
    println!("corpus_bytes {}", corpus.len());
    println!("corpus_unit_bytes {}", unit.len());
    println!("mb_per_s {:.0}", rates[rates.len() / 2]);
    println!("findings {findings}");
}

/// A 4 KB prompt as people write them: prose, a pasted config and a stack trace, with an
/// AWS key and an e-mail address to find.
fn prompt() -> String {
    let prose = "Could you look at why the nightly export fails? It started after we moved \
                 the job to the new runner; the logs say the connection is refused, but the \
                 same settings work from my laptop. ";
    let code = "[export]\nbucket = \"reports-nightly\"\nregion = \"eu-west-1\"\nretries = 3\n\
                timeout_secs = 30\n\nfn upload(client: &Client, path: &Path) -> Result<()> {\n    \
                let body = std::fs::read(path)?;\n    client.put(\"reports-nightly\", body)\n}\n";
    let mut p = String::new();
    while p.len() < 3900 {
        p.push_str(prose);
        p.push_str(code);
    }
    p.push_str("key AKIAQ3EGRJ7MNOZ4V5XA, ping ana.silva@mail.pt when done.\n");
    p
}

/// The workspace's Rust sources, Markdown and Cargo.lock, in a stable order.
fn collect(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            collect(&path, out);
        } else if (name.ends_with(".rs") || name.ends_with(".md") || name == "Cargo.lock")
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            out.push_str(&text);
        }
    }
}
