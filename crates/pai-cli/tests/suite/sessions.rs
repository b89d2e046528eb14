//! Looking after sessions: status, sessions, use, reset, model and models.

use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::{MODEL, Pai, snapshot};

/// A session `s` at `mock` with one answered prompt (12 prompt + 5 completion tokens).
async fn session_with_one_turn(mock: &MockOpenAi) -> Pai {
    mock.reply_json("Hello!", 12, 5).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    pai.run(&["s", "prompt", "hi"]).success();
    pai
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_provider_model_endpoint_locality_messages_tokens_and_key_source() {
    let mock = MockOpenAi::start().await;
    let pai = session_with_one_turn(&mock).await;

    let human = pai.run(&["s", "status"]).success();
    let json = pai.run(&["status", "--json"]).success();

    assert_eq!(human.stderr, "");
    snapshot!(pai, "status", human.stdout);
    snapshot!(pai, "status_json", json.stdout);
    let mut status = json.json();
    for field in ["created_at", "updated_at"] {
        let at = status[field].take();
        assert!(
            at.as_str().is_some_and(|t| t.ends_with('Z')),
            "{field}: {at}"
        );
    }
    assert_eq!(
        status,
        json!({
            "session": "s",
            "active": true,
            "provider": "openai",
            "model": MODEL,
            "endpoint": mock.base_url(),
            "locality": "local",
            "key": { "kind": "none" },
            "messages": 2,
            "summarised_messages": 0,
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "tokens_estimated": false,
            "budget_tokens": null,
            "cost_usd": 0.0,
            "created_at": null,
            "updated_at": null,
            "safe": false,
            "constraints": [],
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_totals_add_up_over_turns_and_estimates_are_flagged() {
    let mock = MockOpenAi::start().await;
    let pai = session_with_one_turn(&mock).await;
    mock.server.reset().await;
    // A server that reports no usage: PAI estimates, and says so.
    mock.reply_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
        "choices": [{ "message": { "role": "assistant", "content": "no usage here" } }]
    })))
    .await;

    pai.run(&["s", "prompt", "again"]).success();

    let status = pai.status_json("s");
    assert_eq!(status["messages"], 4);
    assert_eq!(status["tokens_estimated"], true);
    assert!(status["prompt_tokens"].as_u64().unwrap() > 12, "{status}");
    assert!(
        status["completion_tokens"].as_u64().unwrap() > 5,
        "{status}"
    );
    let human = pai.run(&["status"]).success().stdout;
    assert!(human.contains("(partly estimated)"), "{human}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_lists_all_and_marks_the_active_one() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    assert_eq!(
        pai.run(&["sessions"]).success().stdout,
        "no sessions yet; create one with: pai init <session> <provider> --model <model>\n"
    );
    assert_eq!(pai.run(&["sessions", "--json"]).success().json(), json!([]));
    pai.init("beta", &mock.base_url());
    pai.run(&["init", "alpha", "llamacpp", "--model", "llama-3"])
        .success();

    let mut settings = pai.settings();
    settings.add_filter(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "[WHEN]");
    settings.bind(|| insta::assert_snapshot!("sessions", pai.run(&["sessions"]).success().stdout));

    let run = pai.run(&["use", "beta"]).success();
    assert_eq!(run.stdout, "'beta' is now the active session\n");
    let mut listed = pai.run(&["sessions", "--json"]).success().json();
    for s in listed.as_array_mut().unwrap() {
        let at = s["last_used"].take();
        assert!(at.as_str().is_some_and(|t| t.ends_with('Z')), "{at}");
    }
    assert_eq!(
        listed,
        json!([
            { "name": "alpha", "provider": "llamacpp", "model": "llama-3", "active": false,
              "locality": "local", "messages": 0, "last_used": null },
            { "name": "beta", "provider": "openai", "model": MODEL, "active": true,
              "locality": "local", "messages": 0, "last_used": null },
        ])
    );
    assert_eq!(pai.status_json("beta")["active"], true);
    assert_eq!(pai.status_json("alpha")["active"], false);
}

#[test]
fn use_refuses_a_missing_session_and_keeps_the_active_one() {
    let pai = Pai::new();
    pai.run(&["init", "real", "llamacpp", "--model", MODEL])
        .success();

    let line = pai.run(&["use", "ghost"]).error_line();

    assert!(line.contains("session 'ghost' does not exist"), "{line}");
    assert_eq!(
        std::fs::read_to_string(pai.home.home().join("active")).unwrap(),
        "real"
    );
    let line = pai.run(&["use", "a/b"]).error_line();
    assert!(line.contains("path separator"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_clears_history_and_keeps_provider_model_and_key() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 3, 2).await;
    let pai = Pai::new();
    let vault = pai.run(&["keygen"]).success().stdout.trim().to_string();
    let mut init = pai.cmd();
    init.args([
        "init",
        "s",
        "openai",
        "--model",
        MODEL,
        "--base-url",
        &mock.base_url(),
        "--api-key",
        super::API_KEY,
    ])
    .env("PAI_ENCRYPTION_KEY", &vault);
    super::Run::from_cmd(&mut init).success();
    let mut prompt = pai.cmd();
    prompt
        .args(["prompt", "hi"])
        .env("PAI_ENCRYPTION_KEY", &vault);
    super::Run::from_cmd(&mut prompt).success();
    let before = pai.status_json("s");
    let meta_before = pai.session_json("s");

    let run = pai.run(&["s", "reset"]).success();

    assert_eq!(
        run.stdout,
        "session 's' reset: 2 message(s) and the summary cleared; provider, model and key kept\n"
    );
    assert!(pai.history("s").is_empty());
    let mut after = pai.status_json("s");
    let mut expected = before.clone();
    for (field, value) in [
        ("messages", json!(0)),
        ("prompt_tokens", json!(0)),
        ("completion_tokens", json!(0)),
    ] {
        expected[field] = value;
    }
    expected["updated_at"] = Value::Null;
    after["updated_at"] = Value::Null;
    assert_eq!(after, expected);
    assert_eq!(pai.session_json("s")["api_key"], meta_before["api_key"]);
    // The key still works after the reset.
    super::Run::from_cmd(&mut prompt).success();
    let auth = mock.chat_authorizations().await;
    assert_eq!(auth.len(), 2);
    assert_eq!(auth[0], auth[1]);
    assert_eq!(pai.history("s").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn model_switches_the_session_and_keeps_its_history() {
    let mock = MockOpenAi::start().await;
    let pai = session_with_one_turn(&mock).await;

    let run = pai.run(&["s", "model", "m2"]).success();

    assert_eq!(
        run.stdout,
        "session 's' now uses model m2 (was m); its 2 message(s) are kept\n"
    );
    assert_eq!(pai.history("s").len(), 2);
    pai.run(&["prompt", "next"]).success();
    let bodies = mock.chat_requests().await;
    assert_eq!(bodies[1]["model"], "m2");
    assert_eq!(
        bodies[1]["messages"].as_array().unwrap().len(),
        4,
        "the earlier turn is still sent: {}",
        bodies[1]
    );
    assert_eq!(pai.status_json("s")["model"], "m2");
    // The active session, with the model named first.
    pai.run(&["model", "m3"]).success();
    assert_eq!(pai.status_json("s")["model"], "m3");
    let line = pai.run(&["model", "  "]).error_line();
    assert!(line.contains("cannot be empty"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn models_lists_what_the_endpoint_serves() {
    let mock = MockOpenAi::start().await;
    mock.serve_models(&["m", "big-model", "small-model"]).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    let run = pai.run(&["s", "models"]).success();
    assert_eq!(run.stdout, "m  (in use)\nbig-model\nsmall-model\n");

    let json = pai.run(&["models", "--json"]).success().json();
    let ids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m", "big-model", "small-model"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_show_last_use_message_count_and_locality() {
    let mock = MockOpenAi::start().await;
    let pai = session_with_one_turn(&mock).await;
    pai.home.write_config(&format!(
        "{}\n[providers.cloud]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nlocality = \"remote\"\n",
        super::FAST_CONFIG,
        mock.base_url()
    ));
    pai.run(&["init", "far", "cloud", "--model", "big"])
        .success();

    let listed = pai.run(&["sessions", "--json"]).success().json();

    let history = pai.history("s");
    assert_eq!(
        (
            &listed[0]["name"],
            &listed[0]["locality"],
            &listed[0]["messages"],
            &listed[0]["last_used"]
        ),
        (
            &json!("far"),
            &json!("remote"),
            &json!(0),
            &listed[0]["last_used"]
        )
    );
    assert_eq!(
        (
            &listed[1]["name"],
            &listed[1]["locality"],
            &listed[1]["messages"],
            &listed[1]["last_used"]
        ),
        (&json!("s"), &json!("local"), &json!(2), &history[1]["at"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_removes_the_session_and_refuses_without_yes_off_a_terminal() {
    let mock = MockOpenAi::start().await;
    let pai = session_with_one_turn(&mock).await;

    let line = pai.run(&["rm", "s"]).error_line();
    assert_eq!(
        line,
        "error: not removing session 's' without confirmation, and there is no terminal to ask on; pass --yes"
    );
    assert!(pai.session_dir("s").is_dir());

    let run = pai.run(&["rm", "s", "--yes"]).success();
    assert_eq!(
        run.stdout,
        "removed session 's' and its 2 message(s); its audit rows stay in the audit log\n"
    );
    assert!(!pai.session_dir("s").exists());
    assert_eq!(
        std::fs::read_dir(pai.sessions_dir()).unwrap().count(),
        0,
        "nothing left behind"
    );
    // It was the active one: no session is active now.
    let line = pai.run(&["status"]).error_line();
    assert!(line.contains("no active session"), "{line}");
    let line = pai.run(&["rm", "s", "--yes"]).error_line();
    assert!(line.contains("session 's' does not exist"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_asks_on_a_terminal_and_keeps_the_session_on_no() {
    let mock = MockOpenAi::start().await;
    let pai = session_with_one_turn(&mock).await;

    let Some(shown) = pai.run_in_pty("rm s", "n\n") else {
        return;
    };
    assert!(
        shown.contains("remove session 's' and its 2 message(s)? This cannot be undone. [y/N]"),
        "{shown}"
    );
    assert!(shown.contains("kept session 's'"), "{shown}");
    assert!(pai.session_dir("s").is_dir());

    let shown = pai.run_in_pty("rm s", "y\n").unwrap();
    assert!(shown.contains("removed session 's'"), "{shown}");
    assert!(!pai.session_dir("s").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_moves_history_and_active_mark_and_refuses_a_taken_name() {
    let mock = MockOpenAi::start().await;
    let pai = session_with_one_turn(&mock).await;
    pai.init("other", &mock.base_url());
    pai.run(&["use", "s"]).success();

    let line = pai.run(&["rename", "s", "other"]).error_line();
    assert!(line.contains("session 'other' already exists"), "{line}");
    let line = pai.run(&["rename", "s", "status"]).error_line();
    assert!(line.contains("is a pai command"), "{line}");

    let run = pai.run(&["rename", "s", "work"]).success();

    assert_eq!(run.stdout, "renamed session 's' to 'work'\n");
    assert!(!pai.session_dir("s").exists());
    assert_eq!(pai.history("work").len(), 2);
    let status = pai.status_json("work");
    assert_eq!(
        (&status["session"], &status["active"]),
        (&json!("work"), &json!(true))
    );
    assert_eq!(pai.session_json("work")["name"], "work");
    // The renamed session goes on working.
    pai.run(&["work", "prompt", "next"]).success();
    assert_eq!(pai.history("work").len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn export_and_import_round_trip_without_the_key() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("Use the key AKIAQ3EGRJ7MNOZ4V5XA carefully.", 3, 2)
        .await;
    let pai = Pai::new();
    // Secrets kept as typed in the history: the export still masks them.
    pai.home.write_config(&format!(
        "{}\n[context]\nkeep_secrets_in_history = true\n",
        super::FAST_CONFIG
    ));
    let vault = pai.run(&["keygen"]).success().stdout.trim().to_string();
    super::Run::from_cmd(
        pai.cmd()
            .args([
                "init",
                "s",
                "openai",
                "--model",
                MODEL,
                "--base-url",
                &mock.base_url(),
                "--api-key",
                super::API_KEY,
            ])
            .env("PAI_ENCRYPTION_KEY", &vault),
    )
    .success();
    pai.run(&["s", "system", "Be careful."]).success();
    super::Run::from_cmd(
        pai.cmd()
            .args(["s", "prompt", "my key is AKIAQ3EGRJ7MNOZ4V5XA"])
            .env("PAI_ENCRYPTION_KEY", &vault),
    )
    .success();
    let stored_key = pai.session_json("s")["api_key"]
        .as_str()
        .unwrap()
        .to_string();

    let json_out = pai.run(&["s", "export"]).success().stdout;
    let markdown = pai
        .run(&["export", "s", "--format", "markdown"])
        .success()
        .stdout;

    for out in [&json_out, &markdown] {
        assert!(!out.contains("AKIAQ3EGRJ7MNOZ4V5XA"), "{out}");
        assert!(!out.contains(&stored_key), "{out}");
        assert!(!out.contains(super::API_KEY), "{out}");
    }
    let t: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(
        (&t["format"], &t["session"], &t["model"], &t["system"]),
        (
            &json!("pai-transcript/1"),
            &json!("s"),
            &json!(MODEL),
            &json!("Be careful.")
        )
    );
    assert_eq!(
        t["messages"][0]["content"],
        "my key is \u{27e8}AWS_KEY\u{27e9}"
    );
    let mut md_settings = pai.settings();
    md_settings.add_filter(r"http://127\.0\.0\.1:\d+", "[URL]");
    md_settings.bind(|| insta::assert_snapshot!("export_markdown", markdown));

    let file = pai.home.root().join("s.json");
    std::fs::write(&file, &json_out).unwrap();
    let line = pai.run(&["import", file.to_str().unwrap()]).error_line();
    assert!(line.contains("session 's' already exists"), "{line}");

    let run = pai
        .run(&["import", file.to_str().unwrap(), "--as", "copy"])
        .success();
    assert_eq!(
        run.stdout,
        "imported session 'copy' (openai m, 2 message(s)); 'pai use copy' makes it the active one\n"
    );
    let (a, b) = (pai.history("s"), pai.history("copy"));
    assert_eq!(b.len(), 2);
    assert_eq!((&a[1]["at"], &a[1]["usage"]), (&b[1]["at"], &b[1]["usage"]));
    assert_eq!(pai.session_json("copy").get("api_key"), None);
    assert_eq!(pai.status_json("copy")["system"], "Be careful.");
    // Imported from stdin too, and it answers. The audit log was sealed with the key
    // derived from PAI_ENCRYPTION_KEY at init, so every command that records needs it.
    pai.run_stdin(&["import", "-", "--as", "piped"], json_out.clone())
        .success();
    super::Run::from_cmd(
        pai.cmd()
            .args(["piped", "prompt", "hello"])
            .env("PAI_ENCRYPTION_KEY", &vault),
    )
    .success();
    assert_eq!(pai.history("piped").len(), 4);
}

#[test]
fn import_validates_before_writing_anything() {
    let pai = Pai::new();
    let bad = [
        ("not json", "not JSON"),
        ("{\"x\": 1}", "not a PAI transcript"),
        (
            r#"{"format":"pai-transcript/1","session":"a","provider":"nope","model":"m","created_at":"t","messages":[]}"#,
            "unknown provider 'nope'",
        ),
        (
            r#"{"format":"pai-transcript/1","session":"a","provider":"openai","model":"m","created_at":"t","messages":[{"role":"tool","content":"x","at":"t"}]}"#,
            "message 1 has role 'tool'",
        ),
        (
            r#"{"format":"pai-transcript/1","session":"a","provider":"openai","model":"m","base_url":"http://u:p@h/v1","created_at":"t","messages":[]}"#,
            "carries a credential",
        ),
        (
            r#"{"format":"pai-transcript/1","session":"a/b","provider":"openai","model":"m","created_at":"t","messages":[]}"#,
            "path separator",
        ),
    ];
    for (text, expected) in bad {
        let line = pai.run_stdin(&["import", "-"], text).error_line();
        assert!(line.contains(expected), "{text}: {line}");
    }
    assert!(
        !pai.sessions_dir().exists() || std::fs::read_dir(pai.sessions_dir()).unwrap().count() == 0,
        "an import that failed left something behind"
    );
}
