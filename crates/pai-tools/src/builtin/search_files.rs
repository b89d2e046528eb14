use std::io::Read;
use std::path::Path;
use std::time::Instant;

use async_trait::async_trait;
use ignore::WalkBuilder;
use ignore::overrides::OverrideBuilder;
use regex::Regex;
use serde::Deserialize;

use super::paths::{Guard, open_file_beneath, show};
use super::{Cancel, blocking, cut, info, looks_binary, page_bytes, parse_args, plural};
use crate::tool::{Effect, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

const MAX_MATCHES: usize = 200;
/// Longer matching lines are cut to this many bytes.
const MAX_LINE_BYTES: usize = 300;
/// Larger files are skipped (and counted), not searched.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// `search_files`: regex search through text files under a directory, ripgrep style.
#[derive(Debug, Clone)]
pub struct SearchFiles {
    info: ToolInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    pattern: String,
    path: Option<String>,
    glob: Option<String>,
}

impl SearchFiles {
    /// The tool, ready to register.
    pub fn new() -> Self {
        let info = info(
            "search_files",
            "Search text files inside the allowed directories for lines matching a regular \
             expression (Rust regex syntax; prefix `(?i)` to ignore case). Files listed in \
             .gitignore, hidden files, binary files and files over 4 MiB are skipped; links \
             are not followed. Returns one `path:line:text` line per match (paths as \
             read_file takes them, long lines cut to 300 bytes), at most 200 matches; a cut \
             result ends with a `[…` line — then narrow the pattern, path or glob.",
            serde_json::json!({
                "type": "object",
                "properties": {
                    "pattern": {
                        "type": "string",
                        "description": "Regular expression to look for in each line."
                    },
                    "path": {
                        "type": "string",
                        "description": "Directory (or single file) to search, relative to the first allowed directory or absolute. Default '.'."
                    },
                    "glob": {
                        "type": "string",
                        "description": "Only search files whose path matches this glob, e.g. '*.rs' or 'src/**/*.toml'."
                    }
                },
                "required": ["pattern"],
                "additionalProperties": false
            }),
            Effect::Read,
        );
        Self { info }
    }
}

impl Default for SearchFiles {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for SearchFiles {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: serde_json::Value,
        cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: Args = parse_args(args)?;
        if args.pattern.is_empty() {
            return Err(ToolError::InvalidArguments(
                "the pattern is empty; give a regular expression to look for".into(),
            ));
        }
        let regex = Regex::new(&args.pattern).map_err(|e| {
            ToolError::InvalidArguments(format!(
                "the pattern is not a valid regular expression: {e}"
            ))
        })?;
        let cx = cx.clone();
        blocking(move |cancel| search(&cx, &args, &regex, cancel)).await
    }
}

/// A walked file's bytes, opened beneath `root`; `None` when it cannot be opened there
/// or is too large (counted in `skipped`).
fn read_beneath(root: &Path, path: &Path, skipped: &mut Skipped) -> Option<Vec<u8>> {
    let rel = path.strip_prefix(root).ok()?;
    let file = open_file_beneath(root, rel).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.len() > MAX_FILE_BYTES {
        skipped.large += 1;
        return None;
    }
    let mut bytes = Vec::new();
    // `take`: a file growing after the size check still stops at the cap.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        skipped.large += 1;
        return None;
    }
    Some(bytes)
}

#[derive(Default)]
struct Skipped {
    binary: usize,
    large: usize,
}

fn search(
    cx: &ToolContext,
    args: &Args,
    regex: &Regex,
    cancel: &Cancel,
) -> Result<ToolOutput, ToolError> {
    let guard = Guard::new(cx)?;
    let start = guard.resolve_existing(args.path.as_deref().unwrap_or("."))?;
    let base = guard.roots()[0].clone();
    let root = guard
        .roots()
        .iter()
        .find(|r| start.path.starts_with(r))
        .cloned()
        .unwrap_or_else(|| base.clone());
    let mut walk = WalkBuilder::new(&start.path);
    walk.hidden(true)
        .git_ignore(true)
        // .gitignore counts even outside a git checkout.
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b));
    // VCS internals and PAI's own files are not walked into at all.
    let skip = guard.clone();
    walk.filter_entry(move |entry| skip.protection(entry.path()).is_none());
    if let Some(glob) = &args.glob {
        let invalid = |e: ignore::Error| {
            ToolError::InvalidArguments(format!("the glob '{glob}' is not valid: {e}"))
        };
        let overrides = OverrideBuilder::new(&start.path)
            .add(glob)
            .map_err(invalid)?
            .build()
            .map_err(invalid)?;
        walk.overrides(overrides);
    }
    // Stop early enough to hand back partial results before the registry's time cap.
    let deadline = Instant::now() + cx.timeout / 2;
    let budget = page_bytes(cx, usize::MAX);
    let mut out = String::new();
    let mut matches = 0;
    let mut skipped = Skipped::default();
    let mut stop = None;
    'files: for entry in walk.build() {
        cancel.check()?;
        if Instant::now() > deadline {
            stop = Some(format!(
                "[… search stopped after {:?}; narrow the path or glob to search less]",
                cx.timeout / 2
            ));
            break;
        }
        // Unreadable entries are skipped, as ripgrep does.
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        // The walker goes by path, so a directory swapped for a symlink mid-walk could
        // lead it out; the content is read only through an open beneath the root that
        // refuses a symlink at every step.
        let Some(bytes) = read_beneath(&root, path, &mut skipped) else {
            continue;
        };
        if looks_binary(&bytes) {
            skipped.binary += 1;
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            skipped.binary += 1;
            continue;
        };
        let shown = show(&base, path);
        for (i, line) in text.lines().enumerate() {
            if !regex.is_match(line) {
                continue;
            }
            if matches == MAX_MATCHES {
                stop = Some(format!(
                    "[… stopped at {MAX_MATCHES} matches; narrow the pattern, path or glob to see the rest]"
                ));
                break 'files;
            }
            let line = line.trim_end();
            let text = cut(line, MAX_LINE_BYTES);
            let ellipsis = if text.len() < line.len() {
                " […]"
            } else {
                ""
            };
            let hit = format!("{shown}:{}:{text}{ellipsis}\n", i + 1);
            if out.len() + hit.len() > budget {
                stop = Some(format!(
                    "[… stopped after {} that fill the output; narrow the pattern, path or glob to see the rest]",
                    plural(matches, "match", "matches")
                ));
                break 'files;
            }
            out.push_str(&hit);
            matches += 1;
        }
    }
    let mut notes = Vec::new();
    if skipped.binary > 0 {
        notes.push(plural(skipped.binary, "binary file", "binary files"));
    }
    if skipped.large > 0 {
        notes.push(format!(
            "{} over 4 MiB",
            plural(skipped.large, "file", "files")
        ));
    }
    if matches == 0 {
        out = format!("no matches for /{}/ in '{}'", args.pattern, start.shown);
        if let Some(stop) = &stop {
            out = format!("{out}\n{stop}");
        }
    } else if let Some(stop) = &stop {
        out.push_str(stop);
    }
    if !notes.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("(skipped {})", notes.join(" and ")));
    }
    Ok(ToolOutput {
        content: out.trim_end().to_string() + "\n",
        truncated: stop.is_some(),
    })
}
