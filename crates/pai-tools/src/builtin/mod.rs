//! PAI's built-in tools. File tools reach only what [`paths`] lets through; every tool caps
//! what it reads and returns, and ends a cut result with a marker that says how to get more.

mod current_time;
mod html;
mod http_get;
mod http_request;
mod list_dir;
mod net;
mod paths;
mod read_file;
mod search_files;
mod sqlite_query;
mod write_file;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pai_types::ToolSpec;
use serde::de::DeserializeOwned;

pub use current_time::CurrentTime;
pub use http_get::{FetchedDocument, HttpGet, fetch_document};
pub use http_request::{Api, HttpRequest};
pub use list_dir::ListDir;
pub use net::{classify_addr, url_host};
pub use read_file::ReadFile;
pub use search_files::SearchFiles;
pub use sqlite_query::SqliteQuery;
pub use write_file::WriteFile;

use crate::tool::{Effect, Tool, ToolContext, ToolError, ToolInfo};

/// Every built-in tool, ready to register. Filter them by effect with
/// [`ToolRegistry::filtered`](crate::ToolRegistry::filtered).
pub fn builtin_tools() -> Vec<Arc<dyn Tool>> {
    builtin_tools_with(Vec::new(), BTreeMap::new())
}

/// [`builtin_tools`] with `http_request` offering the configured `apis` and
/// `sqlite_query` the configured `databases` (name → absolute path).
pub fn builtin_tools_with(
    apis: Vec<Api>,
    databases: BTreeMap<String, PathBuf>,
) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(ReadFile::new()),
        Arc::new(ListDir::new()),
        Arc::new(SearchFiles::new()),
        Arc::new(WriteFile::new()),
        Arc::new(HttpGet::new()),
        Arc::new(HttpRequest::with_apis(apis)),
        Arc::new(SqliteQuery::with_databases(databases)),
        Arc::new(CurrentTime::new()),
    ]
}

/// `html` as the readable text `http_get` makes of a page (same layout, same bounds on
/// the work), at most `text_budget` bytes of it: for importing HTML files as resources.
pub fn html_to_text(html: &[u8], text_budget: usize) -> Result<String, ToolError> {
    let cancel = Cancel(Arc::new(AtomicBool::new(false)));
    html::to_text(html, 100, text_budget, &cancel).map(|c| c.text)
}

/// The names of the built-in tools: what policy rules and session constraints may name
/// besides MCP tools.
pub fn builtin_tool_names() -> Vec<String> {
    builtin_tools()
        .iter()
        .map(|t| t.info().spec.name.clone())
        .collect()
}

fn info(name: &str, description: &str, parameters: serde_json::Value, effect: Effect) -> ToolInfo {
    ToolInfo {
        spec: ToolSpec {
            name: name.into(),
            description: description.into(),
            parameters,
        },
        effects: BTreeSet::from([effect]),
        source: "builtin".into(),
    }
}

/// Models sometimes send `null` for "no arguments"; that means `{}`.
fn parse_args<T: DeserializeOwned>(args: serde_json::Value) -> Result<T, ToolError> {
    let args = if args.is_null() {
        serde_json::json!({})
    } else {
        args
    };
    serde_json::from_value(args).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

/// Set when the caller stopped waiting (the registry's time cap dropped the call), so
/// blocking work can give up instead of running on unseen.
#[derive(Debug, Clone, Default)]
struct Cancel(Arc<AtomicBool>);

impl Cancel {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<(), ToolError> {
        if self.is_set() {
            Err(ToolError::Failed("the call was stopped".into()))
        } else {
            Ok(())
        }
    }
}

struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.0.store(true, Ordering::Relaxed);
    }
}

/// Runs filesystem or SQLite work off the async threads. Dropping the returned future
/// (a timeout) sets the [`Cancel`] flag the work polls.
async fn blocking<T, F>(work: F) -> Result<T, ToolError>
where
    T: Send + 'static,
    F: FnOnce(&Cancel) -> Result<T, ToolError> + Send + 'static,
{
    let cancel = Cancel::default();
    let _guard = CancelOnDrop(cancel.clone());
    tokio::task::spawn_blocking(move || work(&cancel))
        .await
        .map_err(|e| ToolError::Failed(format!("the tool stopped unexpectedly: {e}")))?
}

/// Room kept under the context's output cap for a tool's own "how to get more" marker, so
/// the registry's blunt cut does not swallow it.
const MARKER_ROOM: usize = 512;

/// How many bytes of body a tool may produce: its own cap, or less to fit the session's.
fn page_bytes(cx: &ToolContext, own_cap: usize) -> usize {
    own_cap.min(cx.max_output_bytes.saturating_sub(MARKER_ROOM).max(1024))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Text files have no NUL bytes; this is how git and ripgrep tell binary files apart too.
fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
