//! The set of built-in tools as pai-core registers it.

use std::collections::BTreeSet;

use pai_tools::{Effect, ToolContext, ToolError, builtin_tools};
use pretty_assertions::assert_eq;

use super::support::{Sandbox, registry};

#[test]
fn every_builtin_tool_has_a_name_an_effect_and_a_strict_object_schema() {
    let infos: Vec<(String, BTreeSet<Effect>, String)> = builtin_tools()
        .iter()
        .map(|t| {
            let info = t.info();
            (
                info.spec.name.clone(),
                info.effects.clone(),
                info.source.clone(),
            )
        })
        .collect();
    let expected = [
        ("read_file", vec![Effect::Read]),
        ("list_dir", vec![Effect::Read]),
        ("search_files", vec![Effect::Read]),
        ("write_file", vec![Effect::Write]),
        ("http_get", vec![Effect::Network]),
        ("http_request", vec![Effect::Network, Effect::Write]),
        ("sqlite_query", vec![Effect::Read]),
        ("current_time", vec![Effect::Read]),
    ]
    .map(|(name, effects)| {
        (
            name.to_string(),
            BTreeSet::from_iter(effects),
            "builtin".to_string(),
        )
    });
    assert_eq!(infos, expected);

    for tool in builtin_tools() {
        let spec = &tool.info().spec;
        let schema = &spec.parameters;
        assert_eq!(schema["type"], "object", "{}", spec.name);
        assert_eq!(schema["additionalProperties"], false, "{}", spec.name);
        let properties = schema["properties"].as_object().unwrap();
        for required in schema["required"].as_array().into_iter().flatten() {
            assert!(
                properties.contains_key(required.as_str().unwrap()),
                "{}: required '{required}' is not a property",
                spec.name
            );
        }
        for (name, property) in properties {
            assert!(
                property["description"].is_string(),
                "{}.{name} has no description",
                spec.name
            );
        }
        assert!(
            spec.description.len() > 40,
            "{}: description too thin",
            spec.name
        );
    }
}

#[test]
fn the_read_only_selection_leaves_out_write_and_network() {
    let read_only = registry().filtered(|e| e == Effect::Read);
    let names: Vec<&str> = read_only
        .infos()
        .iter()
        .map(|i| i.spec.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "current_time",
            "list_dir",
            "read_file",
            "search_files",
            "sqlite_query"
        ]
    );
}

#[tokio::test]
async fn bad_arguments_are_named_for_the_model() {
    let sandbox = Sandbox::new();
    let cx = sandbox.cx();
    let r = registry();
    let missing = r.call("read_file", serde_json::json!({}), &cx).await;
    assert_eq!(
        missing,
        Err(ToolError::InvalidArguments("missing field `path`".into()))
    );
    let unknown = r
        .call("list_dir", serde_json::json!({ "dir": "." }), &cx)
        .await;
    assert!(
        matches!(&unknown, Err(ToolError::InvalidArguments(m)) if m.contains("unknown field `dir`") && m.contains("`path`")),
        "{unknown:?}"
    );
    let wrong_type = r
        .call("read_file", serde_json::json!({ "path": 3 }), &cx)
        .await;
    assert!(
        matches!(&wrong_type, Err(ToolError::InvalidArguments(m)) if m.contains("expected a string")),
        "{wrong_type:?}"
    );
}

#[tokio::test]
async fn file_tools_refuse_to_work_without_any_allowed_directory() {
    let err = registry()
        .call("list_dir", serde_json::json!({}), &ToolContext::default())
        .await
        .unwrap_err();
    // The model is told why and what the user can do: name a directory with --root.
    assert!(
        err.to_string()
            .contains("no directory is open to file tools")
            && err.to_string().contains("--root"),
        "{err}"
    );
}
