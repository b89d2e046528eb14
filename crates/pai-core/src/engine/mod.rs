//! The engine: one turn from input to stored answer. `mod.rs` holds the turn loop;
//! `egress` the one path a model call takes; `tools` the tool checkpoint; `budget` the
//! token caps; `fold` the running summary.

mod budget;
mod egress;
mod fold;
mod gate;
mod plan;
mod tools;

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::Either;
use pai_audit::{AuditSink, EventKind};
use pai_policy::{Policy, RulePolicy};
use pai_providers::{Provider, ProviderError, WaitNotifier};
use pai_tools::{ToolContext, ToolRegistry};
use pai_types::{
    Effect, Message, Mode, SessionName, ToolSpec, Usage, estimate_message_tokens, estimate_tokens,
};

use crate::approval::{Approver, DenyAll};
use crate::context::ContextManager;
use crate::error::{CoreError, Result};
use crate::session::{HistoryEntry, SessionStore};

pub use budget::{Budget, Budgets, StopReason, UsageLedger};
pub use gate::PartReport;
pub(crate) use gate::host_of;
pub use plan::{Plan, worker_input};
pub use tools::DEFAULT_MAX_CALLS_PER_ROUND;

pub(crate) use egress::egress_recorder;

use budget::Spend;
use egress::Call;

/// Tool rounds prompt mode allows when the user sets none.
pub const DEFAULT_MAX_CHAIN: u32 = 3;

/// One user input to run in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The session whose history and settings the turn uses.
    pub session: SessionName,
    /// Which tools are offered and how many rounds they may take.
    pub mode: Mode,
    /// What the user typed.
    pub input: String,
    /// Ask the provider to stream.
    pub stream: bool,
    /// Use this model for this turn only instead of the session's.
    pub model: Option<String>,
    /// Caps beyond the mode's defaults.
    pub limits: Limits,
    /// The system prompt for this turn only (`--system`, a role's), over the session's.
    pub system: Option<String>,
    /// Files attached to the input (`-f`), each sent as a part of its own.
    pub attachments: Vec<crate::Attachment>,
    /// A JSON Schema the answer must match (`--schema`): no tools are offered, the answer
    /// is validated and, once, asked for again with what was wrong.
    pub schema: Option<serde_json::Value>,
}

/// What one turn may spend and do beyond its mode's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Prompt mode: tool rounds before the model must answer (default 3).
    pub max_chain: Option<u32>,
    /// Agent mode: tool rounds before the run stops (default: unbounded).
    pub max_steps: Option<u32>,
    /// Tool calls run from one model reply (default [`DEFAULT_MAX_CALLS_PER_ROUND`]).
    pub max_calls_per_round: Option<u32>,
    /// Tokens this turn may use, all model calls together.
    pub budget_tokens: Option<u64>,
    /// Effects allowed without asking (agent mode), e.g. `--allow write`.
    pub allow: BTreeSet<Effect>,
    /// Build and screen the first request, report it as [`Event::DryRun`], send nothing
    /// and store nothing.
    pub dry_run: bool,
}

/// How a tool call ended, as reported to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOutcome {
    /// It ran; `bytes` of output went back to the model.
    Done {
        /// Size of the output sent back.
        bytes: usize,
        /// The output was cut to the size cap.
        truncated: bool,
    },
    /// It ran and failed; the error went back to the model.
    Failed(String),
    /// It was not allowed to run; the reason went back to the model.
    Refused(String),
}

/// What a running turn reports, in order, for the caller to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The unfolded turns were folded into the running summary first.
    Folded {
        /// Tokens the fold call used.
        usage: Usage,
    },
    /// Folding failed; the turn goes on with the recent turns that fit.
    FoldFailed {
        /// Why, as one line.
        reason: String,
    },
    /// Chat: this many older history messages did not fit the window and were left out.
    Trimmed {
        /// How many messages, oldest first.
        left_out: usize,
    },
    /// The model refused a request that offered tools; the turn goes on without them.
    ToolsUnsupported {
        /// What the provider said.
        detail: String,
    },
    /// A piece of the answer.
    Delta(String),
    /// The model asked to call a tool.
    ToolCall {
        /// The tool.
        name: String,
        /// Its arguments as the model wrote them (JSON text).
        arguments: String,
    },
    /// A tool call ended.
    ToolResult {
        /// The tool.
        name: String,
        /// How it ended.
        outcome: ToolOutcome,
    },
    /// `--dry-run`: the request that would have left, after screening. Nothing was sent.
    DryRun(DryRun),
    /// A tool's output scored as a likely prompt injection; it went to the model marked as
    /// data, and the turn is tainted.
    InjectionSuspected {
        /// The tool.
        tool: String,
        /// The score (at least [`pai_policy::inject::HIGH`]).
        score: u32,
        /// What was found, comma-separated.
        kinds: String,
    },
    /// A reply asked for more tool calls than a round allows; these did not run.
    ToolCallsRefused {
        /// How many calls were refused.
        count: usize,
        /// Why, as told to the model.
        reason: String,
    },
}

/// What `--dry-run` shows: the request exactly as it would leave, part by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// The provider it would go to.
    pub provider: String,
    /// Its endpoint.
    pub endpoint: String,
    /// Where it runs.
    pub locality: pai_types::Locality,
    /// The model asked.
    pub model: String,
    /// The messages, after redaction, with what the policy decided for each.
    pub parts: Vec<(Message, PartReport)>,
    /// The tools that would be offered.
    pub tools: Vec<String>,
}

/// The result of a finished turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnOutcome {
    /// The model's final answer, as stored in the history.
    pub answer: String,
    /// Every model call of the turn, a fold it needed included.
    pub usage: Usage,
    /// The model that answered.
    pub model: String,
    /// Wall time from start to answer.
    pub duration: Duration,
    /// Tool calls the model made.
    pub tool_calls: u32,
    /// Why the turn ended before the model was done (a budget or a step limit).
    pub stopped: Option<StopReason>,
    /// `--dry-run`: nothing was sent or stored.
    pub dry_run: bool,
}

/// Why a caller ended a turn before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The user pressed Ctrl+C.
    Interrupted,
    /// The process was asked to stop (SIGTERM).
    Terminated,
    /// Whoever read the answer went away (a closed pipe).
    OutputClosed,
}

impl fmt::Display for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cancel::Interrupted => "interrupted",
            Cancel::Terminated => "terminated",
            Cancel::OutputClosed => "output closed",
        })
    }
}

/// How a cancellable turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEnd {
    /// The turn finished (possibly stopped by a budget: see [`TurnOutcome::stopped`]).
    Done(TurnOutcome),
    /// Cancelled: recorded in the audit log, nothing stored in the session.
    Cancelled {
        /// Why the caller stopped it.
        reason: Cancel,
        /// The answer text that had arrived by then.
        partial: String,
    },
}

/// Runs turns: context in, model calls and tool rounds within the mode's limits, history
/// and audit out. Every byte sent to a model passes `Engine::call`, which records the
/// request in the audit log before anything leaves and refuses to send when the record
/// cannot be written; every tool call passes the tool checkpoint.
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
    /// Told before each wait between two tries of a model call (a 429, a 5xx).
    on_wait: Option<WaitNotifier>,
    /// Decides at every checkpoint.
    policy: Arc<dyn Policy>,
    /// Redacted values and their placeholders, in memory only.
    placeholders: Mutex<gate::Placeholders>,
    /// Names the tags around tool output, so that output cannot close them itself.
    nonce: String,
    /// The user's resources: the catalogue in the context, the class of what the
    /// resource tools read.
    resources: Option<Arc<crate::resource_access::ResourceAccess>>,
    /// `[audit] content = "full"`: the audit log gets content unmasked.
    audit_unmasked: bool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("provider", self.provider.info())
            .finish_non_exhaustive()
    }
}

/// Who a model call is for, for the audit record.
pub(crate) struct Scope<'a> {
    session: &'a SessionName,
    mode: Mode,
    model: &'a str,
    /// Build and screen, report, send nothing.
    dry_run: bool,
}

const FOLD_LABEL: &str = "[fold the unfolded turns into the running summary]";
const TOOL_RESULTS_LABEL: &str = "[the tool results above, sent back to the model]";
const SCHEMA_RETRY_LABEL: &str = "[the answer did not match the schema: asked again]";

impl Engine {
    /// An engine with no tools, no approver (so nothing needing consent runs) and no
    /// budgets beyond each turn's.
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
            on_wait: None,
            policy: Arc::new(RulePolicy::defaults()),
            placeholders: Mutex::new(gate::Placeholders::default()),
            nonce: nonce(),
            audit_unmasked: false,
            resources: None,
        }
    }

    /// The user's resources this engine shows and reads (their tools are registered
    /// with the others).
    pub(crate) fn with_resources(
        mut self,
        access: Arc<crate::resource_access::ResourceAccess>,
    ) -> Self {
        self.resources = Some(access);
        self
    }

    /// How much of each content the audit log is given: unmasked for
    /// [`pai_audit::ContentMode::Full`], else with the secrets and personal data the
    /// detectors find masked (the default); `Hash` keeps only a digest of that.
    pub fn with_audit_content(mut self, mode: pai_audit::ContentMode) -> Self {
        self.audit_unmasked = mode == pai_audit::ContentMode::Full;
        self
    }

    /// Text as the audit log records it (see [`Self::with_audit_content`]).
    pub(crate) fn audit_text(&self, text: &str) -> String {
        if self.audit_unmasked {
            text.to_string()
        } else {
            self.mask(text)
        }
    }

    /// The policy every checkpoint asks (default: the built-in rules).
    pub fn with_policy(mut self, policy: Arc<dyn Policy>) -> Self {
        self.policy = policy;
        self
    }

    /// The policy the checkpoints ask.
    pub fn policy(&self) -> &dyn Policy {
        self.policy.as_ref()
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

    /// Session and daily token caps, checked before every model call.
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = budgets;
        self
    }

    /// Who is told, before each wait, that a model call is being retried (so a rate limit
    /// is not a silent pause of up to `[network] max_retry_wait_secs`).
    pub fn with_wait_notifier(mut self, notify: WaitNotifier) -> Self {
        self.on_wait = Some(notify);
        self
    }

    /// The tools `mode` offers (see [`Mode::offers`]), less those the policy refuses
    /// outright (safe mode's network tools, a session's `deny write_file`): a model is not
    /// offered what it may never call.
    pub fn offered_tools(&self, mode: Mode) -> ToolRegistry {
        let offered = self.tools.filtered(|effect| mode.offers(effect));
        let refused: Vec<String> = offered
            .infos()
            .iter()
            .filter(|info| {
                let subject =
                    pai_policy::Subject::tool(&info.spec.name, info.effects.iter().copied(), mode);
                self.policy.check(&subject).decision == pai_policy::Decision::Deny
            })
            .map(|info| info.spec.name.clone())
            .collect();
        if refused.is_empty() {
            return offered;
        }
        offered.without(&refused)
    }

    /// The model endpoint every call goes to.
    pub fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    /// What a run in `session` may spend: `run_cap` (the run's own budget), the session's
    /// cap over the `history` tokens it already used, and the daily cap. Every model call
    /// of a turn, a fold or a plan is checked against it.
    pub(crate) fn spend<'a>(
        &'a self,
        session: &'a SessionName,
        meta: &crate::session::SessionMeta,
        history: u64,
        run_cap: Option<u64>,
    ) -> Spend<'a> {
        Spend {
            run_cap,
            session: meta
                .budget_tokens
                .or(self.budgets.session)
                .map(|cap| (session, cap, history)),
            daily: self
                .budgets
                .daily
                .as_ref()
                .map(|(cap, ledger)| (*cap, ledger.as_ref())),
            used: 0,
        }
    }

    /// Runs one turn until it ends or `cancel` resolves. A cancelled turn is recorded in
    /// the audit log (with the reason and what had arrived) and stores nothing.
    pub async fn run_until(
        &self,
        turn: &Turn,
        on_event: &mut (dyn FnMut(Event) + Send),
        cancel: impl Future<Output = Cancel>,
    ) -> Result<TurnEnd> {
        let partial = Mutex::new(String::new());
        let mut watch = |event: Event| {
            if let Event::Delta(text) = &event {
                partial
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(text);
            }
            on_event(event);
        };
        let run = self.run(turn, &mut watch);
        // Boxed, so that dropping it below really ends the request before the record.
        let (run, cancel) = (Box::pin(run), std::pin::pin!(cancel));
        match futures::future::select(run, cancel).await {
            Either::Left((result, _)) => result.map(TurnEnd::Done),
            Either::Right((reason, run)) => {
                // Dropping the turn drops its request; only then is the partial final.
                drop(run);
                let partial =
                    std::mem::take(&mut *partial.lock().unwrap_or_else(|p| p.into_inner()));
                self.record_cancelled(turn, reason, &partial)?;
                Ok(TurnEnd::Cancelled { reason, partial })
            }
        }
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
        let scope = Scope {
            session: &turn.session,
            mode: turn.mode,
            model: &model,
            dry_run: turn.limits.dry_run,
        };
        let mut spend = self.spend(
            &turn.session,
            &snapshot.meta,
            snapshot.usage().total(),
            turn.limits.budget_tokens,
        );
        // Budgets first: an exhausted one sends nothing, not even a fold.
        spend.headroom().map_err(CoreError::BudgetExhausted)?;

        // An image for a model that reads text only is refused before anything is sent.
        if let Some(image) = turn.attachments.iter().find(|a| a.image.is_some()) {
            let info = self.provider.info();
            if let Err(why) = pai_providers::accepts_images(info.kind, &model) {
                return Err(CoreError::Invalid(format!(
                    "cannot attach the image {}: {why}; pick a model that takes images for this run (--model, e.g. gpt-4o, claude-sonnet-4-5 or llava)",
                    image.name
                )));
            }
        }
        // A schema that is not one is refused before anything is sent.
        let schema = turn
            .schema
            .as_ref()
            .map(crate::schema::Schema::new)
            .transpose()?;
        let offered = self.offered_tools(turn.mode);
        let mut specs: Vec<ToolSpec> = offered.infos().iter().map(|i| i.spec.clone()).collect();
        if schema.is_some() {
            specs.clear();
        }
        let mut used = Usage::default();
        // A dry run shows the turn's own request; a fold would be a call of its own.
        if turn.mode != Mode::Chat
            && !turn.limits.dry_run
            && self.context.should_fold(snapshot.unfolded())
        {
            // What the answer's own request will need, so a fold never spends its room.
            let after = estimate_tokens(&turn.input)
                + turn.attachments.iter().map(|a| a.tokens()).sum::<u64>()
                + specs_tokens(&specs);
            match self.fold(&scope, &snapshot, &mut spend, after).await {
                Ok(Some(usage)) => {
                    used.add(&usage);
                    on_event(Event::Folded { usage });
                }
                Ok(None) => {}
                Err(e @ (CoreError::Audit(_) | CoreError::Unrecorded { .. })) => return Err(e),
                Err(e) => on_event(Event::FoldFailed {
                    reason: e.to_string(),
                }),
            }
            snapshot = self.store.snapshot(&turn.session)?;
        }
        // The turn's own system prompt, else the session's, else the configured one.
        let system = turn.system.as_deref().or(snapshot.meta.system.as_deref());
        let context_manager = self.context.with_system(system);
        // Each attached file is a part of its own, of the class its path has.
        let attached: Vec<Message> = turn
            .attachments
            .iter()
            .map(|a| a.message(self.policy.classify_path(&a.path).class))
            .collect();
        let context = match turn.mode {
            Mode::Chat => {
                context_manager.chat(&model, &snapshot.history, &attached, &turn.input)?
            }
            Mode::Prompt | Mode::Agent => context_manager.prompt(
                &model,
                (&snapshot.meta.summary, snapshot.meta.summary_class),
                snapshot.unfolded(),
                &attached,
                &turn.input,
            )?,
        };
        if context.left_out > 0 {
            on_event(Event::Trimmed {
                left_out: context.left_out,
            });
        }
        let mut messages = context.messages;
        if let Some(catalog) = self.resources.as_ref().and_then(|r| r.catalog()) {
            // After the system prompt, before history and input.
            let at = messages
                .iter()
                .take_while(|m| m.role == pai_types::Role::System)
                .count();
            messages.insert(at, catalog);
        }
        let rounds_allowed = match turn.mode {
            Mode::Chat => Some(1),
            Mode::Prompt => Some(turn.limits.max_chain.unwrap_or(DEFAULT_MAX_CHAIN)),
            Mode::Agent => turn.limits.max_steps,
        };

        let mut answer = String::new();
        // The answer derives from what the model saw: the highest class sent.
        let mut answer_class = pai_types::DataClass::Public;
        let mut tainted = false;
        let mut rounds = 0u32;
        let mut tool_calls = 0u32;
        let mut stopped = None;
        loop {
            let tools_now = !specs.is_empty() && rounds_allowed.is_none_or(|cap| rounds < cap);
            let tools = if tools_now { specs.clone() } else { Vec::new() };
            let estimate =
                messages.iter().map(estimate_message_tokens).sum::<u64>() + specs_tokens(&tools);
            let max_tokens = match spend.allow(estimate) {
                Ok(max) => max,
                // Nothing of this turn has left yet: refuse it whole.
                Err(reason) if rounds == 0 => return Err(CoreError::BudgetExhausted(reason)),
                Err(reason) => {
                    stopped = Some(reason);
                    break;
                }
            };
            let label = if rounds == 0 {
                turn.input.as_str()
            } else {
                TOOL_RESULTS_LABEL
            };
            let call = |tools| Call {
                messages: messages.clone(),
                label,
                tools,
                stream: turn.stream,
                max_tokens,
                kind: EventKind::Response,
                schema: turn.schema.clone(),
            };
            let reply = match self.call(&scope, call(tools), on_event).await {
                // Many local servers and models refuse a request that offers tools (llama.cpp
                // without --jinja, Ollama models without tool support). The user asked a
                // question, not for tools: say so, and ask again without them.
                Err(CoreError::Provider(ProviderError::Rejected { message, .. }))
                    if tools_now && message.to_ascii_lowercase().contains("tool") =>
                {
                    tracing::info!(%message, "the model refused tools; asking without them");
                    on_event(Event::ToolsUnsupported { detail: message });
                    specs.clear();
                    self.call(&scope, call(Vec::new()), on_event).await?
                }
                other => other?,
            };
            if turn.limits.dry_run {
                return Ok(TurnOutcome {
                    answer: String::new(),
                    usage: Usage::default(),
                    model,
                    duration: started.elapsed(),
                    tool_calls: 0,
                    stopped: None,
                    dry_run: true,
                });
            }
            answer_class = answer_class.max(reply.class);
            let tools_now = tools_now && !specs.is_empty();
            used.add(&reply.usage);
            spend.used += reply.usage.total();
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
            tool_calls += reply.calls.len() as u32;
            // Secret data the model saw, or untrusted content it read (any tool output),
            // makes network, write and exec calls of the rest of this turn need approval
            // (the policy's taint guard).
            tainted |= reply.class >= pai_types::DataClass::Secret;
            let (results, untrusted) = self
                .tool_round(
                    &scope,
                    &offered,
                    &reply.calls,
                    &turn.limits,
                    tainted,
                    on_event,
                )
                .await?;
            tainted |= untrusted;
            messages.push(Message::assistant_with_tools(reply.text, reply.calls));
            messages.extend(results);
            rounds += 1;
            if rounds_allowed.is_some_and(|cap| rounds >= cap) {
                // Out of tool rounds: one more call, without tools, for the best answer.
                if turn.mode == Mode::Agent && stopped.is_none() {
                    stopped = Some(StopReason::StepLimit { steps: rounds });
                }
                messages.push(Message::user(
                    "You have used all the tool calls allowed for this request. Answer now, \
                     as well as you can, from the information above.",
                ));
            }
        }

        if let Some(schema) = &schema
            && stopped.is_none()
        {
            answer = match schema.check(&answer) {
                Ok(json) => json,
                Err(problem) => {
                    // One more call, told what was wrong, through the same gate and budget.
                    messages.push(Message::assistant(answer.clone()));
                    messages.push(Message::user(format!(
                        "Your answer does not match the required JSON Schema: {problem}. \
                         Reply with only the corrected JSON."
                    )));
                    let estimate = messages.iter().map(estimate_message_tokens).sum::<u64>();
                    let max_tokens = spend.allow(estimate).map_err(CoreError::BudgetExhausted)?;
                    let retry = Call {
                        messages: messages.clone(),
                        label: SCHEMA_RETRY_LABEL,
                        tools: Vec::new(),
                        stream: turn.stream,
                        max_tokens,
                        kind: EventKind::Response,
                        schema: turn.schema.clone(),
                    };
                    let reply = self.call(&scope, retry, on_event).await?;
                    answer_class = answer_class.max(reply.class);
                    used.add(&reply.usage);
                    schema
                        .check(&reply.text)
                        .map_err(CoreError::SchemaMismatch)?
                }
            };
        }

        // The history is not a secret store: found secrets are kept as placeholders
        // unless the user opted out ([context] keep_secrets_in_history).
        let keep = |text: &str| {
            if self.context.keeps_secrets() {
                text.to_string()
            } else {
                self.mask(text)
            }
        };
        let mut entries: Vec<HistoryEntry> = attached
            .iter()
            .map(|m| {
                let mut e = HistoryEntry::new(Message::user(keep(&m.content)));
                e.class = m.class();
                e
            })
            .collect();
        entries.push(HistoryEntry::new(Message::user(keep(&turn.input))));
        let mut reply = HistoryEntry::new(Message::assistant(keep(&answer)));
        reply.class = answer_class;
        reply.model = Some(model.clone());
        reply.usage = Some(used);
        entries.push(reply);
        self.store.append(&turn.session, &entries)?;

        Ok(TurnOutcome {
            answer,
            usage: used,
            model,
            duration: started.elapsed(),
            tool_calls,
            stopped,
            dry_run: false,
        })
    }

    /// Records that a turn was cancelled (its request dropped mid-flight), why, and the
    /// part of the answer that had arrived.
    pub fn record_cancelled(&self, turn: &Turn, reason: Cancel, partial: &str) -> Result<()> {
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
        let scope = Scope {
            session: &turn.session,
            mode: turn.mode,
            model: &model,
            dry_run: false,
        };
        let content = if partial.is_empty() {
            format!("[{reason}]")
        } else {
            format!("[{reason}] {partial}")
        };
        self.audit
            .record(&self.event(&scope, EventKind::Cancelled, content))?;
        Ok(())
    }
}

/// Eight hex digits no one outside this process can predict (std's per-process random
/// hash keys, mixed with the time).
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:08x}", h.finish() as u32)
}

/// About how many tokens the tool descriptions add to a request.
fn specs_tokens(specs: &[ToolSpec]) -> u64 {
    if specs.is_empty() {
        return 0;
    }
    estimate_tokens(&serde_json::to_string(specs).unwrap_or_default())
}
