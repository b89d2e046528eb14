//! Confinement through the real binary: a scripted model that goes after PAI's own files
//! (the audit log, config.toml, a session's history) from a root that holds them gets
//! refusals, and run from `$HOME` without `--root` the tools get no directory at all.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pai_test_support::MockOpenAi;
use serde_json::{Value, json};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::Pai;

/// Answers with the next reply (the last one repeats).
#[derive(Clone)]
struct Replies(Arc<Mutex<VecDeque<Value>>>);

impl Respond for Replies {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut replies = self.0.lock().unwrap();
        let reply = if replies.len() > 1 {
            replies.pop_front().unwrap()
        } else {
            replies.front().cloned().unwrap()
        };
        ResponseTemplate::new(200).set_body_json(reply)
    }
}

async fn scripted(replies: Vec<Value>) -> MockOpenAi {
    let mock = MockOpenAi::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Replies(Arc::new(Mutex::new(replies.into()))))
        .mount(&mock.server)
        .await;
    mock
}

fn tool_call(id: usize, name: &str, args: Value) -> Value {
    json!({
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_{id}"), "type": "function",
                "function": { "name": name, "arguments": args.to_string() }
            }] },
            "finish_reason": "tool_calls"
        }],
        "usage": { "prompt_tokens": 1, "completion_tokens": 0 }
    })
}

fn answer(text: &str) -> Value {
    json!({
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 1, "completion_tokens": 0 }
    })
}

/// The tool results the model got back in the last request, by call id.
async fn tool_results(mock: &MockOpenAi) -> Vec<(String, String)> {
    let requests = mock.chat_requests().await;
    requests
        .last()
        .unwrap()
        .get("messages")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pai_files_are_refused_from_a_root_that_holds_them() {
    let attack = [
        ("read_file", json!({ "path": "home/audit.db" })),
        (
            "sqlite_query",
            json!({ "database": "home/audit.db", "sql": "SELECT count(*) FROM sqlite_master" }),
        ),
        ("read_file", json!({ "path": "config/config.toml" })),
        (
            "read_file",
            json!({ "path": "home/sessions/s/history.jsonl" }),
        ),
        ("list_dir", json!({ "path": "home/sessions" })),
        ("search_files", json!({ "pattern": "retries|remember" })),
        (
            "write_file",
            json!({ "path": "config/config.toml", "content": "[mcp.evil]\ncommand = \"sh\"\n" }),
        ),
        (
            "write_file",
            json!({ "path": "home/sessions/s/history.jsonl", "content": "{}\n", "append": true }),
        ),
    ];
    let mut replies = vec![answer("noted")];
    replies.extend(
        attack
            .iter()
            .enumerate()
            .map(|(i, (name, args))| tool_call(i, name, args.clone())),
    );
    replies.push(answer("done"));
    let mock = scripted(replies).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    // A first turn, so the session has a history to go after.
    pai.run(&["prompt", "--no-tools", "remember this"])
        .success();
    let config_before = std::fs::read(pai.home.config().join("config.toml")).unwrap();
    let history_before = pai.history_bytes("s");
    assert!(!history_before.is_empty());

    // `--root` is the temp dir holding PAI_HOME and PAI_CONFIG_DIR (and is $HOME): a root
    // given explicitly is used, but PAI's own files stay out of reach inside it.
    let root = pai.home.root().display().to_string();
    let run = pai
        .run(&["agent", "--allow", "write", "--root", &root, "go"])
        .success();
    assert_eq!(run.stdout, "done\n");
    assert!(!run.stderr.contains("note:"), "{}", run.stderr);

    let results = tool_results(&mock).await;
    assert_eq!(results.len(), attack.len(), "{results:#?}");
    for (i, (id, content)) in results.iter().enumerate() {
        assert_eq!(id, &format!("call_{i}"));
        let (name, _) = &attack[i];
        if *name == "search_files" {
            // A walk of the root skips PAI's files rather than refusing the whole search.
            assert!(content.contains("\nno matches"), "{name}: {content}");
        } else {
            assert!(content.contains("is protected"), "{name}: {content}");
        }
        for leaked in ["max_retries", "remember this", "SQLite format", "noted"] {
            assert!(!content.contains(leaked), "{name} leaked: {content}");
        }
    }
    assert_eq!(
        std::fs::read(pai.home.config().join("config.toml")).unwrap(),
        config_before,
        "config.toml is unchanged"
    );
    // The history grew by this turn only (PAI's own write), never by the tool's.
    let history = pai.history("s");
    assert!(history.iter().all(|m| m != &json!({})), "{history:?}");
    assert!(pai.history_bytes("s").starts_with(&history_before));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_from_home_without_root_the_tools_get_no_directory() {
    let mock = scripted(vec![
        tool_call(0, "read_file", json!({ "path": "home/audit.db" })),
        answer("ok"),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    std::fs::write(pai.home.root().join("notes.txt"), "in home").unwrap();

    // The test's $HOME is the temp dir, and the run starts there.
    let run = super::Run::from_cmd(
        pai.cmd()
            .current_dir(pai.home.root())
            .args(["prompt", "what is here?"]),
    )
    .success();
    let note = run
        .stderr
        .lines()
        .find(|l| l.starts_with("note: "))
        .unwrap_or_else(|| panic!("no note: {}", run.stderr));
    assert!(
        note.contains("file tools have no directory")
            && note.contains("your home directory")
            && note.ends_with("pass --root DIR to allow one"),
        "{note}"
    );
    let results = tool_results(&mock).await;
    assert_eq!(results.len(), 1);
    assert!(
        results[0].1.contains("no directory is open to file tools")
            && results[0].1.contains("--root"),
        "{}",
        results[0].1
    );

    // From a directory beside PAI's, the current directory is the root as before.
    let work = pai.home.root().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("notes.txt"), "in work").unwrap();
    let mock = scripted(vec![
        tool_call(0, "read_file", json!({ "path": "notes.txt" })),
        answer("ok"),
    ])
    .await;
    pai.init("w", &mock.base_url());
    let run = super::Run::from_cmd(pai.cmd().current_dir(&work).args([
        "prompt",
        "--session",
        "w",
        "what is here?",
    ]))
    .success();
    assert!(!run.stderr.contains("note:"), "{}", run.stderr);
    assert!(tool_results(&mock).await[0].1.contains("in work"));
}
