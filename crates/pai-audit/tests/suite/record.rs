use pai_audit::{AuditEvent, AuditSink, EventId, EventKind, StoredEvent};
use pai_types::{Locality, Usage};
use pretty_assertions::assert_eq;

use super::{open, sample, temp_log};

#[test]
fn recorded_events_read_back_whole_with_ts_user_and_hash_filled_in() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    let before = jiff::Timestamp::now();
    let prompt = sample(EventKind::Prompt, 1);
    let bare = AuditEvent::new(EventKind::Cancelled, "");
    let error = AuditEvent::new(EventKind::Error, "provider 'openai' timed out after 30 s")
        .session("s2")
        .mode("prompt")
        .provider("openai")
        .endpoint("https://api.openai.com/v1")
        .model("gpt-4o-mini")
        .locality(Locality::Remote)
        .usage(Usage::default());

    let ids: Vec<EventId> = [&prompt, &bare, &error]
        .into_iter()
        .map(|e| audit.record(e).unwrap())
        .collect();
    let after = jiff::Timestamp::now();
    assert_eq!(ids, vec![EventId(1), EventId(2), EventId(3)]);

    let stored = audit.events(10).unwrap();
    let user = whoami::username().unwrap_or_else(|_| "unknown".to_string());
    for s in &stored {
        let ts: jiff::Timestamp = s.ts.parse().unwrap();
        // ts is truncated to milliseconds.
        assert!(
            ts > before - jiff::SignedDuration::from_millis(1),
            "{} is before {before}",
            s.ts
        );
        assert!(ts <= after, "{} is after {after}", s.ts);
        assert!(s.ts.ends_with('Z'), "{} is not UTC", s.ts);
        assert_eq!(s.hash.len(), 64);
        assert!(!s.user.is_empty());
    }
    let expected: Vec<StoredEvent> = [prompt, bare, error]
        .into_iter()
        .zip(&stored)
        .zip(&ids)
        .map(|((event, s), id)| StoredEvent {
            id: *id,
            ts: s.ts.clone(),
            user: user.clone(),
            event,
            hash: s.hash.clone(),
        })
        .collect();
    assert_eq!(stored, expected);
}

#[test]
fn events_returns_the_newest_oldest_first() {
    let (_home, path) = temp_log();
    let audit = open(&path);
    for n in 1..=5 {
        audit.record(&sample(EventKind::Response, n)).unwrap();
    }
    let ids: Vec<i64> = audit.events(3).unwrap().iter().map(|e| e.id.0).collect();
    assert_eq!(ids, vec![3, 4, 5]);
    assert_eq!(audit.events(0).unwrap(), vec![]);
    assert_eq!(audit.events(usize::MAX).unwrap().len(), 5);
}

#[test]
fn an_empty_log_has_no_events() {
    let (_home, path) = temp_log();
    assert_eq!(open(&path).events(10).unwrap(), vec![]);
}

#[test]
fn the_sink_works_behind_a_shared_trait_object() {
    let (_home, path) = temp_log();
    let sink: std::sync::Arc<dyn AuditSink> = std::sync::Arc::new(open(&path));
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let sink = sink.clone();
            std::thread::spawn(move || sink.record(&sample(EventKind::Summary, n)).unwrap())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let audit = open(&path);
    assert_eq!(audit.events(10).unwrap().len(), 4);
    assert!(audit.verify().unwrap().is_intact());
}
