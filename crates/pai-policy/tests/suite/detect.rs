//! The detectors on a benign corpus: this workspace's own code and docs, where nothing is
//! a real secret or anyone's personal data. What they find there is a false positive.

// Test helpers: clippy.toml allows unwrap in `#[test]` functions only.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use pai_policy::detect;

/// The workspace's Rust sources (up to their `#[cfg(test)]` module: tests plant values on
/// purpose), Markdown, manifests and Cargo.lock. The detector's own rule file and tests are
/// left out: they are samples of what it must find.
fn corpus() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    walk(&root, &mut out);
    out
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let skip = name.starts_with('.')
            || matches!(name.as_str(), "target" | "tests" | "examples" | "snapshots")
            || path.ends_with("pai-policy/src/detect");
        if skip {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let text = if name.ends_with(".rs") {
            text.split("#[cfg(test)]").next().unwrap().to_string()
        } else if name.ends_with(".md") || name.ends_with(".toml") || name == "Cargo.lock" {
            text
        } else {
            continue;
        };
        out.push((path, text));
    }
}

#[test]
fn the_workspace_itself_is_nearly_clean() {
    let corpus = corpus();
    let bytes: usize = corpus.iter().map(|(_, t)| t.len()).sum();
    assert!(
        bytes > 300_000,
        "the corpus is too small to mean anything: {bytes} bytes"
    );
    let mut found = Vec::new();
    for (path, text) in &corpus {
        for f in detect::scan(text) {
            found.push(format!(
                "{}: {} {} {:?}",
                path.display(),
                f.kind,
                f.rule,
                &text[f.start..f.end]
            ));
        }
    }
    println!(
        "{} files, {bytes} bytes, {} findings",
        corpus.len(),
        found.len()
    );
    assert!(found.len() <= 3, "false positives:\n{}", found.join("\n"));
}
