use std::os::unix::fs::{MetadataExt, PermissionsExt};

use pai_tools::{ToolError, ToolOutput};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::support::{Sandbox, call, error};

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn creates_a_file_and_its_missing_parents() {
    let sandbox = Sandbox::new();
    let out = call(
        "write_file",
        json!({ "path": "notes/2025/today.md", "content": "# Today\n" }),
        &sandbox.cx(),
    )
    .await;
    assert_eq!(
        out,
        Ok(ToolOutput::text(
            "wrote 8 bytes to 'notes/2025/today.md' (created)"
        ))
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.root.join("notes/2025/today.md")).unwrap(),
        "# Today\n"
    );
}

#[tokio::test]
async fn replacing_is_atomic_keeps_permissions_and_leaves_no_temp_files() {
    let sandbox = Sandbox::new();
    let path = sandbox.file("conf/app.toml", "old = true\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let inode_before = std::fs::metadata(&path).unwrap().ino();

    let out = call(
        "write_file",
        json!({ "path": "conf/app.toml", "content": "new = true\n" }),
        &sandbox.cx(),
    )
    .await
    .unwrap();
    assert_eq!(out.content, "wrote 11 bytes to 'conf/app.toml' (replaced)");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new = true\n");
    let meta = std::fs::metadata(&path).unwrap();
    // A new inode: the content was renamed into place, not rewritten in place.
    assert_ne!(meta.ino(), inode_before);
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(entries(&sandbox.root.join("conf")), ["app.toml"]);
}

#[tokio::test]
async fn appends_to_new_and_existing_files() {
    let sandbox = Sandbox::new();
    let cx = sandbox.cx();
    for part in ["one\n", "two\n"] {
        call(
            "write_file",
            json!({ "path": "log/out.txt", "content": part, "append": true }),
            &cx,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(sandbox.root.join("log/out.txt")).unwrap(),
        "one\ntwo\n"
    );
}

#[tokio::test]
async fn writing_through_a_link_inside_the_root_replaces_its_target() {
    let sandbox = Sandbox::new();
    let target = sandbox.file("real.txt", "old");
    sandbox.link("alias.txt", &target);
    let out = call(
        "write_file",
        json!({ "path": "alias.txt", "content": "new" }),
        &sandbox.cx(),
    )
    .await
    .unwrap();
    assert_eq!(out.content, "wrote 3 bytes to 'real.txt' (replaced)");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    assert!(
        std::fs::symlink_metadata(sandbox.root.join("alias.txt"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[tokio::test]
async fn oversized_content_and_directories_are_refused() {
    let sandbox = Sandbox::new();
    let path = sandbox.file("keep.txt", "keep");
    let cx = sandbox.cx();
    let big = "x".repeat(1024 * 1024 + 1);
    let err = error(
        "write_file",
        json!({ "path": "keep.txt", "content": big }),
        &cx,
    )
    .await;
    assert_eq!(
        err,
        ToolError::InvalidArguments(
            "content is 1048577 bytes; write_file takes at most 1048576 per call, so write the \
             first part and add the rest with append=true"
                .into()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep");
    std::fs::create_dir(sandbox.root.join("d")).unwrap();
    assert_eq!(
        error("write_file", json!({ "path": "d", "content": "x" }), &cx)
            .await
            .to_string(),
        "'d' is a directory; give a file path"
    );
    assert_eq!(entries(&sandbox.root), ["d", "keep.txt"]);
}
