//! The vector side of a hybrid search at scale, for docs/benchmarks.md: fills a store at
//! the path given with N chunks (`PAI_SCAN_CHUNKS`, default 100,000) carrying random
//! 384-number int8 vectors, then times hybrid searches (a stand-in model returns a random
//! query vector at once, so the time is the store's: the BM25 side, which finds nothing
//! here, and the scan of every stored vector). Prints p50/p95 in ms, the database size
//! and VmHWM.

// A measuring tool: a failure here should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use pai_resources::vector::quantize;
use pai_resources::{Embed, ResourceStore, SearchMode, SearchOptions, SqliteStore};

const DIMS: usize = 384;

#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn unit_vector(&mut self) -> Vec<f32> {
        let v: Vec<f32> = (0..DIMS)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
                    - 0.5
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }
}

#[derive(Debug)]
struct Random(std::sync::Mutex<Rng>);

impl Embed for Random {
    fn model(&self) -> &str {
        "scan@0"
    }
    fn dims(&self) -> usize {
        DIMS
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let mut r = self.0.lock().unwrap();
        Ok(texts.iter().map(|_| r.unit_vector()).collect())
    }
}

fn main() {
    let db = std::env::args().nth(1).expect("usage: vector_scan DB");
    let n: usize = std::env::var("PAI_SCAN_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let path = std::path::Path::new(&db);
    let store = SqliteStore::open(path).expect("open the store");
    {
        let mut conn = rusqlite::Connection::open(path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO embed_models(name, dims) VALUES ('scan@0', ?1)",
            [DIMS as i64],
        )
        .unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for d in 0..n.div_ceil(100) {
            tx.execute(
                "INSERT INTO documents(title, source, media_type, class, size, sha256, added, updated) \
                 VALUES (?1, ?1, 'text/plain', 'internal', 1, 'x', 'now', 'now')",
                [format!("doc{d}")],
            )
            .unwrap();
            let doc = tx.last_insert_rowid();
            for s in 0..100.min(n - d * 100) {
                tx.execute(
                    "INSERT INTO chunks(doc, seq, heading, text) VALUES (?1, ?2, 'h', 'filler')",
                    [doc, s as i64],
                )
                .unwrap();
                let chunk = tx.last_insert_rowid();
                tx.execute(
                    "INSERT INTO chunk_vectors(chunk, model, vec) VALUES (?1, 1, ?2)",
                    rusqlite::params![chunk, quantize(&rng.unit_vector())],
                )
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    store.set_embedder(Arc::new(Random(std::sync::Mutex::new(Rng(7)))));
    let opts = SearchOptions::default();
    // Warm the page cache as a second search would find it.
    let first = store.search("anything", &opts).unwrap();
    assert_eq!(first.mode, SearchMode::Hybrid);
    let mut times: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            store.search("anything", &opts).unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let size = std::fs::metadata(path).map_or(0, |m| m.len())
        + std::fs::metadata(format!("{db}-wal")).map_or(0, |m| m.len());
    println!(
        "chunks {n} p50_ms {:.1} p95_ms {:.1} db_mib {:.1}",
        times[10],
        times[19],
        size as f64 / (1024.0 * 1024.0)
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
        let kib: String = line.chars().filter(char::is_ascii_digit).collect();
        println!("peak_rss_kib {kib}");
    }
}
