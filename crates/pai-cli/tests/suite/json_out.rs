//! `--json` on `prompt` and `agent`: one object on stdout with the answer, usage, cost,
//! model, endpoint, locality and stop reason; nothing streamed.

use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::tools::{Script, answer, tool_call};
use super::{FAST_CONFIG, MODEL, Pai};

#[tokio::test(flavor = "multi_thread")]
async fn prompt_json_is_one_object_and_nothing_is_streamed() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("Paris.", 1000, 500).await;
    let pai = Pai::new();
    // A remote-declared endpoint with a price, to see the cost.
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.paid]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nlocality = \"remote\"\nkey_env = \"PAID_KEY\"\n\n[prices.m]\ninput_per_mtok = 2.0\noutput_per_mtok = 8.0\n",
        mock.base_url()
    ));
    pai.run(&["init", "s", "paid", "--model", MODEL]).success();

    let run = super::Run::from_cmd(pai.cmd().env("PAID_KEY", "k").args([
        "s",
        "prompt",
        "--json",
        "capital of France?",
    ]))
    .success();
    assert_eq!(run.stderr, "");
    assert!(run.stdout.ends_with("}\n"), "{}", run.stdout);
    let mut out = run.json();
    let cost = out["cost_usd"].take().as_f64().unwrap();
    assert!((cost - 0.006).abs() < 1e-9, "{cost}");
    assert_eq!(
        out,
        json!({
            "session": "s",
            "answer": "Paris.",
            "model": MODEL,
            "provider": "paid",
            "endpoint": mock.base_url(),
            "locality": "remote",
            "usage": { "prompt_tokens": 1000, "completion_tokens": 500 },
            "cost_usd": null,
            "stop_reason": "done",
            "tool_calls": 0,
            "saved": true,
        })
    );
    assert_eq!(mock.chat_requests().await[0]["stream"], false);
    assert_eq!(pai.history("s").len(), 2);
    // On a terminal too, nothing is streamed.
    pai.init("loc", &mock.base_url());
    let pty = pai.run_in_pty("loc prompt --json again", "");
    if let Some(shown) = pty {
        assert!(shown.contains("\"answer\": \"Paris.\""), "{shown}");
        assert_eq!(mock.chat_requests().await[1]["stream"], false);
    }

    let usage = pai
        .run(&["s", "prompt", "--json", "--stream", "x"])
        .code(2)
        .stderr;
    assert!(usage.contains("cannot be used with"), "{usage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_json_says_why_it_stopped() {
    let (mock, _script) = Script::mount(vec![
        tool_call("current_time", json!({}), 1),
        answer("partial", 1),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let work = tempfile::tempdir().unwrap();

    let run = pai
        .run(&[
            "agent",
            "--json",
            "--max-steps",
            "1",
            "--root",
            work.path().to_str().unwrap(),
            "go",
        ])
        .code(3);

    let out = run.json();
    assert_eq!(
        (
            &out["answer"],
            &out["stop_reason"],
            &out["stop_detail"],
            &out["tool_calls"],
            &out["usage"],
            &out["cost_usd"],
        ),
        (
            &json!("partial"),
            &json!("step_limit"),
            &json!("the step limit (1) was reached"),
            &json!(1),
            &json!({ "prompt_tokens": 2, "completion_tokens": 0 }),
            &json!(0.0),
        )
    );
}
