use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
pub use pai_types::Effect;
use pai_types::ToolSpec;
use serde::Serialize;

/// A tool as the model and the user see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolInfo {
    /// Name, description and JSON Schema of the arguments, as sent to the model.
    pub spec: ToolSpec,
    /// What calling it may do; modes and approvals decide by these.
    pub effects: BTreeSet<Effect>,
    /// `builtin`, or `mcp:<server>`.
    pub source: String,
}

/// What a tool call may touch and how much it may return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolContext {
    /// File tools work only under these directories (canonical paths).
    pub roots: Vec<PathBuf>,
    /// Output beyond this many bytes is cut, with a marker saying so.
    pub max_output_bytes: usize,
    /// A call running longer than this is stopped.
    pub timeout: Duration,
}

impl Default for ToolContext {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            max_output_bytes: 32 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A tool's result: text for the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolOutput {
    /// What the model reads back.
    pub content: String,
    /// The content was cut to the size cap.
    pub truncated: bool,
}

impl ToolOutput {
    /// Complete output, not truncated.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            truncated: false,
        }
    }
}

/// Why a tool call failed. The message goes back to the model, so it says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The model asked for a tool that is not registered.
    #[error("no tool named '{0}'")]
    Unknown(String),
    /// The arguments are not JSON or do not fit the tool's schema.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// A path resolved outside every allowed root.
    #[error("'{path}' is outside the allowed roots ({roots}); only files under them can be used")]
    OutsideRoots {
        /// The path as the model gave it.
        path: String,
        /// The allowed roots, listed for the model.
        roots: String,
    },
    /// The file or directory named does not exist.
    #[error("'{0}' does not exist")]
    NotFound(String),
    /// The call ran past [`ToolContext::timeout`].
    #[error("the call did not finish within {}s and was stopped", .0.as_secs())]
    Timeout(Duration),
    /// Anything else, already worded for the model.
    #[error("{0}")]
    Failed(String),
}

/// One tool. Small enough to fake in a test.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The tool's spec, effects and source.
    fn info(&self) -> &ToolInfo;
    /// Runs the tool once; the error is reported back to the model, not raised to the user.
    async fn call(
        &self,
        args: serde_json::Value,
        cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError>;
}
