//! Model control through the real binary: one session moving between an OpenAI-compatible
//! server, an Anthropic endpoint and an Ollama server (each mocked in its own wire format),
//! configured endpoints, local-server discovery, and retries in the audit log.

use pai_test_support::{MockOpenAi, refused_base_url};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{FAST_CONFIG, Pai, Run};

async fn anthropic_mock() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{ "type": "text", "text": "from claude" }],
            "stop_reason": "end_turn",
            "usage": { "input_tokens": 5, "output_tokens": 3 }
        })))
        .mount(&server)
        .await;
    server
}

async fn ollama_mock() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "llama3", "message": { "role": "assistant", "content": "from ollama" },
            "done": true, "done_reason": "stop", "prompt_eval_count": 4, "eval_count": 2
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "models": [{ "name": "llama3:latest" }, { "name": "qwen2.5:7b" }]
        })))
        .mount(&server)
        .await;
    server
}

fn with_key(pai: &Pai, args: &[&str]) -> Run {
    Run::from_cmd(
        pai.cmd()
            .env("MOCK_ANTHROPIC_KEY", "sk-ant-test")
            .args(args),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn one_session_moves_between_a_local_server_and_two_other_providers_keeping_history() {
    let openai = MockOpenAi::start().await;
    openai.reply_json("from the local server", 7, 3).await;
    let claude = anthropic_mock().await;
    let ollama = ollama_mock().await;
    let pai = Pai::bare();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}
[providers.claude-mock]
kind = \"anthropic\"
base_url = \"{}/v1\"
key_env = \"MOCK_ANTHROPIC_KEY\"
locality = \"remote\"

[providers.ollama-mock]
kind = \"ollama\"
base_url = \"{}\"
",
        claude.uri(),
        ollama.uri()
    ));
    pai.init("s", &openai.base_url());

    let first = pai
        .run(&["s", "prompt", "--no-stream", "question one"])
        .success();
    assert_eq!(first.stdout, "from the local server\n");

    let moved = with_key(
        &pai,
        &["s", "switch", "claude-mock", "--model", "claude-test"],
    )
    .success();
    assert!(
        moved.stdout.contains("its 2 message(s) are kept"),
        "{}",
        moved.stdout
    );
    let second = with_key(&pai, &["s", "prompt", "--no-stream", "question two"]).success();
    assert_eq!(second.stdout, "from claude\n");

    pai.run(&["s", "switch", "ollama-mock", "--model", "llama3"])
        .success();
    let third = pai
        .run(&["s", "prompt", "--no-stream", "question three"])
        .success();
    assert_eq!(third.stdout, "from ollama\n");

    // The whole conversation followed the session from provider to provider.
    let history = pai.history("s");
    let contents: Vec<&str> = history
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "question one",
            "from the local server",
            "question two",
            "from claude",
            "question three",
            "from ollama"
        ]
    );
    let claude_body: serde_json::Value =
        serde_json::from_slice(&claude.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(claude_body["messages"][0]["content"], "question one");
    let ollama_body: serde_json::Value =
        serde_json::from_slice(&ollama.received_requests().await.unwrap()[0].body).unwrap();
    let sent: Vec<&str> = ollama_body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(
        sent.contains(&"from claude") && sent.contains(&"question three"),
        "{sent:?}"
    );
    // Each answer records the model that gave it; status says where the session runs now.
    assert_eq!(history[3]["model"], "claude-test");
    let status = pai.status_json("s");
    assert_eq!(status["provider"], "ollama-mock");
    assert_eq!(status["locality"], "local");
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_providers_are_listed_with_locality_and_their_models() {
    let ollama = ollama_mock().await;
    let pai = Pai::bare();
    pai.home.write_config(&format!(
        "[providers.gpu-box]\nkind = \"ollama\"\nbase_url = \"{}\"\nheaders = {{ \"X-Secret\" = \"hunter2\" }}\n",
        ollama.uri()
    ));

    let listing = pai.run(&["providers"]).success().stdout;
    let row = listing
        .lines()
        .find(|l| l.starts_with("gpu-box"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(row.contains("ollama") && row.contains("local"), "{row}");
    let json = pai.run(&["providers", "--json"]).success();
    assert!(
        !json.stdout.contains("hunter2"),
        "header values never shown"
    );
    let entry = json
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gpu-box")
        .cloned()
        .unwrap();
    assert_eq!(entry["headers"], json!(["X-Secret"]));

    let models = pai.run(&["models", "gpu-box"]).success().stdout;
    assert_eq!(models, "llama3:latest\nqwen2.5:7b\n");
    // The configured header went out with the request.
    let sent = &ollama.received_requests().await.unwrap()[0];
    assert_eq!(sent.headers.get("x-secret").unwrap(), "hunter2");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_server_finds_a_running_server_or_names_every_address_it_tried() {
    let mock = MockOpenAi::start().await;
    mock.serve_models(&["qwen-local"]).await;
    let pai = Pai::bare();
    let dead = refused_base_url();
    pai.home.write_config(&format!(
        "[providers.dead]\nkind = \"openai-compatible\"\nbase_url = \"{dead}\"\n\n[providers.box]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\n",
        mock.base_url()
    ));

    let found = pai.run(&["init", "s", "local-server"]).success();
    assert!(found.stderr.contains("found box"), "{}", found.stderr);
    let status = pai.status_json("s");
    assert_eq!(status["provider"], "box");
    assert_eq!(status["model"], "qwen-local");

    pai.home.write_config(&format!(
        "[providers.dead]\nkind = \"openai-compatible\"\nbase_url = \"{dead}\"\n"
    ));
    let line = pai.run(&["init", "t", "local-server"]).error_line();
    for tried in [
        "127.0.0.1:1234",
        "127.0.0.1:8080",
        "127.0.0.1:8000",
        "127.0.0.1:11434",
        &dead,
    ] {
        assert!(line.contains(tried), "{tried} missing from: {line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_failed_attempt_is_in_the_audit_log() {
    let mock = MockOpenAi::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after-ms", "10"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mock.server)
        .await;
    mock.reply_json("second time lucky", 1, 1).await;
    let pai = Pai::bare();
    pai.home.write_config("[network]\nmax_retries = 2\n");
    pai.init("s", &mock.base_url());

    let run = pai.run(&["prompt", "--no-stream", "hi"]).success();
    assert_eq!(run.stdout, "second time lucky\n");

    let audit = pai_audit::SqliteAudit::open(&pai.home.home().join("audit.db")).unwrap();
    let attempts: Vec<String> = audit
        .events(50)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == pai_audit::EventKind::Attempt)
        .map(|e| e.event.content)
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(
        attempts[0].starts_with(
            "attempt 1: 503 Service Unavailable (server asked to wait 10 ms); retried after"
        ),
        "{attempts:?}"
    );
}
