//! The facade an embedder uses: a workspace opened from explicit paths, sessions created
//! and moved through it, and engines wired by it — no environment read behind its back.

use std::sync::{Arc, Mutex};

use pai_core::{
    CoreError, EngineOptions, Limits, NewSession, Paths, SwitchTo, Turn, Vault, Workspace,
};
use pai_test_support::{MockOpenAi, TempHome};
use pai_types::{Locality, Mode, Secret, SessionName};
use pretty_assertions::assert_eq;

fn workspace(home: &TempHome) -> Workspace {
    Workspace::open(Paths::new(home.home(), home.config())).unwrap()
}

fn new_session(name: &str, url: &str, key: Option<&str>) -> NewSession {
    NewSession {
        name: SessionName::new(name).unwrap(),
        provider: "openai".into(),
        model: Some("m".into()),
        base_url: Some(url.into()),
        api_key: key.map(|k| Secret::new(k.to_string())),
        budget_tokens: None,
        force: false,
    }
}

#[tokio::test]
async fn init_encrypts_the_key_with_the_vault_it_is_handed_and_only_then() {
    let home = TempHome::new();
    let key = Vault::generate_key();
    let opened = Arc::new(Mutex::new(0));
    let (count, k) = (opened.clone(), key.clone());
    let ws = workspace(&home).with_vault(move || {
        *count.lock().unwrap() += 1;
        Vault::from_key(&k)
    });
    let created = ws
        .init(new_session(
            "s",
            "http://127.0.0.1:9/v1",
            Some("sk-secret-1234"),
        ))
        .await
        .unwrap();
    assert_eq!(*opened.lock().unwrap(), 1);
    assert_eq!(created.locality, Locality::Local);
    let stored = created.meta.api_key.clone().unwrap();
    assert!(!stored.contains("sk-secret"));
    assert_eq!(
        Vault::from_key(&key)
            .unwrap()
            .decrypt(&stored)
            .unwrap()
            .expose(),
        "sk-secret-1234"
    );
    let on_disk = std::fs::read_to_string(home.home().join("sessions/s/session.json")).unwrap();
    assert!(!on_disk.contains("sk-secret"), "{on_disk}");

    // Without a key the vault is never asked for.
    ws.init(new_session("t", "http://127.0.0.1:9/v1", None))
        .await
        .unwrap();
    assert_eq!(*opened.lock().unwrap(), 1);
    assert_eq!(ws.store().active().unwrap().unwrap().as_str(), "t");

    // The stored key is decrypted with the workspace's vault, never PAI_ENCRYPTION_KEY.
    let wired = ws
        .engine(
            &created.meta,
            Mode::Prompt,
            &EngineOptions::new(home.root()),
        )
        .await
        .unwrap();
    drop(wired);
    assert_eq!(*opened.lock().unwrap(), 2);
    // A workspace given no vault cannot use the stored key, and says so.
    let err = workspace(&home)
        .engine(
            &created.meta,
            Mode::Prompt,
            &EngineOptions::new(home.root()),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("gave PAI no encryption key"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_input_writes_nothing() {
    let home = TempHome::new();
    let ws = workspace(&home)
        .with_vault(|| Err(CoreError::Vault("PAI_ENCRYPTION_KEY is not set".into())));
    for (new, says) in [
        (
            new_session("s", "https://user:pw@api.example.com/v1", None),
            "carries a credential",
        ),
        (
            new_session("s", "ftp://example.com", None),
            "not an http(s) URL",
        ),
        (
            NewSession {
                model: None,
                ..new_session("s", "http://127.0.0.1:9/v1", None)
            },
            "name the model with --model",
        ),
        (
            new_session("s", "http://127.0.0.1:9/v1", Some("sk-x")),
            "PAI_ENCRYPTION_KEY",
        ),
    ] {
        let err = ws.init(new).await.unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
        assert!(!home.home().join("sessions/s").exists(), "{says}");
    }
}

#[tokio::test]
async fn switching_provider_drops_the_key_and_endpoint_of_the_old_one() {
    let home = TempHome::new();
    let key = Vault::generate_key();
    let ws = workspace(&home).with_vault(move || Vault::from_key(&key));
    ws.init(new_session(
        "s",
        "http://127.0.0.1:9/v1",
        Some("sk-old-key"),
    ))
    .await
    .unwrap();
    let name = SessionName::new("s").unwrap();

    // Same provider, new model: key and endpoint stay.
    let same = ws
        .switch(
            &name,
            SwitchTo {
                provider: "openai".into(),
                model: Some("m2".into()),
                base_url: None,
                api_key: None,
            },
        )
        .unwrap();
    assert!(same.meta.api_key.is_some());
    assert_eq!(same.meta.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));

    // Another provider: the old key and endpoint do not follow.
    let moved = ws
        .switch(
            &name,
            SwitchTo {
                provider: "groq".into(),
                model: Some("llama".into()),
                base_url: None,
                api_key: None,
            },
        )
        .unwrap();
    assert_eq!(moved.meta.api_key, None);
    assert_eq!(moved.meta.base_url, None);
    assert_eq!(moved.missing_key_env.as_deref(), Some("GROQ_API_KEY"));
    let status = ws.status(&name).unwrap();
    assert_eq!(
        (status.provider.as_str(), status.model.as_str()),
        ("groq", "llama")
    );
}

#[tokio::test]
async fn an_engine_from_the_workspace_runs_a_turn_and_usage_counts_it() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("hello back", 7, 3).await;
    let home = TempHome::new();
    let ws = workspace(&home);
    let created = ws
        .init(new_session("s", &mock.base_url(), None))
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let wired = ws
        .engine(
            &created.meta,
            Mode::Prompt,
            &EngineOptions::new(work.path()),
        )
        .await
        .unwrap();
    assert_eq!(wired.warnings, Vec::<String>::new());
    let turn = Turn {
        session: created.meta.name.clone(),
        mode: Mode::Prompt,
        input: "hi".into(),
        stream: false,
        model: None,
        limits: ws.limits(Limits::default()),
        system: None,
        attachments: Vec::new(),
        schema: None,
    };
    assert_eq!(turn.limits.max_calls_per_round, Some(8));
    let events = Arc::new(Mutex::new(0));
    let counted = events.clone();
    let outcome = wired
        .engine
        .run(&turn, &mut |_| *counted.lock().unwrap() += 1)
        .await
        .unwrap();
    assert_eq!(outcome.answer, "hello back");
    let usage = ws.usage(None).unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!((usage[0].prompt_tokens, usage[0].completion_tokens), (7, 3));
    // A root that does not exist is a clear error, not a silent fallback.
    let err = ws
        .engine(
            &created.meta,
            Mode::Prompt,
            &EngineOptions {
                roots: vec![work.path().join("missing")],
                ..EngineOptions::new(work.path())
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not exist; create it or pass another --root"),
        "{err}"
    );
}

#[tokio::test]
async fn the_default_tool_root_is_never_home_root_or_pai_own_dirs_and_those_stay_protected() {
    let home = TempHome::new();
    let ws = workspace(&home);
    let canonical = |p: &std::path::Path| p.canonicalize().unwrap();
    let work = home.root().join("work");
    std::fs::create_dir(&work).unwrap();

    // A plain working directory is the root, as before.
    let cx = ws.tool_context(&[], &work).unwrap();
    assert_eq!(cx.roots, vec![canonical(&work)]);
    // PAI's home, config dir and audit log are protected whatever the root.
    assert_eq!(
        cx.protected,
        vec![
            canonical(&home.home()),
            canonical(&home.config()),
            canonical(&home.home()).join("audit.db"),
        ]
    );

    // `/` and a directory holding PAI's dirs are never the default root.
    for cwd in [
        std::path::PathBuf::from("/"),
        home.root().to_path_buf(),
        home.home(),
    ] {
        let cx = ws.tool_context(&[], &cwd).unwrap();
        assert!(cx.roots.is_empty(), "{cwd:?} became a root");
        assert_eq!(cx.protected.len(), 3);
    }
    // Named explicitly, such a directory is used (the protected paths still apply).
    let cx = ws
        .tool_context(&[home.root().to_path_buf()], &work)
        .unwrap();
    assert_eq!(cx.roots, vec![canonical(home.root())]);

    // The user's home is never the default root either, and the engine says why.
    let mock = MockOpenAi::start().await;
    let created = ws
        .init(new_session("s", &mock.base_url(), None))
        .await
        .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        user_home: Some(elsewhere.path().to_path_buf()),
        ..EngineOptions::new(elsewhere.path())
    };
    let wired = ws.engine(&created.meta, Mode::Prompt, &opts).await.unwrap();
    assert_eq!(wired.notes.len(), 1, "{:?}", wired.notes);
    assert!(
        wired.notes[0].contains("is your home directory") && wired.notes[0].contains("--root"),
        "{}",
        wired.notes[0]
    );
    let wired = ws
        .engine(
            &created.meta,
            Mode::Prompt,
            &EngineOptions::new(elsewhere.path()),
        )
        .await
        .unwrap();
    assert!(wired.notes.is_empty(), "{:?}", wired.notes);
}
