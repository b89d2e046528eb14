//! What a model may do beyond answering: the [`Tool`] trait, the [`ToolRegistry`] that
//! holds the tools a session offers, PAI's built-in tools and tools from MCP servers.
//! Each tool declares its [`Effect`]s (read, write, network, exec) so pai-core can decide,
//! per mode and policy, which ones a model may call. This crate runs tools; it never
//! decides whether a call is allowed and never talks to a model: a network tool reports
//! each hop (with its resolved, classified address) to the [`NetGate`] in its
//! [`ToolContext`], which pai-core implements with policy and audit.

mod builtin;
mod mcp;
mod registry;
mod tool;

pub use builtin::{
    Api, CurrentTime, FetchedDocument, HttpGet, HttpRequest, ListDir, ReadFile, SearchFiles,
    SqliteQuery, WriteFile, builtin_tool_names, builtin_tools, builtin_tools_with, classify_addr,
    fetch_document, html_to_text, url_host,
};
pub use mcp::{McpClient, McpServerConfig, connect_mcp, connect_mcp_servers};
pub use registry::ToolRegistry;
pub use tool::{
    Effect, Hop, HopSent, NetGate, PublicOnly, Tool, ToolContext, ToolError, ToolInfo, ToolOutput,
};
