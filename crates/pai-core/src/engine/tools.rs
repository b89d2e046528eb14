//! The tool checkpoint: the one place a model's tool call is decided, run and recorded.

use std::collections::BTreeSet;

use pai_audit::EventKind;
use pai_tools::ToolRegistry;
use pai_types::{Effect, Message, ToolCall};

use super::{Engine, Event, Limits, Scope, ToolOutcome};
use crate::approval::{Approval, ApprovalRequest};
use crate::error::{CoreError, Result};

/// Tool calls one model reply may make when the user sets no other cap.
pub const DEFAULT_MAX_CALLS_PER_ROUND: u32 = 8;

impl Engine {
    /// Runs one reply's tool calls, at most the round's cap of them; every call gets an
    /// answer (the model's protocol needs one per call id), the ones over the cap a refusal.
    pub(crate) async fn tool_round(
        &self,
        scope: &Scope<'_>,
        offered: &ToolRegistry,
        calls: &[ToolCall],
        limits: &Limits,
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Vec<Message>> {
        let cap = limits
            .max_calls_per_round
            .unwrap_or(DEFAULT_MAX_CALLS_PER_ROUND) as usize;
        let mut results = Vec::with_capacity(calls.len());
        for call in calls.iter().take(cap) {
            let text = self
                .tool_checkpoint(scope, offered, call, limits, on_event)
                .await?;
            results.push(Message::tool_result(call.id.clone(), text));
        }
        if calls.len() > cap {
            let over = calls.len() - cap;
            let reason = format!(
                "at most {cap} tool calls run per reply; {over} more were not run (ask for fewer at once)"
            );
            self.audit
                .record(&self.event(scope, EventKind::ToolResult, format!("refused: {reason}")))
                .map_err(|source| CoreError::Unrecorded {
                    done: "the model asked for more tool calls than allowed",
                    source,
                })?;
            on_event(Event::ToolCallsRefused {
                count: over,
                reason: reason.clone(),
            });
            for call in &calls[cap..] {
                results.push(Message::tool_result(
                    call.id.clone(),
                    format!("refused: {reason}"),
                ));
            }
        }
        Ok(results)
    }

    /// Decides, runs and records one call. Today it enforces the mode's offer and the
    /// approvals for write and exec; the policy engine will decide here too. Whatever
    /// happens goes back to the model as text: a refused or failed call never ends the turn.
    async fn tool_checkpoint(
        &self,
        scope: &Scope<'_>,
        offered: &ToolRegistry,
        call: &ToolCall,
        limits: &Limits,
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<String> {
        on_event(Event::ToolCall {
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        });
        self.audit
            .record(&self.event(
                scope,
                EventKind::ToolCall,
                format!("{}({})", call.name, call.arguments),
            ))
            .map_err(|source| CoreError::Unrecorded {
                done: "the model asked to run a tool (it did not run)",
                source,
            })?;
        let (text, outcome) = match self.decide(scope, offered, call, limits).await {
            Err(reason) => (format!("refused: {reason}"), ToolOutcome::Refused(reason)),
            Ok(args) => match offered.call(&call.name, args, &self.tool_cx).await {
                Ok(out) => {
                    let outcome = ToolOutcome::Done {
                        bytes: out.content.len(),
                        truncated: out.truncated,
                    };
                    (out.content, outcome)
                }
                Err(e) => (format!("error: {e}"), ToolOutcome::Failed(e.to_string())),
            },
        };
        self.audit
            .record(&self.event(
                scope,
                EventKind::ToolResult,
                format!("{}: {text}", call.name),
            ))
            .map_err(|source| CoreError::Unrecorded {
                done: "a tool ran",
                source,
            })?;
        on_event(Event::ToolResult {
            name: call.name.clone(),
            outcome,
        });
        Ok(text)
    }

    /// Whether `call` may run now, and its parsed arguments if so.
    async fn decide(
        &self,
        scope: &Scope<'_>,
        offered: &ToolRegistry,
        call: &ToolCall,
        limits: &Limits,
    ) -> std::result::Result<serde_json::Value, String> {
        let mode = scope.mode;
        let Some(tool) = offered.get(&call.name) else {
            return Err(match self.tools.get(&call.name) {
                Some(_) => format!("tool '{}' is not available in {mode} mode", call.name),
                None => format!("there is no tool named '{}'", call.name),
            });
        };
        let raw = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments.as_str()
        };
        let args: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| format!("the arguments are not valid JSON ({e}); send a JSON object"))?;
        let needs: BTreeSet<Effect> = tool
            .info()
            .effects
            .iter()
            .copied()
            .filter(|e| matches!(e, Effect::Write | Effect::Exec))
            .filter(|e| !limits.allow.contains(e))
            .collect();
        if needs.is_empty() || self.always().contains(&call.name) {
            return Ok(args);
        }
        let request = ApprovalRequest {
            tool: call.name.clone(),
            arguments: call.arguments.clone(),
            effects: needs,
        };
        match self.approver.approve(&request).await {
            Approval::Yes => Ok(args),
            Approval::Always => {
                self.always().insert(call.name.clone());
                Ok(args)
            }
            Approval::No => Err(format!(
                "the user did not approve '{}' (it can {})",
                call.name,
                request
                    .effects
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }

    fn always(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.always.lock().unwrap_or_else(|p| p.into_inner())
    }
}
