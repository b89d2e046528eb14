//! What leaves: a redirect forwards nothing, only the configured proxy is used, and every
//! request sent is reported once with the hash of the body the server received.

use std::sync::{Arc, Mutex};

use pai_providers::{AttemptLog, ChatEvent, ProviderError, ProviderKind, SentRequest, connect};
use pai_test_support::{MockOpenAi, chat_endpoint, refused_base_url};
use pretty_assertions::assert_eq;
use serde_json::json;
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use super::{chat, config, config_at, request};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An attempt log that keeps every report it is given.
fn recording() -> (AttemptLog, Arc<Mutex<Vec<SentRequest>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let log =
        AttemptLog::new().on_sent(move |s: &SentRequest| keep.lock().unwrap().push(s.clone()));
    (log, seen)
}

/// What `mock` received, as the reports of it should read.
async fn received(mock: &MockOpenAi, status: &[u16]) -> Vec<SentRequest> {
    let requests = mock.requests().await;
    assert_eq!(requests.len(), status.len(), "{requests:?}");
    requests
        .iter()
        .zip(status)
        .map(|(r, status)| SentRequest {
            method: r.method.to_string(),
            // wiremock names itself `localhost`; the client asked for the address.
            url: format!("{}{}", mock.server.uri(), r.url.path()),
            remote_addr: Some(*mock.server.address()),
            proxy: None,
            bytes: r.body.len() as u64,
            body_sha256: sha256(&r.body),
            status: Some(*status),
        })
        .collect()
}

async fn redirect_to_another_origin(status: u16, stream: bool) {
    let mock = MockOpenAi::start().await;
    let elsewhere = MockOpenAi::start().await;
    elsewhere.reply_json("stolen", 1, 1).await;
    elsewhere.reply_stream(&["stolen"], 1, 1).await;
    let location = format!("{}/chat/completions", elsewhere.base_url());
    mock.reply_with(ResponseTemplate::new(status).insert_header("location", location.as_str()))
        .await;

    let (_, err) = chat(config(&mock), request(stream)).await.error();

    let ProviderError::Redirected {
        status: got,
        to,
        other_origin,
        ..
    } = &err
    else {
        panic!("expected Redirected, got {err:?}");
    };
    assert_eq!(
        (*got, to.as_str(), *other_origin),
        (status, elsewhere.server.uri().as_str(), true)
    );
    let text = err.to_string();
    assert!(
        text.contains("another server") && text.contains("nothing was sent there"),
        "{text}"
    );
    assert_eq!(mock.requests().await.len(), 1);
    assert!(
        elsewhere.requests().await.is_empty(),
        "the other origin got the conversation"
    );
}

#[tokio::test]
async fn a_307_to_another_origin_is_an_error_and_sends_nothing_there() {
    redirect_to_another_origin(307, false).await;
}

#[tokio::test]
async fn a_308_to_another_origin_is_an_error_and_sends_nothing_there() {
    redirect_to_another_origin(308, true).await;
}

#[tokio::test]
async fn a_redirect_on_the_same_origin_is_not_followed_either() {
    let mock = MockOpenAi::start().await;
    mock.mount(chat_endpoint().respond_with(
        ResponseTemplate::new(308).insert_header("location", "/v2/chat/completions"),
    ))
    .await;
    let (_, err) = chat(config(&mock), request(false)).await.error();
    let ProviderError::Redirected {
        to, other_origin, ..
    } = &err
    else {
        panic!("expected Redirected, got {err:?}");
    };
    assert_eq!(
        (to.as_str(), *other_origin),
        (
            format!("{}/v2/chat/completions", mock.server.uri()).as_str(),
            false
        )
    );
    assert_eq!(mock.requests().await.len(), 1);
}

#[tokio::test]
async fn a_model_listing_redirected_elsewhere_sends_nothing_there() {
    let mock = MockOpenAi::start().await;
    let elsewhere = MockOpenAi::start().await;
    elsewhere.serve_models(&["stolen"]).await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "location",
            format!("{}/models", elsewhere.base_url()).as_str(),
        ))
        .mount(&mock.server)
        .await;
    for kind in [ProviderKind::OpenAiCompatible, ProviderKind::Ollama] {
        let mut cfg = config(&mock);
        cfg.kind = kind;
        if kind == ProviderKind::Ollama {
            cfg.base_url = mock.server.uri();
            Mock::given(method("GET"))
                .and(path("/api/tags"))
                .respond_with(ResponseTemplate::new(301).insert_header(
                    "location",
                    format!("{}/api/tags", elsewhere.server.uri()).as_str(),
                ))
                .mount(&mock.server)
                .await;
        }
        let err = connect(cfg).unwrap().models().await.unwrap_err();
        assert!(
            matches!(
                err,
                ProviderError::Redirected {
                    other_origin: true,
                    ..
                }
            ),
            "{kind}: {err:?}"
        );
    }
    assert!(elsewhere.requests().await.is_empty());
}

#[tokio::test]
async fn an_explicit_proxy_carries_the_request_and_is_reported() {
    let proxy = MockOpenAi::start().await;
    proxy.reply_json("via proxy", 1, 1).await;
    // A host nobody resolves: only a proxy can deliver it.
    let mut cfg = config_at("http://model.invalid/v1".into());
    cfg.net.proxy = Some(proxy.server.uri());
    let (log, seen) = recording();
    let mut req = request(false);
    req.attempts = log;

    let events = chat(cfg, req).await.events();

    assert_eq!(events[0], ChatEvent::Delta("via proxy".into()));
    let received = proxy.requests().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].url.path(), "/v1/chat/completions");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![SentRequest {
            method: "POST".into(),
            url: "http://model.invalid/v1/chat/completions".into(),
            remote_addr: Some(*proxy.server.address()),
            proxy: Some(proxy.server.uri()),
            bytes: received[0].body.len() as u64,
            body_sha256: sha256(&received[0].body),
            status: Some(200),
        }]
    );
}

#[tokio::test]
async fn a_proxy_is_not_used_for_loopback() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("direct", 1, 1).await;
    let proxy = MockOpenAi::start().await;
    let mut cfg = config(&mock);
    cfg.net.proxy = Some(proxy.server.uri());
    let (log, seen) = recording();
    let mut req = request(false);
    req.attempts = log;

    chat(cfg, req).await.events();

    assert!(proxy.requests().await.is_empty());
    assert_eq!(seen.lock().unwrap()[0].proxy, None);
}

#[tokio::test]
async fn an_unusable_proxy_is_a_config_error_that_masks_its_credentials() {
    let mut cfg = config_at("https://api.example.com/v1".into());
    cfg.net.proxy = Some("http://bob:hunter2@[::zz]:3128".into());
    let Err(err) = connect(cfg) else {
        panic!("a proxy URL with a bad host was accepted");
    };
    let text = err.to_string();
    assert!(matches!(err, ProviderError::Config { .. }), "{err:?}");
    assert!(
        text.contains("[network] proxy") && !text.contains("hunter2"),
        "{text}"
    );
}

async fn every_attempt_is_reported_with_the_hash_of_what_the_server_got(stream: bool) {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(
                ResponseTemplate::new(500).set_body_json(json!({"error": {"message": "oops"}})),
            )
            .up_to_n_times(1)
            .with_priority(1),
    )
    .await;
    mock.reply_json("ok", 1, 1).await;
    mock.reply_stream(&["ok"], 1, 1).await;
    let (log, seen) = recording();
    let mut req = request(stream);
    req.attempts = log;

    chat(config(&mock), req).await.events();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, received(&mock, &[500, 200]).await);
}

#[tokio::test]
async fn every_attempt_of_a_whole_reply_is_reported_once() {
    every_attempt_is_reported_with_the_hash_of_what_the_server_got(false).await;
}

#[tokio::test]
async fn every_attempt_of_a_stream_is_reported_once() {
    every_attempt_is_reported_with_the_hash_of_what_the_server_got(true).await;
}

#[tokio::test]
async fn a_model_listing_is_reported() {
    let mock = MockOpenAi::start().await;
    mock.serve_models(&["a", "b"]).await;
    let (log, seen) = recording();

    let models = connect(config(&mock))
        .unwrap()
        .models_with(log)
        .await
        .unwrap();

    assert_eq!(models.len(), 2);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, received(&mock, &[200]).await);
    assert_eq!(seen[0].body_sha256, sha256(b""));
}

#[tokio::test]
async fn a_connection_never_made_is_not_reported() {
    let mut cfg = config_at(refused_base_url());
    cfg.net.retry.max_retries = 0;
    let (log, seen) = recording();
    let mut req = request(false);
    req.attempts = log;
    chat(cfg, req).await.error();
    assert!(seen.lock().unwrap().is_empty());
}
