//! Times the decoder alone on a GGUF file, without the rest of pai: a fixed 32-token
//! prompt, then `N` tokens chosen greedily. Prints the decode rate and the tokens chosen,
//! so that a kernel change can be profiled (`perf record`) and checked to answer the same.
//! Besides the wall-clock rate it gives decoded tokens per CPU-second of the whole process
//! (at one thread, a pool's spinning workers included at more), which a loaded machine
//! skews far less.
//!
//! `cargo run --release -p pai-llama --example decode -- MODEL.gguf [N]`; the thread count
//! comes from `CANDLE_NUM_THREADS`, as in pai.

use std::time::Instant;

use candle_core::quantized::gguf_file::Content;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: decode MODEL.gguf [TOKENS]")?;
    let n: usize = args.next().map_or(Ok(128), |a| a.parse())?;
    let mut file = std::io::BufReader::new(std::fs::File::open(&path)?);
    let content = Content::read(&mut file)?;
    let started = Instant::now();
    let mut model = pai_llama::Llama::load(&content, &mut file)?
        .ok_or("the decoder does not cover this file")?;
    let load = started.elapsed();

    let prompt: Vec<u32> = (0..32).map(|i| 1 + i * 37 % 500).collect();
    let started = Instant::now();
    let mut logits = model.forward(&prompt, 0)?;
    let prefill = started.elapsed();
    let mut chosen = Vec::with_capacity(n);
    let cpu = cpu_ns();
    let started = Instant::now();
    for i in 0..n {
        let next = argmax(&logits);
        chosen.push(next);
        logits = model.forward(&[next], prompt.len() + i)?;
    }
    let decode = started.elapsed();
    let cpu = cpu_ns().saturating_sub(cpu) as f64 / 1e9;
    println!(
        "load {:.0} ms, prefill {:.1} ms, decode {:.2} tokens/s, {:.2} tokens per CPU-second",
        load.as_secs_f64() * 1e3,
        prefill.as_secs_f64() * 1e3,
        n as f64 / decode.as_secs_f64(),
        n as f64 / cpu
    );
    println!("tokens {chosen:?}");
    Ok(())
}

/// CPU time of all this process's threads so far, in ns (`/proc/self/task/*/schedstat`),
/// for a rate that other processes on a busy machine do not skew; 0 where it is missing.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}
