use pai_audit::{
    AuditError, AuditKey, AuditSink, BreakReason, BrokenRow, EventId, EventKind, HeadProblem,
    HeadStatus, SqliteAudit, VerifyReport,
};
use pretty_assertions::assert_eq;
use rusqlite::types::Value;
use sha2::{Digest, Sha256};

use super::{key, open, sample, temp_log};

fn raw(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn intact(rows: u64) -> VerifyReport {
    VerifyReport {
        rows,
        keyed: rows,
        legacy: None,
        purged: vec![],
        mac_checked: true,
        sealed_through: Some(EventId(rows as i64)),
        first_broken: None,
        head: None,
        never_sealed: false,
    }
}

fn broken(rows: u64, id: i64, reason: BreakReason) -> VerifyReport {
    VerifyReport {
        first_broken: Some(BrokenRow {
            id: EventId(id),
            reason,
        }),
        ..intact(rows)
    }
}

/// A log of `n` rows at a fresh path.
fn log_of(n: u64) -> (tempfile::TempDir, std::path::PathBuf, SqliteAudit) {
    let (home, path) = temp_log();
    let audit = open(&path);
    for i in 0..n {
        audit.record(&sample(EventKind::Prompt, i)).unwrap();
    }
    (home, path, audit)
}

/// The documented encoding of a cell (docs/audit.md), for a forger without the key.
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

/// Recomputes every keyed row's content digest, hash and link, as someone who can write
/// the file but has no key would after editing it.
fn rechain_without_key(path: &std::path::Path) {
    let conn = raw(path);
    let rows: Vec<(i64, Vec<Value>, String)> = conn
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
    for (id, mut cells, content) in rows {
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
}

#[test]
fn an_untouched_chain_verifies_and_a_fresh_log_was_never_sealed() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    assert_eq!(audit.head_status(), Some(&HeadStatus::Fresh));
    let empty = audit.verify().unwrap();
    assert!(empty.never_sealed && !empty.is_intact(), "{empty:?}");
    for n in 0..5 {
        audit.record(&sample(EventKind::Prompt, n)).unwrap();
    }
    assert_eq!(audit.verify().unwrap(), intact(5));
    assert_eq!(open(&path).head_status(), Some(&HeadStatus::Sealed));
    assert_eq!(open(&path).head_warning(), None);
    assert_eq!(
        audit.verify().unwrap().summary(),
        "intact: 5 rows, 5 keyed (MAC checked), sealed through row 5"
    );
}

#[test]
fn editing_a_row_is_reported_at_that_row() {
    let (_home, path, audit) = log_of(4);
    raw(&path)
        .execute(
            "UPDATE events SET content = 'nothing to see' WHERE id = 2",
            [],
        )
        .unwrap();
    let report = audit.verify().unwrap();
    assert_eq!(report, broken(4, 2, BreakReason::HashMismatch));
    assert_eq!(
        report.summary(),
        "row 2: its contents changed after it was written"
    );
}

#[test]
fn editing_a_column_the_reader_cannot_decode_is_still_reported_by_verify() {
    let (_home, path, audit) = log_of(3);
    raw(&path)
        .execute(
            "UPDATE events SET kind = 'nonsense', prompt_tokens = 'x' WHERE id = 3",
            [],
        )
        .unwrap();
    let report = audit.verify().unwrap();
    assert_eq!(report.first_broken.map(|b| b.id), Some(EventId(3)));
    let err = audit.events(10).unwrap_err();
    assert!(matches!(err, AuditError::BadRow { id: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("row 3 of the audit log"), "{err}");
}

#[test]
fn deleting_a_middle_row_names_the_missing_row() {
    let (_home, path, audit) = log_of(4);
    raw(&path)
        .execute("DELETE FROM events WHERE id = 2", [])
        .unwrap();
    assert_eq!(
        audit.verify().unwrap(),
        VerifyReport {
            rows: 3,
            keyed: 3,
            ..broken(4, 2, BreakReason::Missing)
        }
    );
}

#[test]
fn deleting_the_last_rows_is_caught_by_the_checkpoint() {
    let (_home, path, _audit) = log_of(5);
    raw(&path)
        .execute("DELETE FROM events WHERE id > 3", [])
        .unwrap();
    let reopened = open(&path);
    let problem = HeadProblem::Truncated {
        sealed: EventId(5),
        last: EventId(3),
    };
    assert_eq!(
        reopened.head_status(),
        Some(&HeadStatus::Problem(problem.clone()))
    );
    let warning = reopened.head_warning().unwrap();
    assert!(
        warning.contains("ends at row 3 but its checkpoint sealed row 5"),
        "{warning}"
    );
    // Work goes on and is recorded, but the checkpoint is left alone: still reported.
    reopened.record(&sample(EventKind::Prompt, 9)).unwrap();
    let report = open(&path).verify().unwrap();
    assert_eq!(
        report.head,
        Some(HeadProblem::Truncated {
            sealed: EventId(5),
            last: EventId(4)
        })
    );
    assert!(!report.is_intact());
}

#[test]
fn replacing_the_database_with_a_fresh_one_is_caught() {
    let (_home, path, audit) = log_of(3);
    drop(audit);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let fresh = open(&path);
    assert!(
        matches!(
            fresh.head_status(),
            Some(HeadStatus::Problem(HeadProblem::Truncated { .. }))
        ),
        "{:?}",
        fresh.head_status()
    );
    for n in 0..5 {
        fresh.record(&sample(EventKind::Response, n)).unwrap();
    }
    let report = open(&path).verify().unwrap();
    assert_eq!(
        report.head,
        Some(HeadProblem::Replaced { sealed: EventId(3) })
    );
    assert!(report.first_broken.is_none());
}

#[test]
fn re_chaining_without_the_key_fails_at_the_edited_row() {
    let (_home, path, audit) = log_of(4);
    raw(&path)
        .execute("UPDATE events SET prompt_tokens = 1 WHERE id = 2", [])
        .unwrap();
    rechain_without_key(&path);
    let report = audit.verify().unwrap();
    assert_eq!(
        report.first_broken,
        Some(BrokenRow {
            id: EventId(2),
            reason: BreakReason::MacMismatch
        })
    );
    // The last row's hash changed too, so even a cheap open notices.
    assert!(open(&path).head_warning().is_some());
}

#[test]
fn a_row_stripped_of_its_mac_is_not_taken_for_legacy() {
    let (_home, path, audit) = log_of(3);
    raw(&path)
        .execute("UPDATE events SET mac = NULL WHERE id = 2", [])
        .unwrap();
    assert_eq!(
        audit.verify().unwrap().first_broken,
        Some(BrokenRow {
            id: EventId(2),
            reason: BreakReason::Unkeyed
        })
    );
}

#[test]
fn another_key_is_refused_for_recording_and_its_checkpoint_rejected() {
    let (_home, path, _audit) = log_of(2);
    let other = SqliteAudit::open_keyed(&path, AuditKey::derive(b"someone else")).unwrap();
    assert!(matches!(
        other.head_status(),
        Some(HeadStatus::Problem(HeadProblem::OtherKey { .. }))
    ));
    let err = other.record(&sample(EventKind::Prompt, 9)).unwrap_err();
    assert!(matches!(err, AuditError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("run pai with the key"), "{err}");
    let report = other.verify().unwrap();
    assert_eq!(
        report.first_broken,
        Some(BrokenRow {
            id: EventId(1),
            reason: BreakReason::MacMismatch
        })
    );
    assert!(matches!(report.head, Some(HeadProblem::OtherKey { .. })));
    assert_eq!(open(&path).verify().unwrap(), intact(2));
}

#[test]
fn a_deleted_or_forged_checkpoint_fails() {
    let (_home, path, _audit) = log_of(2);
    let head = path.with_extension("head");
    let mut bytes = std::fs::read(&head).unwrap();
    // The sealed row number, 2, claimed as 7.
    let at = bytes.iter().position(|&b| b == b' ').unwrap() + 1;
    bytes[at] = b'7';
    std::fs::write(&head, &bytes).unwrap();
    let forged = open(&path);
    assert_eq!(
        forged.head_status(),
        Some(&HeadStatus::Problem(HeadProblem::Forged))
    );
    assert_eq!(forged.verify().unwrap().head, Some(HeadProblem::Forged));

    std::fs::remove_file(&head).unwrap();
    let missing = open(&path);
    assert_eq!(
        missing.head_status(),
        Some(&HeadStatus::Problem(HeadProblem::Missing {
            last: EventId(2)
        }))
    );
    let report = missing.verify().unwrap();
    assert!(report.never_sealed && !report.is_intact(), "{report:?}");
}

#[test]
fn rows_after_the_checkpoint_are_reported_unsealed_until_sealed() {
    let (_home, path, _audit) = log_of(2);
    let head = path.with_extension("head");
    let sealed_at_2 = std::fs::read(&head).unwrap();
    open(&path).record(&sample(EventKind::Prompt, 3)).unwrap();
    // As if the process stopped between its commit and its seal.
    std::fs::write(&head, &sealed_at_2).unwrap();
    let reader = open(&path);
    let unsealed = HeadProblem::Unsealed {
        from: EventId(3),
        to: EventId(3),
        macs_hold: true,
    };
    assert_eq!(reader.verify().unwrap().head, Some(unsealed.clone()));
    assert!(!reader.verify().unwrap().is_intact());
    // The next write seals them (their MACs prove pai wrote them).
    reader.record(&sample(EventKind::Prompt, 4)).unwrap();
    assert_eq!(open(&path).verify().unwrap(), intact(4));
}

#[test]
fn a_log_from_before_keys_is_sealed_as_legacy_and_reported_so() {
    let (_home, path) = temp_log();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        // Schema 1 exactly as older pai wrote it: two unkeyed rows.
        let conn = raw(&path);
        conn.execute_batch(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, user TEXT NOT NULL, \
             session TEXT NOT NULL, mode TEXT NOT NULL, kind TEXT NOT NULL, provider TEXT NOT NULL, \
             endpoint TEXT NOT NULL, model TEXT NOT NULL, locality TEXT NULL, \
             prompt_tokens INTEGER NULL, completion_tokens INTEGER NULL, \
             tokens_estimated INTEGER NULL, duration_ms INTEGER NULL, content TEXT NOT NULL, \
             prev_hash TEXT NOT NULL, hash TEXT NOT NULL); PRAGMA user_version = 1;",
        )
        .unwrap();
        let mut prev = "0".repeat(64);
        for (id, content) in [(1, "old one"), (2, "old two")] {
            let cells = [
                Value::Text("2025-01-01T00:00:00.000Z".into()),
                Value::Text("ada".into()),
                Value::Text("s".into()),
                Value::Text("chat".into()),
                Value::Text("prompt".into()),
                Value::Text("p".into()),
                Value::Text("e".into()),
                Value::Text("m".into()),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Text(content.into()),
            ];
            let mut bytes = prev.clone().into_bytes();
            bytes.extend_from_slice(b"pai-audit/1\n");
            for c in &cells {
                encode(c, &mut bytes);
            }
            let hash = hex::encode(Sha256::digest(&bytes));
            conn.execute(
                "INSERT INTO events VALUES (?1, '2025-01-01T00:00:00.000Z', 'ada', 's', 'chat', \
                 'prompt', 'p', 'e', 'm', NULL, NULL, NULL, NULL, NULL, ?2, ?3, ?4)",
                rusqlite::params![id, content, prev, hash],
            )
            .unwrap();
            prev = hash;
        }
    }
    let audit = open(&path);
    assert_eq!(
        audit.head_status(),
        Some(&HeadStatus::Migrated {
            legacy_through: EventId(2)
        })
    );
    audit.record(&sample(EventKind::Prompt, 3)).unwrap();
    let report = open(&path).verify().unwrap();
    assert_eq!(
        report,
        VerifyReport {
            rows: 3,
            keyed: 1,
            legacy: Some((EventId(1), EventId(2))),
            sealed_through: Some(EventId(3)),
            ..intact(3)
        }
    );
    assert!(
        report
            .summary()
            .ends_with("rows 1-2 are unkeyed legacy rows (hash chain only)"),
        "{}",
        report.summary()
    );
    // Under another key the keyed row (and the checkpoint) are rejected.
    let other = SqliteAudit::open_keyed(&path, AuditKey::derive(b"x")).unwrap();
    assert!(!other.verify().unwrap().is_intact());
    assert_eq!(key().id().len(), 16);
}

#[test]
fn two_instances_on_one_file_interleave_into_one_chain() {
    let (_home, path) = temp_log();
    let a = open(&path);
    let b = open(&path);
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(a.record(&sample(EventKind::Prompt, n)).unwrap().0);
        ids.push(b.record(&sample(EventKind::Response, n)).unwrap().0);
    }
    assert_eq!(ids, (1..=20).collect::<Vec<i64>>());
    assert_eq!(a.verify().unwrap(), intact(20));
    assert_eq!(b.verify().unwrap(), intact(20));
    assert_eq!(a.events(100).unwrap(), b.events(100).unwrap());
}

#[test]
fn two_instances_writing_at_the_same_time_keep_a_valid_chain() {
    let (_home, path) = temp_log();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let audit = open(&path);
            std::thread::spawn(move || {
                for n in 0..25 {
                    audit
                        .record(&sample(EventKind::Prompt, w * 100 + n))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(open(&path).verify().unwrap(), intact(50));
}

#[test]
fn a_reader_without_the_key_checks_hashes_only_and_cannot_record() {
    let (_home, path, _audit) = log_of(2);
    let reader = SqliteAudit::open(&path).unwrap();
    let report = reader.verify().unwrap();
    assert!(report.is_intact() && !report.mac_checked, "{report:?}");
    assert!(matches!(
        reader.record(&sample(EventKind::Prompt, 1)),
        Err(AuditError::NoKey { .. })
    ));
}
