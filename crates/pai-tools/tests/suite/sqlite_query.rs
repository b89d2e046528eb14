use std::time::{Duration, Instant};

use pai_tools::{SqliteQuery, Tool, ToolContext, ToolError, ToolOutput};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::support::{Sandbox, call, error, text};

fn with_db() -> Sandbox {
    let sandbox = Sandbox::new();
    let conn = rusqlite::Connection::open(sandbox.root.join("app.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, score REAL, photo BLOB);
         INSERT INTO people VALUES (1, 'Ada', 9.5, x'0102'), (2, 'Linus', NULL, NULL);
         CREATE TABLE numbers(n INTEGER);
         WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 600)
         INSERT INTO numbers SELECT n FROM c;",
    )
    .unwrap();
    let other = rusqlite::Connection::open(sandbox.outside.join("other.db")).unwrap();
    other
        .execute_batch("CREATE TABLE secrets(s); INSERT INTO secrets VALUES ('outside');")
        .unwrap();
    sandbox
}

#[tokio::test]
async fn selects_rows_as_json_lines_with_params() {
    let sandbox = with_db();
    let out = call(
        "sqlite_query",
        json!({ "database": "app.db", "sql": "SELECT id, name, score, photo FROM people ORDER BY id" }),
        &sandbox.cx(),
    )
    .await;
    assert_eq!(
        out,
        Ok(ToolOutput::text(
            "columns: [\"id\",\"name\",\"score\",\"photo\"]\n\
             [1,\"Ada\",9.5,\"<blob, 2 bytes>\"]\n\
             [2,\"Linus\",null,null]\n\
             (2 rows)"
        ))
    );
    let out = text(
        "sqlite_query",
        json!({ "database": "app.db", "sql": "SELECT name FROM people WHERE id = ?1 OR name = ?2;", "params": [2, "Ada"] }),
        &sandbox.cx(),
    )
    .await;
    assert_eq!(out, "columns: [\"name\"]\n[\"Ada\"]\n[\"Linus\"]\n(2 rows)");
    let out = text(
        "sqlite_query",
        json!({ "database": "app.db", "sql": "PRAGMA table_info(numbers)" }),
        &sandbox.cx(),
    )
    .await;
    assert!(out.contains("[0,\"n\",\"INTEGER\",0,null,0]"), "{out}");
}

#[tokio::test]
async fn rows_are_capped_with_a_marker() {
    let sandbox = with_db();
    let cx = ToolContext {
        max_output_bytes: 1024 * 1024,
        ..sandbox.cx()
    };
    let out = call(
        "sqlite_query",
        json!({ "database": "app.db", "sql": "SELECT n FROM numbers ORDER BY n" }),
        &cx,
    )
    .await
    .unwrap();
    assert!(out.truncated);
    let lines: Vec<&str> = out.content.lines().collect();
    assert_eq!(lines.len(), 502);
    assert_eq!(lines[500], "[500]");
    assert_eq!(
        lines[501],
        "[… stopped after 500 rows; add LIMIT/OFFSET or a narrower WHERE to see others]"
    );
}

/// DDL first edits the schema table, and the refusal stops it right there.
const SCHEMA: &str = "a schema change (CREATE, DROP or ALTER)";

#[tokio::test]
async fn writes_attach_and_other_changes_are_refused_and_the_file_is_unchanged() {
    let sandbox = with_db();
    let db = sandbox.root.join("app.db");
    let before = std::fs::read(&db).unwrap();
    let cx = sandbox.cx();
    let other = sandbox.outside.join("other.db").display().to_string();
    let copy = sandbox.root.join("copy.db");
    for (sql, what) in [
        ("INSERT INTO people(name) VALUES ('Eve')", "INSERT"),
        ("UPDATE people SET name = 'Eve'", "UPDATE"),
        ("DELETE FROM people", "DELETE"),
        ("DROP TABLE people", SCHEMA),
        (
            // Nothing for the authorizer to see; SQLite still knows it is not a read.
            "DROP VIEW IF EXISTS v",
            "a statement that changes data",
        ),
        ("CREATE TABLE t(x)", SCHEMA),
        ("CREATE TEMP TABLE t(x)", SCHEMA),
        ("ALTER TABLE people ADD COLUMN age", "ALTER TABLE"),
        (&format!("ATTACH DATABASE '{other}' AS o"), "ATTACH"),
        ("PRAGMA user_version = 7", "PRAGMA user_version"),
        ("PRAGMA query_only = OFF", "PRAGMA query_only"),
        ("BEGIN", "a transaction statement"),
        (
            &format!("VACUUM INTO '{}'", copy.display()),
            "a statement that changes data",
        ),
        (
            "SELECT load_extension('x')",
            "the function load_extension()",
        ),
    ] {
        let err = error(
            "sqlite_query",
            json!({ "database": "app.db", "sql": sql }),
            &cx,
        )
        .await;
        assert_eq!(
            err,
            ToolError::Failed(format!(
                "sqlite_query is read-only and {what} is not allowed; send a single SELECT (or a \
                 schema PRAGMA such as table_info)"
            )),
            "{sql}"
        );
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert!(!copy.exists());
    let mut names: Vec<_> = std::fs::read_dir(&sandbox.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["app.db"]);
}

#[tokio::test]
async fn only_one_statement_per_call() {
    let sandbox = with_db();
    let cx = sandbox.cx();
    for sql in [
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE people",
        "SELECT 1; INSERT INTO people(name) VALUES ('x')",
    ] {
        assert_eq!(
            error(
                "sqlite_query",
                json!({ "database": "app.db", "sql": sql }),
                &cx
            )
            .await,
            ToolError::InvalidArguments(
                "sql holds more than one statement; send one statement per call".into()
            ),
            "{sql}"
        );
    }
    assert_eq!(
        text(
            "sqlite_query",
            json!({ "database": "app.db", "sql": "SELECT 1; -- done" }),
            &cx
        )
        .await,
        "columns: [\"1\"]\n[1]\n(1 row)"
    );
}

#[tokio::test]
async fn bad_queries_params_and_files_are_explained() {
    let sandbox = with_db();
    sandbox.file(
        "notes.txt",
        "not a database at all, just some text that is long enough\n",
    );
    let cx = sandbox.cx();
    let err = error(
        "sqlite_query",
        json!({ "database": "app.db", "sql": "SELECT * FROM nope" }),
        &cx,
    )
    .await;
    assert!(err.to_string().contains("no such table: nope"), "{err}");
    assert_eq!(
        error(
            "sqlite_query",
            json!({ "database": "app.db", "sql": "SELECT ?1, ?2", "params": [1] }),
            &cx
        )
        .await,
        ToolError::InvalidArguments(
            "the statement has 2 placeholders but params holds 1 value".into()
        )
    );
    assert!(matches!(
        error(
            "sqlite_query",
            json!({ "database": "app.db", "sql": "SELECT ?1", "params": [[1]] }),
            &cx
        )
        .await,
        ToolError::InvalidArguments(_)
    ));
    let err = error(
        "sqlite_query",
        json!({ "database": "notes.txt", "sql": "SELECT 1 FROM sqlite_schema" }),
        &cx,
    )
    .await;
    assert!(err.to_string().contains("not a database"), "{err}");
    assert_eq!(
        error(
            "sqlite_query",
            json!({ "database": "missing.db", "sql": "SELECT 1" }),
            &cx
        )
        .await,
        ToolError::NotFound("missing.db".into())
    );
    // Opening read-only never creates the file.
    assert!(!sandbox.root.join("missing.db").exists());
}

const ENDLESS: &str =
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c";

#[tokio::test]
async fn a_runaway_query_is_stopped_with_advice_inside_the_time_cap() {
    let sandbox = with_db();
    let cx = ToolContext {
        timeout: Duration::from_secs(1),
        ..sandbox.cx()
    };
    let expected = ToolError::Failed(
        "the query ran longer than 900ms and was stopped; add a LIMIT or a narrower WHERE".into(),
    );
    let started = Instant::now();
    assert_eq!(
        call(
            "sqlite_query",
            json!({ "database": "app.db", "sql": ENDLESS }),
            &cx
        )
        .await,
        Err(expected.clone())
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // Called without the registry, the tool's own deadline still holds.
    let err = SqliteQuery::new()
        .call(json!({ "database": "app.db", "sql": ENDLESS }), &cx)
        .await
        .unwrap_err();
    assert_eq!(err, expected);
}

#[tokio::test]
async fn a_dropped_call_stops_its_query_and_releases_the_database() {
    let sandbox = with_db();
    let cx = ToolContext {
        timeout: Duration::from_secs(120),
        ..sandbox.cx()
    };
    let tool = SqliteQuery::new();
    // Reads a table all along, so it holds a lock on the file while it runs.
    let sql = "SELECT count(*) FROM numbers a, numbers b, numbers c, numbers d";
    let call = tool.call(json!({ "database": "app.db", "sql": sql }), &cx);
    // What the registry does at its time cap: stop waiting and drop the call.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err()
    );
    // A reader still running would hold its lock for two minutes; this needs it gone.
    let writer = rusqlite::Connection::open(sandbox.root.join("app.db")).unwrap();
    writer.busy_timeout(Duration::from_secs(5)).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE; COMMIT;").unwrap();
}
