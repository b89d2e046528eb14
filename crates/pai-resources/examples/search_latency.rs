//! Search latency inside one process (no start-up), for `cargo xtask bench-resources`:
//! opens the store at the path given, reads queries from stdin (`<kind>\t<query>` a
//! line), runs each kind's queries several times and prints `<kind> p50_us p99_us
//! approximate_share hits_avg`, then `peak_rss_kib N` (VmHWM).

// A measuring tool: a failure here should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Instant;

use pai_resources::{ResourceStore, SearchOptions, SqliteStore};

const ROUNDS: usize = 5;

fn main() {
    let db = std::env::args()
        .nth(1)
        .expect("usage: search_latency DB < queries");
    let store = SqliteStore::open(std::path::Path::new(&db)).expect("open the store");
    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        if let Some((kind, q)) = line.split_once('\t') {
            by_kind
                .entry(kind.to_string())
                .or_default()
                .push(q.to_string());
        }
    }
    let opts = SearchOptions::default();
    // Warm the page cache the way a second search would find it.
    for qs in by_kind.values() {
        for q in qs {
            store.search(q, &opts).unwrap();
        }
    }
    for (kind, qs) in &by_kind {
        let mut times = Vec::new();
        let (mut approx, mut hits) = (0usize, 0usize);
        for _ in 0..ROUNDS {
            for q in qs {
                let t = Instant::now();
                let found = store.search(q, &opts).unwrap();
                times.push(t.elapsed().as_micros() as u64);
                approx += usize::from(found.approximate);
                hits += found.hits.len();
            }
        }
        times.sort_unstable();
        let n = times.len();
        println!(
            "{kind} {} {} {:.2} {:.1}",
            times[n / 2],
            times[(n * 99 / 100).min(n - 1)],
            approx as f64 / n as f64,
            hits as f64 / n as f64
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(kib) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        println!("peak_rss_kib {kib}");
    }
}
