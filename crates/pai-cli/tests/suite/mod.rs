//! The real `pai` binary, run as a child process against a mock OpenAI-compatible server
//! on 127.0.0.1. Each test gets its own `PAI_HOME` / `PAI_CONFIG_DIR` and an environment
//! holding nothing from the developer's shell: no keys, no proxies, no `RUST_LOG`.

// clippy.toml allows unwrap in `#[test]` functions only; the suite's helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apis;
mod attach;
mod audit;
mod chat;
mod cli_form;
mod confinement;
mod egress;
mod endings;
mod failures;
mod files;
mod hardening;
mod help;
mod images;
mod init;
mod json_out;
mod keys;
mod local;
#[cfg(feature = "otel")]
mod otel;
mod planner;
mod policy;
mod prompt;
mod providers;
mod render;
mod resources;
#[cfg(feature = "local")]
mod resources_embed;
mod roles;
#[cfg(feature = "s3")]
mod s3;
mod scan;
mod sessions;
mod structured;
mod tools;
mod verbose;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pai_test_support::TempHome;
use serde_json::Value;

/// The model every test session is created with.
pub const MODEL: &str = "m";
/// A made-up API key; tests check it never reaches disk or output.
pub const API_KEY: &str = "sk-test-PLAINTEXT-5f1c0ffee";

/// Retries off and short timeouts: a failure test ends in milliseconds.
pub const FAST_CONFIG: &str =
    "[network]\nmax_retries = 0\nconnect_timeout_secs = 2\nread_timeout_secs = 10\n";

/// One isolated PAI installation: a temporary home and config dir, and the way to run
/// `pai` confined to them.
pub struct Pai {
    pub home: TempHome,
}

impl Pai {
    /// A fresh home whose config.toml turns retries off.
    pub fn new() -> Self {
        let pai = Self::bare();
        pai.home.write_config(FAST_CONFIG);
        pai
    }

    /// A fresh home with no config.toml.
    pub fn bare() -> Self {
        Self {
            home: TempHome::new(),
        }
    }

    /// `pai` with an environment of PATH, a throwaway HOME and this PAI home only; add
    /// keys with `.env(..)` where a test needs them. A run that hangs fails after 30s.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::from_std(self.std_cmd());
        cmd.timeout(Duration::from_secs(30));
        cmd
    }

    /// The same, as a `std::process::Command`, for tests that run several at once.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(pai_bin());
        cmd.env_clear();
        // Coverage tools need their variable; nothing else from the caller's shell leaks in.
        for var in ["PATH", "LLVM_PROFILE_FILE"] {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        cmd.env("HOME", self.home.root());
        cmd.envs(self.home.env());
        cmd
    }

    /// Runs `pai <args>` (a shell-quoted string) inside a pseudo-terminal made by
    /// util-linux `script`, with `stdin` typed in, and returns what the terminal showed.
    /// `None` when `script` is missing (outside CI; under CI=true that fails the test, so
    /// a terminal test can never pass without running).
    pub fn run_in_pty(&self, args: &str, stdin: &str) -> Option<String> {
        self.run_in_pty_with(args, stdin, &[])
    }

    /// [`Pai::run_in_pty`] with these environment variables added.
    pub fn run_in_pty_with(
        &self,
        args: &str,
        stdin: &str,
        envs: &[(&str, &str)],
    ) -> Option<String> {
        let script = self.script(args, envs)?;
        let out = assert_cmd::Command::from_std(script)
            .timeout(Duration::from_secs(30))
            .write_stdin(stdin.to_string())
            .output()
            .unwrap();
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// util-linux `script` running `pai <args>` in a pseudo-terminal, in this
    /// installation's confined environment plus `envs`; `None` when `script` is missing
    /// (outside CI; under CI=true that fails the test, so a terminal test can never pass
    /// without running).
    fn script(&self, args: &str, envs: &[(&str, &str)]) -> Option<std::process::Command> {
        let has_script = std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !has_script {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "util-linux 'script' is not installed, and CI=true requires this test to run; \
                 install it (Debian: apt-get install bsdutils; .ci/run does)"
            );
            eprintln!("skipped: util-linux 'script' is not installed");
            return None;
        }
        // `exec`: pai is the shell's replacement, so a Ctrl+C reaches pai alone and the
        // exit code is pai's (a shell left waiting would die of the SIGINT itself).
        let command = format!("exec {} {args}", pai_bin().display());
        // The same confined environment as every other test, handed to `script`'s child.
        let confined = self.std_cmd();
        let mut script = std::process::Command::new("script");
        script.args(["-qec", &command, "/dev/null"]);
        script
            .env_clear()
            .envs(confined.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .envs(envs.iter().copied());
        Some(script)
    }

    /// `pai <args>` started in a pseudo-terminal for a test to type into as it runs
    /// (keys must wait for the prompt: typed too early, the terminal's line discipline
    /// would turn Ctrl+C into a signal before PAI reads it as a key).
    pub fn spawn_in_pty(&self, args: &str) -> Option<Pty> {
        let mut script = self.script(args, &[])?;
        let mut child = script
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().unwrap();
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shown = screen.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Some(Pty {
            child,
            stdin,
            screen,
            seen: 0,
        })
    }

    /// Runs `pai args…` with empty stdin.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_cmd(self.cmd().args(args))
    }

    /// Runs `pai args…` with `stdin` piped in.
    pub fn run_stdin(&self, args: &[&str], stdin: impl Into<Vec<u8>>) -> Run {
        Run::from_cmd(self.cmd().args(args).write_stdin(stdin.into()))
    }

    /// `pai init <session> openai --model m --base-url <url>`, which must succeed.
    pub fn init(&self, session: &str, base_url: &str) -> Run {
        self.run(&[
            "init",
            session,
            "openai",
            "--model",
            MODEL,
            "--base-url",
            base_url,
        ])
        .success()
    }

    pub fn sessions_dir(&self) -> PathBuf {
        self.home.home().join("sessions")
    }

    pub fn session_dir(&self, session: &str) -> PathBuf {
        self.sessions_dir().join(session)
    }

    pub fn history_path(&self, session: &str) -> PathBuf {
        self.session_dir(session).join("history.jsonl")
    }

    /// The raw bytes of a session's history (empty when there is none).
    pub fn history_bytes(&self, session: &str) -> Vec<u8> {
        std::fs::read(self.history_path(session)).unwrap_or_default()
    }

    /// A session's history, each line parsed (a line that does not parse fails the test).
    pub fn history(&self, session: &str) -> Vec<Value> {
        String::from_utf8(self.history_bytes(session))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }

    /// `pai <session> status --json`, parsed.
    pub fn status_json(&self, session: &str) -> Value {
        self.run(&[session, "status", "--json"]).success().json()
    }

    pub fn session_json(&self, session: &str) -> Value {
        serde_json::from_slice(
            &std::fs::read(self.session_dir(session).join("session.json")).unwrap(),
        )
        .unwrap()
    }

    /// Snapshot settings that hide what differs from run to run: this home's path, the
    /// mock's port, timestamps and durations.
    pub fn settings(&self) -> insta::Settings {
        let mut s = insta::Settings::clone_current();
        s.set_prepend_module_to_snapshot(false);
        s.add_filter(
            &regex_escape(&self.home.root().display().to_string()),
            "[TEMP]",
        );
        // Ephemeral ports only (32000 and up): the fixed ports of local servers stay.
        s.add_filter(r"127\.0\.0\.1:(3[2-9]|[4-6]\d)\d{3}\b", "127.0.0.1:[PORT]");
        s.add_filter(r"\(os error \d+\)", "(os error [N])");
        s.add_filter(
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            "[TIMESTAMP]",
        );
        s.add_filter(r"\b\d+(\.\d+)?m?s\b", "[DURATION]");
        s
    }
}

fn pai_bin() -> &'static Path {
    assert_cmd::cargo::cargo_bin!("pai")
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Pins `$value` under `$name` with `$pai`'s filters.
macro_rules! snapshot {
    ($pai:expr, $name:expr, $value:expr) => {
        $pai.settings()
            .bind(|| insta::assert_snapshot!($name, $value))
    };
}
pub(crate) use snapshot;

/// A `pai` running in a pseudo-terminal: what it shows, and keys typed into it.
pub struct Pty {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    /// How far [`Pty::wait_for`] has read.
    seen: usize,
}

/// How long a pty test waits for something to appear or for pai to end: only a hang
/// reaches it.
const PTY_PATIENCE: Duration = Duration::from_secs(30);

impl Pty {
    /// Everything shown so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until `text` appears after what earlier waits found; fails the test (with
    /// the screen) if it never does.
    #[track_caller]
    pub fn wait_for(&mut self, text: &str) {
        let started = std::time::Instant::now();
        loop {
            let screen = self.screen.lock().unwrap().clone();
            if let Some(at) = find(&screen[self.seen.min(screen.len())..], text.as_bytes()) {
                self.seen += at + text.len();
                return;
            }
            assert!(
                started.elapsed() < PTY_PATIENCE,
                "{text:?} never appeared; the screen: {:?}",
                String::from_utf8_lossy(&screen)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for pai to end; its exit code and the whole screen.
    #[track_caller]
    pub fn finish(mut self) -> (Option<i32>, String) {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread drains what is left.
                std::thread::sleep(Duration::from_millis(100));
                return (status.code(), self.screen());
            }
            if started.elapsed() > PTY_PATIENCE {
                let _ = self.child.kill();
                panic!("pai did not end; the screen: {:?}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        // A failed test must not leave `script` and pai behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What one `pai` run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_cmd(cmd: &mut assert_cmd::Command) -> Self {
        let out = cmd.output().expect("pai runs");
        Self {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "pai failed: {self:#?}");
        self
    }

    /// The run ended with exactly this exit code (docs/usage.md lists them).
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(self.code, Some(code), "pai exit code: {self:#?}");
        self
    }

    #[track_caller]
    pub fn failure(self) -> Self {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "pai should have failed: {self:#?}"
        );
        self
    }

    /// The run failed with exactly one line on stderr, `error: …`; returns that line.
    #[track_caller]
    pub fn error_line(self) -> String {
        let run = self.failure();
        let line = run
            .stderr
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("stderr does not end in a newline: {run:#?}"));
        assert!(!line.contains('\n'), "stderr is not one line: {run:#?}");
        assert!(line.starts_with("error: "), "no 'error: ' prefix: {run:#?}");
        line.to_string()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// stdout and stderr together, for checking that a secret appears in neither.
    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}
