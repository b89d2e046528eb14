use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use pai_core::{
    Cancel, Engine, EngineOptions, Event, Limits, SessionMeta, ToolOutcome, Turn, TurnEnd,
    TurnOutcome, Workspace,
};
use pai_providers::RetryWait;
use pai_types::Mode;

use crate::approve::TerminalApprover;
use crate::cli::{AgentArgs, AskArgs, PromptArgs, RunArgs, StreamArgs};
use crate::input;

/// PAI's files and settings, loaded once per command: pai-core's [`Workspace`] (which it
/// derefs to) plus what only a terminal program decides (the approver, what is printed).
pub struct Env {
    ws: Workspace,
    /// The per-turn audit check started with the first engine; reported when the command ends.
    audit_check: std::sync::OnceLock<pai_core::AuditCheck>,
    /// Warnings and notes already printed: a command that builds two engines (a planner
    /// and its worker) says each once.
    said: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(warning) = self
            .audit_check
            .get()
            .and_then(|c| c.warning(self.ws.config().audit.check_wait()))
        {
            eprintln!("warning: {warning}");
        }
    }
}

impl std::ops::Deref for Env {
    type Target = Workspace;

    fn deref(&self) -> &Workspace {
        &self.ws
    }
}

impl Env {
    /// The workspace at `PAI_HOME` / `PAI_CONFIG_DIR`, its vault under
    /// `PAI_ENCRYPTION_KEY` (the only place these are read).
    pub fn load() -> Result<Self> {
        let audit_secret = std::env::var(pai_core::Vault::ENV)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(pai_types::Secret::new);
        Ok(Self {
            ws: crate::local::workspace()?
                .with_vault(pai_core::Vault::from_env)
                .with_audit_secret(audit_secret),
            audit_check: std::sync::OnceLock::new(),
            said: Default::default(),
        })
    }

    /// An engine wired by the workspace, with the terminal approver and wait notices.
    pub async fn engine(
        &self,
        meta: &SessionMeta,
        mode: Mode,
        run: &RunArgs,
        temperature: Option<f64>,
    ) -> Result<Engine> {
        let opts = EngineOptions {
            temperature,
            max_tokens: run.max_tokens,
            no_tools: run.no_tools,
            roots: run.roots.clone(),
            safe: run.safe,
            resources: run.resources.clone(),
            user_home: dirs::home_dir(),
            approver: Arc::new(TerminalApprover),
            on_wait: Some(Arc::new(|w: &RetryWait| {
                // Scripts get the audit's attempt rows; a person at a terminal gets a line.
                if std::io::stderr().is_terminal() {
                    eprintln!("{}", wait_line(w));
                }
            })),
            ..EngineOptions::new(
                std::env::current_dir().context("cannot read the current directory")?,
            )
        };
        let wired = self.ws.engine(meta, mode, &opts).await?;
        self.audit_check.get_or_init(|| self.ws.audit_check());
        for warning in &wired.warnings {
            self.say_once(format!("warning: {warning}"));
        }
        #[cfg(not(feature = "otel"))]
        if self.ws.config().audit.otel.is_some() {
            self.say_once(
                "warning: [audit.otel] is set, but this pai was built without the 'otel' feature: no traces are sent".into(),
            );
        }
        for note in &wired.notes {
            self.say_once(format!("note: {note}"));
        }
        Ok(wired.engine)
    }

    /// Prints `line` on stderr unless this command already did.
    fn say_once(&self, line: String) {
        let fresh = match self.said.lock() {
            Ok(mut said) => said.insert(line.clone()),
            Err(_) => true,
        };
        if fresh {
            eprintln!("{line}");
        }
    }

    /// Every tool a model may be offered in `mode`, warning about MCP servers that could
    /// not be started.
    pub async fn offered_tools(&self, mode: Mode) -> Result<pai_tools::ToolRegistry> {
        let (registry, warnings) = self.ws.tools(mode).await?;
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        Ok(registry)
    }
}

/// "rate limited by openai at https://…; retrying in 3 s".
pub fn wait_line(w: &RetryWait) -> String {
    let secs = w.wait.as_secs_f32().ceil().max(1.0);
    if w.rate_limited {
        format!("rate limited by {}; retrying in {secs} s", w.endpoint)
    } else {
        format!(
            "{} failed ({}); retrying in {secs} s (attempt {})",
            w.endpoint,
            w.outcome,
            w.attempt + 1
        )
    }
}

impl AskArgs {
    /// What the workspace needs to resolve this run's instructions around `input`.
    pub fn ask(&self, input: String) -> pai_core::Ask {
        pai_core::Ask {
            role: self.role.clone(),
            system: self.system.clone(),
            vars: self.vars.iter().cloned().collect(),
            input,
        }
    }
}

impl StreamArgs {
    /// Stream when asked, or by default when stdout is a terminal.
    pub fn enabled(&self) -> bool {
        !self.no_stream && (self.stream || std::io::stdout().is_terminal())
    }
}

pub async fn prompt(args: PromptArgs) -> Result<ExitCode> {
    let limits = Limits {
        max_chain: Some(args.max_chain),
        budget_tokens: args.run.budget_tokens,
        dry_run: args.run.dry_run,
        ..Limits::default()
    };
    let one = OneShot {
        session: args.session,
        text: args.text,
        model: args.model,
        stream: args.stream.enabled() && !args.json && args.schema.is_none(),
        raw: args.stream.raw,
        ask: args.ask,
        json: args.json,
        files: args.files,
        schema: args.schema,
        planner: None,
    };
    one.run(Mode::Prompt, &args.run, limits).await
}

pub async fn agent(args: AgentArgs) -> Result<ExitCode> {
    let limits = Limits {
        max_steps: args.max_steps,
        budget_tokens: args.run.budget_tokens,
        allow: args.allow.into_iter().collect(),
        dry_run: args.run.dry_run,
        ..Limits::default()
    };
    let one = OneShot {
        session: args.session,
        text: args.text,
        model: args.model,
        stream: args.stream.enabled() && !args.json && args.schema.is_none(),
        raw: args.stream.raw,
        ask: args.ask,
        json: args.json,
        files: args.files,
        schema: args.schema,
        planner: args.planner,
    };
    one.run(Mode::Agent, &args.run, limits).await
}

/// One input run to its end in a session: what `prompt` and `agent` share.
struct OneShot {
    session: Option<String>,
    text: Vec<String>,
    model: Option<String>,
    stream: bool,
    /// `--raw`: no Markdown rendering.
    raw: bool,
    ask: AskArgs,
    /// `--json`: one object at the end instead of the answer.
    json: bool,
    /// `-f`: files attached to the turn.
    files: Vec<std::path::PathBuf>,
    /// `--schema`: a file or inline JSON.
    schema: Option<String>,
    /// `--planner`: who writes the plan this model carries out (agent mode).
    planner: Option<String>,
}

impl OneShot {
    async fn run(self, mode: Mode, run: &RunArgs, limits: Limits) -> Result<ExitCode> {
        let env = Env::load()?;
        let session = env.session(self.session.as_deref())?;
        let meta = env.store().load_meta(&session)?;
        // A role's template may need no input of its own.
        let raw = input::prompt_text(&self.text, self.ask.role.is_some())?;
        let told = env.instructions(self.ask.ask(raw))?;
        let schema = self.schema.as_deref().map(read_schema).transpose()?;
        // Every file is read (and a binary one refused) before anything is sent.
        let attachments = self
            .files
            .iter()
            .map(|f| pai_core::Attachment::read(f))
            .collect::<pai_core::Result<Vec<_>>>()?;
        let model = self.model.or(told.model);
        let engine = env
            .engine(
                &with_model(&meta, model.as_deref()),
                mode,
                run,
                told.temperature,
            )
            .await?;
        let mut limits = env.limits(limits);
        let mut input = told.input;
        let mut planned = None;
        if let Some(spec) = &self.planner {
            let (plan, who) =
                crate::plan::make(&env, &meta, spec, &input, &engine, run, &limits).await?;
            // One run, one budget: what the plan cost is gone from the worker's share.
            if let Some(budget) = limits.budget_tokens.as_mut() {
                *budget = budget.saturating_sub(plan.usage.total());
            }
            input = pai_core::worker_input(&input, &plan, &who);
            planned = Some(plan.usage.total());
        }
        let turn = Turn {
            session,
            mode,
            input,
            stream: self.stream,
            model: model.or(Some(meta.model)),
            limits,
            system: told.system,
            attachments,
            schema,
        };
        // With a schema only the validated JSON is printed, at the end.
        let mut shown = Shown {
            hold_answer: self.json || turn.schema.is_some(),
            raw: self.raw,
            ..Shown::default()
        };
        let end = run_turn(&env, &engine, &turn, &mut shown)
            .await
            .map_err(|e| match (planned, e.downcast_ref::<pai_core::CoreError>()) {
                // "Nothing was sent" would be untrue: the planner's call was.
                (Some(tokens), Some(pai_core::CoreError::BudgetExhausted(reason))) => {
                    anyhow::anyhow!(
                        "the plan was made ({tokens} tokens), but the worker's first request was not sent: {reason}; {}",
                        reason.hint()
                    )
                }
                _ => e,
            })?;
        if self.json {
            print_json_answer(&env, &engine, &turn.session, &end);
        } else if turn.schema.is_some()
            && let TurnEnd::Done(outcome) = &end
            && !outcome.dry_run
        {
            let pretty = serde_json::from_str::<serde_json::Value>(&outcome.answer)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| outcome.answer.clone());
            outln!("{pretty}");
        }
        Ok(exit_code(&end))
    }
}

/// `--schema`'s argument: inline JSON when it starts with `{`, else a file holding it.
fn read_schema(arg: &str) -> Result<serde_json::Value> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg)
            .with_context(|| format!("cannot read the schema file {arg}"))?
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("--schema is not JSON ({e}); give a JSON Schema file or the schema inline")
    })
}

/// `--json`'s one object: what a script needs to know about the turn.
#[derive(Debug, serde::Serialize)]
struct JsonAnswer<'a> {
    session: &'a str,
    answer: &'a str,
    model: &'a str,
    provider: &'a str,
    endpoint: &'a str,
    locality: pai_types::Locality,
    usage: pai_types::Usage,
    /// Estimated from the price table; none when no price is known.
    cost_usd: Option<f64>,
    /// `done`, `budget`, `request_over_budget`, `step_limit`, `interrupted` or `terminated`.
    stop_reason: &'static str,
    /// Why it stopped early, as a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_detail: Option<String>,
    tool_calls: u32,
    /// False when the turn was cancelled: nothing was stored in the session.
    saved: bool,
}

fn print_json_answer(env: &Env, engine: &Engine, session: &pai_types::SessionName, end: &TurnEnd) {
    let info = engine.provider().info();
    let (answer, model, usage, stop_reason, stop_detail, tool_calls, saved) = match end {
        TurnEnd::Done(o) => {
            let reason = match &o.stopped {
                None => "done",
                Some(pai_core::StopReason::Budget { .. }) => "budget",
                Some(pai_core::StopReason::RequestOverBudget { .. }) => "request_over_budget",
                Some(pai_core::StopReason::StepLimit { .. }) => "step_limit",
            };
            (
                o.answer.as_str(),
                o.model.clone(),
                o.usage,
                reason,
                o.stopped.as_ref().map(|s| s.to_string()),
                o.tool_calls,
                true,
            )
        }
        TurnEnd::Cancelled { reason, partial } => (
            partial.as_str(),
            String::new(),
            pai_types::Usage::default(),
            match reason {
                Cancel::Interrupted => "interrupted",
                Cancel::Terminated => "terminated",
                // Nobody is left to read it.
                Cancel::OutputClosed => return,
            },
            None,
            0,
            false,
        ),
    };
    let cost_usd = pai_core::price_of(&env.config().prices, &model, Some(info.locality))
        .map(|p| pai_core::cost(p, &usage));
    let endpoint = pai_types::redact_endpoint(&info.endpoint);
    let json = JsonAnswer {
        session: session.as_str(),
        answer,
        model: &model,
        provider: &info.name,
        endpoint: &endpoint,
        locality: info.locality,
        usage,
        cost_usd,
        stop_reason,
        stop_detail,
        tool_calls,
        saved,
    };
    match serde_json::to_string_pretty(&json) {
        Ok(text) => {
            let _ = crate::output::try_write(&(text + "\n"));
        }
        Err(e) => eprintln!("error: cannot write the JSON answer: {e}"),
    }
}

/// The session as it runs this turn: a `--model` for this turn only replaces its model,
/// which for the in-process provider also picks the file to load.
fn with_model(meta: &SessionMeta, model: Option<&str>) -> SessionMeta {
    let mut meta = meta.clone();
    if let Some(m) = model {
        meta.model = m.to_string();
    }
    meta
}

/// How `pai prompt` and `pai agent` end, for scripts (docs/usage.md lists them).
pub mod exit {
    /// The model finished its answer.
    pub const DONE: u8 = 0;
    // 1: an error (the message says what to do); 2: a usage error (clap).
    /// A budget or `--max-steps` stopped the turn; what was produced is saved.
    pub const STOPPED: u8 = 3;
    /// Ctrl+C, as a shell reports SIGINT.
    pub const INTERRUPTED: u8 = 130;
    /// The reader of the answer went away (a closed pipe), as for SIGPIPE.
    pub const OUTPUT_CLOSED: u8 = 141;
    /// SIGTERM.
    pub const TERMINATED: u8 = 143;
}

fn exit_code(end: &TurnEnd) -> ExitCode {
    ExitCode::from(match end {
        TurnEnd::Done(outcome) if outcome.stopped.is_some() => exit::STOPPED,
        TurnEnd::Done(_) => exit::DONE,
        TurnEnd::Cancelled { reason, .. } => match reason {
            Cancel::Interrupted => exit::INTERRUPTED,
            Cancel::OutputClosed => exit::OUTPUT_CLOSED,
            Cancel::Terminated => exit::TERMINATED,
        },
    })
}

/// Notices worth saying once per command (a chat runs many turns).
#[derive(Debug, Default)]
pub struct Shown {
    trimmed: bool,
    tools_unsupported: bool,
    /// `--json`: the answer is not printed as it arrives (it comes in the object).
    pub hold_answer: bool,
    /// `--raw`: the answer is printed as the model wrote it, never rendered.
    pub raw: bool,
}

/// Runs a turn, printing the answer as it arrives, until it ends, the user presses Ctrl+C,
/// SIGTERM comes or stdout's reader goes away; the engine records every early end.
pub async fn run_turn(
    env: &Env,
    engine: &Engine,
    turn: &Turn,
    shown: &mut Shown,
) -> Result<TurnEnd> {
    #[cfg(feature = "otel")]
    let trace = crate::otel::TurnTrace::start(env);
    #[cfg(not(feature = "otel"))]
    let _ = env;
    let end = run_turn_inner(engine, turn, shown).await;
    #[cfg(feature = "otel")]
    if let Some(trace) = trace {
        trace.finish(env, turn.session.as_str(), turn.mode);
    }
    end
}

async fn run_turn_inner(engine: &Engine, turn: &Turn, shown: &mut Shown) -> Result<TurnEnd> {
    let closed = tokio::sync::Notify::new();
    let printer = std::sync::Mutex::new(Printer::new(shown));
    let mut print = |ev| {
        let mut printer = printer.lock().unwrap_or_else(|p| p.into_inner());
        if !printer.event(ev) {
            closed.notify_one();
        }
    };
    let end = engine.run_until(turn, &mut print, cancelled(&closed)).await;
    let mut printer = printer.into_inner().unwrap_or_else(|p| p.into_inner());
    let end = match end {
        Ok(end) => end,
        Err(err) => {
            printer.finish_line();
            return Err(err.into());
        }
    };
    match &end {
        TurnEnd::Cancelled { reason, .. } => {
            if *reason != Cancel::OutputClosed {
                printer.finish_line();
            }
            eprintln!("cancelled ({reason}): the answer was not saved to the session");
        }
        TurnEnd::Done(outcome) => {
            printer.finish_line();
            report(engine, outcome);
        }
    }
    Ok(end)
}

/// Resolves when the turn must stop: Ctrl+C, SIGTERM, or stdout closed.
async fn cancelled(closed: &tokio::sync::Notify) -> Cancel {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Cancel::Interrupted,
        () = terminate => Cancel::Terminated,
        () = closed.notified() => Cancel::OutputClosed,
    }
}

/// The end of a finished turn on stderr: why it stopped early, and on a terminal what it
/// ran on and cost.
fn report(engine: &Engine, outcome: &TurnOutcome) {
    // A budget or step limit ended the turn early: what was produced is kept and saved.
    if let Some(why) = &outcome.stopped {
        eprintln!(
            "stopped: {why}; the answer so far was saved ({})",
            why.hint()
        );
    }
    if std::io::stderr().is_terminal() {
        let info = engine.provider().info();
        eprintln!(
            "[{} · {} · {} · {}+{} tokens{} · {:.1}s]",
            info.name,
            outcome.model,
            info.locality,
            outcome.usage.prompt_tokens,
            outcome.usage.completion_tokens,
            if outcome.usage.estimated {
                " (estimated)"
            } else {
                ""
            },
            outcome.duration.as_secs_f32()
        );
    }
}

/// `--dry-run`'s report: where the request would go, then each part as it would leave,
/// headed by its origin, class and the policy's decision.
pub fn render_dry_run(dry: &pai_core::DryRun) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dry run: nothing was sent. The request would go to {} ({}) at {}, model {}.",
        dry.provider, dry.locality, dry.endpoint, dry.model
    );
    if dry.tools.is_empty() {
        let _ = writeln!(out, "tools offered: none");
    } else {
        let _ = writeln!(out, "tools offered: {}", dry.tools.join(", "));
    }
    for (i, (message, part)) in dry.parts.iter().enumerate() {
        // A part withheld whole says so even when values in it were found first (as the
        // audit's manifest does): what would leave is the note, not the redacted text.
        let what = match (part.decision, part.redactions) {
            (pai_core::Decision::Redact, _) => format!("withheld by {}", part.rule),
            (_, 0) => format!("{} by {}", part.decision, part.rule),
            (_, n) => format!(
                "{n} value(s) redacted, rest {} by {}",
                part.decision, part.rule
            ),
        };
        let _ = writeln!(
            out,
            "── part {}: {} · {} · {} · {what}",
            i + 1,
            message.role.as_str(),
            part.origin,
            part.class
        );
        let _ = writeln!(out, "{}", message.content);
    }
    out
}

/// Writes answer text to stdout as it arrives, and progress to stderr.
struct Printer<'a> {
    answer: String,
    shown: &'a mut Shown,
    /// stdout is a terminal: control characters in model text are made visible.
    terminal: bool,
    /// stdout's reader went away: nothing more is written.
    closed: bool,
    /// Markdown rendering, on a terminal unless `--raw` or `NO_COLOR` say otherwise.
    markdown: Option<crate::render::Renderer>,
}

impl<'a> Printer<'a> {
    fn new(shown: &'a mut Shown) -> Self {
        let terminal = std::io::stdout().is_terminal();
        let markdown =
            crate::render::wanted(shown.raw, terminal).then(crate::render::Renderer::new);
        Self {
            answer: String::new(),
            shown,
            terminal,
            closed: false,
            markdown,
        }
    }

    /// Writes answer text to stdout (unless held), marking stdout closed if it fails.
    fn write_answer(&mut self, text: &str) {
        if !self.shown.hold_answer
            && !self.closed
            && !text.is_empty()
            && crate::output::try_write(text).is_err()
        {
            self.closed = true;
        }
    }

    /// Shows `event`; false once stdout is closed.
    fn event(&mut self, event: Event) -> bool {
        match event {
            Event::Delta(text) => {
                // Escape sequences from a model never reach a terminal as commands; a pipe
                // gets the text exactly as the model wrote it (and the history keeps it so).
                let shown = if self.terminal {
                    crate::output::neutralise(&text)
                } else {
                    std::borrow::Cow::Borrowed(text.as_str())
                };
                // Rendering comes after neutralising: only the renderer's own escapes
                // reach the terminal. It gives back lines, and settled words, as they come.
                let shown = match &mut self.markdown {
                    Some(r) => std::borrow::Cow::Owned(r.push(&shown)),
                    None => shown,
                };
                self.write_answer(&shown);
                self.answer.push_str(&text);
            }
            Event::Folded { usage } => {
                tracing::info!(
                    tokens = usage.total(),
                    "folded earlier turns into the summary"
                );
            }
            Event::FoldFailed { reason } => {
                eprintln!(
                    "note: earlier turns could not be folded into the summary ({reason}); answering with the recent turns that fit"
                );
            }
            Event::Trimmed { left_out } => {
                if !std::mem::replace(&mut self.shown.trimmed, true) {
                    eprintln!(
                        "note: {left_out} older messages do not fit the model's context window and were left out (the session keeps them)"
                    );
                }
            }
            Event::ToolsUnsupported { detail } => {
                if !std::mem::replace(&mut self.shown.tools_unsupported, true) {
                    eprintln!(
                        "note: the model refused a request with tools ({detail}); answering without tools"
                    );
                }
            }
            // Progress goes to stderr as it happens, so stdout stays the answer alone.
            Event::ToolCall { name, arguments } => {
                self.finish_line();
                let args = if arguments.chars().count() > 120 {
                    format!("{}…", arguments.chars().take(120).collect::<String>())
                } else {
                    arguments
                };
                eprintln!("→ {name} {}", crate::output::neutralise(&args));
            }
            Event::ToolResult { name, outcome } => match outcome {
                ToolOutcome::Done { bytes, truncated } => eprintln!(
                    "← {name}: ok, {bytes} bytes{}",
                    if truncated { " (truncated)" } else { "" }
                ),
                ToolOutcome::Failed(e) => {
                    eprintln!("← {name}: failed: {}", crate::output::neutralise(&e));
                }
                ToolOutcome::Refused(why) => {
                    eprintln!("← {name}: refused: {}", crate::output::neutralise(&why));
                }
            },
            Event::ToolCallsRefused { count, reason } => {
                eprintln!("← {count} more tool calls refused: {reason}");
            }
            Event::InjectionSuspected { tool, score, kinds } => {
                self.finish_line();
                eprintln!(
                    "warning: the {tool} result looks like a prompt injection (score {score}: {kinds}); it was given to the model as data, and network, write and exec tools now need your approval for the rest of this turn"
                );
            }
            Event::DryRun(dry) => {
                let report = render_dry_run(&dry);
                let shown = if self.terminal {
                    crate::output::neutralise(&report)
                } else {
                    std::borrow::Cow::Borrowed(report.as_str())
                };
                if !self.closed && crate::output::try_write(&shown).is_err() {
                    self.closed = true;
                }
            }
        }
        !self.closed
    }

    /// Shows what the renderer still holds, and ends the answer with a newline if it
    /// did not bring one.
    fn finish_line(&mut self) {
        if let Some(rest) = self.markdown.as_mut().map(crate::render::Renderer::finish) {
            self.write_answer(&rest);
        }
        if !self.shown.hold_answer
            && !self.closed
            && !self.answer.is_empty()
            && !self.answer.ends_with('\n')
        {
            let _ = crate::output::try_write("\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pai_providers::Endpoint;

    use super::*;

    #[test]
    fn a_wait_says_who_and_how_long() {
        let mut w = RetryWait {
            endpoint: Endpoint {
                provider: "openai".into(),
                url: "https://api.openai.com/v1".into(),
            },
            outcome: "429 Too Many Requests".into(),
            wait: Duration::from_millis(2500),
            rate_limited: true,
            attempt: 1,
        };
        assert_eq!(
            wait_line(&w),
            "rate limited by openai at https://api.openai.com/v1; retrying in 3 s"
        );
        w.rate_limited = false;
        w.outcome = "503 Service Unavailable".into();
        assert_eq!(
            wait_line(&w),
            "openai at https://api.openai.com/v1 failed (503 Service Unavailable); retrying in 3 s (attempt 2)"
        );
    }
}
