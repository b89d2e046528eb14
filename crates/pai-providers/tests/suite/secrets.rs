//! Server text that echoes the session's secrets (its API key, a credential header) is
//! scrubbed from every error before anyone can print or audit it.

use pai_providers::{ProviderConfig, ProviderError, ProviderKind};
use pai_test_support::{MockOpenAi, chat_endpoint, sse_body, sse_chunks};
use pai_types::Secret;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{KEY, chat, config, config_at, request};

const HEADER_SECRET: &str = "proxy-token-abcdef";

/// The suite's config for `base_url` with a credential header as well as the key.
fn with_header(mut config: ProviderConfig) -> ProviderConfig {
    config.headers.push((
        "x-proxy-token".into(),
        Secret::new(HEADER_SECRET.to_string()),
    ));
    config
}

fn echo() -> String {
    format!("Incorrect API key provided: {KEY} (token {HEADER_SECRET})")
}

/// Fails if `err` shows a secret; with `shown`, it must show where one was scrubbed.
#[track_caller]
fn assert_scrubbed(err: &ProviderError, shown: bool) {
    let text = err.to_string();
    assert!(!text.contains(KEY), "the key leaked: {text}");
    assert!(!text.contains(HEADER_SECRET), "the header leaked: {text}");
    if shown {
        assert!(text.contains("[REDACTED]"), "{text}");
    }
}

#[tokio::test]
async fn openai_error_bodies_that_echo_secrets_are_scrubbed() {
    for (status, shown) in [(401, false), (400, true), (500, true)] {
        let mock = MockOpenAi::start().await;
        mock.reply_status(status, json!({ "error": { "message": echo() } }))
            .await;
        for stream in [false, true] {
            let (_, err) = chat(with_header(config(&mock)), request(stream))
                .await
                .error();
            assert_scrubbed(&err, shown);
        }
    }
}

#[tokio::test]
async fn a_plain_text_error_body_is_scrubbed_too() {
    let mock = MockOpenAi::start().await;
    mock.reply_with(ResponseTemplate::new(422).set_body_string(echo()))
        .await;

    let (_, err) = chat(with_header(config(&mock)), request(false))
        .await
        .error();

    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
    assert_scrubbed(&err, true);
}

#[tokio::test]
async fn an_error_frame_mid_stream_that_echoes_the_key_is_scrubbed() {
    let mock = MockOpenAi::start().await;
    let mut body = sse_body(&sse_chunks(&["Start"], 5, 1)[..2], false);
    body.push_str(&format!(
        "data: {}\n\n",
        json!({ "error": { "message": echo() } })
    ));
    mock.mount(
        chat_endpoint()
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")),
    )
    .await;

    let (_, err) = chat(with_header(config(&mock)), request(true))
        .await
        .error();

    assert_scrubbed(&err, true);
}

#[tokio::test]
async fn anthropic_and_ollama_errors_are_scrubbed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "type": "error",
            "error": { "type": "invalid_request_error", "message": echo() }
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            format!(
                "{}\n{}\n",
                json!({ "message": { "role": "assistant", "content": "Start" }, "done": false }),
                json!({ "error": echo() })
            ),
            "application/x-ndjson",
        ))
        .mount(&server)
        .await;
    let anthropic = ProviderConfig {
        name: "anthropic".into(),
        kind: ProviderKind::Anthropic,
        ..with_header(config_at(format!("{}/v1", server.uri())))
    };
    let ollama = ProviderConfig {
        name: "ollama".into(),
        kind: ProviderKind::Ollama,
        ..with_header(config_at(server.uri()))
    };

    for stream in [false, true] {
        let (_, err) = chat(anthropic.clone(), request(stream)).await.error();
        assert_scrubbed(&err, true);
    }
    let (_, err) = chat(ollama, request(true)).await.error();
    assert_scrubbed(&err, true);
}

#[tokio::test]
async fn short_values_are_not_treated_as_secrets() {
    let mock = MockOpenAi::start().await;
    mock.reply_status(
        400,
        json!({ "error": { "message": "bad value abc in field" } }),
    )
    .await;
    let mut cfg = config(&mock);
    cfg.headers
        .push(("x-tiny".into(), Secret::new("abc".to_string())));

    let (_, err) = chat(cfg, request(false)).await.error();

    assert!(err.to_string().contains("bad value abc in field"), "{err}");
}
