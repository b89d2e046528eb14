use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use pai_types::Secret;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, Url};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::net::{pinned_client, plan_hop, request_failed};
use super::{cut, info, looks_binary, page_bytes, parse_args};
use crate::tool::{Effect, HopSent, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

/// Most response bytes downloaded; the rest of a larger body is never fetched.
const MAX_DOWNLOAD_BYTES: usize = 1024 * 1024;
/// Most request body bytes a model may send in one call.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Headers the model may not set: credentials are attached by PAI from the configuration
/// (never typed by the model), and the transport's own headers are the client's to write.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
];

/// An HTTP API the user configured (`[apis.<name>]`): requests naming it go under its base
/// URL and carry its credential, which the model never sees.
#[derive(Clone)]
pub struct Api {
    /// The name the model uses in `api`.
    pub name: String,
    /// Every request naming this API must go to a URL under this one.
    pub base_url: Url,
    /// A line for the model about what the API is for.
    pub about: Option<String>,
    /// The header's name and its value (e.g. `authorization`, `Bearer …`), or why there
    /// is none (an unset environment variable): a call naming the API is refused with it.
    pub auth: Result<Option<(String, Secret<String>)>, String>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Ok(Some((header, _))) => format!("{header}: [REDACTED]"),
            Ok(None) => "none".into(),
            Err(why) => format!("unavailable: {why}"),
        };
        f.debug_struct("Api")
            .field("name", &self.name)
            .field("base_url", &self.base_url.as_str())
            .field("auth", &auth)
            .finish()
    }
}

impl Api {
    /// `url` (absolute, or a path relative to the base URL) as the URL to request, when it
    /// stays under the base URL: same scheme, host and port, and the base path as a prefix.
    fn resolve(&self, url: &str) -> Result<Url, ToolError> {
        let url = url.trim();
        let joined = if url.starts_with("http://") || url.starts_with("https://") {
            Url::parse(url)
        } else {
            // A base without a trailing slash would lose its last segment in `join`.
            let mut base = self.base_url.clone();
            if !base.path().ends_with('/') {
                base.set_path(&format!("{}/", base.path()));
            }
            base.join(url.trim_start_matches('/'))
        }
        .map_err(|e| {
            ToolError::InvalidArguments(format!(
                "'{url}' is not a valid URL or path ({e}); give a path such as /items/1 under {}",
                self.base_url
            ))
        })?;
        let base = &self.base_url;
        let base_path = base.path().trim_end_matches('/');
        let path = joined.path();
        let under_path = path == base_path
            || base_path.is_empty()
            || path
                .strip_prefix(base_path)
                .is_some_and(|rest| rest.starts_with('/'));
        if joined.scheme() != base.scheme()
            || joined.host_str() != base.host_str()
            || joined.port_or_known_default() != base.port_or_known_default()
            || !under_path
            || !joined.username().is_empty()
            || joined.password().is_some()
        {
            return Err(ToolError::Refused(format!(
                "refused: {joined} is not under the API '{}' ({base}); requests naming an API go to its base URL only",
                self.name
            )));
        }
        Ok(joined)
    }
}

/// `http_request`: any HTTP method with headers and a JSON or text body, to a URL or to a
/// configured API whose credential PAI attaches. Effects: network and write, so it asks.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    info: ToolInfo,
    apis: BTreeMap<String, Api>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    method: String,
    url: String,
    #[serde(default)]
    api: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    json: Option<serde_json::Value>,
    #[serde(default)]
    body: Option<String>,
}

impl HttpRequest {
    /// The tool with no configured APIs: plain requests only.
    pub fn new() -> Self {
        Self::with_apis(Vec::new())
    }

    /// The tool offering `apis` by name; the description lists them for the model.
    pub fn with_apis(apis: Vec<Api>) -> Self {
        let mut description = String::from(
            "Send an HTTP request (GET, POST, PUT, PATCH, DELETE or HEAD) with optional \
             headers and a JSON (`json`) or text (`body`) body, and get back the status, the \
             content type and the response text (at most 1 MiB is downloaded; binary \
             responses are refused). Redirects are not followed: a 3xx comes back with its \
             Location. Every call needs the user's approval. Do not put credentials in \
             headers or URLs: to call an API that needs them, name it in `api` and give a \
             path under its base URL; PAI attaches the credential.",
        );
        if apis.is_empty() {
            description.push_str(" No APIs are configured.");
        } else {
            description.push_str(" Configured APIs:");
            for api in &apis {
                description.push_str(&format!("\n- {}: {}", api.name, api.base_url));
                if let Some(about) = &api.about {
                    description.push_str(&format!(" — {about}"));
                }
            }
        }
        let names: Vec<&str> = apis.iter().map(|a| a.name.as_str()).collect();
        let mut api_schema = serde_json::json!({
            "type": "string",
            "description": "The name of a configured API; `url` is then a path under its base URL."
        });
        if !names.is_empty() {
            api_schema["enum"] = serde_json::json!(names);
        }
        let mut info = info(
            "http_request",
            &description,
            serde_json::json!({
                "type": "object",
                "properties": {
                    "method": {
                        "type": "string",
                        "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
                        "description": "The HTTP method."
                    },
                    "url": {
                        "type": "string",
                        "description": "A full http(s) URL, or with `api` a path such as /items/1."
                    },
                    "api": api_schema,
                    "headers": {
                        "type": "object",
                        "additionalProperties": { "type": "string" },
                        "description": "Extra request headers (no Authorization or Cookie)."
                    },
                    "json": { "description": "A JSON body (sent as application/json)." },
                    "body": { "type": "string", "description": "A text body." }
                },
                "required": ["method", "url"],
                "additionalProperties": false
            }),
            Effect::Network,
        );
        info.effects.insert(Effect::Write);
        Self {
            info,
            apis: apis.into_iter().map(|a| (a.name.clone(), a)).collect(),
        }
    }
}

impl Default for HttpRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// A request, checked and ready to send.
struct Prepared {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The credential attached, to scrub from whatever comes back.
    secret: Option<Secret<String>>,
}

impl HttpRequest {
    fn prepare(&self, args: Args) -> Result<Prepared, ToolError> {
        let method = match args.method.trim().to_ascii_uppercase().as_str() {
            m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") => {
                Method::from_bytes(m.as_bytes())
                    .map_err(|e| ToolError::InvalidArguments(e.to_string()))?
            }
            other => {
                return Err(ToolError::InvalidArguments(format!(
                    "method '{other}' is not one of GET, POST, PUT, PATCH, DELETE, HEAD"
                )));
            }
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &args.headers {
            let lower = name.trim().to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
                return Err(ToolError::InvalidArguments(format!(
                    "header '{name}' cannot be set by the model; credentials come from a configured API (`api`)"
                )));
            }
            let name = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                ToolError::InvalidArguments(format!("'{name}' is not a valid header name"))
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                ToolError::InvalidArguments(format!(
                    "the value of header '{name}' is not valid (no line breaks or control characters)"
                ))
            })?;
            headers.insert(name, value);
        }
        let body = match (args.json, args.body) {
            (Some(_), Some(_)) => {
                return Err(ToolError::InvalidArguments(
                    "give either `json` or `body`, not both".into(),
                ));
            }
            (Some(json), None) => {
                if !headers.contains_key(CONTENT_TYPE) {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                serde_json::to_vec(&json).map_err(|e| ToolError::InvalidArguments(e.to_string()))?
            }
            (None, Some(text)) => text.into_bytes(),
            (None, None) => Vec::new(),
        };
        if body.len() > MAX_BODY_BYTES {
            return Err(ToolError::InvalidArguments(format!(
                "the body is {} KiB; http_request sends at most {} KiB",
                body.len().div_ceil(1024),
                MAX_BODY_BYTES / 1024
            )));
        }
        let (url, secret) = match args.api.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => {
                let api = self.apis.get(name).ok_or_else(|| {
                    let known: Vec<&str> = self.apis.keys().map(String::as_str).collect();
                    ToolError::InvalidArguments(if known.is_empty() {
                        format!("there is no API named '{name}'; none are configured")
                    } else {
                        format!(
                            "there is no API named '{name}'; the configured ones are {}",
                            known.join(", ")
                        )
                    })
                })?;
                let url = api.resolve(&args.url)?;
                let secret = match &api.auth {
                    Ok(Some((header, secret))) => {
                        let header = HeaderName::from_bytes(header.trim().as_bytes()).map_err(|_| {
                            ToolError::Failed(format!(
                                "the credential header of the API '{name}' is not a valid header name; tell the user to check its configuration"
                            ))
                        })?;
                        let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                            ToolError::Failed(format!(
                                "the credential of the API '{name}' is not a valid header value; tell the user to check its configuration"
                            ))
                        })?;
                        value.set_sensitive(true);
                        headers.insert(header, value);
                        Some(Secret::new(secret.expose().clone()))
                    }
                    Ok(None) => None,
                    Err(why) => {
                        return Err(ToolError::Failed(format!(
                            "the API '{name}' cannot be used: {why}; tell the user"
                        )));
                    }
                };
                (url, secret)
            }
            _ => {
                let url = Url::parse(args.url.trim()).map_err(|e| {
                    ToolError::InvalidArguments(format!(
                        "'{}' is not a valid URL ({e}); give a full URL, or name a configured API in `api` and give a path",
                        args.url
                    ))
                })?;
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(ToolError::InvalidArguments(
                        "credentials in the URL are not sent; name a configured API in `api` instead"
                            .into(),
                    ));
                }
                // A URL under a configured API's base goes through that API (with its
                // credential) only when named; say so rather than send it bare.
                (url, None)
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::InvalidArguments(format!(
                "http_request sends to http:// and https:// URLs only, not {}:// ones",
                url.scheme()
            )));
        }
        Ok(Prepared {
            method,
            url,
            headers,
            body,
            secret,
        })
    }
}

#[async_trait]
impl Tool for HttpRequest {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: serde_json::Value,
        cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: Args = parse_args(args)?;
        let prepared = self.prepare(args)?;
        let deadline = Instant::now() + cx.timeout;
        let time_left = || deadline.saturating_duration_since(Instant::now());
        let method = prepared.method.as_str().to_string();
        let hop = plan_hop("http_request", &method, &prepared.url, None, time_left()).await?;
        cx.net.check(&hop).await.map_err(ToolError::Refused)?;
        let failed = |e: &reqwest::Error| request_failed(&method, &prepared.url, e, cx.timeout);
        if time_left().is_zero() {
            return Err(ToolError::Failed(format!(
                "{method} {} did not start within {:?}; try again later",
                prepared.url, cx.timeout
            )));
        }
        let client = pinned_client(&hop, time_left())?;
        let body_sha256 = hex::encode(Sha256::digest(&prepared.body));
        let bytes = prepared.body.len() as u64;
        let sent = client
            .request(prepared.method.clone(), prepared.url.clone())
            .headers(prepared.headers)
            .body(prepared.body)
            .send()
            .await;
        let status = sent.as_ref().ok().map(|r| r.status().as_u16());
        // A refused connection sent nothing; anything later may have, and the audit must
        // not miss a request that left.
        if !matches!(&sent, Err(e) if e.is_connect()) {
            cx.net.sent(&HopSent {
                hop,
                bytes,
                body_sha256,
                status,
            });
        }
        let mut response = sent.map_err(|e| failed(&e))?;

        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut capped = false;
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e))? {
            let room = MAX_DOWNLOAD_BYTES - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                capped = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let mut content = format!(
            "{method} {}\nStatus: {status}\nContent-Type: {}\n",
            prepared.url,
            content_type.as_deref().unwrap_or("(none)")
        );
        if let Some(location) = &location {
            content.push_str(&format!("Location: {location}\n"));
        }
        let mut truncated = capped;
        if looks_binary(&body) {
            content.push_str(&format!(
                "\n[{} bytes of binary data, not shown]",
                body.len()
            ));
        } else if !body.is_empty() {
            let text = String::from_utf8_lossy(&body);
            let room = page_bytes(cx, MAX_DOWNLOAD_BYTES);
            let shown = cut(text.trim_end(), room);
            truncated |= shown.len() < text.trim_end().len();
            content.push('\n');
            content.push_str(shown);
            if truncated {
                content.push_str("\n[… the response was cut here]");
            }
        }
        // An API that echoes the request (or its own error page) must not hand the
        // credential to the model.
        // The whole header value first, then the credential without its scheme.
        if let Some(secret) = &prepared.secret {
            let value = secret.expose().as_str();
            let bare = value.split_once(' ').map_or(value, |(_, rest)| rest.trim());
            for needle in [value, bare] {
                if needle.len() >= 4 {
                    content = content.replace(needle, "[credential removed]");
                }
            }
        }
        Ok(ToolOutput { content, truncated })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn api(base: &str) -> Api {
        Api {
            name: "svc".into(),
            base_url: Url::parse(base).unwrap(),
            about: None,
            auth: Ok(Some((
                "authorization".into(),
                Secret::new("Bearer tok-123".into()),
            ))),
        }
    }

    #[test]
    fn paths_stay_under_the_api_base() {
        let a = api("https://api.example.org/v1");
        assert_eq!(
            a.resolve("/items/1").unwrap().as_str(),
            "https://api.example.org/v1/items/1"
        );
        assert_eq!(
            a.resolve("items?q=x").unwrap().as_str(),
            "https://api.example.org/v1/items?q=x"
        );
        assert!(a.resolve("https://api.example.org/v1/x").is_ok());
        for escape in [
            "../admin",
            "/../../admin",
            "https://api.example.org/v10/x",
            "https://api.example.org/admin",
            "https://evil.example/v1/x",
            "http://api.example.org/v1/x",
            "https://api.example.org:8443/v1/x",
            "https://u:p@api.example.org/v1/x",
        ] {
            assert!(a.resolve(escape).is_err(), "{escape} was let through");
        }
    }

    #[test]
    fn the_model_cannot_set_credentials_or_transport_headers() {
        let tool = HttpRequest::with_apis(vec![api("https://api.example.org")]);
        for header in ["Authorization", "cookie", "Host", "Proxy-Foo"] {
            let args: Args = serde_json::from_value(serde_json::json!({
                "method": "GET", "url": "https://example.org/", "headers": { header: "x" }
            }))
            .unwrap();
            let err = tool.prepare(args).err().unwrap();
            assert!(err.to_string().contains("cannot be set"), "{err}");
        }
    }

    #[test]
    fn the_credential_never_shows_in_debug_output() {
        let tool = HttpRequest::with_apis(vec![api("https://api.example.org")]);
        let shown = format!("{tool:?}");
        assert!(!shown.contains("tok-123"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn an_unknown_api_lists_the_configured_ones() {
        let tool = HttpRequest::with_apis(vec![api("https://api.example.org")]);
        let args: Args = serde_json::from_value(
            serde_json::json!({ "method": "GET", "url": "/x", "api": "nope" }),
        )
        .unwrap();
        let err = tool.prepare(args).err().unwrap().to_string();
        assert!(err.contains("the configured ones are svc"), "{err}");
    }
}
