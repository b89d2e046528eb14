//! Ranked results for a relevance evaluation, for `cargo xtask eval-resources`: opens the
//! store at the path given (with the embedding model in the directory given second, if
//! any, named as `pai` names it), reads queries from stdin (`<id>\t<query>` a line) and
//! prints, for each query and each ranking (`bm25`, and `hybrid` when a model is given),
//! one line: `<mode>\t<id>\t<microseconds>\t<source>\t<source>…` (the top 10 documents'
//! sources, best first). Then `peak_rss_kib N` (VmHWM).

// A measuring tool: a failure here should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

use pai_resources::embed::BertEmbedder;
use pai_resources::{Embed, ResourceStore, SearchMode, SearchOptions, SqliteStore};

fn main() {
    let mut args = std::env::args().skip(1);
    let db = args
        .next()
        .expect("usage: eval_search DB [MODEL_DIR MODEL_NAME] < queries");
    let store = SqliteStore::open(std::path::Path::new(&db)).expect("open the store");
    let hybrid = match (args.next(), args.next()) {
        (Some(dir), Some(name)) => {
            let model = BertEmbedder::load(std::path::Path::new(&dir), &name).expect("model");
            store.set_embedder(Arc::new(model) as Arc<dyn Embed>);
            true
        }
        _ => false,
    };
    let queries: Vec<(String, String)> = std::io::stdin()
        .lock()
        .lines()
        .map(|l| l.unwrap())
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let modes: &[bool] = if hybrid { &[true, false] } else { &[true] };
    for &bm25_only in modes {
        let opts = SearchOptions {
            limit: 10,
            bm25_only,
            ..SearchOptions::default()
        };
        for (id, q) in &queries {
            let started = Instant::now();
            let found = store.search(q, &opts).unwrap();
            let us = started.elapsed().as_micros();
            if !bm25_only {
                assert_eq!(
                    found.mode,
                    SearchMode::Hybrid,
                    "no vectors of this model stored"
                );
            }
            let mode = if bm25_only { "bm25" } else { "hybrid" };
            let sources: Vec<&str> = found.hits.iter().map(|h| h.source.as_str()).collect();
            println!("{mode}\t{id}\t{us}\t{}", sources.join("\t"));
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
        let kib: String = line.chars().filter(char::is_ascii_digit).collect();
        println!("peak_rss_kib {kib}");
    }
}
