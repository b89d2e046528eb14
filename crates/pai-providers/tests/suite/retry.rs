//! Retries: transient statuses are tried again up to the cap, the server's Retry-After is
//! honoured but capped, and a request that cannot succeed is sent once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pai_providers::{AttemptLog, ChatEvent, ProviderError, RetryWait};
use pai_test_support::{MockOpenAi, chat_completion, chat_endpoint, sse_body, sse_chunks};
use pai_types::Usage;
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::{Respond, ResponseTemplate};

use super::{chat, config, endpoint, request};

fn too_many() -> ResponseTemplate {
    ResponseTemplate::new(429).set_body_json(json!({ "error": {
        "message": "Rate limit reached for requests",
        "type": "requests",
        "code": "rate_limit_exceeded"
    } }))
}

/// A server that always answers 429 with `Retry-After: 0`; max_retries is 2.
pub(super) async fn rate_limited() -> (MockOpenAi, ProviderError) {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(too_many().insert_header("retry-after", "0"))
            .expect(3),
    )
    .await;
    let (_, err) = chat(config(&mock), request(false)).await.error();
    (mock, err)
}

#[tokio::test]
async fn rate_limiting_is_retried_up_to_the_cap() {
    let (mock, err) = rate_limited().await;

    let ProviderError::RateLimited { at, attempts, .. } = err else {
        panic!("expected RateLimited, got {err:?}");
    };
    assert_eq!((at, attempts), (endpoint(&mock), 3));
    assert_eq!(mock.requests().await.len(), 3);
}

#[tokio::test]
async fn a_429_then_a_reply_succeeds_after_the_wait_the_server_asked_for() {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(too_many().insert_header("retry-after-ms", "150"))
            .up_to_n_times(1)
            .with_priority(1)
            .expect(1),
    )
    .await;
    mock.reply_json("Finally.", 4, 1).await;

    let started = Instant::now();
    let events = chat(config(&mock), request(false)).await.events();
    let elapsed = started.elapsed();

    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("Finally.".into()),
            ChatEvent::Usage(Usage {
                prompt_tokens: 4,
                completion_tokens: 1,
                estimated: false
            }),
            ChatEvent::Finished {
                reason: "stop".into()
            },
        ]
    );
    // Backoff alone would wait 5-10ms (base_delay 10ms): 150ms means the header counted.
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert_eq!(mock.requests().await.len(), 2);
}

#[tokio::test]
async fn a_streamed_request_is_retried_while_it_opens() {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
            .up_to_n_times(1)
            .with_priority(1),
    )
    .await;
    mock.reply_stream_raw(sse_body(&sse_chunks(&["Back"], 2, 1), true))
        .await;

    let events = chat(config(&mock), request(true)).await.events();

    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("Back".into()),
            ChatEvent::Usage(Usage {
                prompt_tokens: 2,
                completion_tokens: 1,
                estimated: false
            }),
            ChatEvent::Finished {
                reason: "stop".into()
            },
        ]
    );
    assert_eq!(mock.requests().await.len(), 2);
}

/// A server asking for an hour's wait, with max_wait 100ms.
pub(super) async fn retry_after_capped() -> (MockOpenAi, ProviderError, Duration) {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(too_many().insert_header("retry-after", "3600"))
            .expect(3),
    )
    .await;
    let mut cfg = config(&mock);
    cfg.net.retry.max_wait = Duration::from_millis(100);

    let started = Instant::now();
    let (_, err) = chat(cfg, request(false)).await.error();
    (mock, err, started.elapsed())
}

#[tokio::test]
async fn a_retry_after_beyond_max_wait_is_capped() {
    let (mock, err, elapsed) = retry_after_capped().await;

    let ProviderError::RateLimited { at, attempts, .. } = err else {
        panic!("expected RateLimited, got {err:?}");
    };
    assert_eq!((at, attempts), (endpoint(&mock), 3));
    // Two waits of exactly max_wait: the header was read, then capped.
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// A server that always fails with 500 and an HTML page.
pub(super) async fn server_error() -> (MockOpenAi, ProviderError) {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(ResponseTemplate::new(500).set_body_raw(
                "<html>\n  <body>Internal error</body>\n</html>\n",
                "text/html",
            ))
            .expect(3),
    )
    .await;
    let (_, err) = chat(config(&mock), request(false)).await.error();
    (mock, err)
}

#[tokio::test]
async fn a_server_error_is_retried_then_given_up() {
    let (mock, err) = server_error().await;

    let ProviderError::Server {
        at,
        status,
        attempts,
        message,
    } = err
    else {
        panic!("expected Server, got {err:?}");
    };
    assert_eq!(
        (at, status, attempts, message),
        (
            endpoint(&mock),
            500,
            3,
            "<html> <body>Internal error</body> </html>".to_string()
        )
    );
}

#[tokio::test]
async fn a_json_server_error_shows_its_message() {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(
                ResponseTemplate::new(502)
                    .set_body_json(json!({ "error": { "message": "upstream unavailable" } })),
            )
            .expect(3),
    )
    .await;

    let (_, err) = chat(config(&mock), request(false)).await.error();

    let ProviderError::Server {
        status, message, ..
    } = err
    else {
        panic!("expected Server, got {err:?}");
    };
    assert_eq!((status, message), (502, "upstream unavailable".to_string()));
}

/// What a call went through, in order: requests the server took and waits PAI announced.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Request(usize),
    Wait(RetryWait),
}

/// Answers the first request with 429 and `Retry-After: 1`, later ones with a reply,
/// noting each request in `seen` as it takes it.
struct RateLimitOnce {
    seen: Arc<Mutex<Vec<Seen>>>,
    calls: AtomicUsize,
}

impl Respond for RateLimitOnce {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.seen.lock().unwrap().push(Seen::Request(n));
        if n == 1 {
            too_many().insert_header("retry-after", "1")
        } else {
            ResponseTemplate::new(200).set_body_json(chat_completion("Finally.", 4, 1))
        }
    }
}

#[tokio::test]
async fn the_caller_is_told_of_a_rate_limit_wait_before_it_starts() {
    let mock = MockOpenAi::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    mock.mount(chat_endpoint().respond_with(RateLimitOnce {
        seen: seen.clone(),
        calls: AtomicUsize::new(0),
    }))
    .await;
    let mut cfg = config(&mock);
    cfg.net.retry.max_wait = Duration::from_secs(5);
    let mut req = request(false);
    let heard = seen.clone();
    req.attempts =
        AttemptLog::new().on_wait(move |wait| heard.lock().unwrap().push(Seen::Wait(wait.clone())));
    let attempts = req.attempts.clone();

    chat(cfg, req).await.events();

    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            Seen::Request(1),
            Seen::Wait(RetryWait {
                endpoint: endpoint(&mock),
                outcome: "429 Too Many Requests".into(),
                wait: Duration::from_secs(1),
                rate_limited: true,
                attempt: 1,
            }),
            Seen::Request(2),
        ]
    );
    // The log the caller kept still has the attempt for the audit.
    assert_eq!(attempts.failures(), 1);
}

#[tokio::test]
async fn a_server_error_wait_is_told_too_and_not_as_a_rate_limit() {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(ResponseTemplate::new(503).set_body_string("busy"))
            .up_to_n_times(1)
            .with_priority(1),
    )
    .await;
    mock.reply_json("ok", 1, 1).await;
    let waits = Arc::new(Mutex::new(Vec::new()));
    let heard = waits.clone();
    let mut req = request(false);
    req.attempts = AttemptLog::new().on_wait(move |w| heard.lock().unwrap().push(w.clone()));

    chat(config(&mock), req).await.events();

    let waits = waits.lock().unwrap();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert_eq!(
        (
            waits[0].outcome.as_str(),
            waits[0].rate_limited,
            waits[0].attempt
        ),
        ("503 Service Unavailable", false, 1)
    );
}
