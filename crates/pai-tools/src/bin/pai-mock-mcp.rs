//! A small stdio MCP server for pai-tools' tests, built with rmcp's server side. Built only
//! with the test-only `mock-mcp` feature, which this crate's own dev-dependency turns on.
//!
//! `pai-mock-mcp` serves the tools below (`crash` exits mid-call); `--exit` quits at once
//! after a line on stderr and `--mute` never answers, to test start-up failures;
//! `--no-tools` declares no tools capability.

use std::process::ExitCode;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ResourceContents, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
struct Mock {
    /// Whether it declares the tools capability (`--no-tools` says it does not).
    tools: bool,
}

fn schema(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn tools() -> Vec<Tool> {
    let none = || schema(json!({ "type": "object", "properties": {} }));
    vec![
        Tool::new(
            "echo",
            "Returns its text.",
            schema(json!({
                "type": "object",
                "properties": { "text": { "type": "string" } },
                "required": ["text"],
            })),
        ),
        Tool::new(
            "add",
            "Adds two integers.",
            schema(json!({
                "type": "object",
                "properties": { "a": { "type": "integer" }, "b": { "type": "integer" } },
                "required": ["a", "b"],
            })),
        ),
        Tool::new("fail", "Always reports a tool error.", none()),
        Tool::new("mixed", "Returns text, an image and resources.", none()),
        Tool::new(
            "env",
            "Returns the value of an environment variable in the server.",
            schema(json!({
                "type": "object",
                "properties": { "name": { "type": "string" } },
                "required": ["name"],
            })),
        ),
        Tool::new(
            "sleep",
            "Sleeps for `ms` milliseconds.",
            schema(json!({
                "type": "object",
                "properties": { "ms": { "type": "integer" } },
            })),
        ),
        Tool::new("crash", "Exits the server without answering.", none()),
        Tool::new(
            "weird.name/with spaces",
            "A name models do not accept.",
            none(),
        ),
        Tool::new("x".repeat(70), "A name longer than models accept.", none()),
    ]
}

fn text(s: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(s)]).into()
}

impl ServerHandler for Mock {
    fn get_info(&self) -> ServerConfig {
        match self.tools {
            true => ServerConfig::new(ServerCapabilities::builder().enable_tools().build()),
            false => ServerConfig::new(ServerCapabilities::default()),
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let str_arg = |key: &str| {
            args.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ErrorData::invalid_params(format!("'{key}' must be a string"), None))
        };
        let int_arg = |key: &str| {
            args.get(key).and_then(Value::as_i64).ok_or_else(|| {
                ErrorData::invalid_params(format!("'{key}' must be an integer"), None)
            })
        };
        Ok(match request.name.as_ref() {
            "echo" => text(str_arg("text")?),
            "add" => text((int_arg("a")? + int_arg("b")?).to_string()),
            "fail" => {
                CallToolResult::error(vec![ContentBlock::text("the mock failed on purpose")]).into()
            }
            "mixed" => CallToolResult::success(vec![
                ContentBlock::text("before"),
                ContentBlock::image("iVBORw0KGgo=", "image/png"),
                ContentBlock::embedded_text("file:///notes.txt", "embedded notes"),
                ContentBlock::resource(ResourceContents::BlobResourceContents {
                    uri: "file:///blob.bin".into(),
                    mime_type: Some("application/octet-stream".into()),
                    blob: "AAEC".into(),
                    meta: None,
                }),
                ContentBlock::text("after"),
            ])
            .into(),
            "env" => text(std::env::var(str_arg("name")?).unwrap_or_else(|_| "<unset>".into())),
            "crash" => {
                eprintln!("pai-mock-mcp: crashing on purpose");
                std::process::exit(1);
            }
            "sleep" => {
                let ms = int_arg("ms").unwrap_or(0).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text("slept")
            }
            name if tools().iter().any(|t| t.name == name) => text(format!("called {name}")),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("no tool named '{other}'"),
                    None,
                ));
            }
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut mock = Mock { tools: true };
    match std::env::args().nth(1).as_deref() {
        Some("--exit") => {
            eprintln!("pai-mock-mcp: exiting on purpose");
            return ExitCode::from(3);
        }
        Some("--mute") => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return ExitCode::SUCCESS;
        }
        Some("--no-tools") => mock.tools = false,
        _ => {}
    }
    let service = match mock.serve(rmcp::transport::stdio()).await {
        Ok(service) => service,
        Err(e) => {
            eprintln!("pai-mock-mcp: handshake failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match service.waiting().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pai-mock-mcp: {e}");
            ExitCode::FAILURE
        }
    }
}
