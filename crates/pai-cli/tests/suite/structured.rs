//! `--schema`: JSON matching a JSON Schema, asked of each provider in its own way
//! (OpenAI `response_format`, Anthropic a forced tool, Ollama `format`), validated,
//! asked again once with what was wrong, and printed alone.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::tools::{Script, answer};
use super::{FAST_CONFIG, MODEL, Pai, Run};

const SCHEMA: &str = r#"{"type":"object","properties":{"city":{"type":"string"},"pop":{"type":"integer"}},"required":["city","pop"]}"#;
const PRETTY: &str = "{\n  \"city\": \"Lima\",\n  \"pop\": 10\n}\n";

fn schema() -> Value {
    serde_json::from_str(SCHEMA).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_gets_response_format_and_only_the_json_is_printed() {
    let (mock, script) = Script::mount(vec![answer(r#"{"city":"Lima","pop":10}"#, 5)]).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let file = pai.home.root().join("city.json");
    std::fs::write(&file, SCHEMA).unwrap();

    let run = pai
        .run(&[
            "s",
            "prompt",
            "--schema",
            file.to_str().unwrap(),
            "biggest city of Peru?",
        ])
        .success();

    assert_eq!(run.stdout, PRETTY);
    let body = &script.requests()[0];
    assert_eq!(
        body["response_format"],
        json!({ "type": "json_schema", "json_schema": { "name": "answer", "schema": schema() } })
    );
    assert_eq!(body.get("tools"), None, "no tools with a schema");
    assert_eq!(body["stream"], false);
    assert_eq!(
        pai.history("s")[1]["content"],
        r#"{"city":"Lima","pop":10}"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_answer_is_asked_for_again_once_with_what_was_wrong() {
    let (mock, script) = Script::mount(vec![
        answer(r#"{"city":"Lima","pop":"many"}"#, 5),
        answer("```json\n{\"city\":\"Lima\",\"pop\":10}\n```", 5),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    let run = pai.run(&["s", "prompt", "--schema", SCHEMA, "x"]).success();

    assert_eq!(run.stdout, PRETTY);
    let requests = script.requests();
    assert_eq!(requests.len(), 2);
    let retry = requests[1]["messages"].as_array().unwrap();
    let told = retry.last().unwrap()["content"].as_str().unwrap();
    assert!(
        told.contains("\"many\" is not of type \"integer\"") && told.contains("/pop"),
        "{told}"
    );
    assert_eq!(retry[retry.len() - 2]["role"], "assistant");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_wrong_answers_are_an_error_and_nothing_is_stored() {
    let (mock, _script) = Script::mount(vec![answer("Lima", 5), answer("still Lima", 5)]).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    let line = pai
        .run(&["s", "prompt", "--schema", SCHEMA, "x"])
        .error_line();

    assert!(
        line.starts_with(
            "error: the answer does not match the schema, even when asked again (it is not JSON"
        ),
        "{line}"
    );
    assert!(pai.history("s").is_empty());
    let line = pai
        .run(&["s", "prompt", "--schema", r#"{"type": 5}"#, "x"])
        .error_line();
    assert!(
        line.contains("--schema is not a valid JSON Schema"),
        "{line}"
    );
    let line = pai
        .run(&["s", "prompt", "--schema", "nope.json", "x"])
        .error_line();
    assert!(
        line.contains("cannot read the schema file nope.json"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_answers_through_a_forced_tool_and_ollama_through_format() {
    let claude = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{ "type": "tool_use", "id": "t1", "name": "answer",
                          "input": { "city": "Lima", "pop": 10 } }],
            "stop_reason": "tool_use",
            "usage": { "input_tokens": 5, "output_tokens": 3 }
        })))
        .mount(&claude)
        .await;
    let ollama = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": MODEL, "message": { "role": "assistant", "content": "{\"city\":\"Lima\",\"pop\":10}" },
            "done": true, "done_reason": "stop", "prompt_eval_count": 4, "eval_count": 2
        })))
        .mount(&ollama)
        .await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.claude-mock]\nkind = \"anthropic\"\nbase_url = \"{}/v1\"\nkey_env = \"MOCK_ANTHROPIC_KEY\"\n\n[providers.ollama-mock]\nkind = \"ollama\"\nbase_url = \"{}\"\n",
        claude.uri(),
        ollama.uri()
    ));
    pai.run(&["init", "c", "claude-mock", "--model", MODEL])
        .success();
    pai.run(&["init", "o", "ollama-mock", "--model", MODEL])
        .success();

    let from_claude = Run::from_cmd(
        pai.cmd()
            .env("MOCK_ANTHROPIC_KEY", "k")
            .args(["c", "prompt", "--schema", SCHEMA, "x"]),
    )
    .success();
    let from_ollama = pai.run(&["o", "prompt", "--schema", SCHEMA, "x"]).success();

    assert_eq!(
        (from_claude.stdout.as_str(), from_ollama.stdout.as_str()),
        (PRETTY, PRETTY)
    );
    let body = |r: &wiremock::Request| serde_json::from_slice::<Value>(&r.body).unwrap();
    let claude_body = body(&claude.received_requests().await.unwrap()[0]);
    assert_eq!(
        (
            &claude_body["tools"][0]["name"],
            &claude_body["tools"][0]["input_schema"],
            &claude_body["tool_choice"]
        ),
        (
            &json!("answer"),
            &schema(),
            &json!({ "type": "tool", "name": "answer" })
        )
    );
    let ollama_body = body(&ollama.received_requests().await.unwrap()[0]);
    assert_eq!(ollama_body["format"], schema());
}
