use pai_audit::{
    AuditEvent, AuditSink, ContentMode, EventId, EventKind, Filter, PurgeScope, SqliteAudit,
};
use pai_types::Locality;
use pretty_assertions::assert_eq;

use super::{key, open, sample, temp_log};

fn ids(events: &[pai_audit::StoredEvent]) -> Vec<i64> {
    events.iter().map(|e| e.id.0).collect()
}

#[test]
fn listing_filters_and_orders_newest_first() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    audit.record(&sample(EventKind::Prompt, 1)).unwrap();
    audit
        .record(&sample(EventKind::Response, 2).session("other"))
        .unwrap();
    audit
        .record(&sample(EventKind::Egress, 3).locality(Locality::Remote))
        .unwrap();
    let all = audit.list(&Filter::default()).unwrap();
    assert_eq!(ids(&all), [3, 2, 1]);
    let only = |f: Filter| ids(&audit.list(&f).unwrap());
    assert_eq!(
        only(Filter {
            session: Some("work".into()),
            ..Filter::default()
        }),
        [3, 1]
    );
    assert_eq!(
        only(Filter {
            kinds: vec![EventKind::Prompt, EventKind::Egress],
            locality: Some(Locality::Local),
            ..Filter::default()
        }),
        [1]
    );
    assert_eq!(
        only(Filter {
            since: Some("2999-01-01".into()),
            ..Filter::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        only(Filter {
            until: Some("2999-01-01".into()),
            mode: Some("chat".into()),
            provider: Some("ollama".into()),
            limit: Some(2),
            ..Filter::default()
        }),
        [3, 2]
    );
}

#[test]
fn search_finds_words_and_forgets_purged_ones() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    audit
        .record(&AuditEvent::new(EventKind::Prompt, "the quokka smiles").session("a"))
        .unwrap();
    audit
        .record(&AuditEvent::new(EventKind::Prompt, "a wombat digs").session("b"))
        .unwrap();
    let hit = audit.search("quokka", &Filter::default()).unwrap();
    assert_eq!(ids(&hit), [1]);
    assert_eq!(ids(&audit.search("wom*", &Filter::default()).unwrap()), [2]);
    let report = audit.purge(&PurgeScope::Session("a".into())).unwrap();
    assert_eq!(report.rows, 1);
    assert_eq!(report.range, Some((EventId(1), EventId(1))));
    assert!(
        audit
            .search("quokka", &Filter::default())
            .unwrap()
            .is_empty()
    );
    let verified = audit.verify().unwrap();
    assert!(verified.is_intact(), "{}", verified.summary());
    assert_eq!(verified.purged, vec![(EventId(1), EventId(1))]);
    assert!(
        verified.summary().ends_with("; content purged in rows 1"),
        "{}",
        verified.summary()
    );
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"quokka"));
    // Purging again finds nothing; the row is still there, empty, with its hash.
    assert_eq!(
        audit.purge(&PurgeScope::Session("a".into())).unwrap().rows,
        0
    );
    let shown = audit.show(EventId(1)).unwrap().unwrap();
    assert!(shown.purged && shown.stored.event.content.is_empty());
}

#[test]
fn hash_only_content_keeps_the_digest_and_verifies() {
    let (_home, path) = temp_log();
    let audit = SqliteAudit::open_keyed(&path, key())
        .unwrap()
        .with_content(ContentMode::Hash);
    audit
        .record(&AuditEvent::new(EventKind::Prompt, "kept out"))
        .unwrap();
    let shown = audit.show(EventId(1)).unwrap().unwrap();
    assert_eq!(shown.stored.event.content, "");
    assert_eq!(
        shown.content_sha256.as_deref(),
        Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"kept out")).as_str())
    );
    let report = audit.verify().unwrap();
    assert!(report.is_intact() && report.purged.is_empty(), "{report:?}");
}

#[test]
fn retention_purges_only_what_is_older_than_keep_days() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    for n in 0..3 {
        audit.record(&sample(EventKind::Prompt, n)).unwrap();
    }
    assert_eq!(audit.apply_retention(30).unwrap().rows, 0);
    // Row 1 aged by hand (which breaks its hash; only the lookup is tested here).
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE events SET ts = '2020-01-01T00:00:00.000Z' WHERE id = 1",
            [],
        )
        .unwrap();
    let report = audit.apply_retention(30).unwrap();
    assert_eq!(report.range, Some((EventId(1), EventId(1))));
    assert_eq!(audit.apply_retention(30).unwrap().rows, 0);
}

#[test]
fn export_has_a_header_and_every_column() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    for n in 0..3 {
        audit.record(&sample(EventKind::Prompt, n)).unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(audit.export(None, &mut out).unwrap(), 3);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["format"], "pai-audit-export/1");
    assert_eq!(lines[0]["key_id"], key().id());
    assert_eq!(lines[0]["first_id"], 1);
    assert_eq!(lines[0]["prev_hash"], "0".repeat(64));
    assert!(
        lines[0]["head"]
            .as_str()
            .unwrap()
            .starts_with("pai-audit-head/2 3 ")
    );
    let cols: Vec<&str> = lines[1]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for col in [
        "id",
        "ts",
        "content",
        "content_sha256",
        "prev_hash",
        "hash",
        "mac",
        "purged",
    ] {
        assert!(cols.contains(&col), "{col} missing from {cols:?}");
    }
    let mut later = Vec::new();
    assert_eq!(audit.export(Some("2999"), &mut later).unwrap(), 0);
}

#[test]
fn egress_ledger_sums_per_endpoint() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    let hop = |bytes: u64| {
        AuditEvent::new(
            EventKind::Egress,
            format!(
                r#"{{"url":"https://x.example/v1/chat","bytes":{bytes},"classes":["personal","internal"],"redacted":{{"email":2}}}}"#
            ),
        )
        .endpoint("https://x.example/v1")
        .locality(Locality::Remote)
    };
    audit.record(&hop(100)).unwrap();
    audit.record(&hop(50)).unwrap();
    audit
        .record(
            &AuditEvent::new(EventKind::Response, "ok")
                .endpoint("https://x.example/v1")
                .locality(Locality::Remote)
                .usage(pai_types::Usage {
                    prompt_tokens: 10,
                    completion_tokens: 5,
                    estimated: false,
                }),
        )
        .unwrap();
    let ledger = audit.egress_ledger(None).unwrap();
    assert_eq!(
        ledger,
        vec![pai_audit::LedgerRow {
            endpoint: "https://x.example/v1".into(),
            locality: Some("remote".into()),
            requests: 2,
            bytes_out: 150,
            bytes_in: 0,
            tokens: 15,
            classes: vec!["internal".into(), "personal".into()],
            redactions: 4,
            refusals: 0,
        }]
    );
}
