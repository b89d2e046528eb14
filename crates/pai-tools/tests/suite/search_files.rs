use pai_tools::{ToolContext, ToolError};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::support::{Sandbox, call, error, text};

fn project() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file(
        "src/main.rs",
        "fn main() {\n    println!(\"TODO: greet\");\n}\n",
    );
    sandbox.file("src/lib.rs", "// todo later\npub fn f() {}\n");
    sandbox.file("README.md", "Nothing TODO here? TODO!\n");
    sandbox.file(".gitignore", "target/\n*.log\n");
    sandbox.file("target/debug/out.rs", "TODO ignored by .gitignore\n");
    sandbox.file("run.log", "TODO ignored log\n");
    sandbox.file(".secret/env", "TODO hidden\n");
    sandbox.file("blob.bin", b"TODO\0binary");
    sandbox
}

#[tokio::test]
async fn finds_matches_as_path_line_text_honouring_gitignore() {
    let sandbox = project();
    let out = text("search_files", json!({ "pattern": "TODO" }), &sandbox.cx()).await;
    assert_eq!(
        out,
        "README.md:1:Nothing TODO here? TODO!\n\
         src/main.rs:2:    println!(\"TODO: greet\");\n\
         (skipped 1 binary file)\n"
    );
    let out = text(
        "search_files",
        json!({ "pattern": "(?i)todo", "path": "src", "glob": "*.rs" }),
        &sandbox.cx(),
    )
    .await;
    assert_eq!(
        out,
        "src/lib.rs:1:// todo later\nsrc/main.rs:2:    println!(\"TODO: greet\");\n"
    );
    let out = text(
        "search_files",
        json!({ "pattern": "fn", "path": "src/lib.rs" }),
        &sandbox.cx(),
    )
    .await;
    assert_eq!(out, "src/lib.rs:2:pub fn f() {}\n");
}

#[tokio::test]
async fn no_match_and_bad_patterns_are_explained() {
    let sandbox = project();
    let cx = sandbox.cx();
    assert_eq!(
        text(
            "search_files",
            json!({ "pattern": "nothing-like-this", "path": "src" }),
            &cx
        )
        .await,
        "no matches for /nothing-like-this/ in 'src'\n"
    );
    let err = error("search_files", json!({ "pattern": "fn (" }), &cx).await;
    assert!(
        matches!(&err, ToolError::InvalidArguments(m) if m.starts_with("the pattern is not a valid regular expression")),
        "{err}"
    );
    let err = error("search_files", json!({ "pattern": "x", "glob": "{a" }), &cx).await;
    assert!(
        matches!(&err, ToolError::InvalidArguments(m) if m.starts_with("the glob '{a' is not valid")),
        "{err}"
    );
}

#[tokio::test]
async fn the_match_count_and_line_length_are_capped() {
    let sandbox = Sandbox::new();
    let lines: String = (1..=500).map(|i| format!("hit {i}\n")).collect();
    sandbox.file("many.txt", lines);
    sandbox.file("wide.txt", format!("hit {}\n", "w".repeat(1000)));
    let cx = ToolContext {
        max_output_bytes: 1024 * 1024,
        ..sandbox.cx()
    };
    let out = call("search_files", json!({ "pattern": "^hit" }), &cx)
        .await
        .unwrap();
    assert!(out.truncated);
    let lines: Vec<&str> = out.content.lines().collect();
    assert_eq!(lines.len(), 201);
    assert_eq!(lines[0], "many.txt:1:hit 1");
    assert_eq!(lines[199], "many.txt:200:hit 200");
    assert_eq!(
        lines[200],
        "[… stopped at 200 matches; narrow the pattern, path or glob to see the rest]"
    );

    let out = text(
        "search_files",
        json!({ "pattern": "w+", "path": "wide.txt" }),
        &cx,
    )
    .await;
    assert_eq!(out, format!("wide.txt:1:hit {} […]\n", "w".repeat(296)));
}
