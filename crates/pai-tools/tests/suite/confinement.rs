//! Every file tool stays inside the allowed roots: `..`, absolute paths, symlinks to files
//! or directories outside, `..` after a symlink, and a sibling whose name merely starts
//! with the root's all fail.

use std::collections::BTreeMap;

use pai_tools::{ToolContext, ToolError};
use serde_json::json;

use super::support::{Sandbox, call, text};

struct Escapes {
    sandbox: Sandbox,
}

impl Escapes {
    fn new() -> Self {
        let sandbox = Sandbox::new();
        sandbox.file("inside.txt", "inside\n");
        sandbox.file("sub/a.txt", "a\n");
        for dir in [&sandbox.outside, &sandbox.evil] {
            let conn = rusqlite::Connection::open(dir.join("db.sqlite")).unwrap();
            conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES ('secret row');")
                .unwrap();
        }
        sandbox.link("link_file", &sandbox.outside.join("secret.txt"));
        sandbox.link("link_dir", &sandbox.outside);
        sandbox.link("link_db", &sandbox.outside.join("db.sqlite"));
        sandbox.link("dangling", &sandbox.outside.join("nothing.txt"));
        Self { sandbox }
    }

    fn cx(&self) -> ToolContext {
        self.sandbox.cx()
    }

    fn outside(&self, name: &str) -> String {
        self.sandbox.outside.join(name).display().to_string()
    }

    fn evil(&self, name: &str) -> String {
        self.sandbox.evil.join(name).display().to_string()
    }

    /// Every file outside the root, with its content: must be the same after a test.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        for dir in [&self.sandbox.outside, &self.sandbox.evil] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                files.insert(path.display().to_string(), std::fs::read(&path).unwrap());
            }
        }
        files
    }
}

#[track_caller]
fn assert_outside(tool: &str, path: &str, result: Result<pai_tools::ToolOutput, ToolError>) {
    match result {
        Err(ToolError::OutsideRoots { path: p, roots }) => {
            assert_eq!(p, path);
            assert!(!roots.is_empty());
        }
        other => panic!("{tool}('{path}') should be refused as outside the roots, got {other:?}"),
    }
}

#[tokio::test]
async fn read_file_cannot_escape() {
    let e = Escapes::new();
    let cx = e.cx();
    for path in [
        "../outside/secret.txt".to_string(),
        e.outside("secret.txt"),
        "link_file".into(),
        "link_dir/secret.txt".into(),
        "link_dir/../outside/secret.txt".into(),
        "sub/../../outside/secret.txt".into(),
        e.evil("secret.txt"),
        "../root-evil/secret.txt".into(),
        // Not existing outside is still "outside", not "not found": no probing.
        "../outside/missing.txt".into(),
        "/".into(),
    ] {
        assert_outside(
            "read_file",
            &path,
            call("read_file", json!({ "path": path }), &cx).await,
        );
    }
}

#[tokio::test]
async fn list_dir_cannot_escape() {
    let e = Escapes::new();
    let cx = e.cx();
    for path in [
        "..".to_string(),
        "../outside".into(),
        e.outside(""),
        "link_dir".into(),
        "link_dir/../outside".into(),
        e.evil(""),
        "/".into(),
    ] {
        assert_outside(
            "list_dir",
            &path,
            call("list_dir", json!({ "path": path }), &cx).await,
        );
    }
}

#[tokio::test]
async fn search_files_cannot_escape_or_follow_links_out() {
    let e = Escapes::new();
    let cx = e.cx();
    for path in [
        "..".to_string(),
        "../outside".into(),
        e.outside(""),
        "link_dir".into(),
        "link_file".into(),
        "link_dir/../outside".into(),
        e.evil(""),
    ] {
        let args = json!({ "pattern": "secret", "path": path });
        assert_outside("search_files", &path, call("search_files", args, &cx).await);
    }
    // Searching the root itself does not walk through the links to what is outside.
    let out = text("search_files", json!({ "pattern": "secret" }), &cx).await;
    assert!(out.starts_with("no matches for /secret/"), "{out}");
}

#[tokio::test]
async fn write_file_cannot_escape_and_leaves_outside_untouched() {
    let e = Escapes::new();
    let cx = e.cx();
    let before = e.snapshot();
    for append in [false, true] {
        for path in [
            "../outside/new.txt".to_string(),
            e.outside("new.txt"),
            e.outside("secret.txt"),
            "link_file".into(),
            "link_dir/new.txt".into(),
            "link_dir/deeper/new.txt".into(),
            "link_dir/../outside/new.txt".into(),
            e.evil("new.txt"),
            "../root-evil/secret.txt".into(),
        ] {
            let args = json!({ "path": path, "content": "pwned", "append": append });
            assert_outside("write_file", &path, call("write_file", args, &cx).await);
        }
        // A dangling link would be written through; `..` under a missing directory cannot
        // be resolved safely. Both are refused, with their own message.
        for path in ["dangling", "new/../../outside/new.txt"] {
            let args = json!({ "path": path, "content": "pwned", "append": append });
            let result = call("write_file", args, &cx).await;
            assert!(
                result.is_err(),
                "write_file('{path}') should fail: {result:?}"
            );
        }
    }
    assert_eq!(e.snapshot(), before);
    assert!(!e.sandbox.outside.join("deeper").exists());
    assert!(!e.sandbox.root.join("new").exists());
}

#[tokio::test]
async fn sqlite_query_cannot_open_a_database_outside() {
    let e = Escapes::new();
    let cx = e.cx();
    for path in [
        "../outside/db.sqlite".to_string(),
        e.outside("db.sqlite"),
        "link_db".into(),
        "link_dir/db.sqlite".into(),
        "link_dir/../outside/db.sqlite".into(),
        e.evil("db.sqlite"),
    ] {
        let args = json!({ "database": path, "sql": "SELECT x FROM t" });
        assert_outside("sqlite_query", &path, call("sqlite_query", args, &cx).await);
    }
}

#[tokio::test]
async fn links_and_dotdot_that_stay_inside_are_fine() {
    let e = Escapes::new();
    let sandbox = &e.sandbox;
    sandbox.link("inner_link", &sandbox.root.join("sub"));
    let cx = e.cx();
    assert_eq!(
        text("read_file", json!({ "path": "inner_link/a.txt" }), &cx).await,
        "a\n"
    );
    assert_eq!(
        text("read_file", json!({ "path": "sub/../inside.txt" }), &cx).await,
        "inside\n"
    );
    let absolute = sandbox.root.join("inside.txt").display().to_string();
    assert_eq!(
        text("read_file", json!({ "path": absolute }), &cx).await,
        "inside\n"
    );
    assert_eq!(
        call("read_file", json!({ "path": "missing.txt" }), &cx).await,
        Err(ToolError::NotFound("missing.txt".into()))
    );
}

#[tokio::test]
async fn any_of_several_roots_may_be_used_and_relative_paths_start_at_the_first() {
    let e = Escapes::new();
    let cx = ToolContext {
        roots: vec![e.sandbox.root.clone(), e.sandbox.evil.clone()],
        ..ToolContext::default()
    };
    assert_eq!(
        text("read_file", json!({ "path": "inside.txt" }), &cx).await,
        "inside\n"
    );
    assert_eq!(
        text("read_file", json!({ "path": e.evil("secret.txt") }), &cx).await,
        "secret evil\n"
    );
    assert_outside(
        "read_file",
        &e.outside("secret.txt"),
        call("read_file", json!({ "path": e.outside("secret.txt") }), &cx).await,
    );
    // Roots given with `..` or through a link are canonicalised before comparing.
    let cx = ToolContext {
        roots: vec![e.sandbox.root.join("sub/..")],
        ..ToolContext::default()
    };
    assert_eq!(
        text("read_file", json!({ "path": "inside.txt" }), &cx).await,
        "inside\n"
    );
}
