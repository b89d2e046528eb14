//! `pai prompt`: what reaches the model, what is printed and what the history keeps;
//! streaming; stdin.

use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::{MODEL, Pai};

const SYSTEM_PROMPT: &str = "You are PAI, a concise and helpful personal assistant.";

fn user_message(body: &Value) -> &Value {
    let messages = body["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "user", "{body}");
    &last["content"]
}

#[tokio::test(flavor = "multi_thread")]
async fn session_first_prompt_prints_the_answer_and_records_the_turn() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("Paris is the capital.", 12, 5).await;
    let pai = Pai::new();
    pai.init("geo", &mock.base_url());

    let run = pai
        .run(&["geo", "prompt", "What", "is the capital of France?"])
        .success();

    assert_eq!(run.stdout, "Paris is the capital.\n");
    assert_eq!(run.stderr, "");
    let bodies = mock.chat_requests().await;
    assert_eq!(bodies.len(), 1);
    // What this test is about; tool definitions and other options may ride along.
    let sent: Value = ["model", "stream", "messages"]
        .into_iter()
        .map(|k| (k.to_string(), bodies[0][k].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    assert_eq!(
        sent,
        json!({
            "model": MODEL,
            "stream": false,
            "messages": [
                { "role": "system", "content": SYSTEM_PROMPT },
                { "role": "user", "content": "What is the capital of France?" },
            ],
        })
    );
    let history = pai.history("geo");
    assert_eq!(history.len(), 2);
    assert_eq!(
        (&history[0]["role"], &history[0]["content"]),
        (&"user".into(), &"What is the capital of France?".into())
    );
    assert_eq!(
        (
            &history[1]["role"],
            &history[1]["content"],
            &history[1]["model"],
            &history[1]["usage"]
        ),
        (
            &"assistant".into(),
            &"Paris is the capital.".into(),
            &MODEL.into(),
            &json!({ "prompt_tokens": 12, "completion_tokens": 5 })
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_without_a_session_uses_the_active_one() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("first", &mock.base_url());
    pai.init("second", &mock.base_url());

    let run = pai.run(&["prompt", "hello"]).success();

    assert_eq!(run.stdout, "ok\n");
    assert_eq!(pai.history("second").len(), 2);
    assert_eq!(pai.history("first").len(), 0);
    // --session names a session explicitly, whatever is active.
    pai.run(&["prompt", "--session", "first", "hello"])
        .success();
    assert_eq!(pai.history("first").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_prompt_sends_the_earlier_turn_as_context() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("first answer", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    pai.run(&["prompt", "first question"]).success();

    pai.run(&["prompt", "second question"]).success();

    let bodies = mock.chat_requests().await;
    assert_eq!(
        bodies[1]["messages"],
        json!([
            { "role": "system", "content": SYSTEM_PROMPT },
            { "role": "user", "content": "first question" },
            { "role": "assistant", "content": "first answer" },
            { "role": "user", "content": "second question" },
        ])
    );
    assert_eq!(pai.history("s").len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_flag_reads_sse_and_prints_every_piece() {
    let mock = MockOpenAi::start().await;
    mock.reply_stream(&["Hel", "lo, ", "world", "!"], 7, 4)
        .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    let run = pai.run(&["prompt", "--stream", "greet me"]).success();

    assert_eq!(run.stdout, "Hello, world!\n");
    let bodies = mock.chat_requests().await;
    assert_eq!(bodies[0]["stream"], true);
    assert_eq!(
        bodies[0]["stream_options"],
        json!({ "include_usage": true })
    );
    let history = pai.history("s");
    assert_eq!(history[1]["content"], "Hello, world!");
    assert_eq!(
        history[1]["usage"],
        json!({ "prompt_tokens": 7, "completion_tokens": 4 })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_stream_flag_and_the_default_off_a_terminal_use_json() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("whole answer", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    assert_eq!(
        pai.run(&["prompt", "--no-stream", "q"]).success().stdout,
        "whole answer\n"
    );
    assert_eq!(pai.run(&["prompt", "q"]).success().stdout, "whole answer\n");

    let bodies = mock.chat_requests().await;
    assert_eq!(bodies.len(), 2);
    for body in &bodies {
        assert_eq!(body["stream"], false, "{body}");
        assert!(body.get("stream_options").is_none(), "{body}");
    }
}

#[test]
fn stream_and_no_stream_conflict() {
    let run = Pai::new()
        .run(&["prompt", "--stream", "--no-stream", "q"])
        .failure();
    assert!(run.stderr.contains("cannot be used with"), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn piped_stdin_comes_before_the_text() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("summary", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    pai.run_stdin(&["prompt", "summarise"], "notes\n").success();

    let bodies = mock.chat_requests().await;
    assert_eq!(user_message(&bodies[0]), "notes\n\nsummarise");
    assert_eq!(pai.history("s")[0]["content"], "notes\n\nsummarise");
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_reads_stdin_alone() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    pai.run_stdin(&["prompt", "-"], "from stdin\n").success();
    pai.run_stdin(&["prompt", "-", "and", "words"], "piped")
        .success();

    let bodies = mock.chat_requests().await;
    assert_eq!(user_message(&bodies[0]), "from stdin\n");
    assert_eq!(user_message(&bodies[1]), "piped\n\nand words");
}

/// Each bad input fails with one line, sends nothing and leaves the history alone.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_fails_before_anything_is_sent() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    pai.run(&["prompt", "earlier"]).success();
    let history = pai.history_bytes("s");
    let huge = vec![b'a'; 8 * 1024 * 1024 + 1];

    let cases: [(&str, &[&str], Vec<u8>, &str); 6] = [
        ("no text, no stdin", &["prompt"], vec![], "nothing to send"),
        (
            "blank text",
            &["prompt", "  "],
            b"\n\n".to_vec(),
            "nothing to send",
        ),
        (
            "dash, empty stdin",
            &["prompt", "-"],
            vec![],
            "nothing to send",
        ),
        (
            "NUL byte",
            &["prompt", "x"],
            b"a\0b".to_vec(),
            "stdin looks binary",
        ),
        ("not UTF-8", &["prompt", "x"], vec![0xff, 0xfe], "not UTF-8"),
        ("over 8 MiB", &["prompt", "x"], huge, "larger than 8 MiB"),
    ];
    for (what, args, stdin, expected) in cases {
        let line = pai.run_stdin(args, stdin).error_line();
        assert!(line.contains(expected), "{what}: {line}");
        assert_eq!(pai.history_bytes("s"), history, "{what}");
    }
    assert_eq!(mock.chat_requests().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_8_mib_of_stdin_is_accepted() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{}[context]\ncontext_window = 100000000\n",
        super::FAST_CONFIG
    ));
    pai.init("s", &mock.base_url());

    pai.run_stdin(&["prompt", "-"], vec![b'a'; 8 * 1024 * 1024])
        .success();
    assert_eq!(pai.history("s").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn model_flag_changes_the_model_for_one_prompt_only() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    pai.run(&["prompt", "--model", "other", "q"]).success();
    pai.run(&["prompt", "q"]).success();

    let models: Vec<Value> = mock
        .chat_requests()
        .await
        .into_iter()
        .map(|b| b["model"].clone())
        .collect();
    assert_eq!(models, [json!("other"), json!(MODEL)]);
    assert_eq!(pai.status_json("s")["model"], MODEL);
    let history = pai.history("s");
    assert_eq!(history[1]["model"], "other");
    assert_eq!(history[3]["model"], MODEL);
}
