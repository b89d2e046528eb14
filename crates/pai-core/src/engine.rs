use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pai_audit::{AuditEvent, AuditSink, EventKind};
use pai_providers::{ChatEvent, ChatRequest, Endpoint, Provider, ProviderError};
use pai_types::{Message, Mode, SessionName, Usage, estimate_message_tokens, estimate_tokens};

use crate::context::ContextManager;
use crate::error::Result;
use crate::session::{HistoryEntry, SessionSnapshot, SessionStore};

/// One user input to run in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub session: SessionName,
    pub mode: Mode,
    pub input: String,
    /// Ask the provider to stream.
    pub stream: bool,
    /// Use this model for this turn only instead of the session's.
    pub model: Option<String>,
}

/// What a running turn reports, in order, for the caller to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The unfolded turns were folded into the running summary first.
    Folded { usage: Usage },
    /// A piece of the answer.
    Delta(String),
}

/// The result of a finished turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnOutcome {
    pub answer: String,
    pub usage: Usage,
    pub model: String,
    pub duration: Duration,
}

/// Runs turns: context in, one provider call, history and audit out. Every byte sent to a
/// model passes [`Engine::call`], which records the request in the audit log before
/// anything leaves and refuses to send when the record cannot be written.
pub struct Engine {
    provider: Arc<dyn Provider>,
    audit: Arc<dyn AuditSink>,
    store: SessionStore,
    context: ContextManager,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("provider", self.provider.info())
            .finish_non_exhaustive()
    }
}

/// Who a model call is for, for the audit record.
struct CallScope<'a> {
    session: &'a SessionName,
    mode: Mode,
    model: &'a str,
}

impl Engine {
    pub fn new(
        provider: Arc<dyn Provider>,
        audit: Arc<dyn AuditSink>,
        store: SessionStore,
        context: ContextManager,
    ) -> Self {
        Self {
            provider,
            audit,
            store,
            context,
        }
    }

    pub fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    /// Runs one turn. On success the user's input and the answer are appended to the
    /// session's history together; on any failure the history is left exactly as it was.
    /// (A fold that succeeded before the answer failed stands: it only summarises turns
    /// already stored, and keeping it saves paying for it again.)
    pub async fn run(
        &self,
        turn: &Turn,
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<TurnOutcome> {
        let started = Instant::now();
        let mut snapshot = self.store.snapshot(&turn.session)?;
        let model = turn
            .model
            .clone()
            .unwrap_or_else(|| snapshot.meta.model.clone());
        let scope = CallScope {
            session: &turn.session,
            mode: turn.mode,
            model: &model,
        };

        let messages = match turn.mode {
            Mode::Chat => self.context.chat(&model, &snapshot.history, &turn.input)?,
            Mode::Prompt => {
                if self.context.should_fold(snapshot.unfolded()) {
                    let usage = self.fold(&scope, &snapshot).await?;
                    on_event(Event::Folded { usage });
                    snapshot = self.store.snapshot(&turn.session)?;
                }
                self.context.prompt(
                    &model,
                    &snapshot.meta.summary,
                    snapshot.unfolded(),
                    &turn.input,
                )?
            }
        };

        let (answer, usage) = self
            .call(&scope, messages, &turn.input, turn.stream, on_event)
            .await?;

        let question = HistoryEntry::new(Message::user(turn.input.clone()));
        let mut reply = HistoryEntry::new(Message::assistant(answer.clone()));
        reply.model = Some(model.clone());
        reply.usage = Some(usage);
        self.store.append(&turn.session, &[question, reply])?;

        Ok(TurnOutcome {
            answer,
            usage,
            model,
            duration: started.elapsed(),
        })
    }

    /// Asks the model to fold the unfolded turns into the running summary and stores it.
    async fn fold(&self, scope: &CallScope<'_>, snapshot: &SessionSnapshot) -> Result<Usage> {
        let request = self
            .context
            .fold_request(&snapshot.meta.summary, snapshot.unfolded());
        let (summary, usage) = self
            .call_kind(scope, request, None, false, &mut |_| {}, EventKind::Summary)
            .await?;
        self.store.fold(
            scope.session,
            snapshot.meta.folded,
            summary,
            snapshot.history.len(),
        )?;
        Ok(usage)
    }

    /// The chokepoint: audit the request, send it, collect the answer, audit the outcome.
    async fn call(
        &self,
        scope: &CallScope<'_>,
        messages: Vec<Message>,
        input: &str,
        stream: bool,
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<(String, Usage)> {
        self.call_kind(
            scope,
            messages,
            Some(input),
            stream,
            on_event,
            EventKind::Response,
        )
        .await
    }

    async fn call_kind(
        &self,
        scope: &CallScope<'_>,
        messages: Vec<Message>,
        input: Option<&str>,
        stream: bool,
        on_event: &mut (dyn FnMut(Event) + Send),
        result_kind: EventKind,
    ) -> Result<(String, Usage)> {
        let started = Instant::now();
        // The prompt record names what the user typed; a fold sends only stored history.
        let prompt_text = input.map_or_else(
            || "[fold the unfolded turns into the running summary]".to_string(),
            str::to_string,
        );
        self.audit
            .record(&self.event(scope, EventKind::Prompt, prompt_text))?;

        let prompt_estimate: u64 = messages.iter().map(estimate_message_tokens).sum();
        let request = ChatRequest::new(scope.model, messages, stream);
        let attempts = request.attempts.clone();
        let outcome = self.collect(request, on_event).await;
        let elapsed = started.elapsed().as_millis() as u64;
        self.record_attempts(scope, attempts.take());
        match outcome {
            Ok((answer, usage)) => {
                let usage = usage.unwrap_or(Usage {
                    prompt_tokens: prompt_estimate,
                    completion_tokens: estimate_tokens(&answer),
                    estimated: true,
                });
                self.audit.record(
                    &self
                        .event(scope, result_kind, answer.clone())
                        .usage(usage)
                        .duration_ms(elapsed),
                )?;
                Ok((answer, usage))
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
    ) -> Result<(String, Option<Usage>)> {
        let mut events = self.provider.chat(request).await?;
        let mut answer = String::new();
        let mut usage = None;
        let mut finished = false;
        while let Some(event) = events.next().await {
            match event? {
                ChatEvent::Delta(text) => {
                    answer.push_str(&text);
                    on_event(Event::Delta(text));
                }
                ChatEvent::Usage(u) => usage = Some(u),
                // No tools are offered yet, so a tool call cannot be acted on.
                ChatEvent::ToolCall(_) => {}
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
        Ok((answer, usage))
    }

    fn event(&self, scope: &CallScope<'_>, kind: EventKind, content: String) -> AuditEvent {
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
    fn record_attempts(&self, scope: &CallScope<'_>, attempts: Vec<pai_providers::Attempt>) {
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
            if let Err(e) = self
                .audit
                .record(&self.event(scope, EventKind::Attempt, line))
            {
                tracing::warn!(error = %e, "could not record a failed attempt");
            }
        }
    }

    /// Records that the user interrupted a turn (the request was dropped mid-flight).
    pub fn record_cancelled(&self, turn: &Turn, partial: &str) -> Result<()> {
        // The model the turn ran with: its override, else the session's. A session that
        // cannot be read must not stop the cancellation from being recorded.
        let model = match &turn.model {
            Some(model) => model.clone(),
            None => self
                .store
                .load_meta(&turn.session)
                .map(|meta| meta.model)
                .unwrap_or_default(),
        };
        let scope = CallScope {
            session: &turn.session,
            mode: turn.mode,
            model: &model,
        };
        self.audit
            .record(&self.event(&scope, EventKind::Cancelled, partial.to_string()))?;
        Ok(())
    }
}
