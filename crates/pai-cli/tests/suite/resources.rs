//! `pai resources` through the real binary, and resources used by a scripted model: the
//! search finds the right document first, prompt mode answers from a resource via the
//! tools, and a secret resource never reaches a remote-declared endpoint.

use std::fs;

use pai_audit::{EventKind, SqliteAudit};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::tools::{Script, answer, tool_call};
use super::{FAST_CONFIG, MODEL, Pai, snapshot};

const SECRET_PLAN: &str = "falconridge-merger-codename";

/// A folder of notes: Markdown with headings, a text file, a code file, one HTML page,
/// a binary, an invalid UTF-8 file and a .gitignored one.
fn corpus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::create_dir_all(p.join("notes/deep")).unwrap();
    fs::write(
        p.join("notes/kettle.md"),
        "# Kettle descaling\n\nDescale the kettle monthly with citric acid.\n\n## Steps\n\nBoil, soak for an hour, rinse twice.\n",
    )
    .unwrap();
    fs::write(
        p.join("notes/garden.txt"),
        "Water the tomatoes every morning in July.\n",
    )
    .unwrap();
    fs::write(
        p.join("notes/deep/backup.sh"),
        "#!/bin/sh\n# nightly backup of the photo library\nrsync -a ~/Photos nas:/backup\n",
    )
    .unwrap();
    fs::write(
        p.join("notes/page.html"),
        "<html><head><title>Bike repair &amp; care</title></head><body><h1>Bike repair</h1><p>Patch the inner tube.</p></body></html>",
    )
    .unwrap();
    fs::write(p.join("notes/photo.png"), b"\x89PNG\r\n\x1a\n\x00\x00").unwrap();
    fs::write(p.join("notes/latin1.txt"), b"caf\xe9 cr\xe8me").unwrap();
    fs::write(p.join("notes/scratch.md"), "ignored scratch").unwrap();
    fs::write(p.join("notes/.gitignore"), "scratch.md\n").unwrap();
    dir
}

fn settings_for(pai: &Pai, dir: &tempfile::TempDir) -> insta::Settings {
    let mut s = pai.settings();
    s.add_filter(
        &super::regex_escape(&dir.path().canonicalize().unwrap().display().to_string()),
        "[CORPUS]",
    );
    s.add_filter(
        &super::regex_escape(&dir.path().display().to_string()),
        "[CORPUS]",
    );
    s.add_filter(r"[0-9a-f]{64}", "[SHA256]");
    s
}

#[test]
fn a_folder_is_added_listed_searched_changed_and_removed() {
    let pai = Pai::new();
    let dir = corpus();
    let notes = dir.path().join("notes").display().to_string();
    let s = settings_for(&pai, &dir);

    let add = pai
        .run(&["resources", "add", &notes, "--tag", "home"])
        .success();
    s.bind(|| {
        insta::assert_snapshot!(
            "resources_add",
            format!("{}---\n{}", add.stdout, add.stderr)
        )
    });

    // Again: all unchanged. One file changed: replaced.
    let again = pai
        .run(&["resources", "add", &notes, "--tag", "home"])
        .success();
    assert_eq!(
        again.stdout,
        "0 added, 0 updated, 4 unchanged, 2 skipped, 0 failed\n"
    );
    fs::write(
        dir.path().join("notes/garden.txt"),
        "Water the tomatoes every evening in August.\n",
    )
    .unwrap();
    let changed = pai
        .run(&["resources", "add", &notes, "--tag", "home"])
        .success();
    assert_eq!(
        changed.stdout,
        "0 added, 1 updated, 3 unchanged, 2 skipped, 0 failed\n"
    );

    let list = pai.run(&["resources", "list"]).success();
    s.bind(|| insta::assert_snapshot!("resources_list", list.stdout));

    let search = pai
        .run(&["resources", "search", "how do I descale the kettle?"])
        .success();
    s.bind(|| insta::assert_snapshot!("resources_search", search.stdout));
    let json = pai
        .run(&["resources", "search", "tomatoes", "--json"])
        .success()
        .json();
    assert_eq!(json["hits"][0]["title"], "garden.txt");
    assert!(
        json["hits"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("**tomatoes**")
    );
    assert!(
        json["hits"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("evening")
    );
    let html = pai.run(&["resources", "search", "inner tube"]).success();
    assert!(html.stdout.contains("page.html"), "{}", html.stdout);

    let update = pai
        .run(&[
            "resources",
            "update",
            "3",
            "--class",
            "personal",
            "--tag",
            "kitchen",
            "--title",
            "Kettle care",
        ])
        .success();
    s.bind(|| insta::assert_snapshot!("resources_update", update.stdout));
    let kitchen = pai
        .run(&["resources", "list", "--tag", "kitchen", "--json"])
        .success()
        .json();
    assert_eq!(kitchen.as_array().unwrap().len(), 1);
    assert_eq!(kitchen[0]["class"], "personal");

    let rm = pai.run(&["resources", "rm", "--tag", "kitchen"]).success();
    assert_eq!(rm.stdout, "removed 3: Kettle care\n");
    let none = pai.run(&["resources", "search", "kettle"]).code(1);
    assert_eq!(none.stderr, "no resource matches 'kettle'\n");
}

#[test]
fn unknown_ids_classes_and_tags_are_one_clear_error() {
    let pai = Pai::new();
    let errors = [
        pai.run(&["resources", "show", "42"]).error_line(),
        pai.run(&["resources", "rm", "--tag", "nope"]).error_line(),
        pai.run(&["resources", "list", "--tag", "nope"])
            .error_line(),
        pai.run(&["resources", "update", "42", "--title", "x"])
            .error_line(),
        pai.run(&["resources", "update", "42"]).error_line(),
        pai.run(&["resources", "add", "/nonexistent/x.md", "--tag", "bad tag"])
            .error_line(),
    ];
    snapshot!(pai, "resources_errors", errors.join("\n"));
    let class = pai
        .run(&["resources", "list", "--class", "topsecret"])
        .failure();
    assert!(
        class
            .stderr
            .contains("'topsecret' is not a data class; use public, internal, personal or secret"),
        "{}",
        class.stderr
    );
    let missing = pai.run(&["resources", "add", "/nonexistent/x.md"]).code(1);
    assert_eq!(
        missing.stdout,
        "0 added, 0 updated, 0 unchanged, 0 skipped, 1 failed\n"
    );
    assert_eq!(missing.stderr, "failed /nonexistent/x.md: does not exist\n");
}

#[test]
fn removed_text_leaves_the_database_file() {
    let pai = Pai::new();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        fs::write(
            dir.path().join(format!("f{i}.txt")),
            format!("ordinary note {i}"),
        )
        .unwrap();
    }
    let plan = dir.path().join("plan.md");
    fs::write(
        &plan,
        format!("# Plan\n\nThe project is called {SECRET_PLAN}.\n"),
    )
    .unwrap();
    pai.run(&["resources", "add", &dir.path().display().to_string()])
        .success();
    let found = pai
        .run(&["resources", "search", SECRET_PLAN, "--json"])
        .success()
        .json();
    let id = found["hits"][0]["id"].to_string();
    pai.run(&["resources", "rm", &id]).success();
    let db = pai.home.home().join("resources.db");
    let mut bytes = fs::read(&db).unwrap();
    bytes.extend(fs::read(pai.home.home().join("resources.db-wal")).unwrap_or_default());
    let needle = SECRET_PLAN.as_bytes();
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "the removed text is still in {}",
        db.display()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

fn remote_config(url: &str) -> String {
    format!(
        "{FAST_CONFIG}\n[providers.cloud]\nkind = \"openai-compatible\"\nbase_url = \"{url}\"\nlocality = \"remote\"\nkey_env = \"CLOUD_KEY\"\n"
    )
}

/// Two documents: an internal one about the kettle and a secret plan.
fn add_two(pai: &Pai) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let kettle = dir.path().join("kettle.md");
    fs::write(
        &kettle,
        "# Kettle\n\nDescale the kettle monthly with citric acid.\n",
    )
    .unwrap();
    let plan = dir.path().join("plan.md");
    fs::write(
        &plan,
        format!("# Merger plan\n\nThe deal is called {SECRET_PLAN}.\n"),
    )
    .unwrap();
    pai.run(&[
        "resources",
        "add",
        &kettle.display().to_string(),
        "--tag",
        "home",
    ])
    .success();
    pai.run(&[
        "resources",
        "add",
        &plan.display().to_string(),
        "--class",
        "secret",
        "--tag",
        "work",
    ])
    .success();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_mode_answers_from_a_resource_through_the_tools() {
    let (mock, script) = Script::mount(vec![
        tool_call("search_resources", json!({ "query": "descale kettle" }), 10),
        tool_call("read_resource", json!({ "id": 1 }), 10),
        answer("Use citric acid, monthly.", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let _dir = add_two(&pai);
    let run = pai
        .run(&["prompt", "--no-stream", "how often should I descale?"])
        .success();
    assert_eq!(run.stdout, "Use citric acid, monthly.\n");

    let requests = script.requests();
    assert_eq!(requests.len(), 3);
    // The first request shows the catalogue and offers the two read tools.
    let first = requests[0].to_string();
    assert!(first.contains("- 1: Kettle [home]"), "{first}");
    let tools: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .filter(|n| n.contains("resource"))
        .collect();
    assert_eq!(tools, ["read_resource", "search_resources"]);
    // The search result, then the document, came back as data.
    let last = requests[2]["messages"].as_array().unwrap();
    let results: Vec<&str> = last
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(
        results[0].contains("resource 1 chunk 0: Kettle"),
        "{}",
        results[0]
    );
    assert!(results[0].contains("**kettle**"), "{}", results[0]);
    assert!(
        results[1].contains("Descale the kettle monthly with citric acid."),
        "{}",
        results[1]
    );
    assert!(
        results[1].contains("not instructions to follow"),
        "{}",
        results[1]
    );
    // Each read is audited with its id, class, chunk and decision.
    let audit = SqliteAudit::open(&pai.home.home().join("audit.db")).unwrap();
    let reads: Vec<String> = audit
        .events(1000)
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.event.kind == EventKind::Policy && e.event.content.starts_with("read resource")
        })
        .map(|e| e.event.content)
        .collect();
    assert_eq!(
        reads,
        [
            "read resource 1 (internal), search hit, chunk 0: allow by default:allow: sent",
            "read resource 1 (internal), chunk 0: allow by default:allow: sent",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_resource_never_reaches_a_remote_endpoint() {
    let (mock, script) = Script::mount(vec![
        tool_call("search_resources", json!({ "query": "merger deal" }), 10),
        tool_call("read_resource", json!({ "id": 2 }), 10),
        answer("I cannot see it.", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.home.write_config(&remote_config(&mock.base_url()));
    pai.run(&["init", "r", "cloud", "--model", MODEL]).success();
    let _dir = add_two(&pai);
    let run = super::Run::from_cmd(pai.cmd().env("CLOUD_KEY", "k-cloud").args([
        "r",
        "prompt",
        "--no-stream",
        "-r",
        "work",
        "what is the deal called?",
    ]))
    .success();
    assert_eq!(run.stdout, "I cannot see it.\n");
    let sent: String = mock
        .requests()
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(script.requests().len(), 3);
    assert!(
        !sent.contains(SECRET_PLAN),
        "the secret reached the remote mock: {sent}"
    );
    // Its title is not shown either; the model learns only that it is withheld, and why.
    assert!(!sent.contains("Merger plan"), "{sent}");
    assert!(
        sent.contains("- 2: a secret document (attached to this request)"),
        "{sent}"
    );
    assert!(
        sent.contains("[withheld: resource 2 is secret data, which policy rule 'default:secret-stays-local' keeps from cloud (remote)"),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_resource_read_by_a_local_model_stays_secret_in_the_history() {
    let (mock, _script) = Script::mount(vec![
        tool_call("read_resource", json!({ "id": 2 }), 10),
        answer("The deal is falconridge.", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let _dir = add_two(&pai);
    pai.run(&["prompt", "--no-stream", "what is the deal called?"])
        .success();
    let sent: String = mock
        .requests()
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    // A local endpoint may see it; the answer derived from it is stored as secret.
    assert!(sent.contains(SECRET_PLAN));
    let history = pai.history("s");
    assert_eq!(history[1]["class"], "secret");
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_mode_reads_only_attached_resources() {
    let (mock, script) = Script::mount(vec![
        answer("hi", 10),
        tool_call("read_resource", json!({ "id": 2 }), 10),
        answer("ok", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let _dir = add_two(&pai);
    // Nothing attached: no resource tools and no catalogue in chat.
    pai.run_stdin(&["chat", "--no-stream"], "hello\n").success();
    let first = script.requests()[0].to_string();
    assert!(!first.contains("read_resource"), "{first}");
    assert!(!first.contains("Kettle"), "{first}");
    // Attached: only that one can be read.
    pai.run_stdin(&["chat", "--no-stream", "-r", "1"], "hello\n")
        .success();
    let requests = script.requests();
    let results: Vec<String> = requests[2]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert!(
        results[0].contains("resource 2 is not attached to this chat"),
        "{results:?}"
    );
    let unknown = pai
        .run_stdin(&["chat", "-r", "nope"], "hello\n")
        .error_line();
    assert_eq!(
        unknown,
        "error: no resource is tagged 'nope'; 'pai resources list' shows the tags"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_mode_writes_notes_only_with_approval() {
    let note = json!({ "title": "Descaling log", "text": "Descaled on Monday.", "tags": ["home"] });
    let (mock, script) = Script::mount(vec![
        tool_call("add_note", note.clone(), 10),
        answer("tried", 10),
        tool_call("add_note", note, 10),
        answer("saved", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let _dir = add_two(&pai);
    // Nobody at a terminal to approve: refused, nothing stored.
    pai.run(&["agent", "--no-stream", "log the descaling"])
        .success();
    let refused = script.requests()[1].to_string();
    assert!(refused.contains("refused: "), "{refused}");
    assert_eq!(
        pai.run(&["resources", "list", "--json"])
            .success()
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Allowed up front: stored, and searchable like any other resource.
    pai.run(&[
        "agent",
        "--no-stream",
        "--allow",
        "write",
        "log the descaling",
    ])
    .success();
    let found = pai
        .run(&["resources", "search", "monday", "--json"])
        .success()
        .json();
    assert_eq!(found["hits"][0]["title"], "Descaling log");
    assert_eq!(found["hits"][0]["id"], 3);
    // Prompt mode offers no write tools.
    let (mock2, script2) = Script::mount(vec![answer("x", 1)]).await;
    pai.init("p", &mock2.base_url());
    pai.run(&["p", "prompt", "--no-stream", "hi"]).success();
    let offered = script2.requests()[0]["tools"].to_string();
    assert!(
        offered.contains("search_resources") && !offered.contains("add_note"),
        "{offered}"
    );
}

#[cfg(feature = "pdf")]
/// A one-page PDF whose page shows `text` in Helvetica, with a correct cross-reference table.
fn tiny_pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 24 Tf 72 700 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
    for off in offsets {
        out.extend(format!("{off:010} 00000 n \n").bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .bytes(),
    );
    out
}

#[cfg(feature = "pdf")]
#[test]
fn pdf_text_is_indexed_and_a_broken_pdf_is_skipped_with_one_line() {
    let pai = Pai::new();
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("manual.pdf"),
        tiny_pdf("Replace the grinder burrs yearly"),
    )
    .unwrap();
    fs::write(
        dir.path().join("broken.pdf"),
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage",
    )
    .unwrap();
    let run = pai
        .run(&["resources", "add", &dir.path().display().to_string()])
        .success();
    assert_eq!(
        run.stdout,
        "1 added, 0 updated, 0 unchanged, 1 skipped, 0 failed\n"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("skipped ")
            && run.stderr.contains("broken.pdf: cannot read the PDF"),
        "{}",
        run.stderr
    );
    let found = pai
        .run(&["resources", "search", "grinder burrs", "--json"])
        .success()
        .json();
    assert_eq!(found["hits"][0]["title"], "manual.pdf");
    let shown = pai
        .run(&["resources", "show", "1", "--json"])
        .success()
        .json();
    assert_eq!(shown["media_type"], "application/pdf");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_rule_in_policy_toml_withholds_a_class_even_from_a_local_model() {
    let (mock, script) = Script::mount(vec![
        tool_call("read_resource", json!({ "id": 2 }), 10),
        answer("ok", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    fs::write(
        pai.home.config().join("policy.toml"),
        "[[rule]]\nid = \"no-secret-docs\"\ndecision = \"deny\"\non = \"read\"\nclass = \"secret\"\nreason = \"secret documents stay out of every model\"\n",
    )
    .unwrap();
    let _dir = add_two(&pai);
    pai.run(&["prompt", "--no-stream", "what is the deal?"])
        .success();
    let sent = script.requests()[1].to_string();
    assert!(!sent.contains(SECRET_PLAN), "{sent}");
    assert!(
        sent.contains(
            "[withheld: resource 2 is secret data, which policy rule 'no-secret-docs' keeps from"
        ),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_note_written_after_reading_a_secret_document_is_secret() {
    let (mock, _script) = Script::mount(vec![
        tool_call("read_resource", json!({ "id": 2 }), 10),
        tool_call(
            "add_note",
            json!({ "title": "Summary", "text": "The deal has a codename." }),
            10,
        ),
        answer("noted", 10),
    ])
    .await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let _dir = add_two(&pai);
    pai.run(&[
        "agent",
        "--no-stream",
        "--allow",
        "write",
        "summarise the plan",
    ])
    .success();
    let note = pai
        .run(&["resources", "show", "3", "--json"])
        .success()
        .json();
    assert_eq!(note["title"], "Summary");
    assert_eq!(note["class"], "secret");
}

/// `pai resources add https://…`: the page is fetched (HTML to text as for a local file),
/// kept under its URL, and `reindex` asks with its ETag: 304 leaves it, a new version
/// replaces it. A URL the user typed may be on loopback (wiremock is).
#[tokio::test(flavor = "multi_thread")]
async fn a_url_is_imported_and_refreshed_by_its_etag() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let page = |text: &str, etag: &str| {
        ResponseTemplate::new(200)
            .insert_header("etag", etag)
            .set_body_raw(
                format!(
                    "<html><head><title>Bike repair | Example Wiki</title></head><body><h1>Bike repair</h1><p>{text}</p></body></html>"
                ),
                "text/html; charset=utf-8",
            )
    };
    Mock::given(method("GET"))
        .and(path("/guide"))
        .and(header("if-none-match", "\"v1\""))
        .respond_with(ResponseTemplate::new(304))
        .with_priority(1)
        .named("not modified")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/guide"))
        .respond_with(page("Patch the inner tube with a kit.", "\"v1\""))
        .with_priority(2)
        .mount(&server)
        .await;
    let url = format!("{}/guide", server.uri());
    let pai = Pai::new();

    let add = pai
        .run(&["resources", "add", &url, "--tag", "web"])
        .success();
    assert_eq!(
        add.stdout, "1 added, 0 updated, 0 unchanged, 0 skipped, 0 failed\n",
        "{add:#?}"
    );
    let found = pai
        .run(&["resources", "search", "inner tube", "--json"])
        .success()
        .json();
    assert_eq!(found["hits"][0]["source"], url.as_str());
    // Titled by the page's <title>.
    assert_eq!(found["hits"][0]["title"], "Bike repair | Example Wiki");
    assert!(
        !found["hits"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("<p>"),
        "{found:#}"
    );

    // Unchanged: the server answers 304 to the stored ETag.
    let reindex = pai.run(&["resources", "reindex"]).success();
    assert_eq!(
        reindex.stdout,
        "0 added, 0 updated, 1 unchanged, 0 removed, 0 missing, 0 skipped, 0 failed; index rebuilt\n"
    );
    let conditional = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.headers.get("if-none-match").is_some())
        .count();
    assert_eq!(conditional, 1);

    // A new version: replaced under the same id.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/guide"))
        .respond_with(page("True the wheel with a spoke key.", "\"v2\""))
        .mount(&server)
        .await;
    let reindex = pai.run(&["resources", "reindex"]).success();
    assert_eq!(
        reindex.stdout,
        "0 added, 1 updated, 0 unchanged, 0 removed, 0 missing, 0 skipped, 0 failed; index rebuilt\n"
    );
    let found = pai
        .run(&["resources", "search", "spoke", "--json"])
        .success()
        .json();
    assert_eq!(found["hits"][0]["source"], url.as_str());

    // A page that is not there: one line, counted, exit status 1.
    let missing = pai.run(&["resources", "add", &format!("{}/nope", server.uri())]);
    assert_eq!(missing.code, Some(1), "{missing:#?}");
    assert!(
        missing.stderr.contains("failed") && missing.stderr.contains("404"),
        "{missing:#?}"
    );
}

fn db_contains(pai: &Pai, needle: &str) -> bool {
    let home = pai.home.home();
    let mut bytes = fs::read(home.join("resources.db")).unwrap();
    bytes.extend(fs::read(home.join("resources.db-wal")).unwrap_or_default());
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `reindex` walks each added folder again (`.gitignore` honoured, as `add` does): a new
/// file is imported with the folder's class and tags; a deleted one is removed, its text
/// gone from the database file; a file added on its own that vanished is kept and said
/// missing; a folder that is gone removes nothing; what the user removed with `rm` stays
/// out, and a folder with nothing left is no longer walked.
#[test]
fn reindex_imports_new_files_in_added_folders_and_removes_deleted_ones() {
    let pai = Pai::new();
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes");
    fs::create_dir_all(notes.join("deep")).unwrap();
    fs::write(notes.join("a.md"), "# Alpha\n\nAbout the kettle.\n").unwrap();
    fs::write(notes.join("b.md"), "# Beta\n\nThe wombatgrapefruit plan.\n").unwrap();
    fs::write(notes.join(".gitignore"), "scratch.md\n").unwrap();
    let solo = dir.path().join("solo.md");
    fs::write(&solo, "# Solo\n\nOn its own.\n").unwrap();
    let notes_arg = notes.display().to_string();
    pai.run(&[
        "resources",
        "add",
        &notes_arg,
        "--class",
        "personal",
        "--tag",
        "home",
    ])
    .success();
    pai.run(&["resources", "add", &solo.display().to_string()])
        .success();

    fs::write(notes.join("deep/c.md"), "# Gamma\n\nThe new note.\n").unwrap();
    fs::write(notes.join("scratch.md"), "ignored scratch").unwrap();
    fs::remove_file(notes.join("b.md")).unwrap();
    fs::remove_file(&solo).unwrap();
    let reindex = pai.run(&["resources", "reindex"]).success();
    assert_eq!(
        reindex.stdout,
        "1 added, 0 updated, 1 unchanged, 1 removed, 1 missing, 0 skipped, 0 failed; index rebuilt\n",
        "{reindex:#?}"
    );
    let canonical = notes.canonicalize().unwrap();
    assert!(
        reindex.stderr.contains(&format!(
            "removed 2: {}/b.md is gone from the folder or prefix it was added with",
            canonical.display()
        )) && reindex
            .stderr
            .contains("solo.md: resource 3 kept as it was"),
        "{reindex:#?}"
    );
    assert!(
        !db_contains(&pai, "wombatgrapefruit"),
        "the removed text is still in the database"
    );
    let list = pai.run(&["resources", "list", "--json"]).success().json();
    let titles: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Alpha", "Solo", "Gamma"]);
    assert_eq!(list[2]["class"], "personal");
    assert_eq!(list[2]["tags"], json!(["home"]));

    // The folder moved away (an unmounted disk looks the same): nothing removed.
    let moved = dir.path().join("moved");
    fs::rename(&notes, &moved).unwrap();
    let reindex = pai.run(&["resources", "reindex"]).success();
    assert_eq!(
        reindex.stdout,
        "0 added, 0 updated, 0 unchanged, 0 removed, 3 missing, 0 skipped, 0 failed; index rebuilt\n",
        "{reindex:#?}"
    );
    assert!(
        reindex
            .stderr
            .contains("is gone or empty: nothing under it is removed or added"),
        "{reindex:#?}"
    );
    fs::rename(&moved, &notes).unwrap();

    // Removed by the user: it stays out. With nothing left from the folder, the
    // folder is no longer walked.
    pai.run(&["resources", "rm", "4"]).success();
    let reindex = pai.run(&["resources", "reindex"]).success();
    assert!(
        reindex
            .stdout
            .starts_with("0 added, 0 updated, 1 unchanged, 0 removed"),
        "{reindex:#?}"
    );
    pai.run(&["resources", "rm", "1"]).success();
    fs::write(notes.join("d.md"), "# Delta\n").unwrap();
    let reindex = pai.run(&["resources", "reindex"]).success();
    assert!(
        reindex
            .stdout
            .starts_with("0 added, 0 updated, 0 unchanged, 0 removed, 1 missing"),
        "{reindex:#?}"
    );
    // Adding the folder again takes all of it.
    let add = pai.run(&["resources", "add", &notes_arg]).success();
    assert_eq!(
        add.stdout,
        "3 added, 0 updated, 0 unchanged, 0 skipped, 0 failed\n"
    );
}

/// A page's title: its `<title>` (entities decoded, whitespace collapsed), else its first
/// heading, else its URL.
#[tokio::test(flavor = "multi_thread")]
async fn page_titles_come_from_the_title_element_then_the_first_heading_then_the_url() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let pages = [
        (
            "/titled",
            "<html><head><meta charset=utf-8>\n<title>\n  Fish &amp; chips &#8211; a guide\n</title></head>\
             <body><h1>Not this</h1><p>Batter the cod.</p></body></html>",
            "text/html; charset=utf-8",
        ),
        (
            "/headed",
            "<html><body><h1>Sourdough starter</h1><p>Feed it daily.</p></body></html>",
            "text/html",
        ),
        (
            "/bare",
            "<html><body><p>Only a paragraph.</p></body></html>",
            "text/html",
        ),
    ];
    for (at, body, kind) in pages {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, kind))
            .mount(&server)
            .await;
    }
    let pai = Pai::new();
    let urls: Vec<String> = pages
        .iter()
        .map(|(at, _, _)| format!("{}{at}", server.uri()))
        .collect();
    let mut args = vec!["resources", "add"];
    args.extend(urls.iter().map(String::as_str));
    let add = pai.run(&args).success();
    assert_eq!(
        add.stdout, "3 added, 0 updated, 0 unchanged, 0 skipped, 0 failed\n",
        "{add:#?}"
    );
    let list = pai.run(&["resources", "list", "--json"]).success().json();
    let titles: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Fish & chips \u{2013} a guide",
            "Sourdough starter",
            urls[2].as_str()
        ]
    );
}

/// Several documents share the query's words; the one about all of them comes first, the
/// others after it.
#[test]
fn search_puts_the_right_document_first_among_several_that_match() {
    let pai = Pai::new();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs::write(
        p.join("shopping.md"),
        "# Shopping\n\nBread, milk, a new kettle, kettle filters, kettle cleaner.\n",
    )
    .unwrap();
    fs::write(
        p.join("kettle.md"),
        "# Kettle descaling\n\nDescale the kettle monthly: citric acid, boil, rinse.\n",
    )
    .unwrap();
    fs::write(
        p.join("coffee.md"),
        "# Coffee machine\n\nDescale the coffee machine every quarter.\n",
    )
    .unwrap();
    pai.run(&["resources", "add", &p.display().to_string()])
        .success();
    let found = pai
        .run(&[
            "resources",
            "search",
            "how do I descale my kettle?",
            "--json",
        ])
        .success()
        .json();
    let titles: Vec<_> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 3, "{found:#}");
    assert_eq!(titles[0], "Kettle descaling", "{found:#}");
}
