//! `http_get` and its egress gate: every hop is resolved, classified and asked about before
//! anything is sent, redirects included, and each hop sent is reported.

use std::net::{IpAddr, Ipv4Addr};

use pai_tools::{Hop, HopSent, ToolContext, ToolError};
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::{TestGate, call, error};

/// SHA-256 of no bytes: the body of every GET.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A server on 127.0.0.1 that answers anything with 200.
async fn open_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("reached\n"))
        .mount(&server)
        .await;
    server
}

fn port(server: &MockServer) -> u16 {
    server.address().port()
}

fn redirect(to: &str) -> ResponseTemplate {
    ResponseTemplate::new(302).insert_header("location", to)
}

/// Spellings of the mock server's own address (or of "this host"), each a way a model could
/// try to reach a service on the user's machine.
fn loopback_spellings(port: u16) -> Vec<String> {
    [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "0x7f000001",
        "0x7f.1",
        "2130706433",
        "0177.0.0.1",
        "127.0.0.1.",
        "%31%32%37.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "[::1]",
        "localhost",
        "0",
        "0.0.0.0",
        "[::]",
    ]
    .iter()
    .map(|host| format!("http://{host}:{port}/private"))
    .collect()
}

#[tokio::test]
async fn every_spelling_of_loopback_is_refused_by_default_and_nothing_is_sent() {
    let server = open_server().await;
    let cx = ToolContext::default();
    let mut not_refused = Vec::new();
    for url in loopback_spellings(port(&server)) {
        match call("http_get", json!({ "url": url }), &cx).await {
            Err(ToolError::Refused(reason))
                if reason.starts_with("refused: ")
                    && reason.ends_with(
                        "; http_get reaches public addresses only unless a policy rule allows the host",
                    ) => {}
            other => not_refused.push(format!("{url}: {other:?}")),
        }
    }
    assert_eq!(not_refused, Vec::<String>::new());
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

/// The spellings do point at the server: let through, the IPv4 ones reach it.
#[tokio::test]
async fn the_same_spellings_reach_the_server_when_the_gate_allows_them() {
    let server = open_server().await;
    let gate = TestGate::allowing(&["127.0.0.1", "localhost"]);
    let cx = gate.cx();
    let p = port(&server);
    let mut reached = 0;
    for host in [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "0x7f000001",
        "0x7f.1",
        "2130706433",
        "0177.0.0.1",
        "127.0.0.1.",
        "%31%32%37.0.0.1",
        "localhost",
    ] {
        let url = format!("http://{host}:{p}/private");
        let out = call("http_get", json!({ "url": url }), &cx).await;
        // `localhost` may resolve to ::1 first elsewhere; this server is on 127.0.0.1 only.
        if host == "localhost" && gate.checked().last().unwrap().addr != Ipv4Addr::LOCALHOST {
            continue;
        }
        assert!(out.is_ok(), "{url}: {out:?}");
        reached += 1;
    }
    assert_eq!(server.received_requests().await.unwrap().len(), reached);
}

#[tokio::test]
async fn refusals_name_the_host_the_address_and_what_it_is() {
    let cx = ToolContext::default();
    let cases = [
        (
            "http://127.1:9/",
            "refused: 127.0.0.1 is a loopback address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
        (
            "http://[::ffff:7f00:1]:9/",
            "refused: ::ffff:127.0.0.1 is a loopback address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
        (
            "http://0xa9fea9fe/latest/meta-data/",
            "refused: 169.254.169.254 is a cloud metadata service address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
        (
            "http://[fd00:ec2::254]/latest/",
            "refused: fd00:ec2::254 is a cloud metadata service address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
        (
            "http://10.1.2.3/",
            "refused: 10.1.2.3 is a private address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
        (
            "http://100.64.0.1/",
            "refused: 100.64.0.1 is a carrier-grade NAT (100.64.0.0/10) address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
        (
            "http://[fe80::1]/",
            "refused: fe80::1 is a link-local address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
        (
            "http://224.0.0.1/",
            "refused: 224.0.0.1 is a multicast address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
        (
            "http://0/",
            "refused: 0.0.0.0 is an unspecified address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
        (
            "http://[::ffff:8.8.8.8]/",
            "refused: ::ffff:8.8.8.8 is an IPv4-mapped IPv6 address; http_get reaches public addresses only unless a policy rule allows the host",
        ),
    ];
    for (url, want) in cases {
        assert_eq!(
            error("http_get", json!({ "url": url }), &cx).await,
            ToolError::Refused(want.into()),
            "{url}"
        );
    }
    // A name shows the address it resolved to.
    let err = error("http_get", json!({ "url": "http://localhost:9/" }), &cx).await;
    let ToolError::Refused(reason) = err else {
        panic!("{err:?}")
    };
    assert!(
        reason.starts_with("refused: localhost is a loopback address (127.0.0.1); ")
            || reason.starts_with("refused: localhost is a loopback address (::1); "),
        "{reason}"
    );
}

/// The first hop is on a host the gate allows; its redirect names the same server by
/// another loopback spelling, which the gate refuses: the redirect hop is checked on its own.
#[tokio::test]
async fn a_redirect_into_loopback_is_refused_and_not_followed() {
    let server = MockServer::start().await;
    let p = port(&server);
    let into_loopback = format!("http://[::ffff:127.0.0.1]:{p}/admin");
    Mock::given(path("/start"))
        .respond_with(redirect(&into_loopback))
        .mount(&server)
        .await;
    Mock::given(path("/admin"))
        .respond_with(ResponseTemplate::new(200).set_body_string("admin panel"))
        .expect(0)
        .mount(&server)
        .await;
    let gate = TestGate::allowing(&["127.0.0.1"]);
    let start = format!("http://127.0.0.1:{p}/start");

    let err = error("http_get", json!({ "url": start }), &gate.cx()).await;

    assert_eq!(
        err,
        ToolError::Refused(
            "refused: ::ffff:127.0.0.1 is a loopback address; http_get reaches public \
             addresses only unless a policy rule allows the host"
                .into()
        )
    );
    let first = Hop {
        tool: "http_get".into(),
        method: "GET".into(),
        url: start.clone(),
        host: "127.0.0.1".into(),
        port: p,
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        special: Some("loopback"),
        redirect_from: None,
    };
    let second = Hop {
        url: into_loopback.replace("[::ffff:127.0.0.1]", "[::ffff:7f00:1]"),
        host: "::ffff:127.0.0.1".into(),
        addr: "::ffff:127.0.0.1".parse().unwrap(),
        redirect_from: Some(start.clone()),
        ..first.clone()
    };
    assert_eq!(gate.checked(), vec![first.clone(), second]);
    // Only the allowed hop was sent.
    assert_eq!(
        gate.sent(),
        vec![HopSent {
            hop: first,
            bytes: 0,
            body_sha256: EMPTY_SHA256.into(),
            status: Some(302),
        }]
    );
    let received = server.received_requests().await.unwrap();
    let paths: Vec<_> = received.iter().map(|r| r.url.path().to_string()).collect();
    assert_eq!(paths, ["/start"]);
}

/// A name allowed by the gate: what the gate sees is the address the system resolved it to.
#[tokio::test]
async fn the_gate_sees_the_resolved_address() {
    let server = open_server().await;
    let gate = TestGate::allowing(&["localhost"]);
    let url = format!("http://localhost:{}/page", port(&server));
    let out = call("http_get", json!({ "url": url }), &gate.cx()).await;
    let checked = gate.checked();
    assert_eq!(checked.len(), 1);
    let hop = &checked[0];
    assert_eq!(
        (hop.host.as_str(), hop.port, hop.special),
        ("localhost", port(&server), Some("loopback"))
    );
    assert!(hop.addr.is_loopback(), "{}", hop.addr);
    if hop.addr == Ipv4Addr::LOCALHOST {
        // And it is the address connected to: the request reached the server.
        assert!(out.is_ok(), "{out:?}");
        assert_eq!(gate.sent()[0].hop, *hop);
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn the_gates_reason_is_the_tools_error_and_nothing_is_sent() {
    let server = open_server().await;
    let reason = "refused by rule 'net.deny' in policy.toml line 4: 127.0.0.1 is not allowed";
    let gate = TestGate::refusing(reason);
    let url = format!("http://127.0.0.1:{}/", port(&server));
    assert_eq!(
        error("http_get", json!({ "url": url }), &gate.cx()).await,
        ToolError::Refused(reason.into())
    );
    assert_eq!(gate.checked().len(), 1);
    assert_eq!(gate.sent(), vec![]);
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn every_hop_sent_is_reported_once_with_the_hash_of_its_empty_body() {
    let server = MockServer::start().await;
    Mock::given(path("/a"))
        .respond_with(redirect("/b"))
        .mount(&server)
        .await;
    Mock::given(path("/b"))
        .respond_with(ResponseTemplate::new(301).insert_header("location", "c?x=1"))
        .mount(&server)
        .await;
    Mock::given(path("/c"))
        .respond_with(ResponseTemplate::new(200).set_body_string("the end"))
        .mount(&server)
        .await;
    let gate = TestGate::allowing(&["127.0.0.1"]);
    let base = server.uri();
    let out = call(
        "http_get",
        json!({ "url": format!("{base}/a") }),
        &gate.cx(),
    )
    .await
    .unwrap();
    assert!(
        out.content.starts_with(&format!("URL: {base}/c?x=1\n")),
        "{}",
        out.content
    );

    let sent: Vec<_> = gate
        .sent()
        .into_iter()
        .map(|s| {
            (
                s.hop.url,
                s.hop.redirect_from,
                s.bytes,
                s.body_sha256,
                s.status,
            )
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (
                format!("{base}/a"),
                None,
                0,
                EMPTY_SHA256.to_string(),
                Some(302)
            ),
            (
                format!("{base}/b"),
                Some(format!("{base}/a")),
                0,
                EMPTY_SHA256.to_string(),
                Some(301)
            ),
            (
                format!("{base}/c?x=1"),
                Some(format!("{base}/b")),
                0,
                EMPTY_SHA256.to_string(),
                Some(200)
            ),
        ]
    );
    assert_eq!(gate.checked().len(), 3);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn redirects_stop_after_five() {
    let server = MockServer::start().await;
    Mock::given(path("/loop"))
        .respond_with(redirect("/loop"))
        .mount(&server)
        .await;
    let gate = TestGate::allowing(&["127.0.0.1"]);
    let url = format!("{}/loop", server.uri());
    assert_eq!(
        error("http_get", json!({ "url": url }), &gate.cx()).await,
        ToolError::Failed(format!(
            "GET {url} redirected more than 5 times; give the final URL"
        ))
    );
    // The first request and five redirects, each checked and reported.
    assert_eq!(gate.checked().len(), 6);
    assert_eq!(gate.sent().len(), 6);
    assert_eq!(server.received_requests().await.unwrap().len(), 6);
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_not_followed() {
    let server = MockServer::start().await;
    Mock::given(path("/file"))
        .respond_with(redirect("file:///etc/passwd"))
        .mount(&server)
        .await;
    let gate = TestGate::allowing(&["127.0.0.1"]);
    let url = format!("{}/file", server.uri());
    assert_eq!(
        error("http_get", json!({ "url": url }), &gate.cx()).await,
        ToolError::Failed(format!(
            "GET {url} redirected to file:///etc/passwd; http_get follows redirects to \
             http:// and https:// URLs only"
        ))
    );
    assert_eq!(gate.checked().len(), 1);
}

/// A connection that could not be made sent nothing, so no hop is reported.
#[tokio::test]
async fn a_refused_connection_reports_no_hop_sent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gate = TestGate::allowing(&["127.0.0.1"]);
    let url = format!("http://127.0.0.1:{port}/");
    let err = error("http_get", json!({ "url": url }), &gate.cx()).await;
    assert!(
        err.to_string().starts_with(&format!("GET {url} failed: ")),
        "{err}"
    );
    assert_eq!(gate.checked().len(), 1);
    assert_eq!(gate.sent(), vec![]);
}
