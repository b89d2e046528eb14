use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pai_audit::{AuditEvent, AuditSink, EventKind};
use pai_providers::{ChatEvent, ChatRequest, Endpoint, Provider, ProviderError};
use pai_tools::{Effect, ToolContext, ToolRegistry};
use pai_types::{
    Message, Mode, SessionName, ToolCall, ToolSpec, Usage, estimate_message_tokens, estimate_tokens,
};

use crate::approval::{Approval, ApprovalRequest, Approver, DenyAll};
use crate::context::ContextManager;
use crate::error::{CoreError, Result};
use crate::session::{HistoryEntry, SessionSnapshot, SessionStore};

/// Tool rounds prompt mode allows when the user sets none.
pub const DEFAULT_MAX_CHAIN: u32 = 3;

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
    pub limits: Limits,
}

/// What one turn may spend and do beyond its mode's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Prompt mode: tool rounds before the model must answer (default 3).
    pub max_chain: Option<u32>,
    /// Agent mode: tool rounds before the run stops (default: unbounded).
    pub max_steps: Option<u32>,
    /// Tokens this turn may use, all model calls together.
    pub budget_tokens: Option<u64>,
    /// Effects allowed without asking (agent mode), e.g. `--allow write`.
    pub allow: BTreeSet<Effect>,
}

/// How a tool call ended, as reported to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOutcome {
    /// It ran; `bytes` of output went back to the model.
    Done { bytes: usize, truncated: bool },
    /// It ran and failed; the error went back to the model.
    Failed(String),
    /// It was not allowed to run; the reason went back to the model.
    Refused(String),
}

/// What a running turn reports, in order, for the caller to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The unfolded turns were folded into the running summary first.
    Folded { usage: Usage },
    /// A piece of the answer.
    Delta(String),
    /// The model asked to call a tool.
    ToolCall { name: String, arguments: String },
    /// A tool call ended.
    ToolResult { name: String, outcome: ToolOutcome },
}

/// The result of a finished turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnOutcome {
    pub answer: String,
    pub usage: Usage,
    pub model: String,
    pub duration: Duration,
    /// Tool calls the model made.
    pub tool_calls: u32,
    /// Why the turn ended before the model was done (a budget or a step limit).
    pub stopped: Option<String>,
}

/// Token caps beyond one turn's, set by the session and the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budgets {
    /// The session's budget (tokens over its whole history).
    pub session: Option<u64>,
    /// The daily cap and what was used today before this turn.
    pub daily: Option<(u64, u64)>,
}

/// One model reply: its text, the tools it wants called, what it cost.
struct Reply {
    text: String,
    calls: Vec<ToolCall>,
    usage: Usage,
}

/// Runs turns: context in, model calls and tool rounds within the mode's limits, history
/// and audit out. Every byte sent to a model passes `Engine::call_kind`, which records the
/// request in the audit log before anything leaves and refuses to send when the record
/// cannot be written; every tool call passes `Engine::tool_checkpoint`.
pub struct Engine {
    provider: Arc<dyn Provider>,
    audit: Arc<dyn AuditSink>,
    store: SessionStore,
    context: ContextManager,
    tools: ToolRegistry,
    tool_cx: ToolContext,
    approver: Arc<dyn Approver>,
    /// Tools the user approved with "always" while this engine runs.
    always: Mutex<BTreeSet<String>>,
    budgets: Budgets,
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
            tools: ToolRegistry::new(),
            tool_cx: ToolContext::default(),
            approver: Arc::new(DenyAll),
            always: Mutex::new(BTreeSet::new()),
            budgets: Budgets::default(),
        }
    }

    /// The tools a model may be offered (each mode offers a subset) and their limits.
    pub fn with_tools(mut self, tools: ToolRegistry, cx: ToolContext) -> Self {
        self.tools = tools;
        self.tool_cx = cx;
        self
    }

    /// Who answers when a write or exec tool needs consent (default: nobody, so refused).
    pub fn with_approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = approver;
        self
    }

    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = budgets;
        self
    }

    /// The tools `mode` offers: chat read-only, prompt read + network, agent everything
    /// (write and exec behind approval).
    pub fn offered_tools(&self, mode: Mode) -> ToolRegistry {
        self.tools.filtered(|effect| match mode {
            Mode::Chat => effect == Effect::Read,
            Mode::Prompt => matches!(effect, Effect::Read | Effect::Network),
            Mode::Agent => true,
        })
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

        let mut messages = match turn.mode {
            Mode::Chat => self.context.chat(&model, &snapshot.history, &turn.input)?,
            Mode::Prompt | Mode::Agent => {
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
        let history_usage = snapshot.usage().total();
        let session_budget = snapshot.meta.budget_tokens.or(self.budgets.session);
        if let Some(hit) = self.budget_hit(turn, session_budget, history_usage, 0) {
            return Err(CoreError::BudgetExhausted(hit));
        }

        let offered = self.offered_tools(turn.mode);
        let mut specs: Vec<ToolSpec> = offered.infos().iter().map(|i| i.spec.clone()).collect();
        let rounds_allowed = match turn.mode {
            Mode::Chat => Some(1),
            Mode::Prompt => Some(turn.limits.max_chain.unwrap_or(DEFAULT_MAX_CHAIN)),
            Mode::Agent => turn.limits.max_steps,
        };

        let mut answer = String::new();
        let mut used = Usage::default();
        let mut rounds = 0u32;
        let mut tool_calls = 0u32;
        let mut stopped = None;
        loop {
            let tools_now = !specs.is_empty() && rounds_allowed.is_none_or(|cap| rounds < cap);
            let input = if rounds == 0 {
                Some(turn.input.as_str())
            } else {
                None
            };
            let tools = if tools_now { specs.clone() } else { Vec::new() };
            let reply = match self
                .call(
                    &scope,
                    messages.clone(),
                    input,
                    tools,
                    turn.stream,
                    on_event,
                )
                .await
            {
                // Many local servers and models refuse a request that offers tools (llama.cpp
                // without --jinja, Ollama models without tool support). The user asked a
                // question, not for tools: ask again without them for the rest of the turn.
                Err(CoreError::Provider(ProviderError::Rejected { message, .. }))
                    if tools_now && message.to_ascii_lowercase().contains("tool") =>
                {
                    tracing::info!(%message, "the model refused tools; asking without them");
                    specs.clear();
                    self.call(
                        &scope,
                        messages.clone(),
                        input,
                        Vec::new(),
                        turn.stream,
                        on_event,
                    )
                    .await?
                }
                other => other?,
            };
            let tools_now = tools_now && !specs.is_empty();
            used.add(&reply.usage);
            if !reply.text.is_empty() {
                if !answer.is_empty() {
                    answer.push_str("\n\n");
                    on_event(Event::Delta("\n\n".into()));
                }
                answer.push_str(&reply.text);
            }
            // A model that calls tools it was not offered gets no tool round.
            if reply.calls.is_empty() || !tools_now {
                break;
            }
            messages.push(Message::assistant_with_tools(
                reply.text,
                reply.calls.clone(),
            ));
            for call in &reply.calls {
                tool_calls += 1;
                let result = self
                    .tool_checkpoint(&scope, &offered, call, &turn.limits, on_event)
                    .await?;
                messages.push(Message::tool_result(call.id.clone(), result));
            }
            rounds += 1;
            if let Some(hit) = self.budget_hit(turn, session_budget, history_usage, used.total()) {
                stopped = Some(hit);
                break;
            }
            if rounds_allowed.is_some_and(|cap| rounds >= cap) {
                // Out of tool rounds: one more call, without tools, for the best answer.
                if turn.mode == Mode::Agent {
                    stopped = Some(format!("the step limit ({rounds}) was reached"));
                }
                messages.push(Message::user(
                    "You have used all the tool calls allowed for this request. Answer now, \
                     as well as you can, from the information above.",
                ));
            }
        }

        let question = HistoryEntry::new(Message::user(turn.input.clone()));
        let mut reply = HistoryEntry::new(Message::assistant(answer.clone()));
        reply.model = Some(model.clone());
        reply.usage = Some(used);
        self.store.append(&turn.session, &[question, reply])?;

        Ok(TurnOutcome {
            answer,
            usage: used,
            model,
            duration: started.elapsed(),
            tool_calls,
            stopped,
        })
    }

    /// Which budget, if any, `used` more tokens would have exhausted.
    fn budget_hit(
        &self,
        turn: &Turn,
        session_budget: Option<u64>,
        history: u64,
        used: u64,
    ) -> Option<String> {
        if let Some(cap) = turn.limits.budget_tokens
            && used >= cap
        {
            return Some(format!("the token budget for this run ({cap}) was reached"));
        }
        if let Some(cap) = session_budget
            && history + used >= cap
        {
            return Some(format!(
                "session '{}' reached its token budget ({cap}; {} used)",
                turn.session,
                history + used
            ));
        }
        if let Some((cap, today)) = self.budgets.daily
            && today + used >= cap
        {
            return Some(format!(
                "the daily token cap ({cap}; {} used today) was reached",
                today + used
            ));
        }
        None
    }

    /// The one place a model's tool call is decided, run and recorded. Today it enforces
    /// the mode's offer and the approvals for write and exec; the policy engine will
    /// decide here too. Whatever happens goes back to the model as text: a refused or
    /// failed call never ends the turn.
    async fn tool_checkpoint(
        &self,
        scope: &CallScope<'_>,
        offered: &ToolRegistry,
        call: &ToolCall,
        limits: &Limits,
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<String> {
        on_event(Event::ToolCall {
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        });
        self.audit.record(&self.event(
            scope,
            EventKind::ToolCall,
            format!("{}({})", call.name, call.arguments),
        ))?;
        let (text, outcome) = match self.decide(scope.mode, offered, call, limits) {
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
        self.audit.record(&self.event(
            scope,
            EventKind::ToolResult,
            format!("{}: {text}", call.name),
        ))?;
        on_event(Event::ToolResult {
            name: call.name.clone(),
            outcome,
        });
        Ok(text)
    }

    /// Whether `call` may run now, and its parsed arguments if so.
    fn decide(
        &self,
        mode: Mode,
        offered: &ToolRegistry,
        call: &ToolCall,
        limits: &Limits,
    ) -> std::result::Result<serde_json::Value, String> {
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
        if needs.is_empty() {
            return Ok(args);
        }
        let mut always = self.always.lock().unwrap_or_else(|p| p.into_inner());
        if always.contains(&call.name) {
            return Ok(args);
        }
        let request = ApprovalRequest {
            tool: call.name.clone(),
            arguments: call.arguments.clone(),
            effects: needs,
        };
        match self.approver.approve(&request) {
            Approval::Yes => Ok(args),
            Approval::Always => {
                always.insert(call.name.clone());
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

    /// Asks the model to fold the unfolded turns into the running summary and stores it.
    async fn fold(&self, scope: &CallScope<'_>, snapshot: &SessionSnapshot) -> Result<Usage> {
        let request = self
            .context
            .fold_request(&snapshot.meta.summary, snapshot.unfolded());
        let reply = self
            .call_kind(
                scope,
                request,
                Some("[fold the unfolded turns into the running summary]"),
                Vec::new(),
                false,
                &mut |_| {},
                EventKind::Summary,
            )
            .await?;
        let (summary, usage) = (reply.text, reply.usage);
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
        input: Option<&str>,
        tools: Vec<ToolSpec>,
        stream: bool,
        on_event: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Reply> {
        self.call_kind(
            scope,
            messages,
            input,
            tools,
            stream,
            on_event,
            EventKind::Response,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_kind(
        &self,
        scope: &CallScope<'_>,
        messages: Vec<Message>,
        input: Option<&str>,
        tools: Vec<ToolSpec>,
        stream: bool,
        on_event: &mut (dyn FnMut(Event) + Send),
        result_kind: EventKind,
    ) -> Result<Reply> {
        let started = Instant::now();
        // The prompt record names what the user typed; a follow-up call after tool calls
        // sends their results, which the tool records already hold.
        let prompt_text = input.map_or_else(
            || "[the tool results above, sent back to the model]".to_string(),
            str::to_string,
        );
        self.audit
            .record(&self.event(scope, EventKind::Prompt, prompt_text))?;

        let prompt_estimate: u64 = messages.iter().map(estimate_message_tokens).sum();
        let mut request = ChatRequest::new(scope.model, messages, stream);
        request.tools = tools;
        let attempts = request.attempts.clone();
        let outcome = self.collect(request, on_event).await;
        let elapsed = started.elapsed().as_millis() as u64;
        self.record_attempts(scope, attempts.take());
        match outcome {
            Ok((text, calls, usage)) => {
                let usage = usage.unwrap_or(Usage {
                    prompt_tokens: prompt_estimate,
                    completion_tokens: estimate_tokens(&text)
                        + calls
                            .iter()
                            .map(|c| estimate_tokens(&c.arguments))
                            .sum::<u64>(),
                    estimated: true,
                });
                self.audit.record(
                    &self
                        .event(scope, result_kind, text.clone())
                        .usage(usage)
                        .duration_ms(elapsed),
                )?;
                Ok(Reply { text, calls, usage })
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
    ) -> Result<(String, Vec<ToolCall>, Option<Usage>)> {
        let mut events = self.provider.chat(request).await?;
        let mut answer = String::new();
        let mut calls = Vec::new();
        let mut usage = None;
        let mut finished = false;
        while let Some(event) = events.next().await {
            match event? {
                ChatEvent::Delta(text) => {
                    answer.push_str(&text);
                    on_event(Event::Delta(text));
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
        Ok((answer, calls, usage))
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
