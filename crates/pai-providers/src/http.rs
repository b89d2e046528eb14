//! What every HTTP provider shares: the client (timeouts, headers, proxy, no redirects),
//! one send path with retries, and the mapping from statuses and transport failures to
//! [`ProviderError`]s.
//!
//! This is the one module of the crate that may build an HTTP client: the workspace's
//! `clippy.toml` forbids `reqwest::Client` everywhere else, so every request a provider
//! sends passes [`send_request`], which reports it (see `AttemptLog::on_sent`).
// Reviewed egress module: see docs/architecture.md, "The egress lint".
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};
use sha2::{Digest, Sha256};

use crate::error::{Endpoint, ProviderError, Result, Secrets, one_line};
use crate::locality::proxy_for;
use crate::provider::ProviderConfig;
use crate::retry::{AttemptLog, RetryPolicy, SentRequest, send_with_retries};

/// The only HTTP client providers hold: built by [`client`], so it has PAI's timeouts, no
/// redirects and no proxy but the configured one.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// A `POST` to `url`, to be sent through [`send`].
    pub(crate) fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.inner.post(url)
    }

    /// A `GET` of `url`, to be sent through [`send`].
    pub(crate) fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.inner.get(url)
    }

    /// The client for async-openai, which needs one to exist; every request it makes is
    /// handed to PAI's own HTTP service (`OpenAiProvider::client`), which sends it
    /// through [`send_request`] on this same client.
    pub(crate) fn for_async_openai(&self) -> reqwest::Client {
        self.inner.clone()
    }

    pub(crate) async fn execute(
        &self,
        request: reqwest::Request,
    ) -> reqwest::Result<reqwest::Response> {
        self.inner.execute(request).await
    }
}

/// What is known of a request before it is sent, for its [`SentRequest`] report.
pub(crate) struct Outgoing {
    method: String,
    url: String,
    bytes: u64,
    body_sha256: String,
}

impl Outgoing {
    /// Hashes the request's body as it will go on the wire. Every body PAI sends is
    /// bytes in memory; a streamed one (none today) would count as empty.
    pub(crate) fn of(request: &reqwest::Request) -> Self {
        let body = request
            .body()
            .and_then(|b| b.as_bytes())
            .unwrap_or_default();
        Self {
            method: request.method().to_string(),
            url: pai_types::redact_endpoint(request.url().as_str()).into_owned(),
            bytes: body.len() as u64,
            body_sha256: hex::encode(Sha256::digest(body)),
        }
    }

    /// The report, once the server answered (`response`) or the exchange broke after the
    /// connection was made.
    pub(crate) fn sent(
        self,
        response: Option<&reqwest::Response>,
        cx: &ErrorContext,
    ) -> SentRequest {
        SentRequest {
            method: self.method,
            url: self.url,
            remote_addr: response.and_then(|r| r.remote_addr()),
            proxy: cx.proxy.clone(),
            bytes: self.bytes,
            body_sha256: self.body_sha256,
            status: response.map(|r| r.status().as_u16()),
        }
    }
}

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
    /// The proxy requests go through (credentials masked), for the sent-request reports.
    pub proxy: Option<String>,
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
            proxy: proxy_for(&settings.base_url, settings.net.proxy.as_deref())
                .map(|p| pai_types::redact_endpoint(p).into_owned()),
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

/// A client with the configured timeouts and these default headers. It follows no
/// redirect (a 3xx becomes an error in [`send_request`]: a model endpoint that points
/// elsewhere must not get the conversation forwarded) and ignores the proxy environment
/// variables: only `[network] proxy` is used, and not for this machine's loopback.
pub(crate) fn client(settings: &ProviderConfig, headers: HeaderMap) -> Result<HttpClient> {
    let bad = |detail: String| ProviderError::Config {
        at: endpoint(settings),
        detail,
    };
    let proxy = proxy_for(&settings.base_url, settings.net.proxy.as_deref());
    install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        // reqwest would resend a request an HTTP/2 server refused, past the report of it.
        .retry(reqwest::retry::never());
    if let Some(proxy) = proxy {
        let shown = pai_types::redact_endpoint(proxy);
        builder = builder.proxy(reqwest::Proxy::all(proxy).map_err(|e| {
            bad(format!(
                "[network] proxy '{shown}' is unusable ({}); fix it in config.toml",
                one_line(&root_cause(&e))
            ))
        })?);
    }
    // Loading the platform's trust store parses every system certificate, several ms on
    // each start; a plain-http endpoint (a local server) reached directly or through a
    // plain-http proxy needs none of it.
    if settings.base_url.starts_with("http://") && proxy.is_none_or(|p| p.starts_with("http://")) {
        builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
    }
    let inner = builder
        .connect_timeout(settings.net.connect_timeout)
        .read_timeout(settings.net.read_timeout)
        .user_agent(concat!("pai/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok(HttpClient { inner })
}

/// reqwest is built without a TLS crypto provider (`rustls-no-provider`: its own would be
/// aws-lc, a long C build) and panics building a client when the process has none, so ring
/// becomes the process default here, unless the program embedding PAI installed another.
fn install_tls_provider() {
    // An error only says a provider is installed already, which is all a client needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// Whether `-vv` asked for the wire: request and response bodies as they cross it.
pub(crate) fn wire_on() -> bool {
    tracing::enabled!(target: "pai_wire", tracing::Level::DEBUG)
}

/// Logs a body (or a line of a stream) crossing the wire under `head`, with the
/// endpoint's key and configured header values scrubbed and control characters escaped
/// (a body is server text, and diagnostics go to a terminal).
pub(crate) fn wire(cx: &ErrorContext, head: &str, body: &[u8]) {
    let text = cx.secrets.scrub(&String::from_utf8_lossy(body));
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    if shown.is_empty() {
        tracing::debug!(target: "pai_wire", "{head}");
    } else if !shown.contains('\n') && head.chars().count() <= 1 {
        // A line of a stream: on the arrow's line.
        tracing::debug!(target: "pai_wire", "{head} {shown}");
    } else {
        tracing::debug!(target: "pai_wire", "{head}\n{shown}");
    }
}

/// With `-vv`, a successful whole (not streamed) response read, logged and handed on
/// as if untouched; streamed ones are logged line by line as they are read.
async fn wire_response(
    response: reqwest::Response,
    cx: &ErrorContext,
) -> Result<reqwest::Response> {
    let streamed = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("event-stream") || t.contains("ndjson"));
    let head = format!("\u{2190} {} from {}", response.status(), cx.at);
    if streamed {
        wire(cx, &head, b"");
        return Ok(response);
    }
    let (status, version, headers) = (
        response.status(),
        response.version(),
        response.headers().clone(),
    );
    let body = response.bytes().await.map_err(|e| transport(&e, cx))?;
    wire(cx, &head, &body);
    let mut rebuilt = http::Response::new(body);
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    Ok(reqwest::Response::from(rebuilt))
}

/// Sends the request `build` makes (rebuilt per attempt), retrying per `policy`, and
/// returns a successful response or the error it maps to.
pub(crate) async fn send(
    client: &HttpClient,
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
    client: &HttpClient,
    policy: &RetryPolicy,
    cx: &ErrorContext,
    build: &(dyn Fn() -> Result<reqwest::Request> + Send + Sync),
) -> Result<reqwest::Response> {
    let response = send_with_retries(client, policy, cx, build)
        .await
        .map_err(|e| cx.redact(e))?;
    let status = response.status();
    if status.is_success() {
        if wire_on() {
            return wire_response(response, cx).await;
        }
        return Ok(response);
    }
    if let Some(err) = redirected(&response, cx) {
        return Err(cx.redact(err));
    }
    let body = response.bytes().await.unwrap_or_default();
    if wire_on() {
        wire(cx, &format!("\u{2190} {status} from {}", cx.at), &body);
    }
    let (message, code) = error_text(&body);
    Err(cx.redact(classify(status, &message, &code, cx)))
}

/// The error a redirect is: PAI follows none, so what the endpoint pointed at got nothing.
fn redirected(response: &reqwest::Response, cx: &ErrorContext) -> Option<ProviderError> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    let target = response.url().join(location).ok()?;
    let other_origin = target.origin() != response.url().origin();
    Some(ProviderError::Redirected {
        at: cx.at.clone(),
        status: response.status().as_u16(),
        // Another server is named by its origin only: its path may carry a token.
        to: if other_origin {
            target.origin().ascii_serialization()
        } else {
            pai_types::redact_endpoint(target.as_str()).into_owned()
        },
        other_origin,
    })
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
