//! `pai init`: creating, protecting and replacing sessions, and refusing bad names.

use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;

use super::{MODEL, Pai, snapshot};

#[tokio::test(flavor = "multi_thread")]
async fn init_creates_the_session_and_makes_it_active() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();

    let run = pai.init("work", &mock.base_url());

    assert_eq!(run.stderr, "", "a local endpoint needs no key, so no note");
    snapshot!(pai, "init_local", run.stdout);
    assert!(pai.session_dir("work").join("session.json").is_file());
    assert_eq!(pai.history("work").len(), 0);
    assert_eq!(
        std::fs::read_to_string(pai.home.home().join("active")).unwrap(),
        "work"
    );
    let meta = pai.session_json("work");
    assert_eq!(
        (
            &meta["name"],
            &meta["provider"],
            &meta["model"],
            &meta["base_url"]
        ),
        (
            &"work".into(),
            &"openai".into(),
            &MODEL.into(),
            &mock.base_url().into()
        )
    );
    assert!(meta.get("api_key").is_none(), "{meta}");
}

#[test]
fn init_for_a_remote_provider_without_a_key_notes_how_to_add_one() {
    let pai = Pai::new();
    let run = pai
        .run(&["init", "cloud", "openai", "--model", "gpt-4o-mini"])
        .success();
    snapshot!(
        pai,
        "init_remote_without_key",
        format!("{}--- stderr ---\n{}", run.stdout, run.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_refuses_to_overwrite_without_force() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    pai.init("work", &mock.base_url());
    mock.reply_json("hi", 3, 1).await;
    pai.run(&["work", "prompt", "hello"]).success();
    let meta_before = std::fs::read(pai.session_dir("work").join("session.json")).unwrap();

    let line = pai
        .run(&[
            "init",
            "work",
            "openai",
            "--model",
            "other",
            "--base-url",
            &mock.base_url(),
        ])
        .error_line();

    snapshot!(pai, "init_exists", line);
    assert_eq!(
        std::fs::read(pai.session_dir("work").join("session.json")).unwrap(),
        meta_before
    );
    assert_eq!(pai.history("work").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn init_force_replaces_the_session_and_empties_its_history() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    pai.init("work", &mock.base_url());
    mock.reply_json("hi", 3, 1).await;
    pai.run(&["work", "prompt", "hello"]).success();
    assert_eq!(pai.history("work").len(), 2);

    pai.run(&[
        "init",
        "work",
        "openai",
        "--model",
        "other",
        "--base-url",
        &mock.base_url(),
        "--force",
    ])
    .success();

    assert_eq!(pai.history("work").len(), 0);
    let status = pai.status_json("work");
    assert_eq!(
        (&status["model"], &status["messages"]),
        (&"other".into(), &0.into())
    );
}

#[test]
fn bad_session_names_fail_with_one_line_and_create_nothing() {
    let pai = Pai::new();
    let long = "x".repeat(65);
    let mut lines = String::new();
    for name in [
        "a/b",
        "..",
        long.as_str(),
        "bell\u{7}name",
        "status",
        "init",
    ] {
        let line = pai
            .run(&["init", name, "openai", "--model", MODEL])
            .error_line();
        lines.push_str(&format!("{name:?}\n  {line}\n"));
        assert!(
            !pai.sessions_dir().exists(),
            "{name:?} created {:?}",
            pai.home.files()
        );
        assert!(!pai.home.home().join("active").exists());
    }
    snapshot!(pai, "init_bad_names", lines);
}

#[test]
fn the_longest_allowed_name_works() {
    let pai = Pai::new();
    let name = "x".repeat(64);
    pai.run(&["init", &name, "lmstudio", "--model", MODEL])
        .success();
    assert!(pai.session_dir(&name).join("session.json").is_file());
}

#[test]
fn an_unknown_provider_fails_and_creates_nothing() {
    let pai = Pai::new();
    let line = pai
        .run(&["init", "work", "nosuch", "--model", MODEL])
        .error_line();
    snapshot!(pai, "init_unknown_provider", line);
    assert!(!pai.sessions_dir().exists());
}

#[test]
fn a_missing_or_empty_model_fails_and_creates_nothing() {
    let pai = Pai::new();
    let missing = pai.run(&["init", "work", "openai"]).error_line();
    assert!(missing.contains("--model"), "{missing}");
    let empty = pai
        .run(&["init", "work", "openai", "--model", " "])
        .error_line();
    assert!(empty.contains("--model cannot be empty"), "{empty}");
    assert!(!pai.sessions_dir().exists());
}

#[test]
fn a_base_url_that_is_not_http_fails_and_creates_nothing() {
    let pai = Pai::new();
    let line = pai
        .run(&[
            "init",
            "work",
            "openai",
            "--model",
            MODEL,
            "--base-url",
            "ftp://example.org",
        ])
        .error_line();
    assert!(line.contains("is not an http(s) URL"), "{line}");
    assert!(!pai.sessions_dir().exists());
}

#[test]
fn prompting_a_missing_session_says_how_to_create_it() {
    let pai = Pai::new();
    let line = pai.run(&["ghost", "prompt", "hi"]).error_line();
    snapshot!(pai, "prompt_missing_session", line);
    let line = pai.run(&["prompt", "hi"]).error_line();
    snapshot!(pai, "prompt_no_active_session", line);
}
