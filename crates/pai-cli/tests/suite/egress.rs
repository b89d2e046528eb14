//! What left, through the real binary: every request a mock received has exactly one
//! `egress` row whose hash is that of the body the mock got; proxy variables are ignored;
//! the configured proxy is used, shown and audited, and makes the session remote.

use pai_audit::{EventKind, SqliteAudit};
use pai_test_support::{MockOpenAi, chat_endpoint};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::ResponseTemplate;

use super::{MODEL, Pai};

/// Every proxy variable reqwest (or curl) would read, all pointing at `proxy`.
fn proxy_env(proxy: &str) -> Vec<(&'static str, String)> {
    [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .into_iter()
    .map(|var| (var, proxy.to_string()))
    .collect()
}

/// The `egress` rows of `pai`'s audit log, oldest first, each content parsed.
fn egress_rows(pai: &Pai) -> Vec<Value> {
    SqliteAudit::open(&pai.home.home().join("audit.db"))
        .unwrap()
        .events(1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == EventKind::Egress)
        .map(|e| serde_json::from_str(&e.event.content).unwrap())
        .collect()
}

/// What a row should say about each request `mock` received: method, path, size and
/// the SHA-256 of the body as the mock got it, and the address it was sent to.
async fn received(mock: &MockOpenAi) -> Vec<(String, String, u64, String, String)> {
    mock.requests()
        .await
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.url.path().to_string(),
                r.body.len() as u64,
                hex::encode(Sha256::digest(&r.body)),
                mock.server.address().to_string(),
            )
        })
        .collect()
}

/// The same, as the rows say it.
fn recorded(rows: &[Value]) -> Vec<(String, String, u64, String, String)> {
    rows.iter()
        .map(|row| {
            let target = row["url"].as_str().unwrap();
            let path = target.split_once("//").unwrap().1;
            let path = &path[path.find('/').unwrap()..];
            (
                row["method"].as_str().unwrap().to_string(),
                path.to_string(),
                row["bytes"].as_u64().unwrap(),
                row["sha256"].as_str().unwrap().to_string(),
                row["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_the_mock_received_has_one_egress_row_with_its_body_hash() {
    let mock = MockOpenAi::start().await;
    mock.mount(
        chat_endpoint()
            .respond_with(ResponseTemplate::new(503).insert_header("retry-after-ms", "10"))
            .up_to_n_times(1)
            .with_priority(1),
    )
    .await;
    mock.reply_json("whole", 3, 1).await;
    mock.reply_stream(&["stre", "amed"], 3, 1).await;
    mock.serve_models(&[MODEL, "other"]).await;
    // Proxy variables everywhere: they must change nothing.
    let proxy = MockOpenAi::start().await;
    let pai = Pai::bare();
    pai.home.write_config("[network]\nmax_retries = 2\n");
    pai.init("s", &mock.base_url());
    let env = proxy_env(&proxy.server.uri());
    let run = |args: &[&str]| {
        super::Run::from_cmd(pai.cmd().envs(env.iter().map(|(k, v)| (k, v))).args(args)).success()
    };

    assert_eq!(run(&["prompt", "--no-stream", "first"]).stdout, "whole\n");
    assert_eq!(run(&["prompt", "--stream", "second"]).stdout, "streamed\n");
    assert!(run(&["models"]).stdout.contains("other"));

    let rows = egress_rows(&pai);
    let expected = received(&mock).await;
    assert_eq!(
        expected.len(),
        4,
        "a retried call, a stream, a listing: {expected:?}"
    );
    assert_eq!(recorded(&rows), expected);
    let statuses: Vec<&Value> = rows.iter().map(|r| &r["status"]).collect();
    assert_eq!(
        statuses,
        [&json!(503), &json!(200), &json!(200), &json!(200)]
    );
    for row in &rows {
        assert_eq!(
            (&row["proxy"], &row["locality"]),
            (&Value::Null, &json!("local"))
        );
    }
    assert!(
        proxy.requests().await.is_empty(),
        "a proxy variable was obeyed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_configured_proxy_carries_requests_is_shown_and_makes_the_session_remote() {
    let proxy = MockOpenAi::start().await;
    proxy.reply_json("via the proxy", 2, 2).await;
    let pai = Pai::bare();
    pai.home.write_config(&format!(
        "[network]\nmax_retries = 0\nproxy = \"{}\"\n",
        proxy.server.uri()
    ));
    // Only the proxy can reach this host.
    pai.init("s", "http://model.invalid/v1");

    let status = pai.status_json("s");
    assert_eq!(
        (&status["locality"], &status["proxy"]),
        (&json!("remote"), &json!(proxy.server.uri()))
    );
    let human = pai.run(&["s", "status"]).success().stdout;
    assert!(
        human.contains(&format!("proxy     {}", proxy.server.uri())),
        "{human}"
    );

    let run = super::Run::from_cmd(pai.cmd().env("OPENAI_API_KEY", super::API_KEY).args([
        "prompt",
        "--no-stream",
        "hi",
    ]))
    .success();
    assert_eq!(run.stdout, "via the proxy\n");

    let rows = egress_rows(&pai);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let body = &proxy.requests().await[0].body;
    assert_eq!(
        rows[0],
        json!({
            "url": "http://model.invalid/v1/chat/completions",
            "method": "POST",
            "address": proxy.server.address().to_string(),
            "proxy": proxy.server.uri(),
            "locality": "remote",
            "bytes": body.len(),
            "sha256": hex::encode(Sha256::digest(body)),
            "status": 200,
            // What the policy screen saw in it: the system prompt and the typed input.
            "classes": ["internal"],
            "redacted": {},
            "withheld": 0,
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_server_probe_that_reached_a_server_has_its_egress_row() {
    let mock = MockOpenAi::start().await;
    mock.serve_models(&["qwen-local"]).await;
    let pai = Pai::bare();
    pai.home.write_config(&format!(
        "[providers.box]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\n",
        mock.base_url()
    ));

    pai.run(&["init", "s", "local-server"]).success();

    // The well-known ports are probed too; a server the test did not start is not ours.
    let rows: Vec<Value> = egress_rows(&pai)
        .into_iter()
        .filter(|r| r["url"].as_str().unwrap().starts_with(&mock.server.uri()))
        .collect();
    assert_eq!(recorded(&rows), received(&mock).await);
    assert_eq!(rows.len(), 1);
}
