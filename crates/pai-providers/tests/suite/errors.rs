//! Failures: each HTTP status, a dead or silent server and a missing key map to the
//! ProviderError that tells the user what to do, and each reads as one line.

use std::time::Duration;

use pai_providers::{Endpoint, ProviderError, connect};
use pai_test_support::{MockOpenAi, chat_endpoint};
use pai_types::{Locality, Secret};
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::matchers::any;
use wiremock::{Mock, ResponseTemplate};

use super::{KEY_HINT, MODEL, assert_one_line, chat, config, config_at, endpoint, request};

/// A server that refuses the key with `status`.
pub(super) async fn auth(status: u16) -> (MockOpenAi, ProviderError) {
    let mock = MockOpenAi::start().await;
    mock.reply_status(
        status,
        json!({ "error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "code": "invalid_api_key"
        } }),
    )
    .await;
    let (_, err) = chat(config(&mock), request(false)).await.error();
    (mock, err)
}

#[tokio::test]
async fn unauthorized_is_auth_and_says_how_to_set_a_key() {
    for status in [401, 403] {
        let (mock, err) = auth(status).await;

        assert!(err.to_string().contains(KEY_HINT), "{err}");
        let ProviderError::Auth {
            at,
            status: got,
            hint,
        } = err
        else {
            panic!("expected Auth for {status}, got {err:?}");
        };
        assert_eq!((at, got, hint), (endpoint(&mock), status, KEY_HINT.into()));
    }
}

pub(super) async fn unknown_model() -> (MockOpenAi, ProviderError) {
    let mock = MockOpenAi::start().await;
    mock.reply_status(
        404,
        json!({ "error": {
            "message": "The model `gpt-9` does not exist",
            "type": "invalid_request_error",
            "code": "model_not_found"
        } }),
    )
    .await;
    let mut req = request(false);
    req.model = "gpt-9".into();
    let (_, err) = chat(config(&mock), req).await.error();
    (mock, err)
}

#[tokio::test]
async fn an_unknown_model_is_named_and_points_to_pai_models() {
    let (mock, err) = unknown_model().await;

    assert!(err.to_string().contains("'pai models'"), "{err}");
    let ProviderError::UnknownModel { at, model } = err else {
        panic!("expected UnknownModel, got {err:?}");
    };
    assert_eq!((at, model), (endpoint(&mock), "gpt-9".to_string()));
}

pub(super) async fn context_too_long() -> (MockOpenAi, ProviderError) {
    let mock = MockOpenAi::start().await;
    mock.reply_status(
        400,
        json!({ "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded"
        } }),
    )
    .await;
    let (_, err) = chat(config(&mock), request(false)).await.error();
    (mock, err)
}

#[tokio::test]
async fn context_length_exceeded_is_context_too_long() {
    let (mock, err) = context_too_long().await;

    let ProviderError::ContextTooLong { at, model } = err else {
        panic!("expected ContextTooLong, got {err:?}");
    };
    assert_eq!((at, model), (endpoint(&mock), MODEL.to_string()));
}

/// A 400 whose message spans lines, as some servers send.
pub(super) async fn rejected() -> (MockOpenAi, ProviderError) {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({ "error": {
                "message": "'temperature' must be\n  between 0 and 2",
                "type": "invalid_request_error"
            } })))
            .expect(1),
    )
    .await;
    let (_, err) = chat(config(&mock), request(false)).await.error();
    (mock, err)
}

#[tokio::test]
async fn a_bad_request_is_tried_once_and_rejected_with_the_server_message() {
    let (mock, err) = rejected().await;

    let ProviderError::Rejected {
        at,
        status,
        message,
    } = err
    else {
        panic!("expected Rejected, got {err:?}");
    };
    assert_eq!(
        (at, status, message),
        (
            endpoint(&mock),
            400,
            "'temperature' must be between 0 and 2".to_string()
        )
    );
    // `.expect(1)` is checked when the mock server drops.
    drop(mock);
}

pub(super) async fn connection_refused() -> (String, ProviderError) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local addr").port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let (_, err) = chat(config_at(url.clone()), request(false)).await.error();
    (url, err)
}

#[tokio::test]
async fn a_dead_server_is_connect_and_asks_whether_it_runs() {
    let (url, err) = connection_refused().await;

    assert!(err.to_string().contains("is the server running?"), "{err}");
    let ProviderError::Connect { at, .. } = err else {
        panic!("expected Connect, got {err:?}");
    };
    assert_eq!(
        at,
        Endpoint {
            provider: "openai".into(),
            url
        }
    );
}

pub(super) async fn timeout() -> (MockOpenAi, ProviderError) {
    let mock = MockOpenAi::start().await;
    mock.reply_with(
        ResponseTemplate::new(200)
            .set_body_json(pai_test_support::chat_completion("late", 1, 1))
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    let mut cfg = config(&mock);
    cfg.net.read_timeout = Duration::from_millis(300);
    let (_, err) = chat(cfg, request(false)).await.error();
    (mock, err)
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (mock, err) = timeout().await;

    let ProviderError::Timeout { at, after } = err else {
        panic!("expected Timeout, got {err:?}");
    };
    assert_eq!((at, after), (endpoint(&mock), Duration::from_millis(300)));
}

/// A remote endpoint without a key: nothing may be sent.
pub(super) async fn missing_key() -> (MockOpenAi, Vec<ProviderError>) {
    let mock = MockOpenAi::start().await;
    mock.mount(
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200))
            .expect(0),
    )
    .await;
    let mut cfg = config(&mock);
    cfg.locality = Locality::Remote;
    cfg.api_key = None;

    let (_, chat_err) = chat(cfg.clone(), request(true)).await.error();
    let provider = connect(cfg).expect("valid config");
    let models_err = match provider.models().await {
        Ok(models) => panic!("expected MissingKey, got {models:?}"),
        Err(err) => err,
    };
    (mock, vec![chat_err, models_err])
}

#[tokio::test]
async fn a_remote_endpoint_without_a_key_fails_before_sending() {
    let (mock, errors) = missing_key().await;

    for err in errors {
        let ProviderError::MissingKey { at, hint } = err else {
            panic!("expected MissingKey, got {err:?}");
        };
        assert_eq!((at, hint), (endpoint(&mock), KEY_HINT.to_string()));
    }
    assert_eq!(mock.requests().await.len(), 0);
}

/// llama.cpp's server sends `code` as a number and words its context error its own way.
pub(super) async fn llama_cpp(status: u16, body: serde_json::Value) -> (MockOpenAi, ProviderError) {
    let mock = MockOpenAi::start().await;
    mock.reply_status(status, json!({ "error": body })).await;
    let (_, err) = chat(config(&mock), request(false)).await.error();
    (mock, err)
}

#[tokio::test]
async fn llama_cpp_errors_with_numeric_codes_are_understood() {
    let (mock, err) = llama_cpp(
        401,
        json!({ "code": 401, "message": "Invalid API Key", "type": "authentication_error" }),
    )
    .await;
    let ProviderError::Auth { at, status, hint } = err else {
        panic!("expected Auth, got {err:?}");
    };
    assert_eq!(
        (at, status, hint),
        (endpoint(&mock), 401, KEY_HINT.to_string())
    );

    let (mock, err) = llama_cpp(
        400,
        json!({
            "code": 400,
            "message": "request (4476 tokens) exceeds the available context size (4096 tokens)",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 4476,
            "n_ctx": 4096
        }),
    )
    .await;
    let ProviderError::ContextTooLong { at, model } = err else {
        panic!("expected ContextTooLong, got {err:?}");
    };
    assert_eq!((at, model), (endpoint(&mock), MODEL.to_string()));
}

/// A key pasted with its trailing newline cannot go in a header.
pub(super) fn unsendable_key() -> ProviderError {
    let mut cfg = config_at("http://127.0.0.1:9/v1".into());
    cfg.api_key = Some(Secret::new("sk-pasted\n".to_string()));
    match connect(cfg) {
        Ok(_) => panic!("expected a Config error from connect"),
        Err(err) => err,
    }
}

#[tokio::test]
async fn a_key_that_cannot_be_sent_fails_at_connect_instead_of_panicking() {
    let err = unsendable_key();

    assert!(matches!(err, ProviderError::Config { .. }), "{err:?}");
    assert!(!err.to_string().contains("sk-pasted"), "key leaked: {err}");
}

#[tokio::test]
async fn every_error_message_is_one_line() {
    let mut errors = vec![
        auth(401).await.1,
        auth(403).await.1,
        unknown_model().await.1,
        context_too_long().await.1,
        rejected().await.1,
        connection_refused().await.1,
        timeout().await.1,
        super::openai::garbage_body().await.1,
        super::retry::rate_limited().await.1,
        super::retry::retry_after_capped().await.1,
        super::retry::server_error().await.1,
        llama_cpp(
            400,
            json!({ "code": 400, "message": "bad\nthing", "type": "x" }),
        )
        .await
        .1,
        unsendable_key(),
    ];
    errors.extend(missing_key().await.1);
    errors.extend(super::openai::stream_cut_off().await.error);
    errors.extend(super::openai::error_mid_stream().await.error);
    errors.extend(super::openai::connection_dropped_mid_stream().await.error);

    assert_eq!(errors.len(), 18);
    for err in &errors {
        assert_one_line(err);
    }
}
