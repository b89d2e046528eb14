//! What every HTTP provider shares: the client (timeouts, headers), one send path with
//! retries, and the mapping from statuses and transport failures to [`ProviderError`]s.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::{Endpoint, ProviderError, Result, Secrets, one_line};
use crate::provider::ProviderConfig;
use crate::retry::{AttemptLog, RetryPolicy, send_with_retries};

/// What an error message needs to say where and what to do, owned so a stream can keep
/// it after the call that opened it returned.
#[derive(Debug, Clone)]
pub(crate) struct ErrorContext {
    pub at: Endpoint,
    pub model: String,
    pub key_hint: String,
    pub read_timeout: Duration,
    pub log: AttemptLog,
    /// Scrubbed from every error built from server text.
    pub secrets: Secrets,
}

impl ErrorContext {
    /// The context of one call to `settings`' endpoint about `model`.
    pub(crate) fn new(settings: &ProviderConfig, model: &str, log: AttemptLog) -> Self {
        Self {
            at: endpoint(settings),
            model: model.to_string(),
            key_hint: settings.key_hint.clone(),
            read_timeout: settings.net.read_timeout,
            log,
            secrets: secrets(settings),
        }
    }

    /// `err` with the session's secrets scrubbed from it.
    pub(crate) fn redact(&self, err: ProviderError) -> ProviderError {
        self.secrets.redact(err)
    }
}

/// The values a server must never get printed back: the API key and every configured
/// header value (those may be credentials too).
pub(crate) fn secrets(settings: &ProviderConfig) -> Secrets {
    Secrets::new(
        settings
            .api_key
            .iter()
            .chain(settings.headers.iter().map(|(_, v)| v))
            .map(|v| v.expose().as_str()),
    )
}

pub(crate) fn endpoint(settings: &ProviderConfig) -> Endpoint {
    Endpoint {
        provider: settings.name.clone(),
        url: settings.base_url.trim_end_matches('/').to_string(),
    }
}

/// A client with the configured timeouts and these default headers.
pub(crate) fn client(settings: &ProviderConfig, headers: HeaderMap) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    // Loading the platform's trust store parses every system certificate, several ms on
    // each start; a plain-http endpoint (a local server) needs none of it.
    if settings.base_url.starts_with("http://") {
        builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
    }
    builder
        .connect_timeout(settings.net.connect_timeout)
        .read_timeout(settings.net.read_timeout)
        .user_agent(concat!("pai/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .build()
        .map_err(|e| ProviderError::Config {
            at: endpoint(settings),
            detail: e.to_string(),
        })
}

/// The configured extra headers plus `extra`, refusing values HTTP cannot carry (a
/// secret pasted with a newline) instead of panicking later.
pub(crate) fn headers(
    settings: &ProviderConfig,
    extra: &[(&str, Option<&str>)],
) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    let pairs = settings
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.expose().as_str())))
        .chain(extra.iter().copied());
    for (name, value) in pairs {
        let Some(value) = value else { continue };
        let bad = |what: &str| ProviderError::Config {
            at: endpoint(settings),
            detail: format!(
                "header '{name}' has {what}; HTTP cannot carry it (a stray newline from pasting?)"
            ),
        };
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad("an invalid name"))?;
        let mut value =
            reqwest::header::HeaderValue::from_str(value).map_err(|_| bad("an invalid value"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// Sends the request `build` makes (rebuilt per attempt), retrying per `policy`, and
/// returns a successful response or the error it maps to.
pub(crate) async fn send(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    cx: &ErrorContext,
    build: impl Fn() -> reqwest::RequestBuilder + Send + Sync,
) -> Result<reqwest::Response> {
    let build = || {
        build().build().map_err(|e| ProviderError::Config {
            at: cx.at.clone(),
            detail: one_line(&root_cause(&e)),
        })
    };
    send_request(client, policy, cx, &build).await
}

/// [`send`] for a caller that builds whole requests.
pub(crate) async fn send_request(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    cx: &ErrorContext,
    build: &(dyn Fn() -> Result<reqwest::Request> + Send + Sync),
) -> Result<reqwest::Response> {
    let response = send_with_retries(client, policy, cx, build)
        .await
        .map_err(|e| cx.redact(e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await.unwrap_or_default();
    let (message, code) = error_text(&body);
    Err(cx.redact(classify(status, &message, &code, cx)))
}

/// The message and code of an error body, whichever shape it has: OpenAI's and
/// Anthropic's `{"error": {"message", "code"?}}`, Ollama's `{"error": "text"}`, or any
/// other text as a whole.
fn error_text(body: &[u8]) -> (String, String) {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        // llama.cpp sends `"code": 401`.
        other => other.to_string(),
    };
    match parsed.as_ref().map(|v| &v["error"]) {
        Some(error @ serde_json::Value::Object(_)) => {
            (text(&error["message"]), text(&error["code"]))
        }
        Some(serde_json::Value::String(message)) => (message.clone(), String::new()),
        _ => (String::from_utf8_lossy(body).into_owned(), String::new()),
    }
}

/// The error a non-success status means.
pub(crate) fn classify(
    status: StatusCode,
    message: &str,
    code: &str,
    cx: &ErrorContext,
) -> ProviderError {
    let at = cx.at.clone();
    let attempts = cx.log.failures().max(1);
    let message = one_line(message);
    let lower = message.to_ascii_lowercase();
    let status_u16 = status.as_u16();
    match status_u16 {
        401 | 403 => ProviderError::Auth {
            at,
            status: status_u16,
            hint: cx.key_hint.clone(),
        },
        404 if code == "model_not_found" || lower.contains("model") || lower.is_empty() => {
            ProviderError::UnknownModel {
                at,
                model: cx.model.clone(),
            }
        }
        429 => ProviderError::RateLimited {
            at,
            attempts,
            retry_after: cx.log.last_asked_wait(),
        },
        400 | 413 | 422
            if code == "context_length_exceeded"
                || lower.contains("context length")
                || lower.contains("context window")
                || lower.contains("context size")
                || lower.contains("maximum context")
                || lower.contains("prompt is too long") =>
        {
            ProviderError::ContextTooLong {
                at,
                model: cx.model.clone(),
            }
        }
        500..=599 | 408 | 409 => ProviderError::Server {
            at,
            status: status_u16,
            attempts,
            message: if message.is_empty() {
                status.canonical_reason().unwrap_or("").to_string()
            } else {
                message
            },
        },
        _ => ProviderError::Rejected {
            at,
            status: status_u16,
            message,
        },
    }
}

/// The error a transport failure means.
pub(crate) fn transport(err: &reqwest::Error, cx: &ErrorContext) -> ProviderError {
    let at = cx.at.clone();
    let detail = one_line(&root_cause(err));
    if err.is_timeout() {
        ProviderError::Timeout {
            at,
            after: cx.read_timeout,
        }
    } else if err.is_body() || err.is_decode() {
        ProviderError::StreamCut { at, detail }
    } else {
        ProviderError::Connect { at, detail }
    }
}

/// The innermost cause, which is the part that tells a user something ("connection refused").
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
