//! The session store: create / load / list / active, history, reset, update, corruption
//! handling and file modes.

use pai_types::DataClass;
use std::fs::OpenOptions;
use std::io::Write;

use pai_core::{CoreError, SessionMeta, SessionSnapshot, SessionSummary};
use pai_types::{Role, Usage};
use pretty_assertions::assert_eq;

use super::{MODEL, PROVIDER, create, entry, history_path, jsonl, name, temp_store, turn};

#[test]
fn create_load_list_and_the_active_session() {
    let (_home, store) = temp_store();
    assert_eq!(store.list().unwrap(), vec![]);
    assert_eq!(store.active().unwrap(), None);
    assert!(matches!(
        store.resolve(None),
        Err(CoreError::NoActiveSession)
    ));

    let beta = create(&store, "beta");
    let mut alpha = SessionMeta::new(name("alpha"), "openai", "gpt-4o-mini");
    alpha.base_url = Some("http://127.0.0.1:8080/v1".into());
    alpha.api_key = Some("gAAAA-not-a-real-token".into());
    store.create(&alpha, false).unwrap();

    assert!(store.exists(&name("alpha")));
    assert!(!store.exists(&name("gamma")));
    assert_eq!(store.load_meta(&name("alpha")).unwrap(), alpha);
    assert_eq!(store.load_meta(&name("beta")).unwrap(), beta);
    assert_eq!(
        store.snapshot(&name("alpha")).unwrap(),
        SessionSnapshot {
            meta: alpha.clone(),
            history: vec![]
        }
    );

    let summary = |n: &str, provider: &str, model: &str, active: bool| SessionSummary {
        name: name(n),
        provider: provider.into(),
        model: model.into(),
        active,
    };
    // Sorted by name whatever the creation order.
    assert_eq!(
        store.list().unwrap(),
        vec![
            summary("alpha", "openai", "gpt-4o-mini", false),
            summary("beta", PROVIDER, MODEL, false),
        ]
    );

    store.set_active(&name("beta")).unwrap();
    assert_eq!(store.active().unwrap(), Some(name("beta")));
    assert_eq!(store.resolve(None).unwrap(), name("beta"));
    assert_eq!(store.resolve(Some(&name("alpha"))).unwrap(), name("alpha"));
    assert_eq!(
        store.list().unwrap(),
        vec![
            summary("alpha", "openai", "gpt-4o-mini", false),
            summary("beta", PROVIDER, MODEL, true),
        ]
    );
    store.set_active(&name("alpha")).unwrap();
    assert_eq!(store.active().unwrap(), Some(name("alpha")));

    // Folders that are not sessions are not listed.
    std::fs::create_dir_all(store.paths().sessions_dir().join("half-made")).unwrap();
    std::fs::create_dir_all(store.paths().sessions_dir().join(".hidden")).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn create_refuses_an_existing_session_unless_forced_and_force_empties_history() {
    let (_home, store) = temp_store();
    let original = create(&store, "work");
    store.append(&name("work"), &turn("q", "a")).unwrap();

    let replacement = SessionMeta::new(name("work"), "openai", "gpt-4o");
    let err = store.create(&replacement, false).unwrap_err();
    assert!(
        matches!(&err, CoreError::SessionExists(n) if n == "work"),
        "{err:?}"
    );
    assert!(err.to_string().contains("--force"), "{err}");
    // Refused means untouched.
    let snap = store.snapshot(&name("work")).unwrap();
    assert_eq!(snap.meta, original);
    assert_eq!(snap.history.len(), 2);

    store.create(&replacement, true).unwrap();
    assert_eq!(
        store.snapshot(&name("work")).unwrap(),
        SessionSnapshot {
            meta: replacement,
            history: vec![]
        }
    );
}

#[test]
fn appended_entries_read_back_in_order() {
    let (_home, store) = temp_store();
    create(&store, "work");
    let mut first = turn("q1", "a1");
    first[1].model = Some(MODEL.into());
    first[1].usage = Some(Usage {
        prompt_tokens: 10,
        completion_tokens: 2,
        estimated: false,
    });
    let mut second = turn("q2", "a2");
    second[1].usage = Some(Usage {
        prompt_tokens: 20,
        completion_tokens: 3,
        estimated: true,
    });
    store.append(&name("work"), &first).unwrap();
    store.append(&name("work"), &second).unwrap();
    store.append(&name("work"), &[]).unwrap();

    let snap = store.snapshot(&name("work")).unwrap();
    let expected: Vec<_> = first.into_iter().chain(second).collect();
    assert_eq!(snap.history, expected);
    assert_eq!(snap.unfolded(), &expected[..]);
    assert_eq!(
        snap.usage(),
        Usage {
            prompt_tokens: 30,
            completion_tokens: 5,
            estimated: true,
        }
    );
    // One entry a line, nothing else.
    assert_eq!(
        std::fs::read_to_string(history_path(&store, "work")).unwrap(),
        jsonl(&expected)
    );
}

#[test]
fn reset_empties_history_and_summary_but_keeps_provider_model_and_key() {
    let (_home, store) = temp_store();
    let mut meta = SessionMeta::new(name("work"), "openai", "gpt-4o");
    meta.base_url = Some("http://127.0.0.1:1/v1".into());
    meta.api_key = Some("gAAAA-token".into());
    store.create(&meta, false).unwrap();
    store.append(&name("work"), &turn("q1", "a1")).unwrap();
    store.append(&name("work"), &turn("q2", "a2")).unwrap();
    assert!(
        store
            .fold(
                &name("work"),
                0,
                ("they said hi".into(), DataClass::Internal),
                2
            )
            .unwrap()
    );
    let before = store.load_meta(&name("work")).unwrap();
    assert_eq!(
        (before.summary.as_str(), before.folded),
        ("they said hi", 2)
    );

    store.reset(&name("work")).unwrap();
    let after = store.snapshot(&name("work")).unwrap();
    assert_eq!(after.history, vec![]);
    assert_eq!(
        after.meta,
        SessionMeta {
            summary: String::new(),
            folded: 0,
            updated_at: after.meta.updated_at.clone(),
            ..meta
        }
    );
}

#[test]
fn update_changes_settings_and_keeps_history() {
    let (_home, store) = temp_store();
    let meta = create(&store, "work");
    store.append(&name("work"), &turn("q", "a")).unwrap();
    let history = store.snapshot(&name("work")).unwrap().history;

    let updated = store
        .update(&name("work"), |m| {
            m.model = "bigger-model".into();
            Ok(())
        })
        .unwrap();
    let snap = store.snapshot(&name("work")).unwrap();
    assert_eq!(snap.meta, updated);
    assert_eq!(
        snap.meta,
        SessionMeta {
            model: "bigger-model".into(),
            updated_at: updated.updated_at.clone(),
            ..meta
        }
    );
    assert_eq!(snap.history, history);

    // A change that refuses leaves the file as it was.
    let err = store
        .update(&name("work"), |m| {
            m.model = "never-stored".into();
            Err(CoreError::UnknownProvider("nope".into()))
        })
        .unwrap_err();
    assert!(matches!(err, CoreError::UnknownProvider(_)), "{err:?}");
    assert_eq!(store.load_meta(&name("work")).unwrap(), updated);
}

#[test]
fn a_fold_applies_only_over_the_summary_it_was_made_from() {
    let (_home, store) = temp_store();
    create(&store, "work");
    store.append(&name("work"), &turn("q1", "a1")).unwrap();
    store.append(&name("work"), &turn("q2", "a2")).unwrap();
    assert!(
        store
            .fold(&name("work"), 0, ("first".into(), DataClass::Internal), 2)
            .unwrap()
    );
    // Another process folded meanwhile: this one, made from folded == 0, is dropped.
    assert!(
        !store
            .fold(&name("work"), 0, ("stale".into(), DataClass::Internal), 4)
            .unwrap()
    );
    let snap = store.snapshot(&name("work")).unwrap();
    assert_eq!((snap.meta.summary.as_str(), snap.meta.folded), ("first", 2));
    assert_eq!(snap.unfolded(), &snap.history[2..]);
}

/// Appends raw bytes to `history.jsonl`, as a crash mid-write would leave them.
fn append_raw(store: &pai_core::SessionStore, n: &str, bytes: &str) {
    OpenOptions::new()
        .append(true)
        .open(history_path(store, n))
        .unwrap()
        .write_all(bytes.as_bytes())
        .unwrap();
}

#[test]
fn a_torn_last_line_is_skipped_and_the_next_append_cuts_it_off() {
    let (_home, store) = temp_store();
    create(&store, "work");
    let first = turn("q1", "a1");
    store.append(&name("work"), &first).unwrap();
    append_raw(&store, "work", r#"{"role":"user","content":"q2 cut o"#);

    assert_eq!(store.snapshot(&name("work")).unwrap().history, first);

    // Appending after the torn line must not glue the next entry onto it (that would
    // turn a skippable last line into a corrupt middle line).
    let second = turn("q2", "a2");
    store.append(&name("work"), &second).unwrap();
    let expected: Vec<_> = first.iter().cloned().chain(second).collect();
    assert_eq!(store.snapshot(&name("work")).unwrap().history, expected);
    assert_eq!(
        std::fs::read_to_string(history_path(&store, "work")).unwrap(),
        jsonl(&expected)
    );
}

#[test]
fn a_complete_last_entry_missing_only_its_newline_is_kept() {
    let (_home, store) = temp_store();
    create(&store, "work");
    let question = entry(Role::User, "q1");
    append_raw(&store, "work", &serde_json::to_string(&question).unwrap());
    assert_eq!(
        store.snapshot(&name("work")).unwrap().history,
        vec![question.clone()]
    );

    let answer = entry(Role::Assistant, "a1");
    store
        .append(&name("work"), std::slice::from_ref(&answer))
        .unwrap();
    assert_eq!(
        store.snapshot(&name("work")).unwrap().history,
        vec![question, answer]
    );
}

#[test]
fn a_corrupt_middle_line_is_an_error_naming_the_file() {
    let (_home, store) = temp_store();
    create(&store, "work");
    let path = history_path(&store, "work");
    let [q, a] = turn("q", "a");
    std::fs::write(
        &path,
        format!("{}not json at all\n{}", jsonl(&[q]), jsonl(&[a])),
    )
    .unwrap();

    let err = store.snapshot(&name("work")).unwrap_err();
    match &err {
        CoreError::Corrupt { what, path: p, .. } => {
            assert_eq!((*what, p), ("session history", &path));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn a_corrupt_session_file_is_reported_as_corrupt() {
    let (_home, store) = temp_store();
    create(&store, "work");
    let path = store
        .paths()
        .session_dir(&name("work"))
        .join("session.json");
    std::fs::write(&path, "{ \"name\": \"work\", ").unwrap();

    for err in [
        store.load_meta(&name("work")).unwrap_err(),
        store.snapshot(&name("work")).unwrap_err(),
        store.update(&name("work"), |_| Ok(())).unwrap_err(),
    ] {
        match &err {
            CoreError::Corrupt { what, path: p, .. } => {
                assert_eq!((*what, p), ("session file", &path));
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(err.to_string().contains("fix or remove it"), "{err}");
    }
}

#[test]
fn a_missing_session_is_no_such_session_everywhere() {
    let (_home, store) = temp_store();
    let ghost = name("ghost");
    let errors = [
        store.load_meta(&ghost).unwrap_err(),
        store.snapshot(&ghost).unwrap_err(),
        store.append(&ghost, &turn("q", "a")).unwrap_err(),
        store.update(&ghost, |_| Ok(())).unwrap_err(),
        store
            .fold(&ghost, 0, (String::new(), DataClass::Internal), 0)
            .unwrap_err(),
        store.reset(&ghost).unwrap_err(),
        store.set_active(&ghost).unwrap_err(),
    ];
    for err in errors {
        assert!(
            matches!(&err, CoreError::NoSuchSession(n) if n == "ghost"),
            "{err:?}"
        );
        assert!(err.to_string().contains("pai init ghost"), "{err}");
    }
    // Nothing was created on the way.
    assert!(!store.paths().session_dir(&ghost).exists());
    assert_eq!(store.active().unwrap(), None);
}

#[cfg(unix)]
#[test]
fn session_files_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let (_home, store) = temp_store();
    create(&store, "work");
    let dir = store.paths().session_dir(&name("work"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let check = || {
        assert_eq!(mode(&dir), 0o700, "session dir");
        assert_eq!(mode(&dir.join("session.json")), 0o600, "session.json");
        assert_eq!(mode(&dir.join("history.jsonl")), 0o600, "history.jsonl");
        assert_eq!(mode(&dir.join(".lock")), 0o600, ".lock");
    };
    check();
    // Still private after the files are rewritten and appended to.
    store.append(&name("work"), &turn("q", "a")).unwrap();
    store.update(&name("work"), |_| Ok(())).unwrap();
    store.reset(&name("work")).unwrap();
    store.set_active(&name("work")).unwrap();
    check();
    assert_eq!(mode(&store.paths().home.join("active")), 0o600, "active");
    assert_eq!(mode(&store.paths().sessions_dir()), 0o700, "sessions dir");
}
