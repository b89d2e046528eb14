//! Planner / worker: one model writes the plan for an agent run, another (often a local
//! one) carries it out with the tools. The planner's call goes through the same gate as
//! every other (screened, redacted for its endpoint, audited, budgeted); it is offered no
//! tools and stores nothing in any history: its plan becomes part of the worker's input.

use pai_audit::EventKind;
use pai_types::{Message, SessionName, ToolSpec, Usage, estimate_message_tokens};

use super::egress::Call;
use super::{Engine, Scope};
use crate::error::{CoreError, Result};

/// The planner's standing instructions.
const PLANNER_SYSTEM: &str = "You are the planner of an agent run. Another model, the worker, \
will carry out your plan with the tools listed below; you cannot call them yourself. Write a \
short numbered plan (at most 8 steps) for the user's goal: each step one concrete action, \
naming the tool to use when one fits, and the last step what to report to the user. Reply \
with the plan only.";

/// Most tokens a plan may have: a plan is a list, not an essay.
const MAX_PLAN_TOKENS: u64 = 1024;

/// A plan, and what writing it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The plan as the planner wrote it (placeholders restored for the user).
    pub text: String,
    /// Tokens the planner's call used.
    pub usage: Usage,
    /// The model that wrote it.
    pub model: String,
}

impl Engine {
    /// Asks this engine's model, as `model`, for a plan for `goal` that a worker offered
    /// `tools` will carry out. Recorded in the audit log under `session` in agent mode
    /// (prompt row labelled as a plan); counted against `budget` (the run's tokens), the
    /// session's cap and the daily cap like any call.
    pub async fn plan(
        &self,
        session: &SessionName,
        model: &str,
        goal: &str,
        tools: &[ToolSpec],
        budget: Option<u64>,
    ) -> Result<Plan> {
        let snapshot = self.store.snapshot(session)?;
        let scope = Scope {
            session,
            mode: pai_types::Mode::Agent,
            model,
            dry_run: false,
        };
        let mut listed = String::new();
        for tool in tools {
            let first = tool.description.split(". ").next().unwrap_or_default();
            listed.push_str(&format!(
                "- {}: {}\n",
                tool.name,
                first.trim_end_matches('.')
            ));
        }
        if listed.is_empty() {
            listed.push_str("(none: the worker can only answer)\n");
        }
        let messages = vec![
            Message::system(format!("{PLANNER_SYSTEM}\n\nThe worker's tools:\n{listed}")),
            Message::user(goal),
        ];
        let spend = self.spend(session, &snapshot.meta, snapshot.usage().total(), budget);
        let estimate: u64 = messages.iter().map(estimate_message_tokens).sum();
        let left = spend.allow(estimate).map_err(CoreError::BudgetExhausted)?;
        let max_tokens = Some(left.map_or(MAX_PLAN_TOKENS, |l| l.min(MAX_PLAN_TOKENS)));
        let label = format!("[plan for the worker] {goal}");
        let reply = self
            .call(
                &scope,
                Call {
                    messages,
                    label: &label,
                    tools: Vec::new(),
                    stream: false,
                    max_tokens,
                    kind: EventKind::Response,
                    schema: None,
                },
                &mut |_| {},
            )
            .await?;
        let text = self.restore(reply.text.trim());
        if text.is_empty() {
            return Err(CoreError::Planner(format!(
                "the planner ({model}) answered with no plan; try again or choose another planner"
            )));
        }
        Ok(Plan {
            text,
            usage: reply.usage,
            model: model.to_string(),
        })
    }
}

/// The worker's input: the user's goal, then the plan, said to come from the planner.
pub fn worker_input(goal: &str, plan: &Plan, planner: &str) -> String {
    format!(
        "{goal}\n\nA planner ({planner}, model {}) wrote this plan for the goal above. Carry it \
         out step by step with your tools, adapting when a step fails, then report what you \
         did.\n\n{}",
        plan.model, plan.text
    )
}
