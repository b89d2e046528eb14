//! `pai chat` fed from a pipe: one turn per line until exit, quit or end of input.

use pai_test_support::{MockOpenAi, chat_completion, chat_endpoint};
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::ResponseTemplate;

use super::{Pai, snapshot};

async fn chat_session() -> (MockOpenAi, Pai) {
    let mock = MockOpenAi::start().await;
    mock.reply_json("Hi there!", 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    (mock, pai)
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_answers_each_line_and_leaves_on_exit() {
    let (mock, pai) = chat_session().await;

    let run = pai
        .run_stdin(&["chat"], "hello\nexit\nnot sent\n")
        .success();

    assert_eq!(run.stdout, "Hi there!\n");
    snapshot!(pai, "chat_banner", run.stderr);
    assert_eq!(mock.chat_requests().await.len(), 1);
    let history = pai.history("s");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["content"], "hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn quit_leaves_too() {
    let (mock, pai) = chat_session().await;

    pai.run_stdin(&["s", "chat"], "hello\nquit\nnot sent\n")
        .success();

    assert_eq!(mock.chat_requests().await.len(), 1);
    assert_eq!(pai.history("s").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_of_input_leaves_and_later_turns_see_earlier_ones() {
    let (mock, pai) = chat_session().await;

    let run = pai
        .run_stdin(&["chat", "s"], "hello\n\n   \nagain")
        .success();

    assert_eq!(run.stdout, "Hi there!\nHi there!\n");
    let bodies = mock.chat_requests().await;
    assert_eq!(bodies.len(), 2, "blank lines are skipped");
    assert_eq!(
        bodies[1]["messages"],
        json!([
            { "role": "system", "content": "You are PAI, a concise and helpful personal assistant." },
            { "role": "user", "content": "hello" },
            { "role": "assistant", "content": "Hi there!" },
            { "role": "user", "content": "again" },
        ])
    );
    assert_eq!(pai.history("s").len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_turn_is_reported_and_the_chat_goes_on_but_exits_non_zero() {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(
                ResponseTemplate::new(500).set_body_json(json!({ "error": { "message": "boom" } })),
            )
            .up_to_n_times(1)
            .with_priority(1),
    )
    .await;
    mock.reply_with(ResponseTemplate::new(200).set_body_json(chat_completion("fine", 1, 1)))
        .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    let run = pai.run_stdin(&["chat"], "first\nsecond\n");

    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.stdout, "fine\n");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{run:#?}");
    assert!(errors[0].contains("failed with 500"), "{run:#?}");
    let history = pai.history("s");
    assert_eq!(history.len(), 2, "only the turn that worked is kept");
    assert_eq!(history[0]["content"], "second");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backslash_continues_the_line() {
    let (mock, pai) = chat_session().await;

    pai.run_stdin(&["chat"], "line one\\\nline two\nexit\n")
        .success();

    let bodies = mock.chat_requests().await;
    assert_eq!(bodies.len(), 1);
    let messages = bodies[0]["messages"].as_array().unwrap();
    assert_eq!(messages.last().unwrap()["content"], "line one\nline two");
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_left_out_to_fit_the_window_are_counted_once_per_chat() {
    let mock = MockOpenAi::start().await;
    mock.reply_json(&"long answer ".repeat(40), 5, 3).await;
    let pai = Pai::new();
    pai.home.write_config(
        "[context]\ncontext_window = 200\nreserve_output_tokens = 0\nsystem_prompt = \"sys\"\n",
    );
    pai.init("s", &mock.base_url());

    let run = pai
        .run_stdin(&["chat", "--no-tools"], "one\ntwo\nthree\nfour\n")
        .success();
    let notes: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("do not fit the model's context window"))
        .collect();
    assert_eq!(
        notes,
        vec![
            "note: 2 older messages do not fit the model's context window and were left out (the session keeps them)"
        ],
        "{}",
        run.stderr
    );
    assert_eq!(pai.history("s").len(), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_twice_on_an_empty_line_leaves_the_chat_with_the_session_saved() {
    let mock = MockOpenAi::start().await;
    mock.reply_stream(&["Hi there!"], 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let Some(mut chat) = pai.spawn_in_pty("s chat --no-tools") else {
        return;
    };
    chat.wait_for("s> ");
    chat.send("hello\r");
    chat.wait_for("Hi there!");
    chat.wait_for("s> ");
    chat.send("\x03");
    chat.wait_for("press Ctrl+C again or Ctrl+D to leave");
    chat.wait_for("s> ");
    chat.send("\x03");
    let (code, screen) = chat.finish();
    assert_eq!(code, Some(0), "{screen:?}");
    assert_eq!(
        screen.matches("press Ctrl+C again").count(),
        1,
        "{screen:?}"
    );
    let history = pai.history("s");
    assert_eq!(history.len(), 2, "{screen:?}");
    assert_eq!(history[1]["content"], "Hi there!");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_on_a_typed_line_only_cancels_it() {
    let mock = MockOpenAi::start().await;
    mock.reply_stream(&["Hi there!"], 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let Some(mut chat) = pai.spawn_in_pty("s chat --no-tools") else {
        return;
    };
    chat.wait_for("s> ");
    // Cancels the typed text, not the chat, and does not count towards leaving.
    chat.send("never sent");
    chat.wait_for("never sent");
    chat.send("\x03");
    chat.wait_for("s> ");
    chat.send("\x03");
    chat.wait_for("press Ctrl+C again or Ctrl+D to leave");
    // Something typed in between starts the count again.
    chat.wait_for("s> ");
    chat.send("\r");
    chat.wait_for("s> ");
    chat.send("\x03");
    chat.wait_for("press Ctrl+C again or Ctrl+D to leave");
    chat.wait_for("s> ");
    chat.send("\x04");
    let (code, screen) = chat.finish();
    assert_eq!(code, Some(0), "{screen:?}");
    assert!(mock.chat_requests().await.is_empty(), "{screen:?}");
    assert!(pai.history("s").is_empty());
}

/// The user messages of one request, in order.
fn user_texts(body: &serde_json::Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_named_with_f_go_with_the_first_message_only() {
    let (mock, pai) = chat_session().await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("a.md"), "buy oat milk\n").unwrap();

    super::Run::from_cmd(
        pai.cmd()
            .current_dir(work.path())
            .args(["chat", "s", "-f", "a.md"])
            .write_stdin("summarise\nthanks\n"),
    )
    .success();

    let bodies = mock.chat_requests().await;
    let a = "[attached file a.md]\nbuy oat milk\n[end of attached file a.md]";
    assert_eq!(user_texts(&bodies[0]), [a, "summarise"]);
    // The second message carries nothing new; the file is in the history once.
    assert_eq!(user_texts(&bodies[1]), [a, "summarise", "thanks"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn slash_file_attaches_to_the_next_message_and_drop_takes_it_back() {
    let (mock, pai) = chat_session().await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("b.txt"), "call Ana").unwrap();
    std::fs::write(work.path().join("c.txt"), "not this one").unwrap();

    let run = super::Run::from_cmd(
        pai.cmd()
            .current_dir(work.path())
            .args(["chat", "s"])
            .write_stdin(
                "/file c.txt\n/drop\n/file b.txt\n/files\nwho?\n/files\n/etc/hosts, what is it?\n",
            ),
    )
    .success();

    let bodies = mock.chat_requests().await;
    assert_eq!(bodies.len(), 2, "commands are not messages: {bodies:?}");
    let b = "[attached file b.txt]\ncall Ana\n[end of attached file b.txt]";
    assert_eq!(user_texts(&bodies[0]), [b, "who?"]);
    assert_eq!(
        user_texts(&bodies[1]),
        [b, "who?", "/etc/hosts, what is it?"]
    );
    assert!(!format!("{bodies:?}").contains("not this one"));
    let said: Vec<&str> = run.stderr.lines().skip(1).collect();
    assert_eq!(
        said,
        [
            "your next message carries c.txt (12 bytes)",
            "nothing is attached",
            "your next message carries b.txt (8 bytes)",
            "your next message carries b.txt (8 bytes)",
            "nothing is attached",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_cannot_be_attached_is_reported_and_the_chat_goes_on() {
    let (mock, pai) = chat_session().await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("bin.dat"), [0u8, 1, 2, 3]).unwrap();

    let run = super::Run::from_cmd(
        pai.cmd()
            .current_dir(work.path())
            .args(["chat", "s"])
            .write_stdin("/file missing.txt\n/file bin.dat\nhello\n"),
    )
    .failure();

    assert_eq!(run.stdout, "Hi there!\n");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 2, "{}", run.stderr);
    assert!(errors[0].contains("missing.txt"), "{}", run.stderr);
    assert!(
        errors[1].contains("cannot attach bin.dat"),
        "{}",
        run.stderr
    );
    assert_eq!(user_texts(&mock.chat_requests().await[0]), ["hello"]);
}

#[test]
fn a_file_named_with_f_that_cannot_be_read_stops_the_chat_before_it_starts() {
    let pai = Pai::new();
    pai.init("s", "http://127.0.0.1:9");
    let run = pai
        .run_stdin(&["chat", "s", "-f", "/nonexistent/notes.md"], "hello\n")
        .failure();
    assert!(!run.stderr.contains("chatting in"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}
