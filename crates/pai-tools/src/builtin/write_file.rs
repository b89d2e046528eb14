use std::fs::{self, OpenOptions};
use std::io::{self, Write};

use async_trait::async_trait;
use serde::Deserialize;

use super::paths::resolve_for_write;
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
    let existing = match fs::metadata(&target.path) {
        Ok(meta) if meta.is_dir() => {
            return Err(ToolError::Failed(format!(
                "'{}' is a directory; give a file path",
                target.shown
            )));
        }
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed(e)),
    };
    let parent = target
        .path
        .parent()
        .ok_or_else(|| ToolError::Failed(format!("'{}' has no parent directory", target.shown)))?;
    fs::create_dir_all(parent).map_err(failed)?;
    cancel.check()?;
    let bytes = args.content.len();
    if args.append {
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&target.path)
            .map_err(failed)?;
        file.write_all(args.content.as_bytes()).map_err(failed)?;
        return Ok(ToolOutput::text(format!(
            "appended {bytes} bytes to '{}'",
            target.shown
        )));
    }
    // Write beside the target, then rename over it: the file is never seen half-written.
    let mut temp = tempfile::NamedTempFile::new_in(parent).map_err(failed)?;
    temp.write_all(args.content.as_bytes()).map_err(failed)?;
    if let Some(meta) = &existing {
        fs::set_permissions(temp.path(), meta.permissions()).map_err(failed)?;
    }
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(&target.path).map_err(|e| failed(e.error))?;
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
