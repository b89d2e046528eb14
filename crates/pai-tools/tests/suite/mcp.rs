//! MCP tools against `pai-mock-mcp`, the stdio server this crate builds for its tests
//! (src/bin/pai-mock-mcp.rs, with rmcp's server side).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pai_tools::{
    Effect, McpClient, McpServerConfig, ToolContext, ToolError, ToolInfo, ToolOutput, ToolRegistry,
    connect_mcp, connect_mcp_servers,
};
use pai_types::ToolSpec;
use pretty_assertions::assert_eq;
use serde_json::json;

const MOCK: &str = env!("CARGO_BIN_EXE_pai-mock-mcp");

fn mock(args: &[&str]) -> McpServerConfig {
    McpServerConfig {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..McpServerConfig::new(MOCK)
    }
}

fn registry_of(client: &McpClient) -> ToolRegistry {
    let mut registry = ToolRegistry::new();
    client.register_into(&mut registry).unwrap();
    registry
}

async fn call(r: &ToolRegistry, name: &str, args: serde_json::Value) -> Result<String, ToolError> {
    r.call(name, args, &ToolContext::default())
        .await
        .map(|out| out.content)
}

#[tokio::test]
async fn tools_are_listed_namespaced_with_the_most_restricted_default_effects() {
    let client = connect_mcp("mock", &mock(&[])).await.unwrap();
    assert_eq!(client.server(), "mock");
    let names: Vec<&str> = client
        .tools()
        .iter()
        .map(|t| t.info().spec.name.as_str())
        .collect();
    let long = names.iter().find(|n| n.starts_with("mock__xxx")).unwrap();
    assert_eq!(long.len(), 64, "{long}");
    assert_eq!(
        names,
        [
            "mock__add",
            "mock__crash",
            "mock__echo",
            "mock__env",
            "mock__fail",
            "mock__mixed",
            "mock__sleep",
            "mock__weird_name_with_spaces",
            long,
        ]
    );
    for tool in client.tools() {
        assert_eq!(tool.info().source, "mcp:mock");
        assert_eq!(
            tool.info().effects,
            BTreeSet::from([Effect::Network, Effect::Write, Effect::Exec])
        );
    }
    let echo = client
        .tools()
        .iter()
        .find(|t| t.info().spec.name == "mock__echo")
        .unwrap();
    assert_eq!(
        echo.info(),
        &ToolInfo {
            spec: ToolSpec {
                name: "mock__echo".into(),
                description: "Returns its text.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": { "text": { "type": "string" } },
                    "required": ["text"],
                }),
            },
            effects: BTreeSet::from([Effect::Network, Effect::Write, Effect::Exec]),
            source: "mcp:mock".into(),
        }
    );
}

#[tokio::test]
async fn declared_effects_and_env_apply_and_nothing_else_leaks_into_the_server() {
    let cfg = McpServerConfig {
        effects: Some(BTreeSet::from([Effect::Read])),
        env: BTreeMap::from([("MOCK_TAG".to_string(), "configured".to_string())]),
        ..mock(&[])
    };
    let client = connect_mcp("docs", &cfg).await.unwrap();
    assert!(
        client
            .tools()
            .iter()
            .all(|t| t.info().effects == BTreeSet::from([Effect::Read]))
    );
    let r = registry_of(&client);
    assert_eq!(
        call(&r, "docs__env", json!({ "name": "MOCK_TAG" })).await,
        Ok("configured".into())
    );
    // Cargo sets CARGO_PKG_NAME for this test process; the server must not see it, as it
    // must not see API keys. PATH is among the few variables it inherits.
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    assert_eq!(
        call(&r, "docs__env", json!({ "name": "CARGO_PKG_NAME" })).await,
        Ok("<unset>".into())
    );
    if std::env::var_os("PATH").is_some() {
        assert_ne!(
            call(&r, "docs__env", json!({ "name": "PATH" })).await,
            Ok("<unset>".into())
        );
    }
}

#[tokio::test]
async fn calls_round_trip_and_non_text_content_is_named_not_sent() {
    let client = connect_mcp("mock", &mock(&[])).await.unwrap();
    let r = registry_of(&client);
    assert_eq!(
        call(&r, "mock__echo", json!({ "text": "héllo" })).await,
        Ok("héllo".into())
    );
    assert_eq!(
        call(&r, "mock__add", json!({ "a": 2, "b": 40 })).await,
        Ok("42".into())
    );
    assert_eq!(
        call(&r, "mock__mixed", json!({})).await,
        Ok("before\n[image omitted: image/png]\nembedded notes\n\
            [binary resource omitted: file:///blob.bin]\nafter"
            .into())
    );
    // Sanitised names still reach the tool by its own name.
    assert_eq!(
        call(&r, "mock__weird_name_with_spaces", json!(null)).await,
        Ok("called weird.name/with spaces".into())
    );
}

#[tokio::test]
async fn tool_errors_and_bad_arguments_go_back_as_tool_errors() {
    let client = connect_mcp("mock", &mock(&[])).await.unwrap();
    let r = registry_of(&client);
    assert_eq!(
        call(&r, "mock__fail", json!({})).await,
        Err(ToolError::Failed("the mock failed on purpose".into()))
    );
    assert_eq!(
        call(&r, "mock__add", json!({ "a": "two", "b": 1 })).await,
        Err(ToolError::InvalidArguments("'a' must be an integer".into()))
    );
    assert!(matches!(
        call(&r, "mock__echo", json!(["not", "an", "object"])).await,
        Err(ToolError::InvalidArguments(_))
    ));
    // The server still works after those.
    assert_eq!(
        call(&r, "mock__echo", json!({ "text": "ok" })).await,
        Ok("ok".into())
    );
}

#[tokio::test]
async fn tools_keep_their_server_alive_after_the_client_is_dropped() {
    let client = connect_mcp("mock", &mock(&[])).await.unwrap();
    let echo = client
        .tools()
        .iter()
        .find(|t| t.info().spec.name == "mock__echo")
        .cloned()
        .unwrap();
    drop(client);
    assert_eq!(
        echo.call(json!({ "text": "still here" }), &ToolContext::default())
            .await,
        Ok(ToolOutput::text("still here"))
    );
}

#[tokio::test]
async fn two_servers_with_the_same_tool_names_do_not_clash() {
    let tagged = |tag: &str| McpServerConfig {
        env: BTreeMap::from([("MOCK_TAG".to_string(), tag.to_string())]),
        ..mock(&[])
    };
    let servers = BTreeMap::from([
        ("one".to_string(), tagged("1")),
        ("two".to_string(), tagged("2")),
    ]);
    let mut r = ToolRegistry::new();
    for (name, client) in connect_mcp_servers(&servers).await {
        let client = client.unwrap();
        assert_eq!(client.server(), name);
        client.register_into(&mut r).unwrap();
    }
    assert_eq!(
        call(&r, "one__env", json!({ "name": "MOCK_TAG" })).await,
        Ok("1".into())
    );
    assert_eq!(
        call(&r, "two__env", json!({ "name": "MOCK_TAG" })).await,
        Ok("2".into())
    );
    // Registering a server's tools twice is refused, never a silent replacement.
    let again = connect_mcp("one", &tagged("3")).await.unwrap();
    assert!(again.register_into(&mut r).is_err());
}

#[tokio::test]
async fn a_server_without_the_tools_capability_has_no_tools() {
    let client = connect_mcp("prompts", &mock(&["--no-tools"]))
        .await
        .unwrap();
    assert!(client.tools().is_empty());
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_a_clear_error() {
    let err = connect_mcp(
        "ghost",
        &McpServerConfig::new("/nonexistent/pai-no-such-server"),
    )
    .await
    .unwrap_err()
    .to_string();
    for needle in [
        "MCP server 'ghost'",
        "'/nonexistent/pai-no-such-server'",
        "not found",
        "[mcp.ghost] in config.toml",
    ] {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    let empty = connect_mcp("blank", &McpServerConfig::new(" "))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        empty.contains("[mcp.blank] has an empty `command`"),
        "{empty}"
    );
}

#[tokio::test]
async fn a_server_that_exits_at_once_is_a_clear_error_with_its_stderr() {
    let started = Instant::now();
    let err = connect_mcp("quitter", &mock(&["--exit"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    for needle in [
        "MCP server 'quitter'",
        MOCK,
        "exited or closed its output before completing the MCP handshake",
        "pai-mock-mcp: exiting on purpose",
    ] {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let cfg = McpServerConfig {
        timeout_secs: Some(1),
        ..mock(&["--mute"])
    };
    let started = Instant::now();
    let err = connect_mcp("mute", &cfg).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains("MCP server 'mute'")
            && err.contains("did not complete the MCP handshake within 1s")
            && err.contains("timeout_secs"),
        "{err}"
    );
}

#[tokio::test]
async fn slow_calls_stop_at_the_server_timeout_and_a_dead_server_is_reported() {
    let cfg = McpServerConfig {
        timeout_secs: Some(1),
        ..mock(&[])
    };
    let client = connect_mcp("mock", &cfg).await.unwrap();
    let r = registry_of(&client);
    assert_eq!(
        call(&r, "mock__sleep", json!({ "ms": 10_000 })).await,
        Err(ToolError::Timeout(Duration::from_secs(1)))
    );
    assert_eq!(
        call(&r, "mock__sleep", json!({ "ms": 1 })).await,
        Ok("slept".into())
    );
    let crashed = call(&r, "mock__crash", json!({})).await.unwrap_err();
    let after = call(&r, "mock__echo", json!({ "text": "anyone?" }))
        .await
        .unwrap_err();
    for err in [crashed, after] {
        assert!(
            err.to_string()
                .contains("MCP server 'mock' is no longer running"),
            "{err}"
        );
    }
}
