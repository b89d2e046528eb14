use std::collections::BTreeSet;

use async_trait::async_trait;
use pai_types::Effect;

/// A tool call that needs the user's consent before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The name of the tool the model wants to call.
    pub tool: String,
    /// The arguments as the model wrote them (JSON text).
    pub arguments: String,
    /// The effects that made approval necessary (write, exec).
    pub effects: BTreeSet<Effect>,
    /// What the call reaches, shown first and in full: a path, a URL or a host.
    pub target: Option<String>,
    /// The rule that asks, and its reason.
    pub rule: String,
    /// Why approval is needed, in one sentence.
    pub reason: String,
}

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// Run this call.
    Yes,
    /// Refuse this call; the model is told it was refused.
    No,
    /// Yes, and do not ask again for this tool while this engine runs.
    Always,
}

/// Answers the questions the engine asks: interactively in a terminal, or by a fixed rule.
/// Async, so an embedder can ask over a channel or a UI without blocking the turn.
#[async_trait]
pub trait Approver: Send + Sync {
    /// Asks about one call; the engine waits for the answer.
    async fn approve(&self, request: &ApprovalRequest) -> Approval;
}

/// Refuses everything: what runs when nobody is there to ask.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

#[async_trait]
impl Approver for DenyAll {
    async fn approve(&self, _request: &ApprovalRequest) -> Approval {
        Approval::No
    }
}
