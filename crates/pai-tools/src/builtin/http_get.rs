use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::net::{pinned_client, plan_hop, request_failed};
use super::{blocking, html, info, looks_binary, parse_args};
use crate::tool::{Effect, Hop, HopSent, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

/// Most body bytes downloaded; the rest of a larger body is never fetched.
const MAX_DOWNLOAD_BYTES: usize = 2 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
/// Column width HTML is laid out to.
const TEXT_WIDTH: usize = 100;

/// `http_get`: fetches an http(s) URL and returns its text; HTML becomes readable text.
#[derive(Debug, Clone)]
pub struct HttpGet {
    info: ToolInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    url: String,
}

impl HttpGet {
    /// The tool, ready to register.
    pub fn new() -> Self {
        let info = info(
            "http_get",
            "Fetch an http:// or https:// URL with a GET request. HTML pages come back as \
             readable text (links as numbered footnotes; a page too deeply nested or too big \
             to lay out comes back as plain text after a note saying so), JSON, XML and other \
             text as is; images and other binary content are refused. The answer starts with \
             the final URL (after redirects), the HTTP status and the content type. At most \
             2 MiB is downloaded; a cut body ends with a `[…` line. A status other than 2xx is \
             an error. Addresses on this machine or a private network (localhost, 10.x, \
             192.168.x, link-local, cloud metadata) are refused unless a policy rule allows \
             the host.",
            serde_json::json!({
                "type": "object",
                "properties": {
                    "url": {
                        "type": "string",
                        "description": "Full URL starting with http:// or https://."
                    }
                },
                "required": ["url"],
                "additionalProperties": false
            }),
            Effect::Network,
        );
        Self { info }
    }
}

impl Default for HttpGet {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Html,
    Text,
    /// No content type: decided by looking at the bytes.
    Unknown,
    Binary,
}

#[async_trait]
impl Tool for HttpGet {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: serde_json::Value,
        cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: Args = parse_args(args)?;
        let url = Url::parse(args.url.trim()).map_err(|e| {
            ToolError::InvalidArguments(format!(
                "'{}' is not a valid URL ({e}); give a full URL such as https://example.org/page",
                args.url
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::InvalidArguments(format!(
                "http_get fetches http:// and https:// URLs only, not {}:// ones",
                url.scheme()
            )));
        }
        let mut response = fetch(url, cx).await?;

        let final_url = response.url().clone();
        let status = response.status();
        if !status.is_success() {
            return Err(ToolError::Failed(format!(
                "GET {final_url} failed with HTTP status {status}; check the URL or try another page"
            )));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut kind = classify(content_type.as_deref());
        let not_text = |what: &str| {
            ToolError::Failed(format!(
                "{final_url} returned {what}, which is not text; http_get returns web pages and text only"
            ))
        };
        if kind == Kind::Binary {
            return Err(not_text(content_type.as_deref().unwrap_or("binary data")));
        }

        let mut body = Vec::new();
        let mut capped = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| request_failed("GET", &final_url, &e, cx.timeout))?
        {
            let room = MAX_DOWNLOAD_BYTES - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                capped = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if kind == Kind::Unknown {
            if looks_binary(&body) {
                return Err(not_text("binary data"));
            }
            let head = String::from_utf8_lossy(&body[..body.len().min(512)]).to_ascii_lowercase();
            let head = head.trim_start();
            kind = if head.starts_with("<!doctype html") || head.starts_with("<html") {
                Kind::Html
            } else {
                Kind::Text
            };
        }
        let (text, skipped) = if kind == Kind::Html {
            // Text past the output cap would be cut anyway; converting it only costs time.
            let budget = cx.max_output_bytes;
            let page =
                blocking(move |cancel| html::to_text(&body, TEXT_WIDTH, budget, cancel)).await?;
            (page.text, page.skipped)
        } else {
            (String::from_utf8_lossy(&body).into_owned(), 0)
        };

        let mut content = format!(
            "URL: {final_url}\nStatus: {status}\nContent-Type: {}\n\n{}",
            content_type.as_deref().unwrap_or("(none)"),
            text.trim_end()
        );
        if skipped > 0 {
            content.push_str(&format!(
                "\n[… conversion stopped past the output cap; the last {} KiB of the page were not converted]",
                skipped.div_ceil(1024)
            ));
        } else if capped {
            content.push_str(&format!(
                "\n[… download stopped at {} MiB; the rest was not fetched]",
                MAX_DOWNLOAD_BYTES / (1024 * 1024)
            ));
        }
        Ok(ToolOutput {
            content,
            truncated: capped || skipped > 0,
        })
    }
}

/// GETs `url`, following redirects itself so that every hop is resolved, classified and put
/// to the gate before anything is sent, and is sent to exactly the address checked.
async fn fetch(url: Url, cx: &ToolContext) -> Result<reqwest::Response, ToolError> {
    fetch_with(url, cx, "http_get", &[]).await
}

/// A whole document fetched for `pai resources add URL` (see [`fetch_document`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedDocument {
    /// The final URL, after redirects.
    pub url: String,
    /// The HTTP status: 2xx with a body, or 304 (not modified, no body).
    pub status: u16,
    /// The server's `Content-Type`.
    pub content_type: Option<String>,
    /// The server's `ETag`.
    pub etag: Option<String>,
    /// The server's `Last-Modified`.
    pub last_modified: Option<String>,
    /// The body (empty on 304).
    pub body: Vec<u8>,
}

/// GETs `url` for the resource importer: every hop through `cx.net` as `http_get`'s are
/// (labelled `tool`), conditional on `if_none_match` / `if_modified_since`, the whole body
/// up to `max_bytes` (a larger one is an error, never a silently cut document).
pub async fn fetch_document(
    url: &str,
    cx: &ToolContext,
    tool: &str,
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    max_bytes: usize,
) -> Result<FetchedDocument, ToolError> {
    let parsed = Url::parse(url.trim())
        .map_err(|e| ToolError::InvalidArguments(format!("'{url}' is not a valid URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ToolError::InvalidArguments(format!(
            "only http:// and https:// URLs can be fetched, not {}:// ones",
            parsed.scheme()
        )));
    }
    let mut headers = Vec::new();
    if let Some(tag) = if_none_match {
        headers.push((reqwest::header::IF_NONE_MATCH, tag.to_string()));
    }
    if let Some(date) = if_modified_since {
        headers.push((reqwest::header::IF_MODIFIED_SINCE, date.to_string()));
    }
    let mut response = fetch_with(parsed, cx, tool, &headers).await?;
    let final_url = response.url().clone();
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE);
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    if status == StatusCode::NOT_MODIFIED {
        return Ok(FetchedDocument {
            url: final_url.to_string(),
            status: status.as_u16(),
            content_type,
            etag,
            last_modified,
            body: Vec::new(),
        });
    }
    if !status.is_success() {
        return Err(ToolError::Failed(format!(
            "GET {final_url} failed with HTTP status {status}"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| request_failed("GET", &final_url, &e, cx.timeout))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(ToolError::Failed(format!(
                "{final_url} is larger than {} MiB",
                max_bytes / (1024 * 1024)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(FetchedDocument {
        url: final_url.to_string(),
        status: status.as_u16(),
        content_type,
        etag,
        last_modified,
        body,
    })
}

async fn fetch_with(
    mut url: Url,
    cx: &ToolContext,
    tool: &str,
    headers: &[(reqwest::header::HeaderName, String)],
) -> Result<reqwest::Response, ToolError> {
    let deadline = Instant::now() + cx.timeout;
    let time_left = || deadline.saturating_duration_since(Instant::now());
    let timed_out = |url: &Url| {
        ToolError::Failed(format!(
            "GET {url} did not answer within {:?}; try again later",
            cx.timeout
        ))
    };
    let mut redirect_from: Option<Url> = None;
    let mut redirects = 0;
    loop {
        let hop = plan_hop(tool, "GET", &url, redirect_from.as_ref(), time_left()).await?;
        cx.net.check(&hop).await.map_err(ToolError::Refused)?;
        if time_left().is_zero() {
            return Err(timed_out(&url));
        }
        let client = pinned_client(&hop, time_left())?;
        let mut request = client.get(url.clone()).header(
            ACCEPT,
            "text/html, text/plain;q=0.9, application/json;q=0.9, */*;q=0.5",
        );
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let sent = request.send().await;
        match &sent {
            Ok(response) => report_sent(cx, hop, Some(response.status().as_u16())),
            // A refused or failed connection sent nothing; anything later may have sent the
            // request, and the audit must not miss a request that left.
            Err(e) if e.is_connect() => {}
            Err(_) => report_sent(cx, hop, None),
        }
        let response = sent.map_err(|e| request_failed("GET", &url, &e, cx.timeout))?;
        let Some(next) = redirect_target(&url, &response)? else {
            return Ok(response);
        };
        if redirects == MAX_REDIRECTS {
            return Err(ToolError::Failed(format!(
                "GET {url} redirected more than {MAX_REDIRECTS} times; give the final URL"
            )));
        }
        redirects += 1;
        redirect_from = Some(std::mem::replace(&mut url, next));
    }
}

fn report_sent(cx: &ToolContext, hop: Hop, status: Option<u16>) {
    cx.net.sent(&HopSent {
        hop,
        bytes: 0,
        // A GET sends no body.
        body_sha256: hex::encode(Sha256::digest(b"")),
        status,
    });
}

/// Where a redirect response points, resolved against the URL that gave it; `None` when the
/// response is not a redirect to follow (no `Location`, or a status such as 304).
fn redirect_target(url: &Url, response: &reqwest::Response) -> Result<Option<Url>, ToolError> {
    if !matches!(
        response.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    ) {
        return Ok(None);
    }
    let Some(location) = response.headers().get(LOCATION) else {
        return Ok(None);
    };
    let bad = |why: String| {
        ToolError::Failed(format!(
            "GET {url} redirected to {why}; http_get follows redirects to http:// and https:// URLs only"
        ))
    };
    let location = location
        .to_str()
        .map_err(|_| bad("a Location that is not text".into()))?;
    let next = url
        .join(location)
        .map_err(|e| bad(format!("'{location}', which is not a valid URL ({e})")))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(bad(next.to_string()));
    }
    Ok(Some(next))
}

fn classify(content_type: Option<&str>) -> Kind {
    let Some(content_type) = content_type else {
        return Kind::Unknown;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" => Kind::Unknown,
        "text/html" | "application/xhtml+xml" => Kind::Html,
        "application/json"
        | "application/xml"
        | "application/javascript"
        | "application/ecmascript"
        | "application/x-javascript"
        | "application/x-ndjson"
        | "application/yaml"
        | "application/x-yaml"
        | "application/toml"
        | "application/sql"
        | "application/csv"
        | "application/graphql" => Kind::Text,
        t if t.starts_with("text/") || t.ends_with("+json") || t.ends_with("+xml") => Kind::Text,
        _ => Kind::Binary,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::super::net::{chain, pinned_client};
    use super::{Kind, classify};
    use crate::tool::Hop;

    #[test]
    fn content_types_are_classified() {
        assert_eq!(classify(Some("text/html; charset=utf-8")), Kind::Html);
        assert_eq!(classify(Some("Application/JSON")), Kind::Text);
        assert_eq!(classify(Some("application/ld+json")), Kind::Text);
        assert_eq!(classify(Some("text/csv")), Kind::Text);
        assert_eq!(classify(Some("image/png")), Kind::Binary);
        assert_eq!(classify(Some("application/octet-stream")), Kind::Binary);
        assert_eq!(classify(None), Kind::Unknown);
    }

    /// The client goes to the checked address whatever the name: the system resolver is never
    /// asked (`pinned.invalid` does not exist), and any other name is not looked up at all.
    #[tokio::test]
    async fn the_client_connects_only_to_the_checked_address() {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(wiremock::ResponseTemplate::new(200))
            .mount(&server)
            .await;
        let port = server.address().port();
        let hop = Hop {
            tool: "http_get".into(),
            method: "GET".into(),
            url: format!("http://pinned.invalid:{port}/"),
            host: "pinned.invalid".into(),
            port,
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            special: Some("loopback"),
            redirect_from: None,
        };
        let client = pinned_client(&hop, Duration::from_secs(10)).unwrap();
        let response = client.get(&hop.url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let err = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(
            chain(&err)
                .contains("PAI's network tools resolve hosts themselves; no lookup of localhost"),
            "{}",
            chain(&err)
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}
