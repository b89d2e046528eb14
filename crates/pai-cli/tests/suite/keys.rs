//! API keys: stored only encrypted, sent as a bearer token, read from the provider's env
//! var when none is stored, and never printed.

use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::{API_KEY, MODEL, Pai, Run, snapshot};

fn keygen(pai: &Pai) -> String {
    pai.run(&["keygen"]).success().stdout.trim().to_string()
}

/// `pai init s openai --api-key KEY` with `PAI_ENCRYPTION_KEY=vault` (when given).
fn init_with_key(
    pai: &Pai,
    mock: &MockOpenAi,
    vault: Option<&str>,
    key_arg: &str,
    stdin: &str,
) -> Run {
    let mut cmd = pai.cmd();
    cmd.args([
        "init",
        "s",
        "openai",
        "--model",
        MODEL,
        "--base-url",
        &mock.base_url(),
        "--api-key",
        key_arg,
    ])
    .write_stdin(stdin);
    if let Some(vault) = vault {
        cmd.env("PAI_ENCRYPTION_KEY", vault);
    }
    Run::from_cmd(&mut cmd)
}

#[track_caller]
fn assert_key_nowhere_on_disk(pai: &Pai, key: &str) {
    let files = pai.home.files();
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "the plaintext key is in {}",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_key_is_encrypted_sent_as_bearer_and_never_shown() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 4, 2).await;
    let pai = Pai::new();
    let vault = keygen(&pai);

    let init = init_with_key(&pai, &mock, Some(&vault), API_KEY, "").success();
    let mut prompt = pai.cmd();
    prompt
        .args(["s", "prompt", "hi"])
        .env("PAI_ENCRYPTION_KEY", &vault);
    let prompt = Run::from_cmd(&mut prompt).success();
    let status = pai.run(&["status"]).success();
    let status_json = pai.run(&["status", "--json"]).success();

    assert_eq!(prompt.stdout, "ok\n");
    assert_eq!(
        mock.chat_authorizations().await,
        [Some(format!("Bearer {API_KEY}"))]
    );
    assert!(
        status.stdout.contains("key       encrypted in session\n"),
        "{status:#?}"
    );
    assert_eq!(status_json.json()["key"], json!({ "kind": "session" }));
    for run in [&init, &prompt, &status, &status_json] {
        assert!(!run.all_output().contains(API_KEY), "{run:#?}");
    }
    let token = pai.session_json("s")["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.starts_with("gAAAAA"), "not a Fernet token: {token}");
    // session.json, history, audit.db and its WAL: the plaintext is in none of them.
    assert!(pai.home.home().join("audit.db").is_file());
    assert_key_nowhere_on_disk(&pai, API_KEY);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_key_dash_reads_the_key_from_stdin() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    let vault = keygen(&pai);

    let init = init_with_key(&pai, &mock, Some(&vault), "-", "sk-from-stdin\n").success();
    assert!(!init.all_output().contains("sk-from-stdin"));
    let mut prompt = pai.cmd();
    prompt
        .args(["prompt", "hi"])
        .env("PAI_ENCRYPTION_KEY", &vault);
    Run::from_cmd(&mut prompt).success();

    assert_eq!(
        mock.chat_authorizations().await,
        [Some("Bearer sk-from-stdin".to_string())],
        "the newline from stdin is trimmed"
    );
    assert_key_nowhere_on_disk(&pai, "sk-from-stdin");
}

#[tokio::test(flavor = "multi_thread")]
async fn storing_a_key_without_a_usable_encryption_key_writes_nothing() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();

    let missing = init_with_key(&pai, &mock, None, API_KEY, "").error_line();
    let malformed = init_with_key(&pai, &mock, Some("abc"), API_KEY, "").error_line();
    let empty_key = init_with_key(&pai, &mock, Some(&keygen(&pai)), "-", "\n").error_line();

    for line in [&missing, &malformed] {
        assert!(line.contains("'pai keygen'"), "{line}");
        assert!(!line.contains(API_KEY), "{line}");
    }
    snapshot!(pai, "api_key_without_encryption_key", missing);
    snapshot!(pai, "api_key_with_malformed_encryption_key", malformed);
    snapshot!(pai, "api_key_empty", empty_key);
    assert_eq!(
        std::fs::read_dir(pai.home.home()).unwrap().count(),
        0,
        "PAI_HOME must stay empty: {:?}",
        pai.home.files()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wrong_encryption_key_fails_before_anything_is_sent() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    init_with_key(&pai, &mock, Some(&keygen(&pai)), API_KEY, "").success();

    let mut prompt = pai.cmd();
    prompt
        .args(["prompt", "hi"])
        .env("PAI_ENCRYPTION_KEY", keygen(&pai));
    let wrong = Run::from_cmd(&mut prompt).error_line();
    let unset = pai.run(&["prompt", "hi"]).error_line();

    snapshot!(pai, "prompt_wrong_encryption_key", wrong);
    snapshot!(pai, "prompt_stored_key_without_encryption_key", unset);
    assert!(mock.chat_requests().await.is_empty());
    assert!(pai.history("s").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_provider_env_var_is_used_when_no_key_is_stored() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    let mut prompt = pai.cmd();
    prompt.args(["prompt", "hi"]).env("OPENAI_API_KEY", API_KEY);
    let prompt = Run::from_cmd(&mut prompt).success();
    let mut status = pai.cmd();
    status.args(["status"]).env("OPENAI_API_KEY", API_KEY);
    let status = Run::from_cmd(&mut status).success();
    let mut status_json = pai.cmd();
    status_json
        .args(["status", "--json"])
        .env("OPENAI_API_KEY", API_KEY);
    let status_json = Run::from_cmd(&mut status_json).success();

    assert_eq!(
        mock.chat_authorizations().await,
        [Some(format!("Bearer {API_KEY}"))]
    );
    assert!(
        status.stdout.contains("key       env var OPENAI_API_KEY\n"),
        "{status:#?}"
    );
    assert_eq!(
        status_json.json()["key"],
        json!({ "kind": "env", "detail": "OPENAI_API_KEY" })
    );
    for run in [&prompt, &status, &status_json] {
        assert!(!run.all_output().contains(API_KEY), "{run:#?}");
    }
    assert_key_nowhere_on_disk(&pai, API_KEY);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_key_wins_over_the_env_var() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    let vault = keygen(&pai);
    init_with_key(&pai, &mock, Some(&vault), API_KEY, "").success();

    let mut prompt = pai.cmd();
    prompt
        .args(["prompt", "hi"])
        .env("PAI_ENCRYPTION_KEY", &vault)
        .env("OPENAI_API_KEY", "sk-from-env");
    Run::from_cmd(&mut prompt).success();

    assert_eq!(
        mock.chat_authorizations().await,
        [Some(format!("Bearer {API_KEY}"))]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_any_key_a_local_server_gets_no_real_key() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());

    pai.run(&["prompt", "hi"]).success();

    // async-openai always sends the header, here with an empty token.
    let auth = mock.chat_authorizations().await;
    assert_eq!(auth.len(), 1);
    assert!(
        auth[0].as_deref().is_none_or(|a| a.trim() == "Bearer"),
        "{auth:?}"
    );
    assert_eq!(pai.status_json("s")["key"], json!({ "kind": "none" }));
}

#[test]
fn a_remote_session_without_a_key_fails_before_sending() {
    let pai = Pai::new();
    pai.run(&["init", "cloud", "openai", "--model", "gpt-4o-mini"])
        .success();

    let line = pai.run(&["prompt", "hi"]).error_line();

    snapshot!(pai, "prompt_remote_without_key", line);
    assert!(pai.history("cloud").is_empty());
}
