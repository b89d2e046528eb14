//! The command line's own polish: global flags in the session-first form, errors in the
//! user's own syntax, help listing every session-first command, and a warning for an API
//! key typed as an argument.

use pai_test_support::MockOpenAi;
use pretty_assertions::assert_eq;

use super::{API_KEY, MODEL, Pai, Run};

#[tokio::test(flavor = "multi_thread")]
async fn global_flags_work_between_the_session_and_its_command() {
    let mock = MockOpenAi::start().await;
    mock.reply_json("ok", 1, 1).await;
    let pai = Pai::new();
    pai.init("s1", &mock.base_url());

    let run = pai.run(&["s1", "-vv", "prompt", "x"]).success();

    assert_eq!(run.stdout, "ok\n");
    assert!(
        run.stderr.contains("DEBUG"),
        "-vv was not applied: {}",
        run.stderr
    );
    assert_eq!(pai.history("s1").len(), 2);
    let status = pai.run(&["s1", "-vv", "status"]).success().stdout;
    assert!(status.starts_with("session   s1"), "{status}");
}

#[test]
fn errors_in_the_session_first_form_show_the_users_syntax() {
    let pai = Pai::new();
    pai.run(&["init", "s1", "llamacpp", "--model", MODEL])
        .success();

    let missing = pai.run(&["s1", "model"]).code(2).stderr;
    assert!(missing.contains("Usage: pai s1 model <MODEL>"), "{missing}");
    assert!(!missing.contains("--session"), "{missing}");
    let unknown = pai.run(&["s1", "prompt", "--bogus", "x"]).code(2).stderr;
    assert!(unknown.contains("Usage: pai s1 prompt "), "{unknown}");
    assert!(!unknown.contains("--session"), "{unknown}");

    for twice in [
        &["s1", "status", "other"][..],
        &["s1", "prompt", "--session", "s2", "x"],
    ] {
        let line = pai.run(twice).code(2).stderr;
        assert_eq!(
            line,
            format!(
                "error: 'pai s1 {}' already names the session; name it only once, before the command or with --session\n",
                twice[1]
            )
        );
    }
    // A mistyped command after the session is named as such, not as an unknown 's1'.
    let typo = pai.run(&["s1", "-v", "promt", "x"]).code(2).stderr;
    assert!(
        typo.starts_with(
            "error: 'promt' is not a command for session 's1'; did you mean 'prompt'?"
        ),
        "{typo}"
    );
    assert_eq!(typo.lines().count(), 1, "{typo}");
    // Help is not an error, and stays the command's own.
    let help = pai.run(&["s1", "status", "--help"]).success().stdout;
    assert!(help.contains("Usage: pai status"), "{help}");
}

#[test]
fn help_lists_every_session_first_command() {
    let pai = Pai::new();
    let help = pai.run(&["--help"]).success().stdout.replace('\n', " ");
    for command in [
        "prompt",
        "agent",
        "chat",
        "status",
        "reset",
        "model",
        "models",
        "switch",
        "budget",
        "allow",
        "deny",
        "constraints",
        "safe",
        "policy",
        "system",
        "export",
    ] {
        let listed = help
            .split("(works for ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap();
        assert!(
            listed.contains(&format!("{command},"))
                || listed.contains(&format!("{command};"))
                || listed.contains(&format!(" {command} ")),
            "{command} missing from: {listed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_given_as_an_argument_is_stored_with_a_warning_and_stdin_gets_none() {
    let mock = MockOpenAi::start().await;
    let pai = Pai::new();
    let vault = pai.run(&["keygen"]).success().stdout.trim().to_string();
    let init = |name: &str, key: &str, stdin: &str| {
        Run::from_cmd(
            pai.cmd()
                .args([
                    "init",
                    name,
                    "openai",
                    "--model",
                    MODEL,
                    "--base-url",
                    &mock.base_url(),
                    "--api-key",
                    key,
                ])
                .env("PAI_ENCRYPTION_KEY", &vault)
                .write_stdin(stdin),
        )
        .success()
    };

    let argv = init("a", API_KEY, "");
    let piped = init("b", "-", API_KEY);

    assert_eq!(
        argv.stderr,
        "warning: an API key on the command line shows in the process list and your shell history; next time pass --api-key - and send the key on stdin\n"
    );
    assert!(!argv.all_output().contains(API_KEY));
    assert_eq!(piped.stderr, "");
}
