use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
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
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// File tools work only under these directories (canonical paths).
    pub roots: Vec<PathBuf>,
    /// Directories or files no file tool may read, list, search or write, whatever the
    /// roots: PAI's own state (its home, config dir, audit database). VCS internals
    /// (`.git`, `.hg`, `.svn`, `.jj`) are refused on top of these.
    pub protected: Vec<PathBuf>,
    /// Output beyond this many bytes is cut, with a marker saying so.
    pub max_output_bytes: usize,
    /// A call running longer than this is stopped.
    pub timeout: Duration,
    /// Asked before every outbound hop a network tool makes, and told of each one sent.
    pub net: Arc<dyn NetGate>,
}

impl Default for ToolContext {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            protected: Vec::new(),
            max_output_bytes: 32 * 1024,
            timeout: Duration::from_secs(30),
            net: Arc::new(PublicOnly),
        }
    }
}

/// One outbound hop a tool is about to make, as the egress gate sees it.
///
/// The tool resolves the host itself, so `addr` is the address it will connect to and
/// nothing else: a DNS answer cannot change between the check and the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The tool making the hop, e.g. `http_get`.
    pub tool: String,
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The full URL of this hop.
    pub url: String,
    /// The host as the URL parser read it: lowercase, punycode, IP literals normalised
    /// (`127.1` and `0x7f000001` both become `127.0.0.1`; IPv6 without brackets).
    pub host: String,
    /// The port connected to (the scheme's default when the URL names none).
    pub port: u16,
    /// The resolved address the tool will connect to: the one checked.
    pub addr: IpAddr,
    /// Why `addr` is not a public internet address (`loopback`, `private`, `link-local`,
    /// `cgnat`, `multicast`, `unspecified`, `broadcast`, `metadata`, `documentation`,
    /// `benchmarking`, `ipv4-mapped`, `ipv4-compatible`, `reserved`); `None` when it is one.
    /// See [`classify_addr`](crate::classify_addr).
    pub special: Option<&'static str>,
    /// The previous hop's URL when this hop follows a redirect.
    pub redirect_from: Option<String>,
}

/// What a hop sent, once it was sent (for the audit's egress row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSent {
    /// The hop, as it was checked.
    pub hop: Hop,
    /// Bytes of request body sent (0 for a GET).
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the exact request body (that of no bytes for a GET).
    pub body_sha256: String,
    /// The response's HTTP status; `None` when the request may have left but no answer came.
    pub status: Option<u16>,
}

/// Asked before every outbound hop a tool makes; pai-core implements it with policy and audit.
#[async_trait]
pub trait NetGate: Send + Sync + std::fmt::Debug {
    /// Err(reason) refuses the hop; the reason is worded for the model and names the rule.
    async fn check(&self, hop: &Hop) -> Result<(), String>;
    /// Called once per hop that was actually sent.
    fn sent(&self, sent: &HopSent);
}

/// The gate used when no other is set: public addresses only, nothing recorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl PublicOnly {
    /// The verdict [`PublicOnly`] gives, without awaiting: a gate that allows some hosts by
    /// rule can fall back to this for the rest and keep its wording.
    pub fn verdict(hop: &Hop) -> Result<(), String> {
        let Some(special) = hop.special else {
            return Ok(());
        };
        let addr = hop.addr.to_string();
        // A literal address needs no "(addr)" after itself.
        let resolved = if addr == hop.host {
            String::new()
        } else {
            format!(" ({addr})")
        };
        Err(format!(
            "refused: {} is {}{resolved}; {} reaches public addresses only unless a policy rule allows the host",
            hop.host,
            describe(special),
            hop.tool,
        ))
    }
}

#[async_trait]
impl NetGate for PublicOnly {
    async fn check(&self, hop: &Hop) -> Result<(), String> {
        Self::verdict(hop)
    }

    fn sent(&self, _sent: &HopSent) {}
}

/// "a loopback address", "an IPv4-mapped IPv6 address": a label as a phrase for a message.
fn describe(special: &str) -> String {
    match special {
        "cgnat" => "a carrier-grade NAT (100.64.0.0/10) address".into(),
        "metadata" => "a cloud metadata service address".into(),
        "ipv4-mapped" => "an IPv4-mapped IPv6 address".into(),
        "ipv4-compatible" => "an IPv4-compatible IPv6 address".into(),
        "documentation" => "an address reserved for documentation".into(),
        "benchmarking" => "an address reserved for benchmarking".into(),
        "reserved" => "a reserved address".into(),
        other => {
            let article = if other.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {other} address")
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
    /// The egress gate refused a hop; its reason, worded for the model, names the rule.
    #[error("{0}")]
    Refused(String),
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
