//! `pai audit verify` through the real binary: every way of tampering with the log makes
//! it fail at the right row with the right reason, and the next `pai prompt` warns.

use std::path::PathBuf;

use pai_test_support::MockOpenAi;
use rusqlite::types::Value;
use sha2::{Digest, Sha256};

use super::{Pai, Run};

/// The tests' config with the turn's audit check always waited for: by default a command
/// gives it 500 ms, which a loaded CI machine can exceed (the check is then abandoned, and
/// what a test asserts about it would depend on the machine's load).
fn patient_config() -> String {
    format!("{}\n[audit]\ncheck_wait_ms = 20000\n", super::FAST_CONFIG)
}

/// A home with session `s` and three answered prompts on record.
async fn three_turns() -> (MockOpenAi, Pai) {
    let mock = MockOpenAi::start().await;
    mock.reply_json("an answer", 5, 2).await;
    let pai = Pai::new();
    pai.home.write_config(&patient_config());
    pai.init("s", &mock.base_url());
    for q in ["one", "two", "three"] {
        pai.run(&["s", "prompt", q]).success();
    }
    (mock, pai)
}

fn db(pai: &Pai) -> PathBuf {
    pai.home.home().join("audit.db")
}

fn raw(pai: &Pai) -> rusqlite::Connection {
    rusqlite::Connection::open(db(pai)).unwrap()
}

fn rows(pai: &Pai) -> i64 {
    raw(pai)
        .query_row("SELECT max(id) FROM events", [], |r| r.get(0))
        .unwrap()
}

fn verify(pai: &Pai) -> Run {
    pai.run(&["audit", "verify"])
}

/// `pai audit verify` fails, and its one error line contains `expected`.
#[track_caller]
fn verify_fails_with(pai: &Pai, expected: &str) {
    let run = verify(pai).code(1);
    let line = run.stderr.trim_end();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains(expected), "expected {expected:?} in {line}");
}

/// The next `pai prompt` still answers, and warns on stderr with a line containing
/// `expected` that tells the user what to run.
#[track_caller]
fn next_prompt_warns(pai: &Pai, expected: &str) {
    let run = pai.run(&["s", "prompt", "and now?"]).success();
    let warning = run
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: the audit log at "))
        .unwrap_or_else(|| panic!("no audit warning in {:?}", run.stderr));
    assert!(
        warning.contains(expected),
        "expected {expected:?} in {warning}"
    );
    assert!(warning.contains("run 'pai audit verify'"), "{warning}");
}

/// Empties the WAL into the database file, so the file alone holds every row.
fn checkpoint(pai: &Pai) {
    raw(pai)
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untouched_log_verifies_with_a_one_line_summary() {
    let (_mock, pai) = three_turns().await;
    let n = rows(&pai);
    let run = verify(&pai).success();
    assert_eq!(
        run.stdout,
        format!("audit log intact: {n} rows, {n} keyed (MAC checked), sealed through row {n}\n")
    );
    assert_eq!(run.stderr, "");
    // The key file lives with the config, away from the log it seals.
    let key = pai.home.config().join("audit.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let json = pai.run(&["audit", "verify", "--json"]).success().json();
    assert_eq!(json["rows"], n);
    assert_eq!(json["first_broken"], serde_json::Value::Null);
}

/// The checkpoint's per-turn check fields: how far the log was checked, and the files'
/// identity as pai left them (`-`: unknown, the next check reads every row).
fn check_marks(pai: &Pai) -> (i64, String) {
    let line = std::fs::read_to_string(pai.home.home().join("audit.head")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[0], "pai-audit-head/2", "{line}");
    (fields[7].parse().unwrap(), fields[8].to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_turn_checks_on_from_where_the_last_check_ended() {
    // A turn's check runs alongside the turn: it covers every row written before the turn
    // began, and the turn's own rows only when they were written before it got there.
    let (_mock, pai) = three_turns().await;
    // The first turn's check read every row and recorded the files; each later one reads
    // only the rows since, and moves the mark on.
    let (checked, files) = check_marks(&pai);
    assert!(checked > 0, "{checked}");
    assert_ne!(files, "-");
    let before = rows(&pai);
    pai.run(&["s", "prompt", "four"]).success();
    let (later, files) = check_marks(&pai);
    assert!(
        later >= before,
        "checked through {later}, {before} rows before the turn"
    );
    assert_ne!(files, "-");
    // A change by anything else marks the files unknown at the next write, and that
    // turn's check reads every row, finds them intact, and records the files again.
    checkpoint(&pai);
    let before = rows(&pai);
    let run = pai.run(&["s", "prompt", "five"]).success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let (after, files) = check_marks(&pai);
    assert!(
        after >= before,
        "checked through {after}, {before} rows before the turn"
    );
    assert_ne!(files, "-");
    verify(&pai).success();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_row_fails_at_that_row_and_the_next_prompt_warns() {
    let (_mock, pai) = three_turns().await;
    raw(&pai)
        .execute(
            "UPDATE events SET content = 'nothing happened' WHERE id = 2",
            [],
        )
        .unwrap();
    verify_fails_with(&pai, "row 2: its contents changed after it was written");
    next_prompt_warns(&pai, "row 2: its contents changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_middle_row_is_named() {
    let (_mock, pai) = three_turns().await;
    raw(&pai)
        .execute("DELETE FROM events WHERE id = 3", [])
        .unwrap();
    verify_fails_with(&pai, "row 3: it is missing: it was deleted from the log");
    next_prompt_warns(&pai, "row 3: it is missing");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_last_rows_are_caught_by_the_checkpoint() {
    let (_mock, pai) = three_turns().await;
    let n = rows(&pai);
    raw(&pai)
        .execute("DELETE FROM events WHERE id > ?1", [n - 2])
        .unwrap();
    let expected = format!("ends at row {} but its checkpoint sealed row {n}", n - 2);
    verify_fails_with(&pai, &expected);
    next_prompt_warns(&pai, &expected);
    // Still reported after new rows took their places: the checkpoint never moves on.
    verify_fails_with(
        &pai,
        &format!("the log no longer holds row {n} as its checkpoint sealed it"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_file_is_caught() {
    let (_mock, pai) = three_turns().await;
    let n = rows(&pai);
    checkpoint(&pai);
    std::fs::OpenOptions::new()
        .write(true)
        .open(db(&pai))
        .unwrap()
        .set_len(0)
        .unwrap();
    let expected = format!("ends at row 0 but its checkpoint sealed row {n}");
    verify_fails_with(&pai, &expected);
    next_prompt_warns(&pai, &expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_cut_mid_page_gives_one_error_naming_it() {
    let (_mock, pai) = three_turns().await;
    checkpoint(&pai);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(db(&pai))
        .unwrap();
    file.set_len(4096 + 100).unwrap();
    let run = verify(&pai).failure();
    let line = run.stderr.trim_end();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains(&db(&pai).display().to_string()), "{line}");
    let prompt = pai.run(&["s", "prompt", "q"]).failure();
    assert!(
        prompt.stderr.contains(&db(&pai).display().to_string()),
        "{}",
        prompt.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_replaced_by_a_fresh_one_is_caught() {
    let (_mock, pai) = three_turns().await;
    let n = rows(&pai);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db(&pai).into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    verify_fails_with(&pai, "there is no audit log at");
    verify_fails_with(&pai, "but its checkpoint (audit.head) shows one was kept");
    next_prompt_warns(
        &pai,
        &format!("ends at row 0 but its checkpoint sealed row {n}"),
    );
    verify_fails_with(&pai, &format!("checkpoint sealed row {n}"));
}

/// The documented encoding of one cell (docs/audit.md), as a forger would write it.
fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"n;"),
        Value::Integer(i) => out.extend_from_slice(format!("i{i};").as_bytes()),
        Value::Real(r) => out.extend_from_slice(format!("r{:016x};", r.to_bits()).as_bytes()),
        Value::Text(t) => {
            out.extend_from_slice(format!("t{}:", t.len()).as_bytes());
            out.extend_from_slice(t.as_bytes());
            out.push(b';');
        }
        Value::Blob(b) => {
            out.extend_from_slice(format!("b{}:", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.push(b';');
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_re_chained_without_the_key_fails_at_the_edited_row() {
    let (_mock, pai) = three_turns().await;
    let conn = raw(&pai);
    conn.execute(
        "UPDATE events SET completion_tokens = 0 WHERE kind = 'response'",
        [],
    )
    .unwrap();
    let first_response: i64 = conn
        .query_row(
            "SELECT min(id) FROM events WHERE kind = 'response'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Every hash and link recomputed, exactly as the documented format says.
    let all: Vec<(i64, Vec<Value>, String)> = conn
        .prepare(
            "SELECT id, ts, user, session, mode, kind, provider, endpoint, model, locality, \
             prompt_tokens, completion_tokens, tokens_estimated, duration_ms, content \
             FROM events ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            let cells = (1..14)
                .map(|i| r.get::<_, Value>(i))
                .collect::<Result<_, _>>()?;
            Ok((r.get(0)?, cells, r.get(14)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = "0".repeat(64);
    for (id, mut cells, content) in all {
        let digest = hex::encode(Sha256::digest(content.as_bytes()));
        cells.push(Value::Text(digest.clone()));
        let mut bytes = prev.clone().into_bytes();
        bytes.extend_from_slice(b"pai-audit/2\n");
        for c in &cells {
            encode(c, &mut bytes);
        }
        let hash = hex::encode(Sha256::digest(&bytes));
        conn.execute(
            "UPDATE events SET content_sha256 = ?1, prev_hash = ?2, hash = ?3 WHERE id = ?4",
            rusqlite::params![digest, prev, hash, id],
        )
        .unwrap();
        prev = hash;
    }
    drop(conn);
    verify_fails_with(
        &pai,
        &format!(
            "row {first_response}: its MAC does not match: it was written or re-chained by something without the audit key"
        ),
    );
    next_prompt_warns(&pai, "as its checkpoint sealed it");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_warns_when_the_log_it_reads_is_broken() {
    let (_mock, pai) = three_turns().await;
    let clean = pai.run(&["usage"]).success();
    assert_eq!(clean.stderr, "");
    raw(&pai)
        .execute(
            "UPDATE events SET prompt_tokens = 1 WHERE kind = 'response'",
            [],
        )
        .unwrap();
    let run = pai.run(&["usage"]).success();
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].starts_with("warning: the audit log at ")
            && lines[0].contains("its numbers may be forged"),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_sealed_with_the_derived_key_refuses_to_record_without_it() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("an answer", 5, 2).await;
    let pai = Pai::new();
    let vault = pai.run(&["keygen"]).success().stdout.trim().to_string();
    let with_key = |args: &[&str]| {
        Run::from_cmd(pai.cmd().args(args).env("PAI_ENCRYPTION_KEY", &vault)).success()
    };
    with_key(&[
        "init",
        "s",
        "openai",
        "--model",
        super::MODEL,
        "--base-url",
        &mock.base_url(),
    ]);
    with_key(&["s", "prompt", "q"]);
    // The key is derived, not stored: no key file was made.
    assert!(!pai.home.config().join("audit.key").exists());
    let line = pai.run(&["s", "prompt", "q"]).failure();
    assert!(
        line.stderr.contains("was sealed with another key")
            && line.stderr.contains("derived from PAI_ENCRYPTION_KEY"),
        "{}",
        line.stderr
    );
    with_key(&["audit", "verify"]);
}

/// Snapshot settings for audit listings: this home's filters, plus hashes, MACs and the
/// OS user, which differ from run to run.
fn audit_settings(pai: &Pai) -> insta::Settings {
    let mut s = pai.settings();
    s.add_filter(r"\b[0-9a-f]{64}\b", "[HEX64]");
    s.add_filter(r#""user": "[^"]*""#, r#""user": "[USER]""#);
    // Request sizes change whenever the tools offered or the system prompt do.
    s.add_filter(r#""bytes":\d+"#, r#""bytes":[N]"#);
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_newest_first_as_a_table_json_and_jsonl_with_filters() {
    let (_mock, pai) = three_turns().await;
    let table = pai.run(&["audit", "list", "--limit", "4"]).success();
    audit_settings(&pai).bind(|| insta::assert_snapshot!("audit_list_table", table.stdout));
    let json = pai
        .run(&["audit", "list", "--kind", "prompt", "--json"])
        .success();
    audit_settings(&pai).bind(|| insta::assert_snapshot!("audit_list_json", json.stdout));
    let prompts: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let contents: Vec<&str> = prompts
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"].as_str().unwrap().lines().next().unwrap())
        .collect();
    assert_eq!(contents, ["three", "two", "one"]);

    let jsonl = pai
        .run(&[
            "audit",
            "list",
            "--kind",
            "response,prompt",
            "--session",
            "s",
            "--since",
            "1h",
            "--locality",
            "local",
            "--mode",
            "prompt",
            "--provider",
            "openai",
            "--jsonl",
        ])
        .success();
    assert_eq!(jsonl.stdout.lines().count(), 6, "{}", jsonl.stdout);
    let none = pai
        .run(&[
            "audit",
            "list",
            "--session",
            "other",
            "--until",
            "2020-01-01",
        ])
        .success();
    assert_eq!(none.stdout, "no events match\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_filter_values_name_what_is_valid() {
    let (_mock, pai) = three_turns().await;
    let kind = pai
        .run(&["audit", "list", "--kind", "prompts"])
        .error_line();
    assert_eq!(
        kind,
        "error: unknown kind 'prompts'; valid kinds: prompt, response, summary, error, cancelled, attempt, tool_call, tool_result, egress, policy"
    );
    let locality = pai
        .run(&["audit", "list", "--locality", "moon"])
        .error_line();
    assert_eq!(
        locality,
        "error: unknown locality 'moon'; valid: local, remote"
    );
    let mode = pai
        .run(&["audit", "search", "x", "--mode", "batch"])
        .error_line();
    assert_eq!(
        mode,
        "error: unknown mode 'batch'; valid modes: chat, prompt, agent"
    );
    let date = pai
        .run(&["audit", "list", "--since", "last tuesday"])
        .error_line();
    assert_eq!(
        date,
        "error: --since 'last tuesday' is not a time PAI understands; give a date (2026-11-30), an RFC 3339 time (2026-11-30T14:00:00Z), or a time ago (30m, 2h, 7d, 2w)"
    );
    let id = pai.run(&["audit", "show", "abc"]).error_line();
    assert!(id.starts_with("error: 'abc' is not an event id"), "{id}");
    let missing = pai.run(&["audit", "show", "999"]).error_line();
    assert!(
        missing.starts_with("error: there is no event 999"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_or_corrupt_database_is_one_error_naming_the_file() {
    let pai = Pai::new();
    std::fs::create_dir_all(pai.home.home()).unwrap();
    rusqlite::Connection::open(db(&pai))
        .unwrap()
        .execute_batch("CREATE TABLE recipes (name TEXT)")
        .unwrap();
    let foreign = pai.run(&["audit", "list"]).error_line();
    assert!(
        foreign.contains(&db(&pai).display().to_string())
            && foreign.contains("a SQLite database of another program"),
        "{foreign}"
    );
    std::fs::write(db(&pai), b"garbage, not sqlite at all".repeat(200)).unwrap();
    let corrupt = pai.run(&["audit", "list"]).error_line();
    assert!(
        corrupt.contains(&db(&pai).display().to_string())
            && corrupt.contains("not a readable SQLite database"),
        "{corrupt}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_locked_by_another_program_is_one_error_after_a_bounded_wait() {
    let (_mock, pai) = three_turns().await;
    let holder = raw(&pai);
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // Reading goes on beside the lock (WAL); recording waits, then says what to do.
    pai.run(&["audit", "list"]).success();
    let line = pai.run(&["s", "prompt", "blocked?"]).error_line();
    assert!(
        line.contains(&db(&pai).display().to_string()) && line.contains("stayed locked"),
        "{line}"
    );
    assert!(line.contains("another process"), "{line}");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    pai.run(&["s", "prompt", "free again"]).success();
    verify(&pai).success();
}

#[tokio::test(flavor = "multi_thread")]
async fn show_prints_one_event_in_full_with_the_requests_that_carried_it() {
    let (_mock, pai) = three_turns().await;
    let first_prompt: i64 = raw(&pai)
        .query_row(
            "SELECT min(id) FROM events WHERE kind = 'prompt'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let show = pai
        .run(&["audit", "show", &first_prompt.to_string()])
        .success();
    assert!(show.stdout.contains("\nsent (event "), "{}", show.stdout);
    assert!(show.stdout.contains("\"sha256\":"), "{}", show.stdout);
    audit_settings(&pai).bind(|| {
        insta::assert_snapshot!(
            "audit_show",
            show.stdout
                .lines()
                .filter(|l| !l.starts_with("user:"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let json = pai
        .run(&["audit", "show", &first_prompt.to_string(), "--json"])
        .success()
        .json();
    assert_eq!(json["kind"], "prompt");
    assert_eq!(json["egress"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_words_in_content_with_the_same_filters() {
    let (_mock, pai) = three_turns().await;
    let hits = pai
        .run(&["audit", "search", "two", "--json"])
        .success()
        .json();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0]["content"].as_str().unwrap().starts_with("two\n"));
    let answers = pai
        .run(&["audit", "search", "answer", "--kind", "response", "--jsonl"])
        .success();
    assert_eq!(answers.stdout.lines().count(), 3);
    let prefix = pai
        .run(&["audit", "search", "thr*", "--json"])
        .success()
        .json();
    assert_eq!(prefix.as_array().unwrap().len(), 1);
    let none = pai
        .run(&["audit", "search", "two", "--kind", "response"])
        .success();
    assert_eq!(none.stdout, "no events match\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_egress_ledger_sums_requests_bytes_tokens_and_classes_per_endpoint() {
    let (mock, pai) = three_turns().await;
    let ledger = pai.run(&["audit", "egress", "--json"]).success().json();
    let rows = ledger.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{ledger}");
    let sent: u64 = mock
        .requests()
        .await
        .iter()
        .map(|r| r.body.len() as u64)
        .sum();
    assert_eq!(rows[0]["requests"], 3);
    assert_eq!(rows[0]["bytes_out"], sent);
    assert_eq!(rows[0]["tokens"], 3 * 7);
    assert_eq!(rows[0]["locality"], "local");
    assert_eq!(rows[0]["endpoint"], mock.base_url());
    assert!(
        !rows[0]["classes"].as_array().unwrap().is_empty(),
        "{ledger}"
    );
    let table = pai.run(&["audit", "egress", "--since", "1d"]).success();
    // The size of what was sent is checked above; here, the layout.
    let table = table.stdout.replace(
        &format!(" {sent} "),
        &format!(" {:>w$} ", "[N]", w = sent.to_string().len()),
    );
    audit_settings(&pai).bind(|| insta::assert_snapshot!("audit_egress_table", table));
}

/// Whether `needle` (any case) is anywhere in the log's files on disk.
fn on_disk(pai: &Pai, needle: &str) -> bool {
    let needle = needle.to_lowercase().into_bytes();
    ["", "-wal"].iter().any(|suffix| {
        let mut p = db(pai).into_os_string();
        p.push(suffix);
        std::fs::read(p).is_ok_and(|bytes| {
            bytes
                .to_ascii_lowercase()
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
        })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_removes_the_content_from_the_file_and_verify_still_passes() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("an answer", 5, 2).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    pai.init("t", &mock.base_url());
    pai.run(&["s", "prompt", "zanzibarquokka lives here"])
        .success();
    pai.run(&["t", "prompt", "keep this one"]).success();
    assert!(on_disk(&pai, "zanzibarquokka"));

    let purge = pai.run(&["audit", "purge", "--session", "s"]).success();
    assert!(
        purge.stdout.starts_with("purged the content of ")
            && purge.stdout.contains("'pai audit verify' still passes"),
        "{}",
        purge.stdout
    );
    assert!(
        !on_disk(&pai, "zanzibarquokka"),
        "the purged words are still in the file"
    );
    assert!(on_disk(&pai, "keep this one"));
    let verify = verify(&pai).success();
    assert!(
        verify.stdout.contains("; content purged in rows "),
        "{}",
        verify.stdout
    );
    let search = pai.run(&["audit", "search", "zanzibarquokka"]).success();
    assert_eq!(search.stdout, "no events match\n");
    let nothing = pai.run(&["audit", "purge", "--session", "s"]).success();
    assert_eq!(nothing.stdout, "no audit content to purge\n");
    let neither = pai.run(&["audit", "purge"]).failure();
    assert!(neither.stderr.contains("--before"), "{}", neither.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_before_a_date_and_reset_with_purge_audit() {
    let (_mock, pai) = three_turns().await;
    pai.run(&["s", "prompt", "secretword"]).success();
    let past = pai
        .run(&["audit", "purge", "--before", "2020-01-01"])
        .success();
    assert_eq!(past.stdout, "no audit content to purge\n");
    let reset = pai.run(&["s", "reset", "--purge-audit"]).success();
    assert!(
        reset.stdout.contains("purged the content of"),
        "{}",
        reset.stdout
    );
    assert!(!on_disk(&pai, "secretword"));
    verify(&pai).success();
    pai.run(&["s", "prompt", "later"]).success();
    let all = pai
        .run(&["audit", "purge", "--before", "2100-01-01"])
        .success();
    assert!(
        all.stdout.starts_with("purged the content of"),
        "{}",
        all.stdout
    );
    verify(&pai).success();
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_with_purge_audit_removes_the_session_and_its_audit_content() {
    let (_mock, pai) = three_turns().await;
    pai.run(&["s", "prompt", "secretword"]).success();
    assert!(on_disk(&pai, "secretword"));
    let rm = pai.run(&["rm", "s", "--yes", "--purge-audit"]).success();
    let lines: Vec<&str> = rm.stdout.lines().collect();
    assert_eq!(
        lines[0], "removed session 's' and its 8 message(s)",
        "{}",
        rm.stdout
    );
    assert!(
        lines[1].starts_with("purged the content of"),
        "{}",
        rm.stdout
    );
    assert!(!pai.session_dir("s").exists());
    assert!(!on_disk(&pai, "secretword"));
    verify(&pai).success();
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_days_and_hash_only_content_come_from_config() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("an answer", 5, 2).await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{}\n[audit]\ncontent = \"hash\"\n",
        super::FAST_CONFIG
    ));
    pai.init("s", &mock.base_url());
    pai.run(&["s", "prompt", "wombatwhisper"]).success();
    assert!(!on_disk(&pai, "wombatwhisper"));
    let shown = pai
        .run(&["audit", "list", "--kind", "prompt", "--json"])
        .success()
        .json();
    assert_eq!(shown[0]["content"], "");
    verify(&pai).success();

    let bad = Pai::new();
    bad.home.write_config("[audit]\ncontent = \"everything\"\n");
    let err = bad.run(&["audit", "list"]).error_line();
    assert!(
        err.contains("redacted") && err.contains("hash") && err.contains("full"),
        "{err}"
    );

    // Rows older than keep_days lose their content on the next open.
    let old = Pai::new();
    old.init("s", &mock.base_url());
    old.run(&["s", "prompt", "platypusparade"]).success();
    raw(&old)
        .execute("UPDATE events SET ts = '2020-01-01T00:00:00.000Z'", [])
        .unwrap();
    old.home.write_config(&format!(
        "{}\n[audit]\nkeep_days = 30\n",
        super::FAST_CONFIG
    ));
    old.run(&["audit", "list"]).success();
    assert!(!on_disk(&old, "platypusparade"));
}

#[tokio::test(flavor = "multi_thread")]
async fn full_content_keeps_what_redacted_masks() {
    const KEY: &str = "AKIAQ3EGRJ7MNOZ4V5XA";
    let mock = MockOpenAi::start().await;
    mock.reply_json("an answer", 5, 2).await;
    let prompt = format!("my key is {KEY}, please check it");
    let prompt_row = |pai: &Pai| {
        pai.run(&["audit", "list", "--kind", "prompt", "--json"])
            .success()
            .json()[0]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let redacted = Pai::new();
    redacted.init("s", &mock.base_url());
    redacted.run(&["s", "prompt", &prompt]).success();
    assert!(!prompt_row(&redacted).contains(KEY));
    assert!(!on_disk(&redacted, KEY));

    let full = Pai::new();
    full.home.write_config(&format!(
        "{}\n[audit]\ncontent = \"full\"\n",
        super::FAST_CONFIG
    ));
    full.init("s", &mock.base_url());
    full.run(&["s", "prompt", &prompt]).success();
    assert!(prompt_row(&full).contains(&prompt), "{}", prompt_row(&full));
    assert!(on_disk(&full, KEY));
    verify(&full).success();
}

#[cfg(not(feature = "otel"))]
#[tokio::test(flavor = "multi_thread")]
async fn otel_settings_without_the_feature_are_one_warning() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("an answer", 5, 2).await;
    let pai = Pai::new();
    pai.home.write_config(&format!(
        "{}\n[audit.otel]\nendpoint = \"http://127.0.0.1:4318\"\n",
        super::FAST_CONFIG
    ));
    pai.init("s", &mock.base_url());
    let run = pai.run(&["s", "prompt", "hi"]).success();
    assert_eq!(
        run.stderr,
        "warning: [audit.otel] is set, but this pai was built without the 'otel' feature: no traces are sent\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_re_verifies_with_the_documented_standalone_script() {
    let (_mock, pai) = three_turns().await;
    pai.run(&["audit", "purge", "--before", "2100-01-01"])
        .success();
    pai.run(&["s", "prompt", "after the purge"]).success();
    let export = pai.run(&["audit", "export"]).success();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &export.stdout).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/verify-audit.py");
    let key = pai.home.config().join("audit.key");
    let python = std::process::Command::new("python3")
        .arg(&script)
        .arg(&file)
        .arg("--key-file")
        .arg(&key)
        .output();
    let out = match python {
        Ok(out) => out,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 is needed to run docs/verify-audit.py, and CI=true requires this test to run: {e}"
            );
            eprintln!("skipped: python3 is not installed");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");

    // The same export, edited, fails there too, at the edited row.
    let mut lines: Vec<serde_json::Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.len() - 1;
    lines[last]["prompt_tokens"] = serde_json::json!(1);
    let edited: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, edited).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&file)
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let id = lines[last]["id"].as_i64().unwrap();
    assert_eq!(
        stdout.trim(),
        format!("FAIL: row {id}: its contents changed after it was written")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_sealed_with_the_key_file_keeps_it_when_pai_encryption_key_is_set_later() {
    let (_mock, pai) = three_turns().await;
    let vault = pai.run(&["keygen"]).success().stdout.trim().to_string();
    super::Run::from_cmd(
        pai.cmd()
            .args(["s", "prompt", "with the variable set"])
            .env("PAI_ENCRYPTION_KEY", &vault),
    )
    .success();
    verify(&pai).success();
}
