//! `pai resources add s3://…` and `reindex` against a real S3-compatible server on
//! 127.0.0.1: moto's server (`python3 -m pip install 'moto[server]'`, which .ci/run does).
//! Without moto the tests skip with a note, except under CI=true, where they fail: a CI
//! run can never pass without running them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{FAST_CONFIG, Pai};

/// A moto server on a free loopback port, stopped on drop; its request log (one line
/// per request, with the status) goes to a file the tests read.
struct Moto {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Moto {
    /// `None` (after a note) when moto is not installed outside CI.
    fn start() -> Option<Self> {
        if !moto_installed() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 cannot import moto, and CI=true requires the S3 tests to run; \
                 install it with: python3 -m pip install 'moto[server]' (.ci/run does)"
            );
            eprintln!("skipped: moto is not installed (python3 -m pip install 'moto[server]')");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let moto = Self { child, port, log };
        // A loaded two-core machine takes several seconds to import moto.
        let deadline = Instant::now() + Duration::from_secs(90);
        while moto.request("GET", "/", b"").is_none() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(moto)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP/1.1 request; the status, or `None` when nothing answers yet. moto
    /// does not check signatures, but treats a request without any as anonymous (refused
    /// on existing objects), so a header naming the test's key id is enough.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=00\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).ok()?;
        let answer = String::from_utf8_lossy(&answer);
        answer.split_whitespace().nth(1)?.parse().ok()
    }

    fn put(&self, path: &str, body: &[u8]) {
        assert_eq!(self.request("PUT", path, body), Some(200), "PUT {path}");
    }

    /// The log lines of requests for `path` since the log was last cleared.
    fn requests_for(&self, path: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.log.path()).unwrap();
        log.lines()
            .filter(|l| l.contains(&format!(" {path} ")) || l.contains(&format!(" {path}?")))
            .map(str::to_string)
            .collect()
    }

    fn clear_log(&self) {
        std::fs::File::create(self.log.path()).unwrap();
    }
}

fn lab_config(endpoint: &str) -> String {
    format!(
        "{FAST_CONFIG}\n[resources.s3.lab]\nbucket = \"notes\"\nendpoint = \"{endpoint}\"\n\
         region = \"us-east-1\"\naccess_key_id_env = \"LAB_ID\"\nsecret_access_key_env = \"LAB_SECRET\"\n"
    )
}

fn run(pai: &Pai, args: &[&str]) -> super::Run {
    super::Run::from_cmd(
        pai.cmd()
            .env("LAB_ID", "testing")
            .env("LAB_SECRET", "testing-secret")
            .args(args),
    )
}

#[test]
fn objects_are_imported_searched_and_refreshed_by_etag() {
    let Some(moto) = Moto::start() else { return };
    moto.put("/notes", b"");
    moto.put(
        "/notes/kettle.md",
        b"# Kettle descaling\n\nDescale the kettle monthly with citric acid.\n",
    );
    moto.put(
        "/notes/garden.txt",
        b"Water the tomatoes every morning in July.\n",
    );
    moto.put(
        "/notes/sub/bike.md",
        b"# Bike repair\n\nPatch the inner tube.\n",
    );
    moto.put("/notes/photo.png", b"\x89PNG\r\n\x1a\n\x00\x00");
    let pai = Pai::new();
    pai.home.write_config(&lab_config(&moto.endpoint()));

    let add = run(&pai, &["resources", "add", "s3://notes/", "--tag", "lab"]).success();
    assert_eq!(
        add.stdout, "3 added, 0 updated, 0 unchanged, 1 skipped, 0 failed\n",
        "{add:#?}"
    );
    assert!(
        add.stderr
            .contains("skipped s3://notes/photo.png: binary file (.png)"),
        "{add:#?}"
    );
    // The binary was skipped by its name, never downloaded.
    assert!(
        moto.requests_for("/notes/photo.png")
            .iter()
            .all(|l| !l.contains("GET")),
        "{:?}",
        moto.requests_for("/notes/photo.png")
    );

    let found = run(
        &pai,
        &["resources", "search", "descale the kettle", "--json"],
    )
    .success()
    .json();
    assert_eq!(found["hits"][0]["source"], "s3://notes/kettle.md");
    assert_eq!(found["hits"][0]["title"], "Kettle descaling");

    // A second add downloads nothing that did not change.
    moto.clear_log();
    let again = run(&pai, &["resources", "add", "s3://notes/sub/"]).success();
    assert_eq!(
        again.stdout,
        "0 added, 0 updated, 1 unchanged, 0 skipped, 0 failed\n"
    );
    let bike = moto.requests_for("/notes/sub/bike.md");
    assert!(
        bike.iter().all(|l| l.contains("\" 304 ")),
        "re-added unchanged object was downloaded again: {bike:?}"
    );

    // One object changes: reindex re-imports that one only. The listing's ETags show
    // the others unchanged: not even asked for. (The skipped .png is listed again.)
    moto.put(
        "/notes/garden.txt",
        b"Water the tomatoes every evening in August.\n",
    );
    moto.clear_log();
    let reindex = run(&pai, &["resources", "reindex"]).success();
    assert_eq!(
        reindex.stdout,
        "0 added, 1 updated, 2 unchanged, 0 removed, 0 missing, 1 skipped, 0 failed; index rebuilt\n",
        "{reindex:#?}"
    );
    let garden = moto.requests_for("/notes/garden.txt");
    assert!(
        garden.len() == 1 && garden[0].contains("\" 200 "),
        "{garden:?}"
    );
    for path in ["/notes/kettle.md", "/notes/sub/bike.md"] {
        let lines = moto.requests_for(path);
        assert!(lines.is_empty(), "{path} was asked for again: {lines:?}");
    }
    let found = run(&pai, &["resources", "search", "August", "--json"])
        .success()
        .json();
    assert_eq!(found["hits"][0]["source"], "s3://notes/garden.txt");
    let list = run(&pai, &["resources", "list", "--tag", "lab", "--json"])
        .success()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list:#}");

    // A removed object under a prefix that now lists nothing (s3://notes/sub/) is
    // reported missing and kept: an empty listing may be a mistake, never a purge.
    assert_eq!(moto.request("DELETE", "/notes/sub/bike.md", b""), Some(204));
    let reindex = run(&pai, &["resources", "reindex"]).success();
    assert!(
        reindex.stdout.contains("0 removed, 1 missing"),
        "{reindex:#?}"
    );
    assert!(
        reindex.stderr.contains("s3://notes/sub lists nothing now")
            && reindex.stderr.contains("missing s3://notes/sub/bike.md"),
        "{reindex:#?}"
    );
}

fn db_bytes(pai: &Pai) -> Vec<u8> {
    let home = pai.home.home();
    let mut bytes = std::fs::read(home.join("resources.db")).unwrap();
    bytes.extend(std::fs::read(home.join("resources.db-wal")).unwrap_or_default());
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// `reindex` lists each added prefix again: a new object is imported with the prefix's
/// class and tags, a deleted one is removed (its text leaves the database file), one the
/// user removed with `rm` stays out until the prefix is added again, and a prefix that
/// lists nothing removes nothing.
#[test]
fn reindex_imports_new_objects_and_removes_deleted_ones() {
    let Some(moto) = Moto::start() else { return };
    moto.put("/notes", b"");
    moto.put(
        "/notes/kettle.md",
        b"# Kettle descaling\n\nDescale the kettle monthly with citric acid.\n",
    );
    moto.put(
        "/notes/garden.txt",
        b"Water the quinceblossom tomatoes every morning in July.\n",
    );
    let pai = Pai::new();
    pai.home.write_config(&lab_config(&moto.endpoint()));
    run(
        &pai,
        &[
            "resources",
            "add",
            "s3://notes/",
            "--tag",
            "lab",
            "--class",
            "personal",
        ],
    )
    .success();

    moto.put(
        "/notes/new/bike.md",
        b"# Bike repair\n\nPatch the inner tube.\n",
    );
    assert_eq!(moto.request("DELETE", "/notes/garden.txt", b""), Some(204));
    let reindex = run(&pai, &["resources", "reindex"]).success();
    assert_eq!(
        reindex.stdout,
        "1 added, 0 updated, 1 unchanged, 1 removed, 0 missing, 0 skipped, 0 failed; index rebuilt\n",
        "{reindex:#?}"
    );
    assert!(
        reindex.stderr.contains(
            "removed 1: s3://notes/garden.txt is gone from the folder or prefix it was added with"
        ),
        "{reindex:#?}"
    );
    let list = run(&pai, &["resources", "list", "--json"]).success().json();
    let sources: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["s3://notes/kettle.md", "s3://notes/new/bike.md"]);
    assert_eq!(list[1]["class"], "personal");
    assert_eq!(list[1]["tags"], serde_json::json!(["lab"]));
    assert!(
        !contains(&db_bytes(&pai), "quinceblossom"),
        "the removed text is still in the database"
    );

    // Removed by the user: the next reindex leaves it out; adding the prefix again
    // brings it back.
    run(&pai, &["resources", "rm", "3"]).success();
    let reindex = run(&pai, &["resources", "reindex"]).success();
    assert!(
        reindex
            .stdout
            .starts_with("0 added, 0 updated, 1 unchanged, 0 removed"),
        "{reindex:#?}"
    );
    let again = run(&pai, &["resources", "add", "s3://notes/", "--tag", "lab"]).success();
    assert_eq!(
        again.stdout,
        "1 added, 0 updated, 1 unchanged, 0 skipped, 0 failed\n"
    );

    // Everything deleted: the prefix lists nothing, so nothing is removed.
    for key in ["/notes/kettle.md", "/notes/new/bike.md"] {
        assert_eq!(moto.request("DELETE", key, b""), Some(204));
    }
    let reindex = run(&pai, &["resources", "reindex"]).success();
    assert_eq!(
        reindex.stdout,
        "0 added, 0 updated, 0 unchanged, 0 removed, 2 missing, 0 skipped, 0 failed; index rebuilt\n",
        "{reindex:#?}"
    );
    assert!(
        reindex
            .stderr
            .contains("s3://notes lists nothing now: nothing under it is removed"),
        "{reindex:#?}"
    );
}

#[test]
fn a_missing_bucket_is_one_clear_error() {
    let Some(moto) = Moto::start() else { return };
    let pai = Pai::new();
    // Credentials as Fernet tokens from 'pai encrypt': the error past them
    // shows they were opened.
    let key = pai.run(&["keygen"]).success().stdout.trim().to_string();
    let encrypt = |value: &str| {
        super::Run::from_cmd(
            pai.cmd()
                .env("PAI_ENCRYPTION_KEY", &key)
                .args(["encrypt"])
                .write_stdin(format!("{value}\n")),
        )
        .success()
        .stdout
        .trim()
        .to_string()
    };
    let (id, secret) = (encrypt("testing"), encrypt("testing-secret"));
    assert!(secret.starts_with("gAAAAA") && !secret.contains("testing"));
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[resources.s3.gone]\nendpoint = \"{}\"\n\
         access_key_id_encrypted = \"{id}\"\nsecret_access_key_encrypted = \"{secret}\"\n",
        moto.endpoint()
    ));
    let line = super::Run::from_cmd(pai.cmd().env("PAI_ENCRYPTION_KEY", &key).args([
        "resources",
        "add",
        "s3://gone/",
    ]))
    .error_line();
    assert!(
        line.contains("s3://gone") && line.contains("does not exist"),
        "{line}"
    );
    // Without the key the tokens cannot be opened: one line saying what to do.
    let line = pai.run(&["resources", "add", "s3://gone/"]).error_line();
    assert!(line.contains("PAI_ENCRYPTION_KEY"), "{line}");
    // Nothing was stored.
    let list = run(&pai, &["resources", "list", "--json"]).success().json();
    assert_eq!(list, serde_json::json!([]));
}

/// An endpoint that refuses the signature, as S3 does for a wrong secret key (moto does
/// not check signatures unless IAM is set up; a fake answering 403 is the honest test of
/// what pai says).
#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_are_one_clear_error_without_the_secret() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(403).set_body_string(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
                 <Message>The request signature we calculated does not match the signature you provided.</Message></Error>",
            ),
        )
        .mount(&server)
        .await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[resources.s3.locked]\nendpoint = \"{}\"\n\
         access_key_id_env = \"LAB_ID\"\nsecret_access_key_env = \"LAB_SECRET\"\n",
        server.uri()
    ));
    let run = run(&pai, &["resources", "add", "s3://locked/docs/"]);
    let all = run.all_output();
    let line = run.error_line();
    assert!(
        line.contains("s3://locked") && line.contains("credentials were refused"),
        "{line}"
    );
    assert!(!all.contains("testing-secret"), "{all}");
}

#[test]
fn plaintext_credentials_in_config_are_refused() {
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[resources.s3.lab]\nsecret_access_key = \"plain\"\n"
    ));
    let line = pai.run(&["resources", "add", "s3://lab/"]).error_line();
    assert!(line.contains("secret_access_key"), "{line}");
}
