//! The chokepoint: every model call is recorded before it leaves, refused when the record
//! cannot be written, and its outcome recorded when it returns.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use pai_audit::{AuditEvent, AuditSink, EventKind};
use pai_providers::{ChatEvent, ChatRequest, Endpoint, ProviderError, SentRequest};
use pai_types::{
    DataClass, Message, ToolCall, ToolSpec, Usage, estimate_message_tokens, estimate_tokens,
};

use super::{DryRun, Engine, Event, Scope};
use crate::error::{CoreError, Result};

/// One model call as the turn loop wants it.
pub(crate) struct Call<'a> {
    pub messages: Vec<Message>,
    /// What the audit's prompt record says was sent.
    pub label: &'a str,
    pub tools: Vec<ToolSpec>,
    pub stream: bool,
    /// Most tokens the answer may have (what the tightest budget leaves).
    pub max_tokens: Option<u64>,
    /// `Response`, or `Summary` for a fold.
    pub kind: EventKind,
    /// The JSON Schema the answer must match (`--schema`).
    pub schema: Option<serde_json::Value>,
}

/// One model reply: its text, the tools it wants called, what it cost.
pub(crate) struct Reply {
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub usage: Usage,
    /// The highest class of what the model was sent: the answer's class.
    pub class: DataClass,
}

impl Engine {
    pub(crate) async fn call(
        &self,
        scope: &Scope<'_>,
        call: Call<'_>,
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Reply> {
        let started = Instant::now();
        let mut messages = call.messages;
        let screened = self.screen(scope, &mut messages).await?;
        if scope.dry_run {
            let info = self.provider.info();
            on_event(Event::DryRun(DryRun {
                provider: info.name.clone(),
                endpoint: info.endpoint.clone(),
                locality: info.locality,
                model: scope.model.to_string(),
                parts: messages.into_iter().zip(screened.parts).collect(),
                tools: call.tools.iter().map(|t| t.name.clone()).collect(),
            }));
            return Ok(Reply {
                text: String::new(),
                calls: Vec::new(),
                usage: Usage::default(),
                class: screened.class,
            });
        }
        log_decision(
            self,
            scope,
            &call.kind,
            &messages,
            &screened,
            &call.tools,
            call.stream,
        );
        // The row says what left: the typed input (its secrets masked, whatever the
        // endpoint, unless `[audit] content = "full"`) and every part that went with it.
        let label = format!("{}\n{}", self.audit_text(call.label), screened.manifest());
        self.audit
            .record(&self.event(scope, EventKind::Prompt, label))?;

        let prompt_estimate: u64 = messages.iter().map(estimate_message_tokens).sum();
        let mut request = ChatRequest::new(scope.model, messages, call.stream);
        request.tools = call.tools;
        request.schema = call.schema;
        request.max_tokens = call.max_tokens.map(|m| m.min(u64::from(u32::MAX)) as u32);
        if let Some(notify) = &self.on_wait {
            let notify = notify.clone();
            request.attempts = request.attempts.on_wait(move |w| notify(w));
        }
        // Deferred: the call's outcome row below is durable and covers these.
        let classes: std::collections::BTreeSet<DataClass> =
            screened.parts.iter().map(|p| p.class).collect();
        request.attempts = request.attempts.on_sent(egress_recorder(
            self.audit.clone(),
            self.event(scope, EventKind::Egress, String::new()),
            serde_json::json!({
                "classes": classes,
                "redacted": screened.redacted,
                "withheld": screened.withheld,
            }),
            false,
        ));
        let attempts = request.attempts.clone();
        let outcome = self.collect(request, on_event).await;
        let elapsed = started.elapsed().as_millis() as u64;
        self.record_attempts(scope, attempts.take());
        match outcome {
            Ok((raw, text, calls, usage)) => {
                let usage = usage.unwrap_or(Usage {
                    prompt_tokens: prompt_estimate,
                    completion_tokens: estimate_tokens(&text)
                        + calls
                            .iter()
                            .map(|c| estimate_tokens(&c.arguments))
                            .sum::<u64>(),
                    estimated: true,
                });
                // Deferred: the caller's commit point follows (the history append, or the
                // session's new summary, both synced) and the next durable record covers
                // it; the prompt row above already proves what left. What a power loss in
                // between can cost: docs/benchmarks.md, "Syncs per turn".
                self.audit
                    .record_deferred(
                        &self
                            .event(scope, call.kind, self.audit_text(&raw))
                            .usage(usage)
                            .duration_ms(elapsed),
                    )
                    .map_err(|source| CoreError::Unrecorded {
                        done: "the request was sent and answered",
                        source,
                    })?;
                Ok(Reply {
                    text,
                    calls,
                    usage,
                    class: screened.class,
                })
            }
            Err(err) => {
                // The failure is recorded best-effort: the user must see the real error.
                if let Err(audit_err) = self.audit.record(
                    &self
                        .event(scope, EventKind::Error, err.to_string())
                        .duration_ms(elapsed),
                ) {
                    tracing::warn!(error = %audit_err, "could not record a failed call");
                }
                Err(err)
            }
        }
    }

    /// Sends `request` and gathers the answer. Per the `Provider` contract a stream that
    /// ends without `Finished` was cut off: its partial answer must not be stored.
    async fn collect(
        &self,
        request: ChatRequest,
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<(String, String, Vec<ToolCall>, Option<Usage>)> {
        let mut events = self.provider.chat(request).await?;
        let mut answer = String::new();
        // Placeholders the model writes back become the real values again, here, before
        // anything is shown or stored: the user sees their own text, the endpoint never did.
        let mut restorer = self.restorer();
        let mut shown = String::new();
        let mut calls = Vec::new();
        let mut usage = None;
        let mut finished = false;
        while let Some(event) = events.next().await {
            match event? {
                ChatEvent::Delta(text) => {
                    answer.push_str(&text);
                    let ready = match &mut restorer {
                        Some(r) => r.push(&text),
                        None => text,
                    };
                    if !ready.is_empty() {
                        shown.push_str(&ready);
                        on_event(Event::Delta(ready));
                    }
                }
                ChatEvent::Usage(u) => usage = Some(u),
                ChatEvent::ToolCall(call) => calls.push(call),
                ChatEvent::Finished { .. } => finished = true,
            }
        }
        if !finished {
            let info = self.provider.info();
            return Err(ProviderError::StreamCut {
                at: Endpoint {
                    provider: info.name.clone(),
                    url: info.endpoint.clone(),
                },
                detail: "the stream ended without a finish reason".into(),
            }
            .into());
        }
        if let Some(rest) = restorer.map(|mut r| r.finish())
            && !rest.is_empty()
        {
            shown.push_str(&rest);
            on_event(Event::Delta(rest));
        }
        Ok((answer, shown, calls, usage))
    }

    pub(crate) fn event(&self, scope: &Scope<'_>, kind: EventKind, content: String) -> AuditEvent {
        let info = self.provider.info();
        AuditEvent::new(kind, content)
            .session(scope.session)
            .mode(scope.mode)
            .provider(info.name.clone())
            .endpoint(info.endpoint.clone())
            .model(scope.model)
            .locality(info.locality)
    }

    /// Every failed HTTP attempt of a call, retried or final, goes into the audit log.
    fn record_attempts(&self, scope: &Scope<'_>, attempts: Vec<pai_providers::Attempt>) {
        for a in attempts {
            let next = match a.waited_ms {
                Some(ms) => format!("retried after {ms} ms"),
                None => "gave up".to_string(),
            };
            let asked = a
                .asked_wait_ms
                .map(|ms| format!(" (server asked to wait {ms} ms)"))
                .unwrap_or_default();
            let line = format!("attempt {}: {}{asked}; {next}", a.number, a.outcome);
            // Written before the call's outcome row, so they share its durability.
            if let Err(e) = self
                .audit
                .record_deferred(&self.event(scope, EventKind::Attempt, line))
            {
                tracing::warn!(error = %e, "could not record a failed attempt");
            }
        }
    }
}

/// `-v`: what PAI decided for this call, one line for the call and one per part, on the
/// diagnostics channel. Sizes, origins, classes, rules and counts only: never content, so
/// never a secret.
fn log_decision(
    engine: &Engine,
    scope: &Scope<'_>,
    kind: &EventKind,
    messages: &[Message],
    screened: &super::gate::Screened,
    tools: &[ToolSpec],
    stream: bool,
) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let info = engine.provider.info();
    let bytes: usize = screened.parts.iter().map(|p| p.bytes).sum();
    tracing::info!(
        "{} request to {} ({}) at {}: model {}, {} mode, {}, {} parts, {bytes} B, allowed by {}",
        if *kind == EventKind::Summary {
            "fold"
        } else {
            "model"
        },
        info.name,
        info.locality,
        pai_types::redact_endpoint(&info.endpoint),
        scope.model,
        scope.mode,
        if stream { "streamed" } else { "whole" },
        screened.parts.len(),
        screened.call_rule,
    );
    for (i, (message, part)) in messages.iter().zip(&screened.parts).enumerate() {
        // As `--dry-run` says it: a part withheld whole is the note, not redacted text.
        let what = match (part.decision, part.redactions) {
            (pai_policy::Decision::Redact, _) => format!("withheld by {}", part.rule),
            (_, 0) => format!("{} by {}", part.decision, part.rule),
            (_, n) => format!(
                "{n} value(s) redacted, rest {} by {}",
                part.decision, part.rule
            ),
        };
        tracing::info!(
            "  part {}: {} · {} · {} · {} B · {what}",
            i + 1,
            message.role.as_str(),
            part.origin,
            part.class,
            part.bytes,
        );
    }
    if tools.is_empty() {
        tracing::info!("  tools offered: none");
    } else {
        let size = serde_json::to_string(tools).map_or(0, |t| t.len());
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        tracing::info!(
            "  tools offered: {} ({size} B): {}",
            tools.len(),
            names.join(", ")
        );
    }
    let redacted: usize = screened.redacted.values().sum();
    if redacted == 0 && screened.withheld == 0 {
        tracing::info!("  redactions: none");
    } else {
        let kinds: Vec<String> = screened
            .redacted
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        tracing::info!(
            "  redactions: {redacted} value(s) replaced by placeholders ({}), {} part(s) withheld",
            kinds.join(", "),
            screened.withheld
        );
    }
}

/// The `on_sent` hook that writes one `egress` row per request that left, built on
/// `template` (session, provider, endpoint, locality): what went where, through which
/// proxy, and the SHA-256 of exactly the body sent, plus the keys of `extra` (a JSON
/// object: for a model call, the classes present and what was redacted). The keys match
/// the `http_get` hops' rows where they mean the same (`url`, `address`, `sha256`, …).
/// `durable` rows are synced at once (a model listing, which writes nothing after); the
/// others ride on the caller's next durable record. A row that cannot be written is
/// logged, not raised: the request has already left, and the user must see how it ended.
pub(crate) fn egress_recorder(
    audit: Arc<dyn AuditSink>,
    template: AuditEvent,
    extra: serde_json::Value,
    durable: bool,
) -> impl Fn(&SentRequest) + Send + Sync + 'static {
    move |sent| {
        let mut content = serde_json::json!({
            "url": sent.url,
            "method": sent.method,
            "address": sent.remote_addr.map(|a| a.to_string()),
            "proxy": sent.proxy,
            "locality": template.locality,
            "bytes": sent.bytes,
            "sha256": sent.body_sha256,
            "status": sent.status,
        });
        if let (Some(content), serde_json::Value::Object(extra)) = (content.as_object_mut(), &extra)
        {
            content.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let event = AuditEvent {
            content: content.to_string(),
            ..template.clone()
        };
        let recorded = if durable {
            audit.record(&event)
        } else {
            audit.record_deferred(&event)
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record a request that left");
        }
    }
}
