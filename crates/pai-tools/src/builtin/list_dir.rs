use std::path::Path;

use async_trait::async_trait;
use cap_fs_ext::DirExt;
use cap_std::fs::{Dir, DirEntry};
use serde::Deserialize;

use super::paths::Guard;
use super::{Cancel, blocking, info, page_bytes, parse_args};
use crate::tool::{Effect, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

const MAX_ENTRIES: usize = 1000;
const MAX_DEPTH: u32 = 5;

/// `list_dir`: a directory's entries with their type and size, sorted by name.
#[derive(Debug, Clone)]
pub struct ListDir {
    info: ToolInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: Option<String>,
    depth: Option<u32>,
}

impl ListDir {
    /// The tool, ready to register.
    pub fn new() -> Self {
        let info = info(
            "list_dir",
            "List a directory inside the allowed directories, sorted by name. Each line is \
             `dir  NAME/`, `file  NAME  SIZE bytes` or `link  NAME -> TARGET` (links are \
             shown, never followed). `depth` 1 (the default) lists the entries of the directory alone; \
             up to 5 also lists subdirectories. Version-control internals (`.git` and the \
             like) and PAI's own files are never listed. At most 1000 entries; a \
             cut listing ends with a `[…` line.",
            serde_json::json!({
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "description": "Directory to list, relative to the first allowed directory or absolute. Default '.'."
                    },
                    "depth": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_DEPTH,
                        "description": "How many levels to list. Default 1."
                    }
                },
                "additionalProperties": false
            }),
            Effect::Read,
        );
        Self { info }
    }
}

impl Default for ListDir {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for ListDir {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: serde_json::Value,
        cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: Args = parse_args(args)?;
        let depth = args.depth.unwrap_or(1);
        if !(1..=MAX_DEPTH).contains(&depth) {
            return Err(ToolError::InvalidArguments(format!(
                "depth must be between 1 and {MAX_DEPTH}"
            )));
        }
        let path = args.path.unwrap_or_else(|| ".".into());
        let cx = cx.clone();
        blocking(move |cancel| list(&cx, &path, depth, cancel)).await
    }
}

struct Listing {
    lines: String,
    entries: usize,
    budget: usize,
    full: bool,
}

impl Listing {
    fn push(&mut self, line: String) {
        if self.entries >= MAX_ENTRIES || self.lines.len() + line.len() + 1 > self.budget {
            self.full = true;
            return;
        }
        self.lines.push_str(&line);
        self.lines.push('\n');
        self.entries += 1;
    }
}

fn list(
    cx: &ToolContext,
    requested: &str,
    depth: u32,
    cancel: &Cancel,
) -> Result<ToolOutput, ToolError> {
    let guard = Guard::new(cx)?;
    let dir = guard.resolve_existing(requested)?;
    let meta = std::fs::metadata(&dir.path)
        .map_err(|e| ToolError::Failed(format!("cannot read '{}': {e}", dir.shown)))?;
    if !meta.is_dir() {
        return Err(ToolError::Failed(format!(
            "'{}' is a file, not a directory; use read_file to read it",
            dir.shown
        )));
    }
    let failed = |e: std::io::Error| ToolError::Failed(format!("cannot list '{}': {e}", dir.shown));
    // Listed through handles opened beneath the root, never through a symlink, so a
    // directory swapped for a link after the check is not listed.
    let handle = dir.open_dir().map_err(failed)?;
    let mut listing = Listing {
        lines: String::new(),
        entries: 0,
        budget: page_bytes(cx, usize::MAX),
        full: false,
    };
    let at = Place {
        guard: &guard,
        path: &dir.path,
        prefix: "",
    };
    walk(&handle, &at, depth, &mut listing, cancel).map_err(failed)?;
    cancel.check()?;
    if listing.full {
        listing.lines.push_str(&format!(
            "[… stopped after {} entries; list a subdirectory or use a smaller depth to see the rest]",
            listing.entries
        ));
        return Ok(ToolOutput {
            content: listing.lines,
            truncated: true,
        });
    }
    if listing.entries == 0 {
        return Ok(ToolOutput::text(format!("('{}' is empty)", dir.shown)));
    }
    Ok(ToolOutput::text(listing.lines))
}

/// Where a walk is: the canonical path of the directory and its name in the listing.
struct Place<'a> {
    guard: &'a Guard,
    path: &'a Path,
    prefix: &'a str,
}

fn walk(
    dir: &Dir,
    at: &Place<'_>,
    depth: u32,
    listing: &mut Listing,
    cancel: &Cancel,
) -> std::io::Result<()> {
    let mut entries: Vec<DirEntry> = dir.entries()?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if listing.full || cancel.is_set() {
            return Ok(());
        }
        let file_name = entry.file_name();
        let path = at.path.join(&file_name);
        // VCS internals and PAI's own files are left out, not just left closed.
        if at.guard.protection(&path).is_some() {
            continue;
        }
        let name = format!("{}{}", at.prefix, file_name.to_string_lossy());
        // `DirEntry::file_type` does not follow symlinks: a link is listed, never entered.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            listing.push(format!("dir   {name}/"));
            if depth > 1 {
                let prefix = format!("{name}/");
                let inner = Place {
                    guard: at.guard,
                    path: &path,
                    prefix: &prefix,
                };
                let opened = dir.open_dir_nofollow(&file_name);
                if let Err(e) =
                    opened.and_then(|sub| walk(&sub, &inner, depth - 1, listing, cancel))
                {
                    listing.push(format!("      ({name}/ cannot be read: {e})"));
                }
            }
        } else if kind.is_symlink() {
            let target = dir
                .read_link_contents(&file_name)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            listing.push(format!("link  {name} -> {target}"));
        } else if kind.is_file() {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            listing.push(format!("file  {name}  {size} bytes"));
        } else {
            listing.push(format!("other {name}"));
        }
    }
    Ok(())
}
