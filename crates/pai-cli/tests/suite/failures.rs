//! Server failures: each ends in one `error: …` line on stderr, a failing exit code and
//! a history exactly as it was.

use pai_test_support::{MockOpenAi, refused_base_url, sse_body};
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::ResponseTemplate;

use super::{Pai, snapshot};

/// A session `s` at a mock that answered one prompt and has since forgotten every reply.
struct Primed {
    mock: MockOpenAi,
    pai: Pai,
    history: Vec<u8>,
}

impl Primed {
    async fn new() -> Self {
        let mock = MockOpenAi::start().await;
        mock.reply_json("earlier answer", 2, 2).await;
        let pai = Pai::new();
        pai.init("s", &mock.base_url());
        pai.run(&["s", "prompt", "earlier"]).success();
        mock.server.reset().await;
        let history = pai.history_bytes("s");
        assert_eq!(pai.history("s").len(), 2);
        Self { mock, pai, history }
    }

    /// Runs `pai args…`, which must fail with one line and leave the history alone.
    #[track_caller]
    fn fail(&self, args: &[&str]) -> String {
        let line = self.pai.run(args).error_line();
        assert_eq!(self.pai.history_bytes("s"), self.history, "{line}");
        line
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_says_how_to_set_a_key() {
    let p = Primed::new().await;
    p.mock
        .reply_status(
            401,
            json!({ "error": { "message": "Incorrect API key provided", "code": "invalid_api_key" } }),
        )
        .await;

    let line = p.fail(&["s", "prompt", "hi"]);

    snapshot!(p.pai, "error_401", line);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_model_points_to_pai_models() {
    let p = Primed::new().await;
    p.mock
        .reply_status(
            404,
            json!({ "error": { "message": "The model `nope` does not exist", "code": "model_not_found" } }),
        )
        .await;

    let line = p.fail(&["s", "prompt", "--model", "nope", "hi"]);

    snapshot!(p.pai, "error_404_unknown_model", line);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limiting_says_to_wait() {
    let p = Primed::new().await;
    p.mock
        .reply_status(429, json!({ "error": { "message": "Rate limit reached" } }))
        .await;

    let line = p.fail(&["s", "prompt", "hi"]);

    snapshot!(p.pai, "error_429", line);
    assert_eq!(p.mock.chat_requests().await.len(), 1, "max_retries = 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_names_the_status_and_the_message() {
    let p = Primed::new().await;
    p.mock
        .reply_status(500, json!({ "error": { "message": "upstream\nexploded" } }))
        .await;

    let line = p.fail(&["s", "prompt", "hi"]);

    snapshot!(p.pai, "error_500", line);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_up_to_max_retries() {
    let p = Primed::new().await;
    p.pai.home.write_config(
        "[network]\nmax_retries = 2\nmax_retry_wait_secs = 0\nconnect_timeout_secs = 2\n",
    );
    p.mock
        .reply_status(503, json!({ "error": { "message": "overloaded" } }))
        .await;

    let line = p.fail(&["s", "prompt", "hi"]);

    assert!(
        line.contains("failed with 503 after 3 attempt(s): overloaded"),
        "{line}"
    );
    assert_eq!(p.mock.chat_requests().await.len(), 3);
}

#[test]
fn a_refused_connection_asks_whether_the_server_runs() {
    let pai = Pai::new();
    pai.init("s", &refused_base_url());

    let line = pai.run(&["s", "prompt", "hi"]).error_line();

    snapshot!(pai, "error_connection_refused", line);
    assert!(pai.history_bytes("s").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_200_body_is_reported_not_saved() {
    let p = Primed::new().await;
    p.mock
        .reply_with(
            ResponseTemplate::new(200).set_body_raw("<html>surprise</html>", "application/json"),
        )
        .await;

    let line = p.fail(&["s", "prompt", "--no-stream", "hi"]);

    snapshot!(p.pai, "error_malformed_body", line);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_off_stream_is_reported_and_not_saved() {
    let p = Primed::new().await;
    let chunk = |content: &str| {
        json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{ "index": 0, "delta": { "content": content }, "finish_reason": null }]
        })
    };
    // No finish reason, no usage, no [DONE]: the connection just ends.
    p.mock
        .reply_stream_raw(sse_body(&[chunk("The answer is"), chunk(" defin")], false))
        .await;

    let run = p.pai.run(&["s", "prompt", "--stream", "hi"]);
    let stdout = run.stdout.clone();
    let line = run.error_line();

    snapshot!(p.pai, "error_stream_cut", line);
    // What arrived was shown as it came, and ended with a newline before the error.
    assert_eq!(stdout, "The answer is defin\n");
    assert_eq!(p.pai.history_bytes("s"), p.history);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_too_long_conversation_says_to_reset() {
    let p = Primed::new().await;
    p.mock
        .reply_status(
            400,
            json!({ "error": { "message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded" } }),
        )
        .await;

    let line = p.fail(&["s", "prompt", "hi"]);

    assert!(line.contains("'pai reset'"), "{line}");
}

#[test]
fn models_fails_with_one_line_too() {
    let pai = Pai::new();
    pai.init("s", &refused_base_url());
    let line = pai.run(&["s", "models"]).error_line();
    assert!(line.contains("cannot connect to openai at"), "{line}");
}
