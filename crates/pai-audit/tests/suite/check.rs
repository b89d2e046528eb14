//! The per-turn check: only the rows since the last check while the files are as pai left
//! them, every row once anything else changed them.

use pai_audit::{AuditSink, BreakReason, EventId, EventKind, SqliteAudit};
use pretty_assertions::assert_eq;

use super::{open, sample, temp_log};

fn record(audit: &SqliteAudit, n: u64) {
    for i in 0..n {
        audit.record(&sample(EventKind::Prompt, i)).unwrap();
    }
}

/// Runs a check; returns where it started (`None`: every row) and the rows it read.
fn check(audit: &SqliteAudit) -> (Option<EventId>, u64, Option<BreakReason>) {
    let scope = audit.check_scope().unwrap().unwrap();
    let report = audit.check(&scope).unwrap();
    (
        scope.incremental_after(),
        report.rows,
        report.first_broken.map(|b| b.reason),
    )
}

#[test]
fn checks_cover_only_the_rows_since_the_last_one_while_pai_alone_writes() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    record(&audit, 3);
    // Nothing recorded a check yet: every row.
    assert_eq!(check(&audit), (None, 3, None));
    assert_eq!(check(&audit), (Some(EventId(3)), 0, None));
    record(&audit, 2);
    assert_eq!(check(&audit), (Some(EventId(3)), 2, None));
    // Another instance (another pai process) writing keeps it incremental too.
    let other = open(&path);
    record(&other, 1);
    drop(other);
    assert_eq!(check(&audit), (Some(EventId(5)), 1, None));
    // Purges are pai's own writes.
    audit
        .purge(&pai_audit::PurgeScope::Session("work".into()))
        .unwrap();
    assert_eq!(check(&audit), (Some(EventId(6)), 0, None));
    assert!(audit.verify().unwrap().is_intact());
}

#[test]
fn an_edit_by_anything_else_makes_the_next_check_a_full_one_even_after_pai_writes() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    record(&audit, 4);
    assert_eq!(check(&audit).2, None);
    assert_eq!(check(&audit).0, Some(EventId(4)));
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE events SET content = 'forged' WHERE id = 2", [])
        .unwrap();
    // A pai write after the edit does not make the files "as pai left them" again.
    record(&audit, 1);
    assert_eq!(check(&audit), (None, 5, Some(BreakReason::HashMismatch)));
    // A broken log is checked in full every time, until it is dealt with.
    assert_eq!(check(&audit).0, None);
}

#[test]
fn an_edit_that_restores_the_modification_times_is_still_seen() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    record(&audit, 3);
    check(&audit);
    let wal = path.with_file_name("audit.db-wal");
    let times = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let (db_time, wal_time) = (times(&path), times(&wal));
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE events SET model = 'other' WHERE id = 1", [])
        .unwrap();
    for (p, t) in [(&path, db_time), (&wal, wal_time)] {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    assert_eq!(check(&audit), (None, 3, Some(BreakReason::HashMismatch)));
}

#[test]
fn a_full_check_that_passes_lets_the_next_one_be_incremental_again() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    record(&audit, 2);
    check(&audit);
    // A harmless outside change: another program's checkpoint of the WAL.
    rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    record(&audit, 1);
    assert_eq!(check(&audit), (None, 3, None));
    record(&audit, 1);
    assert_eq!(check(&audit), (Some(EventId(3)), 1, None));
}

#[test]
fn rows_added_since_the_last_check_are_still_checked() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    record(&audit, 2);
    check(&audit);
    record(&audit, 2);
    // Rows 3-4 have not been checked yet; an edit of row 4 that also restored the files'
    // identity would be caught by the rows check alone. Here the checkpoint's "checked
    // through" mark is what keeps row 4 in scope.
    let scope = audit.check_scope().unwrap().unwrap();
    assert_eq!(scope.incremental_after(), Some(EventId(2)));
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE events SET content = 'forged' WHERE id = 4", [])
        .unwrap();
    let report = audit.check(&scope).unwrap();
    assert_eq!(report.rows, 2);
    assert_eq!(
        report.first_broken.map(|b| (b.id, b.reason)),
        Some((EventId(4), BreakReason::HashMismatch))
    );
}
