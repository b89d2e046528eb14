//! Tools and the three modes through the real binary: a scripted model on 127.0.0.1
//! asks for tool calls, and the tests check what PAI offered, ran, refused and sent back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pai_test_support::MockOpenAi;
use serde_json::{Value, json};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::{FAST_CONFIG, Pai};

/// A model that answers with the next scripted reply (the last one repeats) and keeps
/// every request it got.
#[derive(Clone, Default)]
pub(super) struct Script {
    replies: Arc<Mutex<VecDeque<Value>>>,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl Respond for Script {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        self.requests.lock().unwrap().push(body);
        let mut replies = self.replies.lock().unwrap();
        let reply = if replies.len() > 1 {
            replies.pop_front().unwrap()
        } else {
            replies.front().cloned().unwrap()
        };
        ResponseTemplate::new(200).set_body_json(reply)
    }
}

impl Script {
    pub(super) async fn mount(replies: Vec<Value>) -> (MockOpenAi, Script) {
        let mock = MockOpenAi::start().await;
        let script = Script {
            replies: Arc::new(Mutex::new(replies.into())),
            ..Script::default()
        };
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(script.clone())
            .mount(&mock.server)
            .await;
        (mock, script)
    }

    pub(super) fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The tool names offered in request `i`.
    fn offered(&self, i: usize) -> Vec<String> {
        let mut names: Vec<String> = self.requests()[i]["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

pub(super) fn tool_call(name: &str, args: Value, tokens: u64) -> Value {
    json!({
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_{name}"), "type": "function",
                "function": { "name": name, "arguments": args.to_string() }
            }] },
            "finish_reason": "tool_calls"
        }],
        "usage": { "prompt_tokens": tokens, "completion_tokens": 0 }
    })
}

pub(super) fn answer(text: &str, tokens: u64) -> Value {
    json!({
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": tokens, "completion_tokens": 0 }
    })
}

/// A PAI home with a session on `mock` and a work directory holding notes.txt.
fn setup(mock: &MockOpenAi) -> (Pai, tempfile::TempDir) {
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("notes.txt"), "buy oat milk").unwrap();
    (pai, work)
}

fn root(work: &tempfile::TempDir) -> String {
    work.path().display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_mode_reads_a_file_and_answers_from_it() {
    let (mock, script) = Script::mount(vec![
        tool_call("read_file", json!({ "path": "notes.txt" }), 10),
        answer("Your notes say: buy oat milk.", 20),
    ])
    .await;
    let (pai, work) = setup(&mock);

    let run = pai
        .run(&["prompt", "--root", &root(&work), "what do my notes say?"])
        .success();

    assert_eq!(run.stdout, "Your notes say: buy oat milk.\n");
    assert!(run.stderr.contains("→ read_file"), "{}", run.stderr);
    let requests = script.requests();
    assert_eq!(requests.len(), 2);
    // Prompt mode offers read and network tools, never write.
    assert!(script.offered(0).contains(&"read_file".to_string()));
    assert!(script.offered(0).contains(&"http_get".to_string()));
    assert!(!script.offered(0).contains(&"write_file".to_string()));
    // The file's content went back to the model as the tool's result.
    let messages = requests[1]["messages"].as_array().unwrap();
    let result = messages.last().unwrap();
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_call_id"], "call_read_file");
    assert!(result["content"].as_str().unwrap().contains("buy oat milk"));
    // The turn is saved with the tokens of both calls.
    let history = pai.history("s");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["usage"]["prompt_tokens"], 30);
    // The call and what it returned to the model are in the audit log, in order.
    let audit = pai_audit::SqliteAudit::open(&pai.home.home().join("audit.db")).unwrap();
    let kinds: Vec<(String, String)> = audit
        .events(100)
        .unwrap()
        .into_iter()
        .map(|e| (e.event.kind.to_string(), e.event.content))
        .collect();
    let tool_rows: Vec<_> = kinds
        .iter()
        .filter(|(k, _)| k.starts_with("tool"))
        .collect();
    assert_eq!(tool_rows.len(), 2, "{kinds:?}");
    assert_eq!(tool_rows[0].0, "tool_call");
    assert_eq!(tool_rows[0].1, r#"read_file({"path":"notes.txt"})"#);
    assert_eq!(tool_rows[1].0, "tool_result");
    assert!(tool_rows[1].1.contains("buy oat milk"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_cap_holds_then_the_model_answers_without_tools() {
    // A model that would list directories forever.
    let (mock, script) = Script::mount(vec![tool_call("list_dir", json!({}), 1)]).await;
    let (pai, work) = setup(&mock);

    pai.run(&[
        "prompt",
        "--max-chain",
        "2",
        "--root",
        &root(&work),
        "look around",
    ])
    .success();

    let requests = script.requests();
    assert_eq!(
        requests.len(),
        3,
        "2 tool rounds, then one call for the answer"
    );
    assert!(!script.offered(0).is_empty());
    assert!(!script.offered(1).is_empty());
    assert!(
        script.offered(2).is_empty(),
        "the last call offers no tools"
    );
    let last = requests[2]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["content"].as_str().unwrap().contains("Answer now"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_mode_offers_read_tools_once_and_refuses_to_chain() {
    let (mock, script) = Script::mount(vec![
        tool_call("list_dir", json!({}), 1),
        tool_call("list_dir", json!({}), 1),
        answer("done", 1),
    ])
    .await;
    let (pai, work) = setup(&mock);

    pai.run_stdin(&["chat", "--root", &root(&work)], "what is here?\nexit\n")
        .success();

    let requests = script.requests();
    assert_eq!(requests.len(), 2, "one tool round, then no more tools");
    let offered = script.offered(0);
    assert!(offered.contains(&"read_file".to_string()));
    assert!(
        !offered.contains(&"http_get".to_string()),
        "chat is read-only"
    );
    assert!(!offered.contains(&"write_file".to_string()));
    assert!(script.offered(1).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_loop_ends_on_its_token_budget_and_keeps_the_turn() {
    // Each call costs 1000 tokens; the model never stops calling tools. A request with the
    // tool descriptions is about 1,700 tokens, so after two calls the 1,000 left cannot pay
    // for a third: it is never sent.
    let (mock, script) = Script::mount(vec![tool_call("current_time", json!({}), 1000)]).await;
    let (pai, work) = setup(&mock);

    let run = pai
        .run(&[
            "agent",
            "--budget-tokens",
            "3000",
            "--root",
            &root(&work),
            "keep going",
        ])
        .code(3);

    assert_eq!(
        script.requests().len(),
        2,
        "stops before the budget is passed"
    );
    assert!(
        run.stderr
            .contains("stopped: the next request alone is about")
            && run
                .stderr
                .contains("more than the 1000 left of the token budget for this run"),
        "{}",
        run.stderr
    );
    assert_eq!(pai.history("s").len(), 2, "what was produced is saved");
    // The answer's max_tokens is clamped to what the budget leaves.
    let first = &script.requests()[0];
    let max = first["max_tokens"]
        .as_u64()
        .or(first["max_completion_tokens"].as_u64())
        .unwrap_or_else(|| panic!("no max_tokens: {first}"));
    assert!(max < 3000, "{max}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_smaller_than_the_request_sends_nothing() {
    let (mock, script) = Script::mount(vec![answer("hi", 5)]).await;
    let (pai, _work) = setup(&mock);
    let line = pai
        .run(&["prompt", "--budget-tokens", "5", "hello"])
        .error_line();
    assert!(
        line.contains("nothing was sent: the next request alone is about")
            && line.ends_with("raise --budget-tokens"),
        "{line}"
    );
    assert_eq!(script.requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_exits_3_when_its_step_limit_stops_it() {
    let (mock, _script) = Script::mount(vec![
        tool_call("current_time", json!({}), 1),
        answer("partial", 1),
    ])
    .await;
    let (pai, work) = setup(&mock);
    let run = pai
        .run(&["agent", "--max-steps", "1", "--root", &root(&work), "go"])
        .code(3);
    assert!(
        run.stderr
            .contains("stopped: the step limit (1) was reached"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "partial\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_reply_with_300_tool_calls_runs_only_the_round_cap() {
    let many: Vec<Value> = (0..300)
        .map(|i| {
            json!({ "id": format!("c{i}"), "type": "function",
                    "function": { "name": "current_time", "arguments": "{}" } })
        })
        .collect();
    let flood = json!({
        "choices": [{ "index": 0,
            "message": { "role": "assistant", "content": null, "tool_calls": many },
            "finish_reason": "tool_calls" }],
        "usage": { "prompt_tokens": 1, "completion_tokens": 0 }
    });
    let (mock, script) = Script::mount(vec![flood, answer("done", 1)]).await;
    let (pai, work) = setup(&mock);
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[tools]\nmax_calls_per_round = 3\n"
    ));
    let run = pai
        .run(&[
            "prompt",
            "--max-chain",
            "1",
            "--root",
            &root(&work),
            "time?",
        ])
        .success();
    assert_eq!(
        run.stderr.matches("→ current_time").count(),
        3,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("297 more tool calls refused"),
        "{}",
        run.stderr
    );
    let back = &script.requests()[1]["messages"];
    let results = back
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .count();
    assert_eq!(results, 300, "every call id is answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_terminal_writes_are_refused_unless_allowed() {
    let write = tool_call(
        "write_file",
        json!({ "path": "out.txt", "content": "hello" }),
        1,
    );
    let (mock, script) = Script::mount(vec![write.clone(), answer("ok", 1)]).await;
    let (pai, work) = setup(&mock);

    let run = pai
        .run(&["agent", "--root", &root(&work), "write a file"])
        .success();
    assert!(!work.path().join("out.txt").exists(), "nothing written");
    assert!(run.stderr.contains("refused write_file"), "{}", run.stderr);
    let refusal = script.requests()[1]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        refusal["content"]
            .as_str()
            .unwrap()
            .contains("did not approve"),
        "{refusal}"
    );

    *script.replies.lock().unwrap() = vec![write, answer("ok", 1)].into();
    pai.run(&[
        "agent",
        "--allow",
        "write",
        "--root",
        &root(&work),
        "write a file",
    ])
    .success();
    assert_eq!(
        std::fs::read_to_string(work.path().join("out.txt")).unwrap(),
        "hello"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_terminal_the_user_is_asked_and_a_yes_lets_the_write_run() {
    let (mock, _script) = Script::mount(vec![
        tool_call(
            "write_file",
            json!({ "path": "yes.txt", "content": "approved" }),
            1,
        ),
        answer("written", 1),
    ])
    .await;
    let (pai, work) = setup(&mock);
    // `script` (util-linux) gives pai a pseudo-terminal; our "y" answers its question.
    let Some(screen) = pai.run_in_pty(
        &format!("agent --no-stream --root {} 'write it'", root(&work)),
        "y\n",
    ) else {
        return;
    };
    assert!(
        screen.contains("allow write_file (write)"),
        "the question was not shown: {screen}"
    );
    assert_eq!(
        std::fs::read_to_string(work.path().join("yes.txt")).unwrap(),
        "approved",
        "{screen}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_used_up_session_budget_sends_nothing() {
    let (mock, script) = Script::mount(vec![answer("hi", 40)]).await;
    let pai = Pai::new();
    pai.run(&[
        "init",
        "s",
        "openai",
        "--model",
        "m",
        "--base-url",
        &mock.base_url(),
        "--budget-tokens",
        "30",
    ])
    .success();

    // Without tool descriptions a short prompt fits the budget of 30.
    pai.run(&["prompt", "--no-tools", "hello"]).success();
    let line = pai.run(&["prompt", "--no-tools", "again"]).error_line();
    assert!(
        line.contains(
            "nothing was sent: the token budget of session 's' (30; 40 used) was reached; session budgets never reset"
        ),
        "{line}"
    );
    assert_eq!(script.requests().len(), 1);
    let status = pai.status_json("s");
    assert_eq!(status["budget_tokens"], 30);

    pai.run(&["s", "budget", "none"]).success();
    pai.run(&["prompt", "--no-tools", "again"]).success();
    assert_eq!(script.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_reports_tokens_and_cost_by_session_provider_and_day() {
    let (mock, _script) = Script::mount(vec![answer("hi", 1000)]).await;
    let pai = Pai::new();
    // A remote-looking price for the mock's model, to see the arithmetic.
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.paid]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nlocality = \"remote\"\nkey_env = \"PAID_KEY\"\n\n[prices.m]\ninput_per_mtok = 2.0\noutput_per_mtok = 8.0\n",
        mock.base_url()
    ));
    pai.run(&["init", "s", "paid", "--model", "m"]).success();
    for text in ["one", "two"] {
        super::Run::from_cmd(pai.cmd().env("PAID_KEY", "k").args(["prompt", text])).success();
    }

    let usage = pai.run(&["usage", "--json"]).success().json();
    let rows = usage.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{usage}");
    assert_eq!(rows[0]["session"], "s");
    assert_eq!(rows[0]["provider"], "paid");
    assert_eq!(rows[0]["prompt_tokens"], 2000);
    assert!((rows[0]["cost_usd"].as_f64().unwrap() - 0.004).abs() < 1e-9);
    let text = pai.run(&["usage"]).success().stdout;
    assert!(text.contains("$0.0040"), "{text}");
}

#[test]
fn tools_lists_every_builtin_with_source_and_effects() {
    let pai = Pai::new();
    let tools = pai.run(&["tools", "--json"]).success().json();
    let by_name = |name: &str| {
        tools
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {tools}"))
            .clone()
    };
    assert_eq!(by_name("read_file")["effects"], json!(["read"]));
    assert_eq!(by_name("write_file")["effects"], json!(["write"]));
    assert_eq!(by_name("http_get")["effects"], json!(["network"]));
    assert_eq!(by_name("sqlite_query")["source"], "builtin");
    for name in ["list_dir", "search_files", "current_time"] {
        by_name(name);
    }
    // The resource tools too, with the modes that offer them.
    assert_eq!(
        by_name("read_file")["modes"],
        json!(["chat", "prompt", "agent"])
    );
    assert_eq!(by_name("http_get")["modes"], json!(["prompt", "agent"]));
    assert_eq!(by_name("search_resources")["source"], "resources");
    assert_eq!(
        by_name("read_resource")["modes"],
        json!(["chat", "prompt", "agent"])
    );
    assert_eq!(by_name("add_note")["modes"], json!(["agent"]));
    assert_eq!(by_name("update_resource")["effects"], json!(["write"]));

    let table = pai.run(&["tools"]).success();
    pai.settings()
        .bind(|| insta::assert_snapshot!("tools_table", table.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_cap_counts_every_session_and_stops_the_next_call() {
    let (mock, script) = Script::mount(vec![answer("hi", 40)]).await;
    let pai = Pai::new();
    pai.home
        .write_config(&format!("{FAST_CONFIG}\n[budget]\ndaily_tokens = 70\n"));
    pai.init("a", &mock.base_url());
    pai.init("b", &mock.base_url());

    pai.run(&["a", "prompt", "--no-tools", "one"]).success();
    pai.run(&["b", "prompt", "--no-tools", "two"]).success();
    let line = pai
        .run(&["a", "prompt", "--no-tools", "three"])
        .error_line();
    assert!(
        line.contains("the daily token cap (70; 80 used today) was reached"),
        "{line}"
    );
    assert_eq!(
        script.requests().len(),
        2,
        "nothing sent once the cap is used up"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_refuses_tools_still_gets_the_question_without_them() {
    // llama.cpp without --jinja answers a request offering tools with a 400.
    let mock = MockOpenAi::start().await;
    Mock::given(wiremock::matchers::body_string_contains("\"tools\""))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": { "message": "tools param requires --jinja flag", "code": 400 }
        })))
        .with_priority(1)
        .mount(&mock.server)
        .await;
    mock.reply_json("plain answer", 3, 2).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    // Agent mode too: the user learns the model works without tools this time.
    let run = pai.run(&["agent", "hello"]).success();

    assert_eq!(run.stdout, "plain answer\n");
    assert!(
        run.stderr.contains(
            "note: the model refused a request with tools (tools param requires --jinja flag); answering without tools"
        ),
        "{}",
        run.stderr
    );
    let bodies = mock.chat_requests().await;
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0].get("tools").is_some());
    assert!(bodies[1].get("tools").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_tools_offers_none() {
    let (mock, script) = Script::mount(vec![answer("plain", 1)]).await;
    let (pai, _work) = setup(&mock);

    pai.run(&["prompt", "--no-tools", "hi"]).success();

    assert!(script.offered(0).is_empty());
    assert!(script.requests()[0].get("tools").is_none());
}
