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

    snapshot!(pai, "sessions", pai.run(&["sessions"]).success().stdout);

    let run = pai.run(&["use", "beta"]).success();
    assert_eq!(run.stdout, "'beta' is now the active session\n");
    assert_eq!(
        pai.run(&["sessions", "--json"]).success().json(),
        json!([
            { "name": "alpha", "provider": "llamacpp", "model": "llama-3", "active": false },
            { "name": "beta", "provider": "openai", "model": MODEL, "active": true },
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
