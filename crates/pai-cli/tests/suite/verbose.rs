//! `-v` says on stderr what PAI decided for each request; `-vv` adds the wire. Neither
//! ever shows the API key or a secret the detectors recognise.

use pai_test_support::MockOpenAi;

use super::{API_KEY, FAST_CONFIG, MODEL, Pai, Run, snapshot};

/// Found by the secret detectors (an AWS access key id).
const TYPED_KEY: &str = "AKIAQ3EGRJ7MNOZ4V5XA";

/// A remote provider whose key comes from CLOUD_KEY.
async fn remote() -> (MockOpenAi, Pai) {
    let mock = MockOpenAi::start().await;
    mock.reply_json("Paris is the capital.", 5, 3).await;
    mock.reply_stream(&["Paris ", "is the capital."], 5, 3)
        .await;
    let pai = Pai::bare();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.cloud]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nlocality = \"remote\"\nkey_env = \"CLOUD_KEY\"\n",
        mock.base_url()
    ));
    pai.run(&["init", "r", "cloud", "--model", MODEL]).success();
    (mock, pai)
}

fn run(pai: &Pai, args: &[&str]) -> Run {
    Run::from_cmd(pai.cmd().env("CLOUD_KEY", API_KEY).args(args)).success()
}

fn prompt() -> String {
    format!("capital of France? my key is {TYPED_KEY}")
}

#[tokio::test(flavor = "multi_thread")]
async fn v_shows_the_endpoint_the_parts_their_sizes_the_tools_and_the_redactions() {
    let (_mock, pai) = remote().await;
    let out = run(&pai, &["-v", "r", "prompt", "--no-tools", &prompt()]);
    assert_eq!(out.stdout, "Paris is the capital.\n");
    let err = &out.stderr;
    snapshot!(pai, "verbose_decisions", err);
    // Decisions only: no body, no key, no secret; plain text off a terminal.
    assert!(!err.contains("capital of France"), "{err}");
    assert!(!out.all_output().contains(API_KEY), "{out:#?}");
    assert!(!out.all_output().contains(TYPED_KEY), "{out:#?}");
    assert!(!err.contains('\u{1b}'), "{err:?}");

    // The tools offered are named, with the size their descriptions add.
    let tools = run(&pai, &["-v", "r", "prompt", "again"]);
    assert!(tools.stderr.contains("tools offered: "), "{}", tools.stderr);
    assert!(tools.stderr.contains("read_file"), "{}", tools.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn vv_shows_the_wire_with_the_key_and_secrets_scrubbed() {
    let (mock, pai) = remote().await;
    for stream in ["--no-stream", "--stream"] {
        let out = run(
            &pai,
            &["-vv", "r", "prompt", "--no-tools", stream, &prompt()],
        );
        let err = &out.stderr;
        // The decisions, then the request body as sent (placeholder in it) and the reply.
        assert!(err.contains("model request to cloud (remote)"), "{err}");
        assert!(
            err.contains("\u{2192} POST http://127.0.0.1:") && err.contains("/v1/chat/completions"),
            "{err}"
        );
        assert!(err.contains("\"model\":\"m\""), "{err}");
        assert!(err.contains("\u{27e8}AWS_KEY_1\u{27e9}"), "{err}");
        assert!(
            err.contains("\u{2190} 200 OK from cloud at http://127.0.0.1:"),
            "{err}"
        );
        assert!(err.contains("is the capital."), "{err}");
        assert!(!out.all_output().contains(API_KEY), "{stream}: {out:#?}");
        assert!(!out.all_output().contains(TYPED_KEY), "{stream}: {out:#?}");
    }
    assert!(mock.chat_requests().await.len() >= 2);
    // The key did go, in the header the wire log leaves out.
    let auth = mock.chat_authorizations().await;
    assert_eq!(
        auth[0].as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vv_masks_a_secret_that_a_local_endpoint_is_sent() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    let out = Run::from_cmd(pai.cmd().args([
        "-vv",
        "s",
        "prompt",
        "--no-tools",
        "--no-stream",
        &prompt(),
    ]))
    .success();
    // A local endpoint may see it (the policy's default) ...
    let sent = serde_json::to_string(&mock.chat_requests().await).unwrap();
    assert!(sent.contains(TYPED_KEY), "{sent}");
    // ... but the diagnostics never print it.
    assert!(out.stderr.contains("\u{2192} POST "), "{}", out.stderr);
    assert!(!out.stderr.contains(TYPED_KEY), "{}", out.stderr);
    assert!(
        out.stderr.contains("\u{27e8}AWS_KEY\u{27e9}"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vv_scrubs_the_key_from_what_the_server_sends_back() {
    let mock = MockOpenAi::start().await;
    mock.reply_json(&format!("you sent {API_KEY}"), 5, 3).await;
    let pai = Pai::bare();
    pai.home.write_config(&format!(
        "{FAST_CONFIG}\n[providers.cloud]\nkind = \"openai-compatible\"\nbase_url = \"{}\"\nlocality = \"remote\"\nkey_env = \"CLOUD_KEY\"\n",
        mock.base_url()
    ));
    pai.run(&["init", "r", "cloud", "--model", MODEL]).success();
    let out = run(
        &pai,
        &["-vv", "r", "prompt", "--no-tools", "--no-stream", "echo"],
    );
    assert!(
        out.stderr.contains("\"content\":\"you sent [REDACTED]\""),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(API_KEY), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn diagnostics_are_coloured_only_on_a_terminal_without_no_color() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 5, 3).await;
    let pai = Pai::new();
    pai.init("s", &mock.base_url());
    // --raw: the answer adds no colour of its own, so any escape is the diagnostics'.
    let args = "-v s prompt --no-tools --no-stream --raw hi";
    let Some(coloured) = pai.run_in_pty(args, "") else {
        return;
    };
    assert!(
        coloured.contains("model request to openai (local)"),
        "{coloured:?}"
    );
    assert!(coloured.contains('\u{1b}'), "{coloured:?}");
    let plain = pai.run_in_pty_with(args, "", &[("NO_COLOR", "1")]).unwrap();
    assert!(
        plain.contains("model request to openai (local)"),
        "{plain:?}"
    );
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
}
