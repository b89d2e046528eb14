//! Commands that need no session and no server: help, providers, keygen, completions.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::{Pai, snapshot};

#[test]
fn help_texts_are_pinned() {
    let pai = Pai::new();
    for (name, args) in [
        ("help", &["--help"][..]),
        ("help_init", &["init", "--help"]),
        ("help_prompt", &["prompt", "--help"]),
    ] {
        let run = pai.run(args).success();
        assert_eq!(run.stderr, "", "{name}");
        snapshot!(pai, name, run.stdout);
    }
}

#[test]
fn no_arguments_prints_usage_and_fails() {
    let run = Pai::new().run(&[]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("Usage: pai"), "{run:#?}");
}

#[test]
fn providers_are_listed() {
    let pai = Pai::new();
    let run = pai.run(&["providers"]).success();
    snapshot!(pai, "providers", run.stdout);
}

#[test]
fn providers_json_has_name_locality_endpoint_and_key_var() {
    let rows = Pai::new().run(&["providers", "--json"]).success().json();
    let rows = rows.as_array().unwrap();
    assert_eq!(
        rows[0],
        json!({
            "name": "openai",
            "kind": "openai-compatible",
            "base_url": "https://api.openai.com/v1",
            "key_env": "OPENAI_API_KEY",
            "headers": [],
            "locality": "remote",
            "about": "OpenAI, or any OpenAI-compatible server with --base-url",
            "builtin": true,
        })
    );
    let local = rows.iter().find(|r| r["name"] == "llamacpp").unwrap();
    assert_eq!(local["locality"], "local");
    assert_eq!(local["key_env"], json!(null));
}

#[test]
fn keygen_prints_a_fresh_fernet_key_each_time() {
    let pai = Pai::new();
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let run = pai.run(&["keygen"]).success();
            // Not a terminal: the key alone, no export hint.
            assert_eq!(run.stderr, "");
            let key = run.stdout.strip_suffix('\n').unwrap().to_string();
            assert_eq!(key.len(), 44, "{key}");
            assert!(key.ends_with('='), "{key}");
            assert!(
                key[..43]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "not URL-safe base64: {key}"
            );
            key
        })
        .collect();
    assert_ne!(keys[0], keys[1]);
}

#[test]
fn completions_are_printed_for_bash() {
    let run = Pai::new().run(&["completions", "bash"]).success();
    assert!(run.stdout.contains("_pai()"), "{}", run.stdout);
    assert!(run.stdout.contains("complete -F _pai"), "{}", run.stdout);
}
