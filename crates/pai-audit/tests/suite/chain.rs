use pai_audit::{AuditError, AuditSink, BreakReason, BrokenRow, EventId, EventKind, VerifyReport};
use pretty_assertions::assert_eq;

use super::{open, sample, temp_log};

fn raw(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn intact(rows: u64) -> VerifyReport {
    VerifyReport {
        rows,
        first_broken: None,
    }
}

#[test]
fn an_untouched_chain_verifies() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    assert_eq!(audit.verify().unwrap(), intact(0));
    for n in 0..5 {
        audit.record(&sample(EventKind::Prompt, n)).unwrap();
    }
    assert_eq!(audit.verify().unwrap(), intact(5));
}

#[test]
fn editing_a_row_is_reported_at_that_row() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    for n in 0..4 {
        audit.record(&sample(EventKind::Response, n)).unwrap();
    }
    raw(&path)
        .execute(
            "UPDATE events SET content = 'nothing to see' WHERE id = 2",
            [],
        )
        .unwrap();
    assert_eq!(
        audit.verify().unwrap(),
        VerifyReport {
            rows: 4,
            first_broken: Some(BrokenRow {
                id: EventId(2),
                reason: BreakReason::HashMismatch,
            }),
        }
    );
}

#[test]
fn editing_a_column_the_reader_cannot_decode_is_still_reported_by_verify() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    for n in 0..3 {
        audit.record(&sample(EventKind::Prompt, n)).unwrap();
    }
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
fn deleting_a_row_breaks_the_link_of_the_next_one() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    for n in 0..4 {
        audit.record(&sample(EventKind::Prompt, n)).unwrap();
    }
    raw(&path)
        .execute("DELETE FROM events WHERE id = 2", [])
        .unwrap();
    assert_eq!(
        audit.verify().unwrap(),
        VerifyReport {
            rows: 3,
            first_broken: Some(BrokenRow {
                id: EventId(3),
                reason: BreakReason::PrevHashMismatch,
            }),
        }
    );
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
