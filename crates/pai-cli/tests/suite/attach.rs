//! `-f/--file`: a file's text joins the turn as a part of its own, named, with the class
//! its path has, so the egress gate screens it like any other part.

use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;
use serde_json::Value;

use super::{FAST_CONFIG, MODEL, Pai};

const KEY: &str = "AKIAQ3EGRJ7MNOZ4V5XA";

fn messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn attached_files_are_parts_of_their_own_and_stay_in_the_history() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("Two notes.", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("a.md"), "buy oat milk\n").unwrap();
    std::fs::write(work.path().join("b.txt"), "call Ana").unwrap();

    let run = super::Run::from_cmd(pai.cmd().current_dir(work.path()).args([
        "s",
        "prompt",
        "-f",
        "a.md",
        "--file",
        "b.txt",
        "summarise",
    ]))
    .success();
    pai.run(&["s", "prompt", "and again"]).success();

    assert_eq!(run.stdout, "Two notes.\n");
    let bodies = mock.chat_requests().await;
    let a = "[attached file a.md]\nbuy oat milk\n[end of attached file a.md]";
    let b = "[attached file b.txt]\ncall Ana\n[end of attached file b.txt]";
    assert_eq!(
        messages(&bodies[0])[1..],
        [
            ("user".to_string(), a.to_string()),
            ("user".to_string(), b.to_string()),
            ("user".to_string(), "summarise".to_string()),
        ]
    );
    // The next turn still has them, from the history.
    assert_eq!(messages(&bodies[1]).len(), 1 + 4 + 1);
    let stored = pai.history("s");
    assert_eq!(
        stored
            .iter()
            .map(|e| e["content"].as_str().unwrap())
            .collect::<Vec<_>>()[..4],
        [a, b, "summarise", "Two notes."]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_an_attached_file_are_redacted_for_a_remote_endpoint() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.cloud]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nlocality = \"remote\"\nkey_env = \"CLOUD_KEY\"\n",
        mock.base_url()
    ));
    pai.run(&["init", "r", "cloud", "--model", MODEL]).success();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("deploy.md"),
        format!("deploy with {KEY} on friday\n"),
    )
    .unwrap();
    std::fs::write(work.path().join(".env"), "DB_PASS=hunter2-s3cr3t\n").unwrap();

    let run = super::Run::from_cmd(
        pai.cmd()
            .current_dir(work.path())
            .env("CLOUD_KEY", "k")
            .args([
                "r",
                "prompt",
                "-f",
                "deploy.md",
                "-f",
                ".env",
                "check these",
            ]),
    )
    .success();

    assert_eq!(run.stdout, "ok\n");
    let sent = serde_json::to_string(&mock.chat_requests().await).unwrap();
    assert!(!sent.contains(KEY), "{sent}");
    assert!(!sent.contains("hunter2"), "{sent}");
    assert!(
        sent.contains("deploy with \u{27e8}AWS_KEY_1\u{27e9} on friday"),
        "{sent}"
    );
    // A .env file is secret by its path: withheld whole, its name and rule said.
    assert!(
        sent.contains("[withheld: this file .env is secret data"),
        "{sent}"
    );
    // The dry run shows each file as its own part with its class and decision (the
    // history, where the first run stored them, is cleared first).
    pai.run(&["r", "reset"]).success();
    let dry = super::Run::from_cmd(
        pai.cmd()
            .current_dir(work.path())
            .env("CLOUD_KEY", "k")
            .args([
                "r",
                "prompt",
                "--dry-run",
                "-f",
                "deploy.md",
                "-f",
                ".env",
                "check",
            ]),
    )
    .success()
    .stdout;
    assert!(
        dry.contains("user · file deploy.md · internal · 1 value(s) redacted, rest allow"),
        "{dry}"
    );
    assert!(
        dry.contains("user · file .env · secret · withheld by default:secret-stays-local"),
        "{dry}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_and_missing_files_are_refused_before_anything_is_sent() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("app.bin"), b"\x7fELF\x02\x01\x01\0\0\0").unwrap();

    let in_work =
        |args: &[&str]| super::Run::from_cmd(pai.cmd().current_dir(work.path()).args(args));
    let line = in_work(&["s", "prompt", "-f", "app.bin", "what is this?"]).error_line();
    assert_eq!(
        line,
        "error: cannot attach app.bin: it looks binary (it contains NUL bytes); PAI attaches text files and PNG, JPEG, GIF or WebP images only"
    );
    let line = in_work(&["s", "prompt", "-f", "nope.txt", "x"]).error_line();
    assert!(
        line.starts_with("error: cannot attach nope.txt: "),
        "{line}"
    );
    let line = in_work(&["s", "prompt", "-f", ".", "x"]).error_line();
    assert!(line.contains("it is not a file"), "{line}");

    assert!(mock.chat_requests().await.is_empty());
    assert!(pai.history("s").is_empty());
}
