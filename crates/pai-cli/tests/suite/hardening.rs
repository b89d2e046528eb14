//! PAI's files under pressure, through the real binary: an unreadable history line, the
//! modes of what PAI creates, a home left open to others, read-only commands that must
//! write nothing, a local session with no model, and credentials inside endpoint URLs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use pai_audit::SqliteAudit;
use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::{FAST_CONFIG, MODEL, Pai, snapshot};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// --- history ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_last_history_line_is_moved_aside_and_the_session_goes_on() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    pai.run(&["s", "prompt", "first"]).success();
    // A complete line that is not an entry: readers skip it as the last line, and an
    // append that kept it would make it a corrupt middle line.
    let garbage = "{\"role\":\"user\",\"content\":\"no timestamp\"}";
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(pai.history_path("s"))
        .unwrap();
    writeln!(file, "{garbage}").unwrap();
    drop(file);

    pai.run(&["s", "prompt", "second"]).success();
    pai.run(&["s", "prompt", "third"]).success();

    let contents: Vec<String> = pai
        .history("s")
        .iter()
        .map(|e| e["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(contents, ["first", "ok", "second", "ok", "third", "ok"]);
    let rejected = pai.session_dir("s").join("history.rejected");
    assert_eq!(
        std::fs::read_to_string(&rejected).unwrap(),
        format!("{garbage}\n")
    );
    assert_eq!(mode(&rejected), 0o600);
    assert_eq!(pai.status_json("s")["messages"], 6);
}

// --- file modes --------------------------------------------------------------------------

/// The REPL's history file exists, 0600, before anything is typed (so before rustyline
/// could write it), and one that was open to others is closed without losing a line.
#[tokio::test(flavor = "multi_thread")]
async fn the_chat_history_file_is_private_before_anything_is_written() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let history = pai.home.home().join("chat_history.txt");

    for previous in [None, Some("an old line\n")] {
        if let Some(text) = previous {
            std::fs::write(&history, text).unwrap();
            set_mode(&history, 0o644);
        }
        let mut child = pai
            .std_cmd()
            .args(["s", "chat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The banner comes once the file is prepared and before any input is read.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut banner = String::new();
        stderr.read_line(&mut banner).unwrap();
        assert!(banner.starts_with("chatting in 's'"), "{banner}");

        let state = (mode(&history), std::fs::read_to_string(&history).unwrap());

        child.stdin.take().unwrap().write_all(b"exit\n").unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(state, (0o600, previous.unwrap_or_default().to_string()));
    }
}

#[test]
#[cfg(feature = "local")]
fn the_models_directory_and_its_files_are_private() {
    let pai = Pai::new();
    let file = pai.home.root().join("tiny.gguf");
    pai_test_support::write_tiny_llama(&file, &Default::default());
    pai.run(&["models", "add", file.to_str().unwrap()])
        .success();
    let models = pai.home.home().join("models");
    let modes: BTreeMap<String, u32> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                mode(&e.path()),
            )
        })
        .collect();
    assert_eq!(mode(&models), 0o700);
    assert_eq!(
        modes,
        BTreeMap::from([
            (".lock".to_string(), 0o600),
            ("index.json".to_string(), 0o600),
            ("tiny.gguf".to_string(), 0o600),
        ])
    );
}

/// A home (and sessions folder) that others could enter is restricted to 0700 by the
/// first write, and `-v` says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_home_open_to_others_is_restricted_on_the_first_write() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    let home = pai.home.home();
    let sessions = home.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    set_mode(&home, 0o755);
    set_mode(&sessions, 0o775);

    // Reading changes nothing.
    pai.run(&["sessions"]).success();
    assert_eq!((mode(&home), mode(&sessions)), (0o755, 0o775));

    let run = pai
        .run(&[
            "-v",
            "init",
            "s",
            "openai",
            "--model",
            MODEL,
            "--base-url",
            &mock.base_url(),
        ])
        .success();
    assert_eq!((mode(&home), mode(&sessions)), (0o700, 0o700));
    assert_eq!(mode(&pai.session_dir("s")), 0o700);
    assert!(
        run.stderr.contains("restricted it to 0700"),
        "{}",
        run.stderr
    );
}

// --- read-only commands ------------------------------------------------------------------

/// Everything under `root`: kind, size, mode and modification time of each entry.
fn tree(root: &Path) -> BTreeMap<PathBuf, (bool, u64, u32, i64, i64)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (bool, u64, u32, i64, i64)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            out.insert(
                path.clone(),
                (m.is_dir(), m.len(), m.mode(), m.mtime(), m.mtime_nsec()),
            );
            if m.is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &mut out);
    out
}

/// Sets every directory under `root` (and `root`) to `dirs` and every file to `files`.
fn chmod_tree(root: &Path, dirs: u32, files: u32) {
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            chmod_tree(&path, dirs, files);
        } else {
            set_mode(&path, files);
        }
    }
    set_mode(root, dirs);
}

/// `status`, `sessions` and `providers` work on a read-only PAI_HOME and write nothing.
/// Tests may run as root, whom mode bits do not stop, so two more checks make a write
/// fail or show: each session's lock file becomes a directory (which nobody, root
/// included, can open for writing, while a shared lock on it works), and the whole
/// tree's sizes, modes and mtimes must be unchanged afterwards (a created or removed
/// file, a write, or the audit log opened for writing would all show).
#[tokio::test(flavor = "multi_thread")]
async fn read_only_commands_write_nothing() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    pai.run(&["s", "prompt", "hello"]).success();
    pai.run(&["init", "t", "lmstudio", "--model", MODEL])
        .success();
    for session in ["s", "t"] {
        let lock = pai.session_dir(session).join(".lock");
        std::fs::remove_file(&lock).unwrap();
        std::fs::create_dir(&lock).unwrap();
    }
    let home = pai.home.home();
    let config = pai.home.config();
    chmod_tree(&home, 0o500, 0o400);
    chmod_tree(&config, 0o500, 0o400);
    let before = (tree(&home), tree(&config));

    let mut outputs = Vec::new();
    for args in [
        &["status"][..],
        &["s", "status", "--json"],
        &["t", "status"],
        &["sessions"],
        &["sessions", "--json"],
        &["providers"],
        &["providers", "--json"],
    ] {
        let run = pai.run(args);
        outputs.push((args, run.code, run.stderr));
    }
    let after = (tree(&home), tree(&config));
    chmod_tree(&home, 0o700, 0o600);
    chmod_tree(&config, 0o700, 0o600);

    for (args, code, stderr) in outputs {
        assert_eq!((code, stderr.as_str()), (Some(0), ""), "{args:?}");
    }
    assert_eq!(after, before, "a read-only command changed PAI_HOME");
}

// --- a local session needs its model -------------------------------------------------------

#[test]
#[cfg(feature = "local")]
fn init_local_without_the_model_refuses_and_writes_nothing() {
    let pai = Pai::new();
    let line = pai.run(&["init", "s", "local"]).error_line();
    assert!(line.contains("pai models add"), "{line}");
    let line = pai
        .run(&["init", "s", "local", "--model", "other"])
        .error_line();
    snapshot!(pai, "init_local_model_missing", line);
    assert_eq!(pai.home.files(), [pai.home.config().join("config.toml")]);

    // Nor does a session move to a model that is not there.
    let mock_url = "http://127.0.0.1:9/v1";
    pai.init("s", mock_url);
    let before = pai.session_json("s");
    let line = pai.run(&["s", "switch", "local"]).error_line();
    assert!(line.contains("pai models add"), "{line}");
    assert_eq!(pai.session_json("s"), before);
}

// --- credentials in endpoint URLs -------------------------------------------------------------

const USERINFO_URL: &str = "https://bob:hunter2@llm.example.com/v1";
const QUERY_URL: &str = "https://llm.example.com/v1?api_key=AIzaSECRET&api-version=2";

#[test]
fn a_base_url_with_credentials_is_refused_without_echoing_them() {
    let pai = Pai::new();
    let mut lines = Vec::new();
    for url in [USERINFO_URL, QUERY_URL] {
        let run = pai.run(&["init", "s", "openai", "--model", MODEL, "--base-url", url]);
        assert!(!run.all_output().contains("hunter2"), "{run:#?}");
        assert!(!run.all_output().contains("AIzaSECRET"), "{run:#?}");
        lines.push(run.error_line());
    }
    snapshot!(pai, "base_url_with_credentials", lines.join("\n"));
    assert_eq!(pai.home.files(), [pai.home.config().join("config.toml")]);

    pai.init("s", "http://127.0.0.1:9/v1");
    let before = pai.session_json("s");
    let line = pai
        .run(&["s", "switch", "openai", "--base-url", QUERY_URL])
        .error_line();
    assert_eq!(line, lines[1]);
    assert_eq!(pai.session_json("s"), before);
}

/// A URL with a credential can still come from config.toml (or a session.json written
/// before such URLs were refused): every place that shows it masks the credential, and
/// the audit log never holds it.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_in_a_configured_endpoint_are_never_shown_or_recorded() {
    let mock = MockOpenAi::start().await;
    mock.reply_status(500, json!({ "error": { "message": "boom" } }))
        .await;
    let with_userinfo = mock.base_url().replace("http://", "http://bob:hunter2@");
    let pai = Pai::bare();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.vault]\nkind = \"openai-compatible\"\nbase_url = \"{with_userinfo}\"\n"
    ));

    let mut shown = vec![
        pai.run(&["init", "s", "vault", "--model", MODEL]).success(),
        pai.run(&["providers"]).success(),
        pai.run(&["providers", "--json"]).success(),
        pai.run(&["s", "status"]).success(),
        pai.run(&["s", "status", "--json"]).success(),
        pai.run_stdin(&["s", "chat"], "exit\n").success(),
    ];
    let error = pai.run(&["s", "prompt", "hi"]);
    let line = error.stderr.clone();
    shown.push(error.failure());
    // A session from an older pai, its key in the query string.
    pai.init("old", &mock.base_url());
    let path = pai.session_dir("old").join("session.json");
    let mut meta = pai.session_json("old");
    meta["base_url"] = json!(format!("{}?key=AIzaSECRET", mock.base_url()));
    std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let old = pai.run(&["old", "status", "--json"]).success();
    assert_eq!(
        old.json()["endpoint"],
        format!("{}?key=[REDACTED]", mock.base_url())
    );
    shown.push(old);

    for run in &shown {
        let all = run.all_output();
        assert!(
            !all.contains("hunter2") && !all.contains("AIzaSECRET"),
            "{run:#?}"
        );
    }
    let masked = mock.base_url().replace("http://", "http://[REDACTED]@");
    assert!(shown[0].stdout.contains(&masked), "{:#?}", shown[0]);
    assert!(shown[3].stdout.contains(&masked), "{:#?}", shown[3]);
    assert!(line.contains(&masked), "{line}");
    let vault_row = shown[1]
        .stdout
        .lines()
        .find(|l| l.starts_with("vault "))
        .unwrap()
        .to_string();
    snapshot!(pai, "providers_masked_row", vault_row);

    let audit = SqliteAudit::open(&pai.home.home().join("audit.db")).unwrap();
    let events = audit.events(100).unwrap();
    assert!(!events.is_empty());
    for e in events {
        let row = format!("{:?}", e.event);
        assert!(!row.contains("hunter2"), "{row}");
    }
}
