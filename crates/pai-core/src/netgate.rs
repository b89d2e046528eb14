//! The egress gate's half for network tools: every hop `http_get` makes (each redirect
//! too) is decided by the policy before it is sent, and recorded as an `egress` row once
//! it was. pai-tools reports the facts (resolved address, why it is not public); the
//! decision is made here.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use pai_audit::{AuditEvent, AuditSink, EventKind};
use pai_policy::{Decision, Policy, Subject};
use pai_tools::{Hop, HopSent, NetGate, PublicOnly};
use pai_types::{Effect, Mode, SessionName};

use crate::approval::{Approval, ApprovalRequest, Approver};

/// Decides hops by policy, asks the approver on an Ask, records what was sent.
pub struct PolicyGate {
    policy: Arc<dyn Policy>,
    audit: Arc<dyn AuditSink>,
    approver: Arc<dyn Approver>,
    session: SessionName,
    mode: Mode,
}

impl fmt::Debug for PolicyGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyGate")
            .field("session", &self.session)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PolicyGate {
    /// A gate for `session`'s turns in `mode`.
    pub fn new(
        policy: Arc<dyn Policy>,
        audit: Arc<dyn AuditSink>,
        approver: Arc<dyn Approver>,
        session: SessionName,
        mode: Mode,
    ) -> Self {
        Self {
            policy,
            audit,
            approver,
            session,
            mode,
        }
    }

    fn row(&self, kind: EventKind, content: String) -> AuditEvent {
        AuditEvent::new(kind, content)
            .session(self.session.as_str())
            .mode(self.mode.to_string())
    }
}

#[async_trait]
impl NetGate for PolicyGate {
    async fn check(&self, hop: &Hop) -> Result<(), String> {
        let subject = Subject::fetch(&hop.url, &hop.host, hop.special)
            .with_host(&hop.host, Some(hop.port))
            .with_mode(self.mode);
        let verdict = self.policy.check(&subject);
        if !verdict.is_trivial() {
            let row = format!(
                "{} by {}: {} {} ({}{}): {}",
                verdict.decision,
                verdict.rule,
                hop.method,
                hop.url,
                hop.addr,
                hop.special.map(|s| format!(", {s}")).unwrap_or_default(),
                verdict.reason
            );
            if let Err(e) = self
                .audit
                .record_deferred(&self.row(EventKind::Policy, row))
            {
                tracing::warn!(error = %e, "could not record a policy decision");
            }
        }
        match verdict.decision {
            Decision::Allow => Ok(()),
            Decision::Deny | Decision::Redact => {
                if verdict.rule == "default:no-private-addresses" {
                    // The tool's own wording names the address and why it is not public.
                    return PublicOnly::verdict(hop)
                        .map_err(|e| format!("{e} (policy rule '{}')", verdict.rule));
                }
                Err(format!(
                    "refused: {} {}: {} (policy rule '{}')",
                    hop.method, hop.url, verdict.reason, verdict.rule
                ))
            }
            Decision::Ask => {
                let request = ApprovalRequest {
                    tool: hop.tool.clone(),
                    arguments: hop.url.clone(),
                    effects: [Effect::Network].into(),
                    target: Some(hop.url.clone()),
                    rule: verdict.rule.clone(),
                    reason: verdict.reason.clone(),
                };
                match self.approver.approve(&request).await {
                    Approval::Yes | Approval::Always => Ok(()),
                    Approval::No => Err(format!(
                        "refused: the user did not approve {} {} ({}; policy rule '{}')",
                        hop.method, hop.url, verdict.reason, verdict.rule
                    )),
                }
            }
        }
    }

    fn sent(&self, sent: &HopSent) {
        let hop = &sent.hop;
        let content = serde_json::json!({
            "tool": hop.tool,
            "method": hop.method,
            "url": hop.url,
            "address": hop.addr.to_string(),
            "port": hop.port,
            "special": hop.special,
            "redirect_from": hop.redirect_from,
            "proxy": serde_json::Value::Null,
            "bytes": sent.bytes,
            "sha256": sent.body_sha256,
            "status": sent.status,
        });
        // Deferred: the tool_result row that follows the call is durable and covers it.
        if let Err(e) = self
            .audit
            .record_deferred(&self.row(EventKind::Egress, content.to_string()))
        {
            tracing::warn!(error = %e, "could not record an outbound request");
        }
    }
}
