//! `cargo xtask bench`: what `pai` adds to one model round trip.
//!
//! Builds the release binary, starts a zero-latency OpenAI-compatible mock on 127.0.0.1
//! (a plain thread answering canned JSON or SSE at once), and times whole `pai` processes:
//! start-up alone, a session read, and full prompt round trips, streamed and not. Since
//! the mock answers instantly, a round trip's time is what PAI itself costs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const RUNS: usize = 40;

pub fn run(write_docs: bool) -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "pai-cli"])
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let root = workspace_root()?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let pai = target.join("release/pai");
    let port = start_mock()?;
    let home = std::env::temp_dir().join(format!("pai-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let env = [
        ("PAI_HOME", home.join("home")),
        ("PAI_CONFIG_DIR", home.join("config")),
    ];
    let run = |args: &[&str]| -> Result<Duration> {
        let started = Instant::now();
        let out = Command::new(&pai)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
            .env_remove("OPENAI_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()?;
        let elapsed = started.elapsed();
        if !out.status.success() {
            bail!(
                "pai {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(elapsed)
    };
    let base = format!("http://127.0.0.1:{port}/v1");
    run(&[
        "init",
        "bench",
        "openai",
        "--model",
        "m",
        "--base-url",
        &base,
    ])?;

    let cases: [(&str, &[&str]); 5] = [
        ("`pai --version` (process start-up)", &["--version"]),
        ("`pai status` (start-up + session read)", &["status"]),
        (
            "`pai prompt --no-stream` round trip",
            &["prompt", "--no-stream", "hi"],
        ),
        (
            "`pai prompt --stream` round trip (8 chunks)",
            &["prompt", "--stream", "hi"],
        ),
        (
            "`pai prompt` with one tool round (`current_time`): two model calls",
            &["prompt", "--no-stream", "use-a-tool"],
        ),
    ];
    let mut rows = Vec::new();
    for (name, args) in cases {
        run(args)?; // warm the page cache
        let mut times = (0..RUNS).map(|_| run(args)).collect::<Result<Vec<_>>>()?;
        // `reset` keeps the history from growing across runs of the prompt cases.
        run(&["reset"])?;
        times.sort();
        let median = times[times.len() / 2];
        let p90 = times[times.len() * 9 / 10];
        println!(
            "{name:<48} median {:>6.2} ms   p90 {:>6.2} ms",
            ms(median),
            ms(p90)
        );
        rows.push((name, median, p90));
    }
    let _ = std::fs::remove_dir_all(&home);

    if write_docs {
        let mut table = String::from("| what | median | p90 |\n|---|---|---|\n");
        for (name, median, p90) in &rows {
            table.push_str(&format!(
                "| {name} | {:.2} ms | {:.2} ms |\n",
                ms(*median),
                ms(*p90)
            ));
        }
        let path = root.join("docs/benchmarks.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        let (start, end) = ("<!-- bench:start -->", "<!-- bench:end -->");
        let (Some(a), Some(b)) = (doc.find(start), doc.find(end)) else {
            bail!("{} lacks the {start} … {end} markers", path.display());
        };
        let updated = format!("{}{start}\n{table}{}", &doc[..a], &doc[b..]);
        std::fs::write(&path, updated)?;
        println!("updated {}", path.display());
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// Serves canned replies on an ephemeral port, one thread per connection.
fn start_mock() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve(stream);
            });
        }
    });
    Ok(port)
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let h = header.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let text = String::from_utf8_lossy(&body);
        let streamed = text.contains("\"stream\":true");
        // The tool case: ask for one `current_time` call, then answer once its result is back.
        let wants_tool = text.contains("use-a-tool") && !text.contains("\"role\":\"tool\"");
        let (ctype, payload) = if wants_tool {
            (
                "application/json",
                "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"current_time\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":8}}".to_string(),
            )
        } else if streamed {
            let mut sse = String::new();
            for word in [
                "Paris ", "is ", "the ", "capital ", "of ", "France", ".", "",
            ] {
                sse.push_str(&format!(
                    "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}]}}\n\n"
                ));
            }
            sse.push_str(
                "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            );
            sse.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":8}}\n\ndata: [DONE]\n\n");
            ("text/event-stream", sse)
        } else {
            (
                "application/json",
                "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Paris is the capital of France.\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":8}}".to_string(),
            )
        };
        // One write per response: split writes on a kept-alive connection meet Nagle and
        // delayed ACKs, adding ~40 ms that would be the mock's, not PAI's.
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n{payload}",
            payload.len()
        );
        out.write_all(response.as_bytes())?;
        out.flush()?;
    }
}
