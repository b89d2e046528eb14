use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Serialize;

use crate::error::{Endpoint, Result};
use crate::http::{ErrorContext, HttpClient, Outgoing, root_cause, transport};

/// When to try a request again. Only opening a request is retried, never a stream that
/// already delivered text, so a retry can never duplicate output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries after the first one.
    pub max_retries: u32,
    /// The first backoff; each later one doubles, with jitter.
    pub base_delay: Duration,
    /// No single wait is longer than this, whatever the server asks for.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_wait: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// 408, 409, 429 and 5xx are worth another try; other 4xx are the caller's mistake.
    pub fn retryable(status: StatusCode) -> bool {
        matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
    }

    /// How long to wait before retry number `retry` (0-based): the server's
    /// `retry-after-ms` / `Retry-After` when given, else exponential backoff with jitter;
    /// capped at `max_wait` either way.
    pub fn delay(&self, retry: u32, headers: Option<&HeaderMap>) -> Duration {
        let asked = headers.and_then(server_asked_wait);
        let wait = asked.unwrap_or_else(|| {
            let exp = self
                .base_delay
                .saturating_mul(2u32.saturating_pow(retry.min(16)));
            // Full jitter on the upper half keeps concurrent clients from retrying in step.
            let half = exp / 2;
            half + half.mul_f64(fastrand::f64())
        });
        wait.min(self.max_wait)
    }
}

/// The wait a response asks for, from `retry-after-ms` or `Retry-After` (seconds).
pub(crate) fn server_asked_wait(headers: &HeaderMap) -> Option<Duration> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = value("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    value(RETRY_AFTER.as_str())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// One failed HTTP attempt of a call, kept for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// 1 for the first try.
    pub number: u32,
    /// What went wrong: a status line or the transport error.
    pub outcome: String,
    /// How long the server asked us to wait, if it said.
    pub asked_wait_ms: Option<u64>,
    /// How long PAI waited before the next try; `None` when it gave up.
    pub waited_ms: Option<u64>,
}

/// A wait before the next try of a call, told to the caller before it starts so a
/// long one (a rate limit may ask for many seconds) is not a silent hang.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryWait {
    /// The endpoint that failed.
    pub endpoint: Endpoint,
    /// What went wrong: a status line (`429 Too Many Requests`) or the transport error.
    pub outcome: String,
    /// How long PAI will wait before trying again.
    pub wait: Duration,
    /// The server said it is rate limiting (429).
    pub rate_limited: bool,
    /// The attempt that failed, 1 for the first.
    pub attempt: u32,
}

/// Called before each retry wait; see [`AttemptLog::on_wait`].
pub type WaitNotifier = Arc<dyn Fn(&RetryWait) + Send + Sync>;

/// One HTTP request that left this process: where it went, through what, and the
/// SHA-256 of exactly the body bytes that were sent, so an audit can prove what left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentRequest {
    /// `POST`, `GET`.
    pub method: String,
    /// The full URL asked for, credentials masked.
    pub url: String,
    /// The address the connection went to (the proxy's, through a proxy), when known.
    pub remote_addr: Option<SocketAddr>,
    /// The proxy the request went through (credentials masked), if any.
    pub proxy: Option<String>,
    /// Bytes of the body sent (headers not counted).
    pub bytes: u64,
    /// Hex SHA-256 of the body sent.
    pub body_sha256: String,
    /// The status the server answered; `None` when the exchange broke before one came.
    pub status: Option<u16>,
}

/// Called once for every request sent; see [`AttemptLog::on_sent`].
pub type SendNotifier = Arc<dyn Fn(&SentRequest) + Send + Sync>;

/// The failed attempts of one call, shared between the caller and the retry loop, and
/// the caller's optional notifiers for waits and for requests sent.
#[derive(Clone, Default)]
pub struct AttemptLog {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    on_wait: Option<WaitNotifier>,
    on_sent: Option<SendNotifier>,
}

impl AttemptLog {
    /// An empty log with no wait notifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// This log, with `notify` called before each wait between two tries of the call.
    /// It runs on the task that sends the request, so it should return quickly.
    pub fn on_wait(mut self, notify: impl Fn(&RetryWait) + Send + Sync + 'static) -> Self {
        self.on_wait = Some(Arc::new(notify));
        self
    }

    /// This log, with `notify` called once for every HTTP request of the call that left
    /// (each attempt of a retried call, each listing), after the server answered or the
    /// exchange broke. A request that never connected is not reported: nothing left.
    /// It runs on the task that sends the request, so it should return quickly.
    pub fn on_sent(mut self, notify: impl Fn(&SentRequest) + Send + Sync + 'static) -> Self {
        self.on_sent = Some(Arc::new(notify));
        self
    }

    /// Removes and returns what was logged so far.
    pub fn take(&self) -> Vec<Attempt> {
        std::mem::take(&mut *self.lock())
    }

    /// How many attempts failed so far.
    pub fn failures(&self) -> u32 {
        self.lock().len() as u32
    }

    /// The wait the server asked for on the last failed attempt.
    pub fn last_asked_wait(&self) -> Option<Duration> {
        self.lock()
            .last()
            .and_then(|a| a.asked_wait_ms)
            .map(Duration::from_millis)
    }

    fn push(&self, attempt: Attempt) {
        self.lock().push(attempt);
    }

    fn notify(&self, wait: &RetryWait) {
        if let Some(notify) = &self.on_wait {
            notify(wait);
        }
    }

    /// Somebody wants to hear of requests sent (so their bodies are worth hashing).
    pub(crate) fn wants_sent(&self) -> bool {
        self.on_sent.is_some()
    }

    pub(crate) fn sent(&self, request: &SentRequest) {
        if let Some(notify) = &self.on_sent {
            notify(request);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Attempt>> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for AttemptLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptLog")
            .field("attempts", &*self.lock())
            .field("on_wait", &self.on_wait.is_some())
            .field("on_sent", &self.on_sent.is_some())
            .finish()
    }
}

/// Logs are equal when they are the same log: a request compares equal to its clone.
impl PartialEq for AttemptLog {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.attempts, &other.attempts)
    }
}

impl Eq for AttemptLog {}

/// Sends the request `build` makes (a fresh one per attempt), retrying per `policy` and
/// logging each failed attempt in `cx.log`. Returns the first success, or the last
/// failed response for the caller to read; a transport failure that outlasts the
/// retries is mapped to its [`ProviderError`](crate::ProviderError) here.
pub(crate) async fn send_with_retries(
    client: &HttpClient,
    policy: &RetryPolicy,
    cx: &ErrorContext,
    build: &(dyn Fn() -> Result<reqwest::Request> + Send + Sync),
) -> Result<reqwest::Response> {
    let mut retry = 0;
    loop {
        let request = build()?;
        if crate::http::wire_on() {
            let body = request
                .body()
                .and_then(|b| b.as_bytes())
                .unwrap_or_default();
            let head = format!(
                "\u{2192} {} {}",
                request.method(),
                pai_types::redact_endpoint(request.url().as_str())
            );
            crate::http::wire(cx, &head, body);
        }
        let outgoing = cx.log.wants_sent().then(|| Outgoing::of(&request));
        let result = client.execute(request).await;
        if let Some(outgoing) = outgoing {
            match &result {
                Ok(response) => cx.log.sent(&outgoing.sent(Some(response), cx)),
                // A connection never made sent nothing; any later failure may have.
                Err(err) if !err.is_connect() => cx.log.sent(&outgoing.sent(None, cx)),
                Err(_) => {}
            }
        }
        let (outcome, status, response) = match result {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => {
                let status = response.status();
                if !RetryPolicy::retryable(status) {
                    return Ok(response);
                }
                (status.to_string(), Some(status), Ok(response))
            }
            Err(err) if err.is_connect() || err.is_timeout() => (root_cause(&err), None, Err(err)),
            Err(err) => return Err(transport(&err, cx)),
        };
        let headers = response.as_ref().ok().map(|r| r.headers());
        let asked = headers.and_then(server_asked_wait);
        let give_up = retry >= policy.max_retries;
        let wait = (!give_up).then(|| policy.delay(retry, headers));
        cx.log.push(Attempt {
            number: retry + 1,
            outcome: outcome.clone(),
            asked_wait_ms: asked.map(|d| d.as_millis() as u64),
            waited_ms: wait.map(|d| d.as_millis() as u64),
        });
        let Some(wait) = wait else {
            return response.map_err(|err| transport(&err, cx));
        };
        cx.log.notify(&RetryWait {
            endpoint: cx.at.clone(),
            outcome,
            wait,
            rate_limited: status == Some(StatusCode::TOO_MANY_REQUESTS),
            attempt: retry + 1,
        });
        tracing::info!(at = %cx.at, retry, ?wait, "retrying");
        // The failed response is dropped before the wait so its connection is freed.
        drop(response);
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn server_wait_prefers_ms_then_seconds() {
        assert_eq!(
            server_asked_wait(&headers(&[
                ("retry-after-ms", "1500"),
                ("retry-after", "9")
            ])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            server_asked_wait(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            server_asked_wait(&headers(&[("retry-after", "soon")])),
            None
        );
    }

    #[test]
    fn delay_is_capped_and_grows() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
        };
        let d0 = p.delay(0, None);
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
        let d3 = p.delay(3, None);
        assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
        assert_eq!(p.delay(10, None), Duration::from_secs(1));
        assert_eq!(
            p.delay(0, Some(&headers(&[("retry-after", "3600")]))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for s in [408, 409, 429, 500, 502, 503] {
            assert!(
                RetryPolicy::retryable(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(
                !RetryPolicy::retryable(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }
}
