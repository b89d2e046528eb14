use std::io::{self, BufRead, BufReader};

use async_trait::async_trait;
use serde::Deserialize;

use super::paths::resolve_existing;
use super::{Cancel, blocking, cut, info, looks_binary, page_bytes, parse_args};
use crate::tool::{Effect, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

/// Most bytes of file text one call returns (less when the session's output cap is lower).
const MAX_PAGE_BYTES: usize = 256 * 1024;
const DEFAULT_LIMIT: u64 = 2000;

/// `read_file`: one page of a UTF-8 text file under the roots, by line.
#[derive(Debug, Clone)]
pub struct ReadFile {
    info: ToolInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: String,
    offset: Option<u64>,
    limit: Option<u64>,
}

impl ReadFile {
    /// The tool, ready to register.
    pub fn new() -> Self {
        let info = info(
            "read_file",
            "Read a UTF-8 text file inside the allowed directories. Relative paths start at \
             the first allowed directory. Returns the file's lines starting at line `offset` \
             (1-based, default 1), at most `limit` lines (default 2000) and at most 256 KiB. \
             When more of the file follows, the output ends with a line starting `[… more:` \
             that names the offset to call again with. \
             Binary files (NUL bytes or invalid UTF-8) are refused.",
            serde_json::json!({
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "description": "File to read, relative to the first allowed directory or absolute."
                    },
                    "offset": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "First line to return, counting from 1. Default 1."
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Most lines to return. Default 2000."
                    }
                },
                "required": ["path"],
                "additionalProperties": false
            }),
            Effect::Read,
        );
        Self { info }
    }
}

impl Default for ReadFile {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for ReadFile {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: serde_json::Value,
        cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let args: Args = parse_args(args)?;
        let offset = args.offset.unwrap_or(1);
        let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
        if offset == 0 || limit == 0 {
            return Err(ToolError::InvalidArguments(
                "offset and limit count lines from 1; give 1 or more".into(),
            ));
        }
        let cx = cx.clone();
        blocking(move |cancel| read(&cx, &args.path, offset, limit, cancel)).await
    }
}

fn read(
    cx: &ToolContext,
    requested: &str,
    offset: u64,
    limit: u64,
    cancel: &Cancel,
) -> Result<ToolOutput, ToolError> {
    let file = resolve_existing(cx, requested)?;
    let failed = |e: io::Error| ToolError::Failed(format!("cannot read '{}': {e}", file.shown));
    let meta = std::fs::metadata(&file.path).map_err(failed)?;
    if meta.is_dir() {
        return Err(ToolError::Failed(format!(
            "'{}' is a directory; use list_dir to see what it holds",
            file.shown
        )));
    }
    if !meta.is_file() {
        return Err(ToolError::Failed(format!(
            "'{}' is not a regular file",
            file.shown
        )));
    }
    let not_text = || {
        ToolError::Failed(format!(
            "'{}' is not a text file (it has NUL bytes or is not valid UTF-8); \
             read_file reads text files only",
            file.shown
        ))
    };
    // The metadata above only picks the message; the content comes from an open beneath
    // the root that refuses a symlink swapped in since the check.
    let opened = file.open_file().map_err(failed)?;
    if !opened.metadata().map_err(failed)?.is_file() {
        return Err(ToolError::Failed(format!(
            "'{}' is not a regular file",
            file.shown
        )));
    }
    let mut reader = BufReader::with_capacity(64 * 1024, opened);
    if looks_binary(reader.fill_buf().map_err(failed)?) {
        return Err(not_text());
    }

    let budget = page_bytes(cx, MAX_PAGE_BYTES);
    let last = offset.saturating_add(limit - 1);
    let mut out = String::new();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut stop = None;
    loop {
        cancel.check()?;
        line.clear();
        let in_page = line_no + 1 >= offset;
        // Skipped lines are not kept; a page line keeps at most what still fits.
        let keep = if in_page {
            budget.saturating_sub(out.len() + 1)
        } else {
            0
        };
        let Some(len) = next_line(&mut reader, &mut line, keep).map_err(failed)? else {
            break;
        };
        line_no += 1;
        if !in_page {
            continue;
        }
        if line_no > last {
            stop = Some(Stop::More(line_no));
            break;
        }
        if line.contains(&0) {
            return Err(not_text());
        }
        if line.len() < len {
            if !out.is_empty() {
                stop = Some(Stop::More(line_no));
                break;
            }
            // A single line longer than the page: show its start rather than nothing.
            let text = match std::str::from_utf8(&line) {
                Ok(text) => text,
                // The cut may split a character; what comes before it is fine.
                Err(e) if e.error_len().is_none() => {
                    std::str::from_utf8(&line[..e.valid_up_to()]).map_err(|_| not_text())?
                }
                Err(_) => return Err(not_text()),
            };
            out.push_str(cut(text, budget));
            out.push('\n');
            stop = Some(Stop::LongLine(line_no));
            break;
        }
        out.push_str(std::str::from_utf8(&line).map_err(|_| not_text())?);
        out.push('\n');
    }

    if line_no < offset && !(line_no == 0 && offset == 1) {
        return Err(ToolError::InvalidArguments(format!(
            "offset {offset} is past the end of '{}', which has {line_no} lines",
            file.shown
        )));
    }
    let marker = match stop {
        None if out.is_empty() => {
            return Ok(ToolOutput::text(format!("('{}' is empty)", file.shown)));
        }
        None => return Ok(ToolOutput::text(out)),
        Some(Stop::More(next)) => format!(
            "[… more: lines {offset}–{} of '{}' shown; call read_file with offset={next}]",
            next - 1,
            file.shown
        ),
        Some(Stop::LongLine(n)) => format!(
            "[… line {n} is longer than {budget} bytes and was cut; \
             call read_file with offset={} for the lines after it]",
            n + 1
        ),
    };
    out.push_str(&marker);
    Ok(ToolOutput {
        content: out,
        truncated: true,
    })
}

enum Stop {
    /// Lines from this one on were not shown.
    More(u64),
    /// This line alone exceeds the page and was cut.
    LongLine(u64),
}

/// Reads one line, keeping at most `keep` bytes of it in `buf` without its line ending, and
/// returns the line's full length (without `\n`), or `None` at the end of the file. Lines
/// of any length are read in bounded memory.
fn next_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    keep: usize,
) -> io::Result<Option<usize>> {
    let mut total = 0;
    let mut read_any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..room.min(chunk.len())]);
        total += chunk.len();
        let used = chunk.len() + usize::from(done);
        reader.consume(used);
        if done {
            break;
        }
    }
    if !read_any {
        return Ok(None);
    }
    if buf.len() == total && buf.last() == Some(&b'\r') {
        buf.pop();
        total -= 1;
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::next_line;

    #[test]
    fn lines_are_read_in_bounded_memory() {
        let mut input: &[u8] = b"short\r\nlooooong\nlast";
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut input, &mut buf, 100).unwrap(), Some(5));
        assert_eq!(buf, b"short");
        buf.clear();
        assert_eq!(next_line(&mut input, &mut buf, 3).unwrap(), Some(8));
        assert_eq!(buf, b"loo");
        buf.clear();
        assert_eq!(next_line(&mut input, &mut buf, 100).unwrap(), Some(4));
        assert_eq!(buf, b"last");
        buf.clear();
        assert_eq!(next_line(&mut input, &mut buf, 100).unwrap(), None);
    }
}
