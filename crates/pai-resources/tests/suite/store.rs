use pai_resources::{
    Added, Change, Filter, NewDocument, ResourceError, ResourceStore, Root, SearchOptions,
    SqliteStore,
};
use pai_types::DataClass;
use pretty_assertions::assert_eq;

fn doc(source: &str, title: &str, text: &str) -> NewDocument {
    NewDocument {
        title: title.into(),
        source: source.into(),
        media_type: "text/markdown".into(),
        tags: vec!["notes".into()],
        class: DataClass::Internal,
        size: text.len() as u64,
        sha256: format!("{:x}", text.len()) + source,
        text: text.into(),
        etag: None,
    }
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("home/resources.db")).unwrap();
    (dir, store)
}

#[test]
fn documents_are_added_listed_changed_and_removed() {
    let (_dir, store) = open();
    let a = store
        .add(doc("note:a", "Alpha", "# Alpha\n\nfirst body"))
        .unwrap();
    assert_eq!(a, Added::New(1));
    let b = store.add(doc("note:b", "Beta", "second body")).unwrap();
    assert_eq!(b, Added::New(2));
    // Same source and hash: nothing to do. Changed text: replaced under the same id.
    assert_eq!(
        store
            .add(doc("note:a", "Alpha", "# Alpha\n\nfirst body"))
            .unwrap(),
        Added::Unchanged(1)
    );
    let mut changed = doc("note:a", "Alpha", "# Alpha\n\nrewritten body, longer");
    changed.sha256 = "other".into();
    assert_eq!(store.add(changed).unwrap(), Added::Replaced(1));
    assert_eq!(store.list(&Filter::default()).unwrap().len(), 2);

    let updated = store
        .update(
            2,
            &Change {
                title: Some("Gamma".into()),
                class: Some(DataClass::Secret),
                tags: Some(vec!["x".into(), "a".into()]),
            },
        )
        .unwrap();
    assert_eq!(updated.title, "Gamma");
    assert_eq!(updated.class, DataClass::Secret);
    assert_eq!(updated.tags, vec!["a", "x"]);
    // The new title is searchable; the old one is gone from the index.
    let found = store.search("gamma", &SearchOptions::default()).unwrap();
    assert_eq!(found.hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![2]);
    assert!(
        store
            .search("beta", &SearchOptions::default())
            .unwrap()
            .hits
            .is_empty()
    );

    let secret = Filter {
        class: Some(DataClass::Secret),
        ..Filter::default()
    };
    assert_eq!(store.list(&secret).unwrap().len(), 1);
    let tagged = Filter {
        tag: Some("nope".into()),
        ..Filter::default()
    };
    assert!(matches!(
        store.list(&tagged).unwrap_err(),
        ResourceError::UnknownTag(t) if t == "nope"
    ));
    let removed = store.remove(&[1, 2]).unwrap();
    assert_eq!(removed.len(), 2);
    assert!(store.list(&Filter::default()).unwrap().is_empty());
    assert!(matches!(
        store.get(1).unwrap_err(),
        ResourceError::UnknownId(1)
    ));
    // All or none: one unknown id removes nothing.
    store.add(doc("note:c", "C", "c")).unwrap();
    assert!(store.remove(&[3, 99]).is_err());
    assert_eq!(store.list(&Filter::default()).unwrap().len(), 1);
}

#[test]
fn search_ranks_the_specific_document_first_with_a_highlighted_snippet() {
    let (_dir, store) = open();
    for i in 0..30 {
        store
            .add(doc(
                &format!("note:{i}"),
                &format!("Note {i}"),
                "The meeting is about the budget and the plan for the year.",
            ))
            .unwrap();
    }
    store
        .add(doc(
            "note:keys",
            "Key rotation",
            "# Rotating keys\n\nTo rotate the deploy keys, run the rotation script every quarter.",
        ))
        .unwrap();
    let found = store
        .search(
            "How do I rotate the deploy keys?",
            &SearchOptions::default(),
        )
        .unwrap();
    assert_eq!(found.terms, vec!["rotate", "deploy", "keys"]);
    let top = &found.hits[0];
    assert_eq!(top.title, "Key rotation");
    assert_eq!(top.heading, "Key rotation › Rotating keys");
    assert!(top.snippet.contains("**rotate**"), "{}", top.snippet);
    assert!(top.snippet.contains("**deploy**"), "{}", top.snippet);
    assert!(!found.approximate);
    // A word in no document but others that are still finds by any term.
    let any = store
        .search("rotate zebra", &SearchOptions::default())
        .unwrap();
    assert_eq!(any.hits[0].title, "Key rotation");
}

#[test]
fn a_query_of_common_words_scores_only_the_candidate_cap_and_says_so() {
    let (_dir, store) = open();
    for i in 0..50 {
        store
            .add(doc(&format!("note:{i}"), "n", "meeting budget plan"))
            .unwrap();
    }
    let opts = SearchOptions {
        limit: 5,
        max_candidates: 10,
        ..SearchOptions::default()
    };
    let found = store.search("meeting budget", &opts).unwrap();
    assert_eq!(found.hits.len(), 5);
    assert!(found.approximate);
    let exact = store
        .search("meeting budget", &SearchOptions::default())
        .unwrap();
    assert!(!exact.approximate);
}

#[test]
fn searches_and_reads_stay_within_a_filter_of_ids() {
    let (_dir, store) = open();
    store.add(doc("note:a", "A", "apples and pears")).unwrap();
    store.add(doc("note:b", "B", "apples only")).unwrap();
    let opts = SearchOptions {
        filter: Filter {
            ids: Some(vec![2]),
            ..Filter::default()
        },
        ..SearchOptions::default()
    };
    let found = store.search("apples", &opts).unwrap();
    assert_eq!(found.hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn reads_return_whole_chunks_within_the_byte_budget() {
    let (_dir, store) = open();
    let para = "lorem ipsum dolor ".repeat(60);
    let text = format!("# One\n\n{para}\n\n# Two\n\n{para}\n\n# Three\n\n{para}");
    store.add(doc("note:long", "Long", &text)).unwrap();
    let d = store.get(1).unwrap();
    assert_eq!(d.chunks, 3);
    let first = store.read(1, 0, 1500).unwrap();
    assert_eq!((first.from, first.to), (0, 1));
    assert!(first.text.starts_with("[Long › One]\n"));
    let all = store.read(1, 0, 100_000).unwrap();
    assert_eq!(all.to, 3);
    // At least one chunk, whatever the budget.
    assert_eq!(store.read(1, 2, 10).unwrap().to, 3);
    assert!(matches!(
        store.read(1, 3, 10).unwrap_err(),
        ResourceError::NoSuchChunk { chunks: 3, .. }
    ));
}

#[test]
fn removed_text_leaves_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resources.db");
    let store = SqliteStore::open(&path).unwrap();
    let marker = "zanzibarquokkamarker";
    for i in 0..20 {
        store
            .add(doc(
                &format!("note:{i}"),
                "Filler",
                &format!("filler text number {i} about ordinary things"),
            ))
            .unwrap();
    }
    let body = format!("the secret plan: {marker} {}", "padding words ".repeat(500));
    let id = store.add(doc("note:secret", "Plan", &body)).unwrap().id();
    assert_eq!(
        store
            .search(marker, &SearchOptions::default())
            .unwrap()
            .hits
            .len(),
        1
    );
    store.remove(&[id]).unwrap();
    drop(store);
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("resources.db-wal")) {
        bytes.extend(wal);
    }
    let found = bytes.windows(marker.len()).any(|w| w == marker.as_bytes());
    assert!(!found, "the removed text is still in the database file");
    // The rest is still there and searchable.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store
            .search("filler", &SearchOptions::default())
            .unwrap()
            .hits
            .len(),
        10
    );
}

#[cfg(unix)]
#[test]
fn the_database_is_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = open();
    store.add(doc("note:a", "A", "a")).unwrap();
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("home/resources.db"), 0o600);
    assert_eq!(mode("home"), 0o700);
}

#[test]
fn an_invalid_tag_stores_nothing() {
    let (_dir, store) = open();
    let mut bad = doc("note:a", "A", "a");
    bad.tags = vec!["has space".into()];
    assert!(matches!(
        store.add(bad).unwrap_err(),
        ResourceError::InvalidTag(_)
    ));
    assert!(store.list(&Filter::default()).unwrap().is_empty());
}

#[test]
fn a_version_1_store_gains_etags_and_keeps_its_documents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resources.db");
    let store = SqliteStore::open(&path).unwrap();
    let a = store
        .add(doc("s3://b/a.md", "Alpha", "first body"))
        .unwrap();
    drop(store);
    // Make it what version 1 wrote: no etag column, chunks indexed by a trigger.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE documents DROP COLUMN etag; PRAGMA user_version = 1;
         CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
             INSERT INTO chunks_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text);
         END;",
    )
    .unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get(a.id()).unwrap().etag, None);
    // Same bytes under a new ETag: unchanged, but the ETag is kept for the next refresh.
    let mut again = doc("s3://b/a.md", "Alpha", "first body");
    again.etag = Some("\"e1\"".into());
    assert_eq!(store.add(again).unwrap(), Added::Unchanged(a.id()));
    assert_eq!(store.get(a.id()).unwrap().etag.as_deref(), Some("\"e1\""));
    // The trigger is gone: a new chunk is indexed once, by the store itself.
    store.add(doc("note:b", "Beta", "zebracorn")).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let entries: i64 = conn
        .query_row(
            "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'zebracorn'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(entries, 1);
}

#[test]
fn a_batch_commits_every_n_documents_and_a_crash_loses_only_the_open_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resources.db");
    let store = SqliteStore::open(&path).unwrap();
    let committed = || {
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .query_row("SELECT count(*) FROM documents", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    store
        .begin_batch_with(std::time::Duration::from_secs(3600), 2)
        .unwrap();
    for i in 0..3 {
        store
            .add(doc(&format!("note:{i}"), "T", &format!("body {i}")))
            .unwrap();
    }
    // Two committed together; the third is in the open transaction, already searchable
    // by this store but not yet on disk for anyone else.
    assert_eq!(committed(), 2);
    assert_eq!(store.list(&Filter::default()).unwrap().len(), 3);
    // A document refused before it is written leaves the batch as it is.
    let mut bad = doc("note:bad", "T", "x");
    bad.tags = vec!["not a tag".into()];
    assert!(store.add(bad).is_err());
    assert_eq!(store.list(&Filter::default()).unwrap().len(), 3);
    // A "crash": the store goes away without ending the batch.
    drop(store);
    assert_eq!(committed(), 2);

    let store = SqliteStore::open(&path).unwrap();
    store.begin_batch().unwrap();
    // What was lost is added again by the same import.
    assert!(matches!(
        store.add(doc("note:2", "T", "body 2")).unwrap(),
        Added::New(_)
    ));
    store.end_batch().unwrap();
    assert_eq!(committed(), 3);
}

/// Stores written before roots were recorded lack their tables: opening one adds them and
/// keeps every document.
#[test]
fn a_store_without_roots_gains_them_and_keeps_its_documents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resources.db");
    let store = SqliteStore::open(&path).unwrap();
    let a = store.add(doc("file:///n/a.md", "Alpha", "first")).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE roots; DROP TABLE kept_out;")
        .unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get(a.id()).unwrap().title, "Alpha");
    assert_eq!(store.roots().unwrap(), vec![]);
    let root = Root::new("file:///n/", DataClass::Personal, vec!["home".into()]);
    store.add_root(&root).unwrap();
    assert_eq!(
        store.roots().unwrap(),
        vec![Root {
            uri: "file:///n".into(),
            class: DataClass::Personal,
            tags: vec!["home".into()],
        }]
    );
}

/// `rm` of a document under a root keeps it out of the next reindex, remembered by a hash
/// (its path leaves the file with its text); with nothing left under it, the root is
/// forgotten. A vanished file's removal keeps nothing out. Adding the root again forgets
/// what was kept out.
#[test]
fn removal_under_a_root_keeps_the_source_out_by_hash_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resources.db");
    let store = SqliteStore::open(&path).unwrap();
    let root = Root::new("file:///n", DataClass::Internal, vec![]);
    store.add_root(&root).unwrap();
    let secret_path = "file:///n/zanzibar-divorce-lawyer.md";
    let a = store.add(doc(secret_path, "A", "alpha text")).unwrap().id();
    let b = store
        .add(doc("file:///n/b.md", "B", "beta text"))
        .unwrap()
        .id();
    let c = store
        .add(doc("file:///n/c.md", "C", "gamma text"))
        .unwrap()
        .id();
    let outside = store
        .add(doc("file:///elsewhere/d.md", "D", "delta"))
        .unwrap()
        .id();

    store.remove(&[a, outside]).unwrap();
    let kept = store.kept_out().unwrap();
    assert!(kept.contains(secret_path));
    assert!(!kept.contains("file:///elsewhere/d.md"));
    store.remove_vanished(&[b]).unwrap();
    assert!(!store.kept_out().unwrap().contains("file:///n/b.md"));
    assert_eq!(store.roots().unwrap().len(), 1);
    let bytes = [
        std::fs::read(&path).unwrap(),
        std::fs::read(dir.path().join("resources.db-wal")).unwrap_or_default(),
    ]
    .concat();
    let needle = b"zanzibar-divorce-lawyer";
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "the removed document's path is still in the file"
    );

    store.add_root(&root).unwrap();
    assert!(!store.kept_out().unwrap().contains(secret_path));
    store.remove(&[c]).unwrap();
    assert_eq!(store.roots().unwrap(), vec![]);
    assert!(!store.kept_out().unwrap().contains("file:///n/c.md"));
}
