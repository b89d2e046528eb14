use std::collections::BTreeMap;
use std::sync::Arc;

use crate::tool::{Effect, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

/// The tools a session offers, by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool; a second tool of the same name is refused, never silently replaced.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), ToolError> {
        let name = tool.info().spec.name.clone();
        if self.tools.contains_key(&name) {
            return Err(ToolError::Failed(format!(
                "two tools are named '{name}'; rename one (MCP tools are prefixed by their server's name)"
            )));
        }
        self.tools.insert(name, tool);
        Ok(())
    }

    /// The tool the model calls `name`, if registered.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// Every tool, by name.
    pub fn infos(&self) -> Vec<&ToolInfo> {
        self.tools.values().map(|t| t.info()).collect()
    }

    /// True when no tool is registered.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tools whose every effect `allowed` accepts.
    pub fn filtered(&self, allowed: impl Fn(Effect) -> bool) -> ToolRegistry {
        ToolRegistry {
            tools: self
                .tools
                .iter()
                .filter(|(_, t)| t.info().effects.iter().all(|e| allowed(*e)))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect(),
        }
    }

    /// The same registry without the tools named in `names`.
    pub fn without(&self, names: &[String]) -> ToolRegistry {
        ToolRegistry {
            tools: self
                .tools
                .iter()
                .filter(|(n, _)| !names.contains(n))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect(),
        }
    }

    /// Runs a call with the context's time cap and cuts oversized output with a marker.
    /// Failures come back as errors for the model to read; they never end a turn.
    pub async fn call(
        &self,
        name: &str,
        args: serde_json::Value,
        cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let tool = self
            .get(name)
            .ok_or_else(|| ToolError::Unknown(name.to_string()))?;
        let output = tokio::time::timeout(cx.timeout, tool.call(args, cx))
            .await
            .map_err(|_| ToolError::Timeout(cx.timeout))??;
        Ok(truncate(output, cx.max_output_bytes))
    }
}

/// Cuts `output` to at most `max` bytes on a character boundary, saying how much was cut.
pub(crate) fn truncate(mut output: ToolOutput, max: usize) -> ToolOutput {
    if output.content.len() <= max {
        return output;
    }
    let mut cut = max;
    while !output.content.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = output.content.len() - cut;
    output.content.truncate(cut);
    output
        .content
        .push_str(&format!("\n[… truncated: {dropped} more bytes not shown]"));
    output.truncated = true;
    output
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use async_trait::async_trait;
    use pai_types::ToolSpec;
    use pretty_assertions::assert_eq;

    use super::*;

    struct Echo(ToolInfo, Duration);

    fn echo(name: &str, effect: Effect, delay: Duration) -> Arc<dyn Tool> {
        Arc::new(Echo(
            ToolInfo {
                spec: ToolSpec {
                    name: name.into(),
                    description: "echo".into(),
                    parameters: serde_json::json!({ "type": "object" }),
                },
                effects: BTreeSet::from([effect]),
                source: "builtin".into(),
            },
            delay,
        ))
    }

    #[async_trait]
    impl Tool for Echo {
        fn info(&self) -> &ToolInfo {
            &self.0
        }
        async fn call(
            &self,
            args: serde_json::Value,
            _cx: &ToolContext,
        ) -> Result<ToolOutput, ToolError> {
            tokio::time::sleep(self.1).await;
            Ok(ToolOutput::text(args["text"].as_str().unwrap_or_default()))
        }
    }

    #[tokio::test]
    async fn duplicate_names_are_refused_and_effects_filter() {
        let mut r = ToolRegistry::new();
        r.register(echo("a", Effect::Read, Duration::ZERO)).unwrap();
        r.register(echo("w", Effect::Write, Duration::ZERO))
            .unwrap();
        assert!(r.register(echo("a", Effect::Read, Duration::ZERO)).is_err());
        let read_only = r.filtered(|e| e == Effect::Read);
        assert_eq!(
            read_only
                .infos()
                .iter()
                .map(|i| i.spec.name.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
    }

    #[tokio::test]
    async fn output_is_truncated_with_a_marker_and_unknown_tools_are_errors() {
        let mut r = ToolRegistry::new();
        r.register(echo("a", Effect::Read, Duration::ZERO)).unwrap();
        let cx = ToolContext {
            max_output_bytes: 5,
            ..ToolContext::default()
        };
        let out = r
            .call("a", serde_json::json!({ "text": "héllo world" }), &cx)
            .await
            .unwrap();
        assert!(out.truncated);
        assert!(out.content.starts_with("héll"), "{}", out.content);
        assert!(
            out.content.contains("truncated: 7 more bytes"),
            "{}",
            out.content
        );
        assert_eq!(
            r.call("nope", serde_json::json!({}), &cx).await,
            Err(ToolError::Unknown("nope".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_are_stopped_at_the_time_cap() {
        let mut r = ToolRegistry::new();
        r.register(echo("slow", Effect::Read, Duration::from_secs(60)))
            .unwrap();
        let cx = ToolContext {
            timeout: Duration::from_secs(2),
            ..ToolContext::default()
        };
        assert_eq!(
            r.call("slow", serde_json::json!({}), &cx).await,
            Err(ToolError::Timeout(Duration::from_secs(2)))
        );
    }
}
