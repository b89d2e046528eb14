//! `http_get` against loopback servers only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use pai_tools::{HttpGet, Tool, ToolContext, ToolError};
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::{call, error, loopback_cx, text};

const PAGE: &str = r#"<!DOCTYPE html>
<html><head><title>Release notes</title>
<style>body { color: red }</style>
<script>var tracking = "do-not-show";</script></head>
<body><h1>PAI 1.0</h1>
<p>Local models are <b>fast</b> &amp; private.</p>
<ul><li>First item</li><li>Second item</li></ul>
<p>See <a href="https://example.org/docs">the docs</a>.</p>
</body></html>"#;

async fn server(route: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(route))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

/// These servers listen on 127.0.0.1, which only a gate that allows it lets through.
fn cx() -> ToolContext {
    loopback_cx()
}

#[tokio::test]
async fn html_comes_back_as_readable_text_with_url_and_status() {
    let server = server(
        "/notes",
        ResponseTemplate::new(200).set_body_raw(PAGE, "text/html; charset=utf-8"),
    )
    .await;
    let url = format!("{}/notes", server.uri());
    let out = text("http_get", json!({ "url": url }), &cx()).await;
    let (head, body) = out.split_once("\n\n").unwrap();
    assert_eq!(
        head,
        format!("URL: {url}\nStatus: 200 OK\nContent-Type: text/html; charset=utf-8")
    );
    for wanted in [
        "PAI 1.0",
        "Local models are **fast** & private.",
        "First item",
        "Second item",
        "the docs",
        "https://example.org/docs",
    ] {
        assert!(body.contains(wanted), "'{wanted}' missing from:\n{body}");
    }
    for unwanted in ["<", "&amp;", "do-not-show", "color: red"] {
        assert!(!body.contains(unwanted), "'{unwanted}' left in:\n{body}");
    }
}

#[tokio::test]
async fn json_and_plain_text_come_back_as_they_are_and_redirects_are_reported() {
    let server = MockServer::start().await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": true, "n": [1, 2] })))
        .mount(&server)
        .await;
    Mock::given(path("/old"))
        .respond_with(ResponseTemplate::new(301).insert_header("location", "/readme"))
        .mount(&server)
        .await;
    Mock::given(path("/readme"))
        .respond_with(ResponseTemplate::new(200).set_body_string("just text\n"))
        .mount(&server)
        .await;
    let out = text(
        "http_get",
        json!({ "url": format!("{}/data", server.uri()) }),
        &cx(),
    )
    .await;
    assert_eq!(
        out,
        format!(
            "URL: {}/data\nStatus: 200 OK\nContent-Type: application/json\n\n{{\"n\":[1,2],\"ok\":true}}",
            server.uri()
        )
    );
    let out = text(
        "http_get",
        json!({ "url": format!("{}/old", server.uri()) }),
        &cx(),
    )
    .await;
    assert_eq!(
        out,
        format!(
            "URL: {}/readme\nStatus: 200 OK\nContent-Type: text/plain\n\njust text",
            server.uri()
        )
    );
}

#[tokio::test]
async fn error_statuses_are_errors_that_name_the_status() {
    let server = server(
        "/missing",
        ResponseTemplate::new(404).set_body_string("nope"),
    )
    .await;
    let url = format!("{}/missing", server.uri());
    assert_eq!(
        error("http_get", json!({ "url": url }), &cx()).await,
        ToolError::Failed(format!(
            "GET {url} failed with HTTP status 404 Not Found; check the URL or try another page"
        ))
    );
}

#[tokio::test]
async fn binary_content_is_refused() {
    let server = MockServer::start().await;
    Mock::given(path("/logo.png"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(&b"\x89PNG\r\n\x1a\n\0\0"[..], "image/png"),
        )
        .mount(&server)
        .await;
    // No content type at all: the bytes decide.
    Mock::given(path("/blob"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(&b"\x00\x01\x02\x03binary"[..]))
        .mount(&server)
        .await;
    let url = format!("{}/logo.png", server.uri());
    assert_eq!(
        error("http_get", json!({ "url": url }), &cx()).await,
        ToolError::Failed(format!(
            "{url} returned image/png, which is not text; http_get returns web pages and text only"
        ))
    );
    let err = error(
        "http_get",
        json!({ "url": format!("{}/blob", server.uri()) }),
        &cx(),
    )
    .await;
    assert!(
        err.to_string()
            .contains("returned binary data, which is not text"),
        "{err}"
    );
}

#[tokio::test]
async fn only_http_and_https_urls_are_fetched() {
    for (url, scheme) in [
        ("file:///etc/passwd", "file"),
        ("ftp://127.0.0.1/x", "ftp"),
        ("data:text/plain,hi", "data"),
    ] {
        assert_eq!(
            error("http_get", json!({ "url": url }), &cx()).await,
            ToolError::InvalidArguments(format!(
                "http_get fetches http:// and https:// URLs only, not {scheme}:// ones"
            ))
        );
    }
    let err = error("http_get", json!({ "url": "example.org/page" }), &cx()).await;
    assert!(
        matches!(&err, ToolError::InvalidArguments(m) if m.starts_with("'example.org/page' is not a valid URL")),
        "{err}"
    );
}

/// A server whose body never ends: the download must stop at the cap by itself.
fn endless_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n");
        let chunk = "all work and no play\n".repeat(3000);
        while stream.write_all(chunk.as_bytes()).is_ok() {}
    });
    format!("http://{addr}/forever")
}

#[tokio::test]
async fn a_huge_body_is_capped_while_streaming() {
    let url = endless_server();
    let roomy = ToolContext {
        max_output_bytes: 8 * 1024 * 1024,
        timeout: Duration::from_secs(20),
        ..loopback_cx()
    };
    let started = Instant::now();
    let out = HttpGet::new()
        .call(json!({ "url": url }), &roomy)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(out.truncated);
    let (_, body) = out.content.split_once("\n\n").unwrap();
    let (body, marker) = body.rsplit_once('\n').unwrap();
    assert_eq!(
        marker,
        "[… download stopped at 2 MiB; the rest was not fetched]"
    );
    assert!(
        body.len() <= 2 * 1024 * 1024 && body.len() > 2 * 1024 * 1024 - 100,
        "{}",
        body.len()
    );

    // Through the registry the session's output cap then applies, with its marker.
    let url = endless_server();
    let out = call("http_get", json!({ "url": url }), &cx())
        .await
        .unwrap();
    assert!(out.truncated);
    assert!(out.content.len() < 33 * 1024);
    assert!(
        out.content.contains("[… truncated:"),
        "{}",
        &out.content[out.content.len() - 100..]
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    // Bind then drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let err = error("http_get", json!({ "url": url }), &cx()).await;
    assert!(
        err.to_string().starts_with(&format!("GET {url} failed: ")),
        "{err}"
    );
}

/// 1.4 MB of nested `<div>`s once kept a core busy for minutes after the call timed out:
/// html5ever's tree builder is quadratic in the nesting. The page comes back as plain text.
#[tokio::test]
async fn a_deeply_nested_page_is_reduced_to_plain_text() {
    let page = format!(
        "<!DOCTYPE html><html><body><h1>Deep page</h1>{}<p>the bottom</p>",
        "<div>".repeat(280_000)
    );
    let server = server(
        "/deep",
        ResponseTemplate::new(200).set_body_raw(page, "text/html"),
    )
    .await;
    let url = format!("{}/deep", server.uri());
    let out = call("http_get", json!({ "url": url }), &cx())
        .await
        .unwrap();
    assert_eq!(
        out.content,
        format!(
            "URL: {url}\nStatus: 200 OK\nContent-Type: text/html\n\n\
             [page too complex to lay out (elements nested more than 100 deep); reduced to \
             plain text]\n\nDeep page\nthe bottom"
        )
    );
    assert!(!out.truncated);
}

/// Text past the output cap is never shown, so a long page is laid out only that far.
#[tokio::test]
async fn a_long_page_is_converted_only_as_far_as_the_output_cap() {
    let page = format!(
        "<!DOCTYPE html><html><body>{}",
        "<p>a line of text</p>".repeat(80_000)
    );
    let server = server(
        "/long",
        ResponseTemplate::new(200).set_body_raw(page.clone(), "text/html"),
    )
    .await;
    let url = format!("{}/long", server.uri());
    let out = HttpGet::new()
        .call(json!({ "url": url }), &cx())
        .await
        .unwrap();
    assert!(out.truncated);
    let (_, body) = out.content.split_once("\n\n").unwrap();
    assert!(
        body.starts_with("a line of text\n\na line of text\n"),
        "{body:.100}"
    );
    let (text, marker) = body.rsplit_once('\n').unwrap();
    assert!(
        text.len() > 32 * 1024 && text.len() < 128 * 1024,
        "{}",
        text.len()
    );
    assert!(
        marker.starts_with("[… conversion stopped past the output cap; the last ")
            && marker.ends_with(" KiB of the page were not converted]"),
        "{marker}"
    );

    // Through the registry the cap then cuts the text, with its own marker.
    let out = call("http_get", json!({ "url": url }), &cx())
        .await
        .unwrap();
    assert!(out.truncated);
    assert!(
        out.content.contains("[… truncated:"),
        "{:.100}",
        out.content
    );
}
