use std::io::{self, Write};

use async_trait::async_trait;
use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::OpenOptions;
use serde::Deserialize;

use super::paths::{resolve_for_write, temp_name};
use super::{Cancel, blocking, info, parse_args};
use crate::tool::{Effect, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

/// Most bytes one call writes; larger content goes in several calls with `append`.
const MAX_CONTENT_BYTES: usize = 1024 * 1024;

/// `write_file`: creates, replaces (atomically) or appends to a text file under the roots.
#[derive(Debug, Clone)]
pub struct WriteFile {
    info: ToolInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: String,
    content: String,
    #[serde(default)]
    append: bool,
}

impl WriteFile {
    /// The tool, ready to register.
    pub fn new() -> Self {
        let info = info(
            "write_file",
            "Write text to a file inside the allowed directories, creating missing parent \
             directories. Replaces the whole file (atomically: readers see the old or the new \
             content, never half) unless `append` is true, which adds `content` at the end. \
             At most 1 MiB per call; write larger files in parts with `append`. Relative \
             paths start at the first allowed directory.",
            serde_json::json!({
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "description": "File to write, relative to the first allowed directory or absolute."
                    },
                    "content": {
                        "type": "string",
                        "description": "The text to write."
                    },
                    "append": {
                        "type": "boolean",
                        "description": "Add to the end of the file instead of replacing it. Default false."
                    }
                },
                "required": ["path", "content"],
                "additionalProperties": false
            }),
            Effect::Write,
        );
        Self { info }
    }
}

impl Default for WriteFile {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for WriteFile {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: serde_json::Value,
        cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: Args = parse_args(args)?;
        if args.content.len() > MAX_CONTENT_BYTES {
            return Err(ToolError::InvalidArguments(format!(
                "content is {} bytes; write_file takes at most {MAX_CONTENT_BYTES} per call, \
                 so write the first part and add the rest with append=true",
                args.content.len()
            )));
        }
        let cx = cx.clone();
        blocking(move |cancel| write(&cx, &args, cancel)).await
    }
}

fn write(cx: &ToolContext, args: &Args, cancel: &Cancel) -> Result<ToolOutput, ToolError> {
    let target = resolve_for_write(cx, &args.path)?;
    let failed = |e: io::Error| ToolError::Failed(format!("cannot write '{}': {e}", target.shown));
    let Some(name) = target.file_name() else {
        return Err(ToolError::Failed(format!(
            "'{}' is a directory; give a file path",
            target.shown
        )));
    };
    // Everything below works relative to a handle on the parent, reached from the root
    // without following a symlink: a directory swapped for a link since the check makes
    // the write fail instead of landing outside.
    let parent = target.create_parent().map_err(failed)?;
    let existing = match parent.symlink_metadata(name) {
        Ok(meta) if meta.is_dir() => {
            return Err(ToolError::Failed(format!(
                "'{}' is a directory; give a file path",
                target.shown
            )));
        }
        Ok(meta) if meta.is_symlink() => {
            return Err(ToolError::Failed(format!(
                "cannot write '{}': it was replaced by a symbolic link while being written; \
                 try again",
                target.shown
            )));
        }
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed(e)),
    };
    cancel.check()?;
    let bytes = args.content.len();
    if args.append {
        let mut options = OpenOptions::new();
        options.append(true).create(true).follow(FollowSymlinks::No);
        let mut file = parent.open_with(name, &options).map_err(failed)?;
        file.write_all(args.content.as_bytes()).map_err(failed)?;
        return Ok(ToolOutput::text(format!(
            "appended {bytes} bytes to '{}'",
            target.shown
        )));
    }
    // Write beside the target, then rename over it: the file is never seen half-written.
    let temp = temp_name(name);
    let mut options = OpenOptions::new();
    options
        .write(true)
        .create_new(true)
        .follow(FollowSymlinks::No);
    let mut file = parent.open_with(&temp, &options).map_err(failed)?;
    let written = (|| {
        file.write_all(args.content.as_bytes())?;
        if let Some(meta) = &existing {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        // Relative to the same parent handle: the rename cannot be redirected either.
        parent.rename(&temp, &parent, name)
    })();
    if let Err(e) = written {
        let _ = parent.remove_file(&temp);
        return Err(failed(e));
    }
    let how = if existing.is_some() {
        "replaced"
    } else {
        "created"
    };
    Ok(ToolOutput::text(format!(
        "wrote {bytes} bytes to '{}' ({how})",
        target.shown
    )))
}
