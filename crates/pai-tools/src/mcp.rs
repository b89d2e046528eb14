//! Tools from MCP servers: each `[mcp.<server>]` in config.toml is a stdio server that PAI
//! starts, lists and then calls through rmcp. Its tools are named `<server>__<tool>` and carry
//! the effects the user declared for the server (network + write when not declared), since
//! PAI cannot see what a server does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pai_types::ToolSpec;
use process_wrap::tokio::CommandWrap;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    ErrorCode, Implementation, ResourceContents,
};
use rmcp::service::{ClientInitializeError, RoleClient, RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use serde::{Deserialize, Deserializer, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStderr;

use crate::registry::ToolRegistry;
use crate::tool::{Effect, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

/// How long start-up (handshake, then tool list) and each call may take when the config
/// does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// OpenAI's and Anthropic's limit on a tool's name.
const MAX_NAME_LEN: usize = 64;
/// Bytes of a server's stderr kept for error messages.
const STDERR_TAIL_BYTES: usize = 2048;
/// The only variables a server inherits from PAI's environment, so API keys and
/// `PAI_ENCRYPTION_KEY` never reach it (the list the MCP reference SDKs use).
const INHERITED_ENV: &[&str] = if cfg!(windows) {
    &[
        "APPDATA",
        "HOMEDRIVE",
        "HOMEPATH",
        "LOCALAPPDATA",
        "PATH",
        "PATHEXT",
        "PROCESSOR_ARCHITECTURE",
        "SYSTEMDRIVE",
        "SYSTEMROOT",
        "TEMP",
        "USERNAME",
        "USERPROFILE",
        "PROGRAMFILES",
    ]
} else {
    &[
        "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "TMPDIR",
    ]
};

/// One stdio MCP server, from `[mcp.<server>]` in config.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program to run, looked up on `PATH` unless it is a path.
    pub command: String,
    /// Its command-line arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Variables set for the server. Of PAI's own environment it sees only `PATH`, `HOME`,
    /// `USER`, `LANG` and a few more like them; pass anything else (tokens) here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// What the server's tools may do; when absent, network, write and exec, the most
    /// restricted.
    #[serde(
        default,
        deserialize_with = "non_empty_effects",
        skip_serializing_if = "Option::is_none"
    )]
    pub effects: Option<BTreeSet<Effect>>,
    /// Seconds allowed for start-up and for each call (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl McpServerConfig {
    /// A server run as `command`, with every other setting at its default.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            effects: None,
            timeout_secs: None,
        }
    }

    /// The effects its tools declare: the configured ones, else every effect but read —
    /// a server that does not say what it does counts as running programs.
    pub fn effects(&self) -> BTreeSet<Effect> {
        self.effects
            .clone()
            .unwrap_or_else(|| BTreeSet::from([Effect::Network, Effect::Write, Effect::Exec]))
    }

    /// The time allowed for start-up and for each call.
    pub fn timeout(&self) -> Duration {
        self.timeout_secs
            .map_or(DEFAULT_TIMEOUT, |s| Duration::from_secs(s.max(1)))
    }
}

/// An empty list would let a server's tools pass every mode's filter; refuse it.
fn non_empty_effects<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeSet<Effect>>, D::Error> {
    let effects = BTreeSet::<Effect>::deserialize(d)?;
    if effects.is_empty() {
        return Err(serde::de::Error::custom(
            "`effects` is empty; list what the server's tools may do, e.g. [\"read\"], or remove it to treat them as network + write",
        ));
    }
    Ok(Some(effects))
}

/// A running MCP server and its tools. The server stops once this and every tool taken
/// from it are dropped.
pub struct McpClient {
    conn: Arc<Connection>,
    tools: Vec<Arc<dyn Tool>>,
}

impl fmt::Debug for McpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClient")
            .field("server", &self.conn.server)
            .field(
                "tools",
                &self
                    .tools
                    .iter()
                    .map(|t| t.info().spec.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl McpClient {
    /// The server's name in config.toml.
    pub fn server(&self) -> &str {
        &self.conn.server
    }

    /// Its tools, sorted by name; each keeps the server running while it lives.
    pub fn tools(&self) -> &[Arc<dyn Tool>] {
        &self.tools
    }

    /// Adds every tool to `registry`; a name already there is an error, as in
    /// [`ToolRegistry::register`].
    pub fn register_into(&self, registry: &mut ToolRegistry) -> Result<(), ToolError> {
        self.tools
            .iter()
            .try_for_each(|t| registry.register(Arc::clone(t)))
    }
}

/// What every tool of one server shares: the live session and what to say when it fails.
struct Connection {
    server: String,
    service: RunningService<RoleClient, ClientConfig>,
    timeout: Duration,
}

/// Starts every server in `servers` at once, each as [`connect_mcp`] does, in name order.
/// One server failing does not stop the others.
pub async fn connect_mcp_servers(
    servers: &BTreeMap<String, McpServerConfig>,
) -> Vec<(String, Result<McpClient, ToolError>)> {
    let results =
        futures::future::join_all(servers.iter().map(|(name, cfg)| connect_mcp(name, cfg))).await;
    servers.keys().cloned().zip(results).collect()
}

/// Starts the stdio MCP server `server` (as configured by `cfg`), completes the MCP handshake
/// and lists its tools, each step within the configured timeout. Must run in a Tokio runtime.
pub async fn connect_mcp(server: &str, cfg: &McpServerConfig) -> Result<McpClient, ToolError> {
    let start_error = |what: String| {
        ToolError::Failed(format!(
            "MCP server '{server}' (command '{}') {what}; check [mcp.{server}] in config.toml",
            cfg.command
        ))
    };
    if cfg.command.trim().is_empty() {
        return Err(ToolError::Failed(format!(
            "[mcp.{server}] has an empty `command`; set it to the program that runs the server"
        )));
    }

    // Reviewed egress path (docs/architecture.md, "The egress lint"): the MCP server spawn.
    #[allow(clippy::disallowed_methods)]
    let mut command = tokio::process::Command::new(&cfg.command);
    command.args(&cfg.args).env_clear().kill_on_drop(true);
    for key in INHERITED_ENV {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command.envs(&cfg.env);
    let mut command = CommandWrap::from(command);
    // Its own process group, so stopping the server also stops what it spawned (npx, uvx).
    #[cfg(unix)]
    command.wrap(process_wrap::tokio::ProcessGroup::leader());
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            start_error(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "could not be started: the program was not found (give its full path if it is not on PATH)".to_string()
                }
                std::io::ErrorKind::PermissionDenied => {
                    "could not be started: the program is not executable".to_string()
                }
                _ => format!("could not be started: {e}"),
            })
        })?;
    let stderr = StderrTail::spawn(server, stderr);

    let timeout = cfg.timeout();
    let client_info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("pai", env!("CARGO_PKG_VERSION")),
    );
    let service = match tokio::time::timeout(timeout, client_info.serve(transport)).await {
        Ok(Ok(service)) => service,
        Ok(Err(e)) => {
            let said = stderr.settled().await;
            return Err(start_error(format!(
                "{}{said}",
                match e {
                    ClientInitializeError::ConnectionClosed(_)
                    | ClientInitializeError::TransportError { .. } => {
                        "exited or closed its output before completing the MCP handshake (is it an MCP stdio server?)".to_string()
                    }
                    ClientInitializeError::JsonRpcError(e) => {
                        format!("refused the MCP handshake: {}", e.message)
                    }
                    e => format!("failed the MCP handshake: {e}"),
                }
            )));
        }
        Err(_) => {
            let said = stderr.settled().await;
            return Err(start_error(format!(
                "did not complete the MCP handshake within {}s{said}; raise `timeout_secs` if it is slow to start",
                timeout.as_secs()
            )));
        }
    };
    // A server offering only prompts or resources has no tools for PAI; that is no error.
    let has_tools = service
        .peer_info()
        .is_none_or(|info| info.capabilities.tools.is_some());
    let listing = async {
        match has_tools {
            true => service.list_all_tools().await,
            false => Ok(Vec::new()),
        }
    };
    let listed = match tokio::time::timeout(timeout, listing).await {
        Ok(Ok(tools)) => tools,
        Ok(Err(e)) => {
            let said = stderr.settled().await;
            return Err(start_error(format!("could not list its tools: {e}{said}")));
        }
        Err(_) => {
            return Err(start_error(format!(
                "did not list its tools within {}s; raise `timeout_secs` if it is slow",
                timeout.as_secs()
            )));
        }
    };

    let conn = Arc::new(Connection {
        server: server.to_string(),
        service,
        timeout,
    });
    let effects = cfg.effects();
    let mut taken = BTreeSet::new();
    let mut tools: Vec<Arc<dyn Tool>> = Vec::with_capacity(listed.len());
    for tool in listed {
        let name = tool_name(server, &tool.name, &taken);
        taken.insert(name.clone());
        let description = tool
            .description
            .as_deref()
            .or(tool.title.as_deref())
            .unwrap_or_default()
            .to_string();
        tools.push(Arc::new(McpTool {
            info: ToolInfo {
                spec: ToolSpec {
                    name,
                    description,
                    parameters: serde_json::Value::Object((*tool.input_schema).clone()),
                },
                effects: effects.clone(),
                source: format!("mcp:{server}"),
            },
            remote_name: tool.name.to_string(),
            conn: Arc::clone(&conn),
        }));
    }
    tools.sort_by(|a, b| a.info().spec.name.cmp(&b.info().spec.name));
    tracing::debug!(server, tools = tools.len(), "MCP server started");
    Ok(McpClient { conn, tools })
}

/// `<server>__<tool>` in the characters and length every provider accepts; a name cut to
/// length, or clashing with one already `taken`, ends in a hash of the original instead.
fn tool_name(server: &str, tool: &str, taken: &BTreeSet<String>) -> String {
    let sanitise = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let name = format!("{}__{}", sanitise(server), sanitise(tool));
    if name.len() <= MAX_NAME_LEN && !taken.contains(&name) {
        return name;
    }
    let suffix = format!("_{:08x}", fnv1a(&format!("{server}\0{tool}")));
    // Sanitised names are ASCII, so any byte index is a char boundary.
    format!(
        "{}{suffix}",
        &name[..name.len().min(MAX_NAME_LEN - suffix.len())]
    )
}

/// A stable hash (unlike std's, which may change between Rust releases), so a long name
/// stays the same across PAI builds.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// One tool of an MCP server.
struct McpTool {
    info: ToolInfo,
    /// The name the server knows it by.
    remote_name: String,
    conn: Arc<Connection>,
}

#[async_trait]
impl Tool for McpTool {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: serde_json::Value,
        _cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let arguments = match args {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => serde_json::Map::new(),
            other => {
                return Err(ToolError::InvalidArguments(format!(
                    "arguments must be a JSON object, not {other}"
                )));
            }
        };
        let params = CallToolRequestParams::new(self.remote_name.clone()).with_arguments(arguments);
        let server = &self.conn.server;
        let result = match tokio::time::timeout(
            self.conn.timeout,
            self.conn.service.call_tool(params),
        )
        .await
        {
            Ok(Ok(result)) => result,
            Ok(Err(ServiceError::McpError(e))) if e.code == ErrorCode::INVALID_PARAMS => {
                return Err(ToolError::InvalidArguments(e.message.into_owned()));
            }
            Ok(Err(ServiceError::McpError(e))) => {
                return Err(ToolError::Failed(format!(
                    "MCP server '{server}' rejected the call: {}",
                    e.message
                )));
            }
            Ok(Err(ServiceError::Timeout { timeout })) => {
                return Err(ToolError::Timeout(timeout));
            }
            Ok(Err(ServiceError::TransportClosed | ServiceError::TransportSend(_))) => {
                return Err(ToolError::Failed(format!(
                    "MCP server '{server}' is no longer running; its tools cannot be used until PAI starts it again"
                )));
            }
            Ok(Err(e)) => {
                return Err(ToolError::Failed(format!("MCP server '{server}': {e}")));
            }
            Err(_) => return Err(ToolError::Timeout(self.conn.timeout)),
        };
        let text = render(&result);
        if result.is_error == Some(true) {
            return Err(ToolError::Failed(if text.is_empty() {
                format!("the tool failed without saying why (MCP server '{server}')")
            } else {
                text
            }));
        }
        Ok(ToolOutput::text(text))
    }
}

/// A tool result as text for the model: text parts joined, other parts named but left out.
fn render(result: &CallToolResult) -> String {
    let parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => format!("[image omitted: {}]", i.mime_type),
            ContentBlock::Audio(a) => format!("[audio omitted: {}]", a.mime_type),
            ContentBlock::Resource(r) => match &r.resource {
                ResourceContents::TextResourceContents { text, .. } => text.clone(),
                ResourceContents::BlobResourceContents { uri, .. } => {
                    format!("[binary resource omitted: {uri}]")
                }
                _ => "[resource omitted]".to_string(),
            },
            ContentBlock::ResourceLink(l) => format!("[resource link: {} {}]", l.name, l.uri),
            _ => "[content omitted]".to_string(),
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        return structured.to_string();
    }
    parts.join("\n")
}

/// The last lines a server wrote to stderr, read as they come so the server never blocks
/// on a full pipe; quoted when it fails to start.
struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl StderrTail {
    fn spawn(server: &str, stderr: Option<ChildStderr>) -> Self {
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let reader = stderr.map(|stderr| {
            let lines = Arc::clone(&lines);
            let server = server.to_string();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    tracing::debug!(server, "stderr: {line}");
                    let mut tail = lines.lock().unwrap_or_else(PoisonError::into_inner);
                    tail.push_back(line);
                    while tail.iter().map(String::len).sum::<usize>() > STDERR_TAIL_BYTES {
                        tail.pop_front();
                    }
                }
            })
        });
        Self { lines, reader }
    }

    /// Waits briefly for a failed server's last words, then quotes them (or nothing).
    async fn settled(mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
        }
        let tail = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let said: Vec<&str> = tail
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        if said.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends: {}", said.join(" | "))
        }
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn names_are_namespaced_sanitised_and_capped() {
        let none = BTreeSet::new();
        assert_eq!(tool_name("files", "read", &none), "files__read");
        assert_eq!(tool_name("my.srv", "a b/c-d", &none), "my_srv__a_b_c-d");
        let long = tool_name("srv", &"x".repeat(70), &none);
        assert_eq!(long.len(), MAX_NAME_LEN);
        assert!(long.starts_with("srv__xxx"), "{long}");
        assert_eq!(long, tool_name("srv", &"x".repeat(70), &none), "stable");
        assert_ne!(long, tool_name("srv", &"x".repeat(71), &none));
        // Two tools that sanitise alike both keep a usable, distinct name.
        let taken = BTreeSet::from([tool_name("s", "a.b", &none)]);
        let second = tool_name("s", "a_b", &taken);
        assert!(
            second.starts_with("s__a_b_") && second != "s__a_b",
            "{second}"
        );
    }

    #[test]
    fn results_render_text_and_name_what_they_leave_out() {
        let result = CallToolResult::success(vec![
            ContentBlock::text("one"),
            ContentBlock::image("AAAA", "image/png"),
            ContentBlock::embedded_text("file:///a", "two"),
        ]);
        assert_eq!(render(&result), "one\n[image omitted: image/png]\ntwo");
        let structured = CallToolResult::structured(serde_json::json!({ "n": 1 }));
        assert!(
            render(&structured).contains("\"n\":1"),
            "{}",
            render(&structured)
        );
    }

    #[test]
    fn config_defaults_to_the_most_restricted_effects_and_refuses_empty_ones() {
        let cfg: McpServerConfig = parse(r#"{ "command": "srv" }"#).unwrap();
        assert_eq!(cfg, McpServerConfig::new("srv"));
        assert_eq!(
            cfg.effects(),
            BTreeSet::from([Effect::Network, Effect::Write, Effect::Exec])
        );
        assert_eq!(cfg.timeout(), DEFAULT_TIMEOUT);
        let read: McpServerConfig =
            parse(r#"{ "command": "srv", "effects": ["read"], "timeout_secs": 5 }"#).unwrap();
        assert_eq!(read.effects(), BTreeSet::from([Effect::Read]));
        assert_eq!(read.timeout(), Duration::from_secs(5));
        let empty = parse(r#"{ "command": "srv", "effects": [] }"#).unwrap_err();
        assert!(empty.contains("`effects` is empty"), "{empty}");
        let typo = parse(r#"{ "command": "srv", "arg": [] }"#).unwrap_err();
        assert!(typo.contains("unknown field `arg`"), "{typo}");
    }

    fn parse(json: &str) -> Result<McpServerConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }
}
