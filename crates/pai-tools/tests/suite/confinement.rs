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

/// The refusal every file tool gives for a protected path.
#[track_caller]
fn assert_protected(tool: &str, path: &str, result: Result<pai_tools::ToolOutput, ToolError>) {
    match result {
        Err(ToolError::Failed(m)) if m.starts_with(&format!("'{path}' is protected: ")) => {
            assert!(!m.contains('\n'), "one line: {m}");
        }
        other => panic!("{tool}('{path}') should be refused as protected, got {other:?}"),
    }
}

/// Every file tool, asked for `path` in the way each takes it, is refused as protected;
/// writes leave nothing behind.
async fn assert_every_tool_refuses(path: &str, cx: &ToolContext) {
    assert_protected(
        "read_file",
        path,
        call("read_file", json!({ "path": path }), cx).await,
    );
    assert_protected(
        "list_dir",
        path,
        call("list_dir", json!({ "path": path }), cx).await,
    );
    assert_protected(
        "search_files",
        path,
        call("search_files", json!({ "pattern": ".", "path": path }), cx).await,
    );
    assert_protected(
        "sqlite_query",
        path,
        call(
            "sqlite_query",
            json!({ "database": path, "sql": "SELECT 1" }),
            cx,
        )
        .await,
    );
    for append in [false, true] {
        let args = json!({ "path": path, "content": "pwned", "append": append });
        assert_protected("write_file", path, call("write_file", args, cx).await);
    }
}

#[tokio::test]
async fn vcs_internals_are_out_of_reach_for_every_file_tool() {
    let sandbox = Sandbox::new();
    sandbox.file(".git/config", "[core]\nsecret = vcs\n");
    sandbox.file(".git/hooks/pre-commit", "#!/bin/sh\n");
    sandbox.file("sub/.hg/hgrc", "secret = vcs\n");
    sandbox.file("visible.txt", "not a secret\n");
    std::fs::create_dir(sandbox.root.join(".jj")).unwrap();
    sandbox.link("gitlink", &sandbox.root.join(".git"));
    let cx = sandbox.cx();
    let before = std::fs::read(sandbox.root.join(".git/config")).unwrap();
    for path in [
        ".git",
        ".git/config",
        ".git/hooks/x",
        ".git/hooks/pre-commit",
        ".GIT/config",
        "sub/../.git/config",
        "gitlink/config",
        "sub/.hg/hgrc",
        ".jj/new",
        ".svn/entries",
    ] {
        assert_every_tool_refuses(path, &cx).await;
    }
    let absolute = sandbox.root.join(".git/config").display().to_string();
    assert_every_tool_refuses(&absolute, &cx).await;
    assert_eq!(
        std::fs::read(sandbox.root.join(".git/config")).unwrap(),
        before
    );
    assert!(!sandbox.root.join(".git/hooks/x").exists());
    assert!(!sandbox.root.join(".jj/new").exists());
    // Walking the root skips them even when hidden files are asked for by a glob.
    for glob in [None, Some("**/*"), Some("**/config")] {
        let mut args = json!({ "pattern": "secret" });
        if let Some(glob) = glob {
            args["glob"] = json!(glob);
        }
        let out = text("search_files", args, &cx).await;
        assert!(!out.contains("vcs"), "{out}");
    }
    let listing = text("list_dir", json!({ "depth": 5 }), &cx).await;
    assert!(
        !listing.contains(".git/") && !listing.contains(".hg"),
        "{listing}"
    );
}

/// A root that holds PAI's own state, as `--root ~` would.
struct OwnState {
    sandbox: Sandbox,
}

impl OwnState {
    fn new() -> Self {
        let sandbox = Sandbox::new();
        sandbox.file(
            "pai_home/sessions/s/history.jsonl",
            "{\"secret\":\"history\"}\n",
        );
        sandbox.file("pai_home/models/index.json", "secret model index\n");
        sandbox.file("cfg/config.toml", "secret = \"config\"\n");
        sandbox.file("data/audit.db", "secret audit\n");
        sandbox.file("data/audit.db-wal", "secret wal\n");
        sandbox.file("data/notes.txt", "my notes\n");
        sandbox.file("sub/a.txt", "a\n");
        sandbox.link("home_link", &sandbox.root.join("pai_home"));
        sandbox.link("relative_link", std::path::Path::new("cfg"));
        Self { sandbox }
    }

    fn cx(&self) -> ToolContext {
        let root = &self.sandbox.root;
        ToolContext {
            // Given as PAI computes them, not canonical: checked after resolving.
            protected: vec![
                root.join("sub/../pai_home"),
                root.join("cfg"),
                root.join("data/audit.db"),
            ],
            ..self.sandbox.cx()
        }
    }

    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        for dir in ["pai_home/sessions/s", "pai_home/models", "cfg", "data"] {
            for entry in std::fs::read_dir(self.sandbox.root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                files.insert(path.display().to_string(), std::fs::read(&path).unwrap());
            }
        }
        files
    }
}

#[tokio::test]
async fn pai_state_is_refused_even_inside_the_root_and_by_every_way_there() {
    let own = OwnState::new();
    let cx = own.cx();
    let before = own.snapshot();
    let root = &own.sandbox.root;
    for path in [
        "pai_home".to_string(),
        "pai_home/sessions/s/history.jsonl".into(),
        "pai_home/sessions/s/new.jsonl".into(),
        "sub/../pai_home/sessions/s/history.jsonl".into(),
        "./pai_home/models/index.json".into(),
        "home_link/sessions/s/history.jsonl".into(),
        "cfg/config.toml".into(),
        "relative_link/config.toml".into(),
        "cfg/policy.toml".into(),
        "data/audit.db".into(),
        "data/audit.db-wal".into(),
        "data/audit.db-journal".into(),
        root.join("cfg/config.toml").display().to_string(),
    ] {
        assert_every_tool_refuses(&path, &cx).await;
    }
    assert_eq!(own.snapshot(), before);
    assert!(!root.join("cfg/policy.toml").exists());

    // What is beside them stays usable, and walks leave them out.
    assert_eq!(
        text("read_file", json!({ "path": "data/notes.txt" }), &cx).await,
        "my notes\n"
    );
    let listing = text("list_dir", json!({ "depth": 4 }), &cx).await;
    assert_eq!(
        listing,
        "dir   data/\n\
         file  data/notes.txt  9 bytes\n\
         link  home_link -> "
            .to_string()
            + &root.join("pai_home").display().to_string()
            + "\n\
         link  relative_link -> cfg\n\
         dir   sub/\n\
         file  sub/a.txt  2 bytes\n"
    );
    let found = text("search_files", json!({ "pattern": "secret" }), &cx).await;
    assert!(found.starts_with("no matches for /secret/"), "{found}");
}

/// How a race went: calls that succeeded and swaps made meanwhile.
struct Raced {
    answered: usize,
    swaps: usize,
}

/// A directory inside the root (`sw/`, holding `secret.txt` and `db.sqlite`) that a thread
/// keeps swapping for a symlink to a directory outside, or to a protected one inside,
/// while `tries` calls from `pick` go through it. Fails if any answer holds anything from
/// beyond the link, or anything was written there.
async fn race(tries: usize, pick: fn(usize) -> (&'static str, serde_json::Value)) -> Raced {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let sandbox = Sandbox::new();
    let root = sandbox.root.clone();
    let outside = sandbox.outside.clone();
    std::fs::write(outside.join("only_outside.txt"), "secret outside\n").unwrap();
    // A name no call asks for: seen in an answer only if a listing got outside.
    std::fs::write(outside.join("zz_outside_name.txt"), "").unwrap();
    let conn = rusqlite::Connection::open(outside.join("db.sqlite")).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES ('secret row');")
        .unwrap();
    drop(conn);
    sandbox.file("sw/secret.txt", "inside\n");
    let conn = rusqlite::Connection::open(root.join("sw/db.sqlite")).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES ('inside row');")
        .unwrap();
    drop(conn);
    sandbox.file("state/secret.txt", "secret state\n");
    sandbox.file("state/zz_state_name.txt", "secret state\n");
    let cx = ToolContext {
        protected: vec![root.join("state")],
        ..sandbox.cx()
    };
    let files = |dir: &std::path::Path| -> BTreeMap<_, _> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (p.clone(), std::fs::read(p).unwrap())
            })
            .collect()
    };
    let outside_before = files(&outside);
    let state_before = files(&root.join("state"));

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let (sw, parked) = (root.join("sw"), root.join("parked"));
        let targets = [outside.clone(), root.join("state")];
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::rename(&sw, &parked);
                if std::os::unix::fs::symlink(&targets[n % 2], &sw).is_ok() {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::yield_now();
                let _ = std::fs::remove_file(&sw);
                // A write may have made `sw` anew while it was missing: drop that one.
                if std::fs::symlink_metadata(&sw).is_ok_and(|m| m.is_dir()) {
                    let _ = std::fs::remove_dir_all(&sw);
                }
                let _ = std::fs::rename(&parked, &sw);
                std::thread::yield_now();
                n += 1;
            }
        })
    };

    let registry = super::support::registry();
    let mut answered = 0;
    for i in 0..tries {
        let (tool, args) = pick(i);
        let out = match registry.call(tool, args.clone(), &cx).await {
            Ok(out) => {
                answered += 1;
                out.content
            }
            Err(e) => e.to_string(),
        };
        for leak in [
            "secret outside",
            "secret row",
            "zz_outside_name",
            "secret state",
            "zz_state_name",
        ] {
            if out.contains(leak) {
                stop.store(true, Ordering::Relaxed);
                panic!("{tool}({args}) got past the root on try {i}: {out}");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(
        files(&outside),
        outside_before,
        "nothing was written outside"
    );
    assert_eq!(
        files(&root.join("state")),
        state_before,
        "nothing was written into the protected dir"
    );
    Raced {
        answered,
        swaps: swaps.load(Ordering::Relaxed),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_symlink_never_leads_out() {
    const TRIES: usize = 3000;
    let raced = race(TRIES, |i| match i % 6 {
        0 => ("read_file", json!({ "path": "sw/secret.txt" })),
        1 => ("read_file", json!({ "path": "sw/only_outside.txt" })),
        2 => (
            "write_file",
            json!({ "path": "sw/new.txt", "content": "pwned", "append": i % 4 == 0 }),
        ),
        3 => ("list_dir", json!({ "path": "sw" })),
        4 => ("search_files", json!({ "pattern": "secret", "path": "." })),
        _ => (
            "sqlite_query",
            json!({ "database": "sw/db.sqlite", "sql": "SELECT x FROM t" }),
        ),
    })
    .await;
    // Not a vacuous pass: the swaps happened and the tools still worked between them.
    assert!(raced.swaps > 100, "only {} swaps", raced.swaps);
    assert!(
        raced.answered > 10,
        "only {} calls succeeded",
        raced.answered
    );
}

/// SQLite resolves symlinks in the name it is given and opens the result by path, so
/// handing it the checked file's descriptor is not enough on its own: what it opened is
/// compared with the checked file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_query_reads_the_checked_database_while_its_directory_is_swapped() {
    let raced = race(3000, |_| {
        (
            "sqlite_query",
            json!({ "database": "sw/db.sqlite", "sql": "SELECT x FROM t" }),
        )
    })
    .await;
    assert!(raced.swaps > 100, "only {} swaps", raced.swaps);
    assert!(
        raced.answered > 10,
        "only {} calls succeeded",
        raced.answered
    );
}
