//! The audit log at scale, as `cargo xtask bench-audit` runs it (release build): appends
//! `PAI_AUDIT_BENCH_EVENTS` events (default 1,000,000) through the real append path into
//! a fresh log, then times a filtered listing, a full-text search and a full verify, and
//! prints `key value` lines.
//!
//! Appends use `record_deferred`: the WAL sync a durable `record` adds is the disk's
//! cost, measured by `cargo xtask bench` per turn, not the log's.

// A measuring program: failing loudly is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use pai_audit::{AuditEvent, AuditKey, AuditSink, EventKind, Filter, SqliteAudit};
use pai_types::{Locality, Usage};

const WORDS: &[&str] = &[
    "the",
    "a",
    "report",
    "quarterly",
    "budget",
    "rust",
    "sqlite",
    "index",
    "query",
    "model",
    "answer",
    "summary",
    "invoice",
    "meeting",
    "travel",
    "berlin",
    "paris",
    "kernel",
    "driver",
    "memory",
    "thread",
    "async",
    "compile",
    "error",
    "warning",
    "docs",
    "review",
    "merge",
    "branch",
    "release",
    "policy",
    "egress",
    "token",
    "session",
    "cache",
    "latency",
    "graph",
    "vector",
    "search",
    "prompt",
    "secret",
    "redacted",
    "file",
    "path",
    "network",
    "proxy",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn sentence(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| WORDS[self.below(WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn event(rng: &mut Rng, i: u64) -> AuditEvent {
    let session = format!("s{}", rng.below(50));
    let base = |kind, content: String| {
        AuditEvent::new(kind, content)
            .session(&session)
            .mode("prompt")
            .provider("openai")
            .endpoint("https://api.openai.com/v1")
            .model("gpt-4o-mini")
            .locality(Locality::Remote)
    };
    match i % 3 {
        0 => {
            // One event in 1,000 carries a rare word, for the search below.
            let rare = if rng.below(1000) == 0 { " zyzzyva" } else { "" };
            let words = 20 + rng.below(60);
            base(
                EventKind::Prompt,
                format!(
                    "{}{rare}\n[sent: system prompt 54 B internal; your input {} B internal]",
                    rng.sentence(words),
                    words * 6
                ),
            )
        }
        1 => base(
            EventKind::Egress,
            format!(
                r#"{{"url":"https://api.openai.com/v1/chat/completions","method":"POST","address":"162.159.140.245:443","proxy":null,"locality":"remote","bytes":{},"sha256":"{:064x}","status":200,"classes":["internal"],"redacted":{{}},"withheld":0}}"#,
                800 + rng.below(4000),
                rng.next()
            ),
        ),
        _ => {
            let words = 40 + rng.below(120);
            let usage = Usage {
                prompt_tokens: 100 + rng.below(900) as u64,
                completion_tokens: 20 + rng.below(400) as u64,
                estimated: false,
            };
            let ms = 300 + rng.below(3000) as u64;
            base(EventKind::Response, rng.sentence(words))
                .usage(usage)
                .duration_ms(ms)
        }
    }
}

/// This thread's CPU time (user + system) in seconds, from /proc (Linux; 100 ticks/s).
fn thread_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: u64 = std::env::var("PAI_AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = SqliteAudit::open_keyed(&path, AuditKey::derive(b"bench")).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    let mut appends = Vec::with_capacity(n as usize);
    for i in 0..n {
        let e = event(&mut rng, i);
        let t = Instant::now();
        log.record_deferred(&e).unwrap();
        appends.push(t.elapsed());
    }
    appends.sort();
    let p = |q: f64| appends[((appends.len() as f64 * q) as usize).min(appends.len() - 1)];
    println!("events {n}");
    println!("append_p50_us {:.1}", p(0.5).as_secs_f64() * 1e6);
    println!("append_p99_us {:.1}", p(0.99).as_secs_f64() * 1e6);

    let since = format!(
        "{:.3}",
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24)
    );
    let filter = Filter {
        session: Some("s7".into()),
        since: Some(since),
        limit: Some(50),
        ..Filter::default()
    };
    let list: Vec<Duration> = (0..21)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(log.list(&filter).unwrap().len(), 50);
            t.elapsed()
        })
        .collect();
    println!("list_ms {:.2}", median(list).as_secs_f64() * 1e3);

    let any = Filter {
        limit: Some(50),
        ..Filter::default()
    };
    let mut hits = 0;
    let search: Vec<Duration> = (0..21)
        .map(|_| {
            let t = Instant::now();
            hits = log.search("zyzzyva", &any).unwrap().len();
            t.elapsed()
        })
        .collect();
    println!("search_ms {:.2}", median(search).as_secs_f64() * 1e3);
    println!("search_hits {hits}");
    let common: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            log.search("budget", &any).unwrap();
            t.elapsed()
        })
        .collect();
    println!("search_common_ms {:.2}", median(common).as_secs_f64() * 1e3);

    let t = Instant::now();
    let cpu = thread_cpu_s();
    let report = log.verify().unwrap();
    let took = t.elapsed();
    let cpu = thread_cpu_s().zip(cpu).map(|(b, a)| b - a);
    assert!(report.is_intact(), "{}", report.summary());
    println!("verify_rows_per_s {:.0}", n as f64 / took.as_secs_f64());
    // On a shared machine the wall clock measures the neighbours too; CPU time does not.
    if let Some(cpu) = cpu.filter(|c| *c > 0.0) {
        println!("verify_rows_per_cpu_s {:.0}", n as f64 / cpu);
    }

    println!("verify_ms {:.0}", took.as_secs_f64() * 1e3);

    // The per-turn check. Before: every turn ran the full verify above. Now: the first
    // check (no mark recorded yet) is a full one and records the mark; after that each
    // turn opens the log afresh, as a new `pai` process does, and checks only the rows
    // written since — here the six of a turn with a tool call.
    let scope = log.check_scope().unwrap().unwrap();
    assert_eq!(scope.incremental_after(), None);
    let t = Instant::now();
    assert!(log.check(&scope).unwrap().first_broken.is_none());
    println!("check_first_full_ms {:.0}", t.elapsed().as_secs_f64() * 1e3);
    let mut turns = Vec::new();
    for turn in 0..21 {
        for k in 0..6 {
            log.record_deferred(&event(&mut rng, n + turn * 6 + k))
                .unwrap();
        }
        let t = Instant::now();
        let fresh = SqliteAudit::open_keyed(&path, AuditKey::derive(b"bench")).unwrap();
        let scope = fresh.check_scope().unwrap().unwrap();
        assert!(scope.incremental_after().is_some());
        let report = fresh.check(&scope).unwrap();
        turns.push(t.elapsed());
        assert_eq!((report.rows, report.first_broken), (6, None));
    }
    println!("check_turn_ms {:.2}", median(turns).as_secs_f64() * 1e3);

    drop(log);
    let size = |suffix: &str| {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    };
    let bytes = size("") + size("-wal");
    println!("bytes_per_event {:.0}", bytes as f64 / n as f64);
    // The machine's load while measuring, so a slow number can be read for what it is.
    if let Some(load) = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| {
        l.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    }) {
        println!("load_1min {load:.1}");
    }
}
