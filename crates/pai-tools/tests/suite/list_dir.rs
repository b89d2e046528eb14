use pai_tools::ToolOutput;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::support::{Sandbox, call, error, text};

fn tree() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file("b.txt", "12345");
    sandbox.file("a/inner.rs", "fn main() {}\n");
    sandbox.file("a/deep/x", "");
    sandbox.file(".hidden", "h");
    sandbox.file(".git/HEAD", "ref: refs/heads/main\n");
    sandbox.link("to_a", std::path::Path::new("a"));
    sandbox
}

#[tokio::test]
async fn lists_one_level_sorted_with_types_and_sizes() {
    let sandbox = tree();
    let out = call("list_dir", json!({}), &sandbox.cx()).await;
    assert_eq!(
        out,
        Ok(ToolOutput::text(
            "file  .hidden  1 bytes\n\
             dir   a/\n\
             file  b.txt  5 bytes\n\
             link  to_a -> a\n"
        ))
    );
}

#[tokio::test]
async fn lists_deeper_levels_without_git_or_entering_links() {
    let sandbox = tree();
    let out = text(
        "list_dir",
        json!({ "path": ".", "depth": 3 }),
        &sandbox.cx(),
    )
    .await;
    assert_eq!(
        out,
        "file  .hidden  1 bytes\n\
         dir   a/\n\
         dir   a/deep/\n\
         file  a/deep/x  0 bytes\n\
         file  a/inner.rs  13 bytes\n\
         file  b.txt  5 bytes\n\
         link  to_a -> a\n"
    );
    assert_eq!(
        text("list_dir", json!({ "path": "a/deep" }), &sandbox.cx()).await,
        "file  x  0 bytes\n"
    );
}

#[tokio::test]
async fn a_huge_directory_is_cut_with_a_marker() {
    let sandbox = Sandbox::new();
    for i in 0..1200 {
        sandbox.file(&format!("many/f{i:04}"), "");
    }
    let cx = pai_tools::ToolContext {
        max_output_bytes: 1024 * 1024,
        ..sandbox.cx()
    };
    let out = call("list_dir", json!({ "path": "many" }), &cx)
        .await
        .unwrap();
    assert!(out.truncated);
    let lines: Vec<&str> = out.content.lines().collect();
    assert_eq!(lines.len(), 1001);
    assert_eq!(lines[0], "file  f0000  0 bytes");
    assert_eq!(lines[999], "file  f0999  0 bytes");
    assert_eq!(
        lines[1000],
        "[… stopped after 1000 entries; list a subdirectory or use a smaller depth to see the rest]"
    );

    // The session's smaller output cap cuts earlier, still with the tool's own marker.
    let out = call("list_dir", json!({ "path": "many" }), &sandbox.cx())
        .await
        .unwrap();
    assert!(out.truncated);
    assert!(out.content.len() < 32 * 1024);
    assert!(
        out.content
            .ends_with("use a smaller depth to see the rest]")
    );
}

#[tokio::test]
async fn files_empty_directories_and_bad_depths_are_explained() {
    let sandbox = Sandbox::new();
    sandbox.file("f.txt", "x");
    std::fs::create_dir(sandbox.root.join("empty")).unwrap();
    let cx = sandbox.cx();
    assert_eq!(
        error("list_dir", json!({ "path": "f.txt" }), &cx)
            .await
            .to_string(),
        "'f.txt' is a file, not a directory; use read_file to read it"
    );
    assert_eq!(
        text("list_dir", json!({ "path": "empty" }), &cx).await,
        "('empty' is empty)"
    );
    assert_eq!(
        error("list_dir", json!({ "depth": 9 }), &cx)
            .await
            .to_string(),
        "invalid arguments: depth must be between 1 and 5"
    );
}
