//! What a fresh process pays to scan a request's parts for secrets and personal data, set-up
//! included: `scan_parts N` scans N short parts (a history of N messages of about 110
//! bytes), `scan_parts 1 BYTES` one text of that size. Run each case in its own process
//! (`cargo build --release -p pai-policy --example scan_parts`): the rules and the keyword
//! automaton are built once per process, which is what this measures.

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let bytes: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let parts: Vec<String> = if bytes > 0 {
        vec!["the capital of France is Paris. ".repeat(bytes / 32)]
    } else {
        (0..n)
            .map(|i| {
                format!(
                    "turn {i}: what is the capital of France? Paris is the capital of France, \
                     a country in Europe with many cities."
                )
            })
            .collect()
    };
    let started = std::time::Instant::now();
    let found: usize = parts
        .iter()
        .map(|p| pai_policy::detect::scan(p).len())
        .sum();
    println!(
        "{} part(s), {} bytes: {:.3} ms, {found} finding(s)",
        parts.len(),
        parts.iter().map(String::len).sum::<usize>(),
        started.elapsed().as_secs_f64() * 1000.0
    );
}
