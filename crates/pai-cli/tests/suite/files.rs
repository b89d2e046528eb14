//! What `pai` leaves on disk and how it copes with what it finds there: the audit log,
//! concurrent writers, corrupt session and config files.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use pai_audit::{AuditEvent, EventKind, SqliteAudit};
use pai_test_support::MockOpenAi;
use pai_types::{Locality, Usage};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::{MODEL, Pai, snapshot};

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_is_private_and_records_prompt_and_response() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("forty-two", 9, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    pai.run(&["s", "prompt", "the question"]).success();

    let db = pai.home.home().join("audit.db");
    // Checked before opening it here, since opening restricts the mode itself.
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "audit.db mode is {mode:o}");
    let stored = SqliteAudit::open(&db).unwrap().events(100).unwrap();
    // The one request that left has its `egress` row, pinned in egress.rs.
    let egress = stored.iter().filter(|e| e.event.kind == EventKind::Egress);
    assert_eq!(egress.count(), 1);
    let events: Vec<AuditEvent> = stored
        .into_iter()
        .filter(|e| e.event.kind != EventKind::Egress)
        .map(|stored| AuditEvent {
            duration_ms: None,
            ..stored.event
        })
        .collect();
    let base = AuditEvent::new(
        EventKind::Prompt,
        "the question\n[sent: system prompt 54 B internal; your input 12 B internal]",
    )
    .session("s")
    .mode("prompt")
    .provider("openai")
    .endpoint(mock.base_url())
    .model(MODEL)
    .locality(Locality::Local);
    assert_eq!(
        events,
        [
            base.clone(),
            AuditEvent {
                kind: EventKind::Response,
                content: "forty-two".into(),
                ..base
            }
            .usage(Usage {
                prompt_tokens: 9,
                completion_tokens: 3,
                estimated: false
            }),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_call_is_audited_with_the_line_the_user_saw() {
    let mock = MockOpenAi::start().await;
    mock.reply_status(500, json!({ "error": { "message": "boom" } }))
        .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    let line = pai.run(&["s", "prompt", "q"]).error_line();

    let events = SqliteAudit::open(&pai.home.home().join("audit.db"))
        .unwrap()
        .events(100)
        .unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.event.kind).collect();
    // Failed HTTP attempts may be logged in between; no response ever is.
    assert_eq!(kinds.first(), Some(&EventKind::Prompt), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&EventKind::Error), "{kinds:?}");
    assert!(!kinds.contains(&EventKind::Response), "{kinds:?}");
    assert_eq!(
        format!("error: {}", events.last().unwrap().event.content),
        line,
        "the audit row holds what the user was told"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_prompts_at_once_on_one_session_both_land_whole() {
    let mock = MockOpenAi::start().await;
    mock.reply_with(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(pai_test_support::chat_completion("answer", 1, 1))
            // Both requests are in flight together.
            .set_delay(std::time::Duration::from_millis(300)),
    )
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    let children: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|text| {
            pai.std_cmd()
                .args(["s", "prompt", text])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"answer\n");
    }

    let history = pai.history("s");
    assert_eq!(history.len(), 4);
    let mut questions: Vec<&str> = history
        .iter()
        .step_by(2)
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    questions.sort_unstable();
    assert_eq!(questions, ["one", "two"]);
    for pair in history.chunks(2) {
        assert_eq!(
            (&pair[0]["role"], &pair[1]["role"]),
            (&"user".into(), &"assistant".into())
        );
    }
    let audit = SqliteAudit::open(&pai.home.home().join("audit.db")).unwrap();
    // Per prompt: the prompt, the request that left (`egress`), the answer.
    assert_eq!(audit.events(100).unwrap().len(), 6);
    assert!(audit.verify().unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_session_file_names_the_path_and_what_to_do() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    std::fs::write(
        pai.session_dir("s").join("session.json"),
        b"\xff\x00garbage{",
    )
    .unwrap();

    let line = pai.run(&["s", "status"]).error_line();

    snapshot!(pai, "error_corrupt_session", line);
    assert!(
        line.contains(
            &pai.session_dir("s")
                .join("session.json")
                .display()
                .to_string()
        )
    );
    assert!(line.contains("fix or remove"));
    for args in [&["s", "prompt", "hi"][..], &["sessions"], &["s", "reset"]] {
        let other = pai.run(args).error_line();
        assert!(other.contains("fix or remove"), "{args:?}: {other}");
    }
    assert!(mock.chat_requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_history_line_names_the_path_and_line() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    std::fs::write(
        pai.history_path("s"),
        "not json\n{\"role\":\"user\",\"content\":\"x\",\"at\":\"2025-01-01T00:00:00Z\"}\n",
    )
    .unwrap();

    let line = pai.run(&["s", "status"]).error_line();

    assert!(line.contains("history.jsonl is corrupt (line 1:"), "{line}");
    assert!(line.contains("fix or remove"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_last_history_line_is_skipped_and_the_next_turn_stays_readable() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    pai.run(&["s", "prompt", "first"]).success();
    // What a crash in the middle of an append leaves behind.
    let mut bytes = pai.history_bytes("s");
    bytes.extend_from_slice(b"{\"role\":\"user\",\"cont");
    std::fs::write(pai.history_path("s"), &bytes).unwrap();
    assert_eq!(pai.status_json("s")["messages"], 2);

    pai.run(&["s", "prompt", "second"]).success();

    let status = pai.run(&["s", "status", "--json"]).success().json();
    assert_eq!(status["messages"], 4);
}

#[test]
fn a_corrupt_config_file_is_named() {
    let pai = Pai::new();
    pai.home.write_config("[network]\nmax_retries = \"many\"\n");
    let line = pai.run(&["sessions"]).error_line();
    snapshot!(pai, "error_config_bad_value", line);

    pai.home.write_config("[network\n");
    let line = pai.run(&["sessions"]).error_line();
    assert!(line.contains("config/config.toml is invalid"), "{line}");

    std::fs::write(pai.home.config().join("config.toml"), b"\xff\xfe\x00").unwrap();
    let line = pai.run(&["sessions"]).error_line();
    assert!(line.contains("config/config.toml is invalid"), "{line}");
}

#[test]
fn a_config_typo_is_caught_with_its_line() {
    let pai = Pai::new();
    pai.home.write_config("[network]\nmax_retry = 1\n");
    let line = pai.run(&["status"]).error_line();
    snapshot!(pai, "error_config_unknown_key", line);
    // Even commands that need no session read the config (it may define providers).
    assert_eq!(pai.run(&["providers"]).error_line(), line);
}
