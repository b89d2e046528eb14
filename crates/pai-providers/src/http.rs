//! What every HTTP provider shares: the client (timeouts, headers), one send path with
//! retries, and the mapping from statuses and transport failures to [`ProviderError`]s.

use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::{Endpoint, ProviderError, Result, one_line};
use crate::provider::ProviderConfig;
use crate::retry::{AttemptLog, send_with_retries};

/// What an error message needs to say where and what to do.
#[derive(Debug, Clone)]
pub(crate) struct ErrorContext<'a> {
    pub at: Endpoint,
    pub model: &'a str,
    pub key_hint: &'a str,
    pub read_timeout: Duration,
    pub log: &'a AttemptLog,
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

/// Sends the request `build` makes (rebuilt per attempt), retrying per `settings`, and
/// returns a successful response or the error it maps to.
pub(crate) async fn send(
    client: &reqwest::Client,
    settings: &ProviderConfig,
    cx: &ErrorContext<'_>,
    build: impl Fn() -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Result<reqwest::Response> {
    let factory = HttpRequestFactory::new(move || {
        let request = build().build();
        async move { request.map_err(OpenAIError::Reqwest) }
    });
    let response = send_with_retries(
        client.clone(),
        settings.net.retry.clone(),
        factory,
        cx.log.clone(),
    )
    .await
    .map_err(|e| match e {
        OpenAIError::Reqwest(e) => transport(&e, cx),
        other => ProviderError::Malformed {
            at: cx.at.clone(),
            detail: one_line(&other.to_string()),
        },
    })?;
    if response.status().is_success() {
        return Ok(response);
    }
    // `send_with_retries` normalised the body to `{"error": {"message", "code"?}}`, or
    // for a 5xx to the message text alone.
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_default();
    let (message, code) = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(body) if body["error"].is_object() => (
            text(&body["error"]["message"]),
            text(&body["error"]["code"]),
        ),
        _ => (String::from_utf8_lossy(&body).into_owned(), String::new()),
    };
    Err(classify(status, &message, &code, cx))
}

/// The error a non-success status means.
pub(crate) fn classify(
    status: StatusCode,
    message: &str,
    code: &str,
    cx: &ErrorContext<'_>,
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
            hint: cx.key_hint.to_string(),
        },
        404 if code == "model_not_found" || lower.contains("model") || lower.is_empty() => {
            ProviderError::UnknownModel {
                at,
                model: cx.model.to_string(),
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
                model: cx.model.to_string(),
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
pub(crate) fn transport(err: &reqwest::Error, cx: &ErrorContext<'_>) -> ProviderError {
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
