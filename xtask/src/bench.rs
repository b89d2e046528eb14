//! `cargo xtask bench`: what `pai` adds to one model round trip.
//!
//! Builds the release binary, starts a zero-latency OpenAI-compatible mock on 127.0.0.1
//! (a plain thread answering canned JSON or SSE at once), and times whole `pai` processes:
//! start-up alone, a session read, and full prompt round trips, streamed and not. Since
//! the mock answers instantly, a round trip's time is what PAI itself costs. Each case also
//! gets its peak RSS (`/usr/bin/time`, when installed) and its syncs per run (`strace`,
//! when installed).
//!
//! When `aichat` is on `PATH` (or `AICHAT` names it), the same prompts go to it against the
//! same mock, its runs interleaved with pai's so that a busy machine slows both alike.
//! `PAI_BENCH_BIN` times a given `pai` binary instead of building one (before/after runs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::link_order;

const RUNS: usize = 40;
/// Runs under GNU time per case; the peak RSS reported is their median.
const RSS_RUNS: usize = 5;
/// Runs under strace per case; syncs are reported per run, averaged over these.
const SYNC_RUNS: usize = 10;

/// One command to time, and the same request as aichat makes it, if it can.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    aichat: Option<&'static [&'static str]>,
}

/// Timings of one program on one case.
struct Row {
    name: String,
    median: Duration,
    p90: Duration,
    rss_kib: Option<u64>,
    syncs: Option<f64>,
}

pub fn run(write_docs: bool) -> Result<()> {
    let root = workspace_root()?;
    let pai = match std::env::var_os("PAI_BENCH_BIN") {
        Some(bin) => PathBuf::from(bin),
        // Built as `cargo xtask link-order` builds it (with the linker's map, so that
        // alternating the two does not relink), and the link order checked against it.
        None => link_order::build_release(&root)?,
    };
    let aichat = std::env::var_os("AICHAT")
        .map(PathBuf::from)
        .or_else(|| on_path("aichat"));
    let mock = MockRun::start("bench", &pai)?;
    let (home, base, pai_env) = (&mock.home, &mock.base, &mock.env);
    let aichat_env = vec![("AICHAT_CONFIG_DIR".to_string(), home.join("aichat"))];
    if aichat.is_some() {
        std::fs::create_dir_all(home.join("aichat"))?;
        // Saving nothing, as pai's history and audit are the extra work being compared.
        std::fs::write(
            home.join("aichat/config.yaml"),
            format!(
                "model: mock:m\nsave: false\nhighlight: false\nclients:\n  - type: openai-compatible\n    name: mock\n    api_base: {base}\n    api_key: none\n    models:\n      - name: m\n"
            ),
        )?;
    }
    let pai_run = |args: &[&str]| run_once(&pai, pai_env, args);

    let cases = [
        Case {
            name: "`pai --version` (process start-up)",
            args: &["--version"],
            aichat: Some(&["--version"]),
        },
        Case {
            name: "`pai status` (start-up + session read)",
            args: &["status"],
            aichat: None,
        },
        Case {
            name: "`pai prompt --no-stream` round trip",
            args: &["prompt", "--no-stream", "hi"],
            aichat: Some(&["--no-stream", "hi"]),
        },
        Case {
            name: "`pai prompt --stream` round trip (8 chunks)",
            args: &["prompt", "--stream", "hi"],
            aichat: Some(&["hi"]),
        },
        Case {
            name: "`pai prompt` with one tool round (`current_time`): two model calls",
            args: &["prompt", "--no-stream", "use-a-tool"],
            aichat: None,
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        let other = aichat.as_ref().zip(case.aichat);
        // Warm the page cache.
        pai_run(case.args)?;
        if let Some((bin, args)) = other {
            run_once(bin, &aichat_env, args)?;
        }
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            mine.push(pai_run(case.args)?);
            if let Some((bin, args)) = other {
                theirs.push(run_once(bin, &aichat_env, args)?);
            }
        }
        let rss_kib = peak_rss(&pai, pai_env, case.args)?;
        let syncs = syncs_per_run(&pai, pai_env, case.args)?;
        // `reset` keeps the history from growing across runs of the prompt cases.
        pai_run(&["reset"])?;
        rows.push(row(case.name.to_string(), mine, rss_kib, syncs));
        if let Some((bin, args)) = other {
            let rss_kib = peak_rss(bin, &aichat_env, args)?;
            let name = format!("aichat {}, same mock, interleaved", args.join(" "));
            rows.push(row(name, theirs, rss_kib, None));
        }
        for r in &rows[rows.len() - 1 - usize::from(other.is_some())..] {
            println!(
                "{:<68} median {:>6.2} ms   p90 {:>6.2} ms   peak RSS {:>6}   syncs {}",
                r.name,
                ms(r.median),
                ms(r.p90),
                r.rss_kib.map_or("-".into(), mib),
                r.syncs.map_or("-".into(), |s| format!("{s:.1}"))
            );
        }
    }
    drop(mock);
    let gate = gate_cost(&root)?;
    println!(
        "{:<68} median {:>6.3} ms   p90 {:>6.3} ms",
        gate.name,
        ms(gate.median),
        ms(gate.p90)
    );
    rows.push(gate);

    if write_docs {
        let mut table = String::from(
            "| what | median | p90 | peak RSS | syncs per run |\n|---|---|---|---|---|\n",
        );
        for r in &rows {
            table.push_str(&format!(
                "| {} | {:.2} ms | {:.2} ms | {} | {} |\n",
                r.name,
                ms(r.median),
                ms(r.p90),
                r.rss_kib.map_or("–".into(), mib),
                r.syncs.map_or("–".into(), |s| format!("{s:.1}"))
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

/// What the egress gate's policy half costs per model call, measured in process by
/// `crates/pai-policy/examples/gate_cost.rs` built in release (see its doc).
fn gate_cost(root: &Path) -> Result<Row> {
    let text = run_policy_example(root, "gate_cost")?;
    let mut lines = text.lines();
    let name = lines
        .next()
        .context("gate_cost printed nothing")?
        .to_string();
    let times = lines
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .map(Duration::from_nanos)
        .collect();
    Ok(row(name, times, None, None))
}

/// Runs one of pai-policy's examples in release (measurements in process, optimised as
/// in a real build) and returns what it printed.
pub(crate) fn run_policy_example(root: &Path, example: &str) -> Result<String> {
    run_policy_example_with(root, example, &[])
}

/// [`run_policy_example`] with arguments for the example.
pub(crate) fn run_policy_example_with(
    root: &Path,
    example: &str,
    args: &[&std::ffi::OsStr],
) -> Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "pai-policy",
            "--example",
            example,
            "--",
        ])
        .args(args)
        .output()
        .context("could not run cargo")?;
    if !out.status.success() {
        bail!(
            "the {example} example failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn row(name: String, mut times: Vec<Duration>, rss_kib: Option<u64>, syncs: Option<f64>) -> Row {
    times.sort();
    Row {
        name,
        median: times[times.len() / 2],
        p90: times[times.len() * 9 / 10],
        rss_kib,
        syncs,
    }
}

/// `cargo xtask bench`'s mock on 127.0.0.1 and a fresh PAI home (under the temp dir) whose
/// active session talks to it.
pub(crate) struct MockRun {
    /// The PAI home's parent directory, removed on drop.
    pub home: PathBuf,
    /// The mock's OpenAI-compatible base URL.
    pub base: String,
    /// `PAI_HOME` and `PAI_CONFIG_DIR` for `pai` runs.
    pub env: Vec<(String, PathBuf)>,
}

impl MockRun {
    pub(crate) fn start(tag: &str, pai: &Path) -> Result<MockRun> {
        let port = start_mock()?;
        let home = std::env::temp_dir().join(format!("pai-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        let run = MockRun {
            base: format!("http://127.0.0.1:{port}/v1"),
            env: vec![
                ("PAI_HOME".to_string(), home.join("home")),
                ("PAI_CONFIG_DIR".to_string(), home.join("config")),
            ],
            home,
        };
        let init = [
            "init",
            "bench",
            "openai",
            "--model",
            "m",
            "--base-url",
            &run.base,
        ];
        run_once(pai, &run.env, &init)?;
        Ok(run)
    }

    /// `program args` with this run's environment, output captured.
    pub(crate) fn command(&self, program: &Path, args: &[&str]) -> Command {
        command(program, &self.env, args)
    }
}

impl Drop for MockRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Runs `bin args` once with `env`, failing on a non-zero exit; returns the wall time.
fn run_once(bin: &Path, env: &[(String, PathBuf)], args: &[&str]) -> Result<Duration> {
    let started = Instant::now();
    let out = command(bin, env, args).output()?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(elapsed)
}

fn command(bin: &Path, env: &[(String, PathBuf)], args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The median peak RSS of [`RSS_RUNS`] runs in KiB, from GNU time's `%M`; `None` without
/// `/usr/bin/time`. One run says little: how much of the binary the kernel maps around
/// each fault depends on how its pages sit in the page cache, and varies by about 1 MiB.
fn peak_rss(bin: &Path, env: &[(String, PathBuf)], args: &[&str]) -> Result<Option<u64>> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return Ok(None);
    }
    let mut full = vec!["-f", "peak-rss-kib %M", "--"];
    let bin_str = bin.to_string_lossy();
    full.push(&bin_str);
    full.extend_from_slice(args);
    let mut runs = Vec::new();
    for _ in 0..RSS_RUNS {
        let out = command(time, env, &full).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        if let Some(kib) = err
            .lines()
            .find_map(|l| l.strip_prefix("peak-rss-kib "))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            runs.push(kib);
        }
    }
    runs.sort_unstable();
    Ok(runs.get(runs.len() / 2).copied())
}

/// `fsync`, `fdatasync` and `sync_file_range` calls per run, averaged over [`SYNC_RUNS`]
/// runs (a WAL checkpoint adds a few every so many turns); `None` without `strace`.
fn syncs_per_run(bin: &Path, env: &[(String, PathBuf)], args: &[&str]) -> Result<Option<f64>> {
    let Some(strace) = on_path("strace") else {
        return Ok(None);
    };
    let mut total = 0u64;
    for i in 0..SYNC_RUNS {
        let log = std::env::temp_dir().join(format!("pai-bench-strace-{}-{i}", std::process::id()));
        let log_str = log.to_string_lossy().into_owned();
        let bin_str = bin.to_string_lossy();
        let mut full = vec![
            "-f",
            "-c",
            "-e",
            "trace=fsync,fdatasync,sync_file_range",
            "-o",
            &log_str,
            "--",
            &bin_str,
        ];
        full.extend_from_slice(args);
        let out = command(&strace, env, &full).output()?;
        if !out.status.success() {
            bail!("strace {} failed", args.join(" "));
        }
        let summary = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        // strace -c: "% time  seconds  usecs/call  calls  errors  syscall"; the total row
        // ends with "total" and carries the call count in its fourth column. No call at
        // all leaves the summary empty.
        total += summary
            .lines()
            .find(|l| l.trim_end().ends_with("total"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(Some(total as f64 / SYNC_RUNS as f64))
}

pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn workspace_root() -> Result<PathBuf> {
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
