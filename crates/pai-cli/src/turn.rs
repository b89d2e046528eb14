use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use pai_audit::SqliteAudit;
use pai_core::{
    Budgets, Config, ContextManager, Engine, Event, Limits, Paths, SessionMeta, SessionStore,
    ToolOutcome, Turn, TurnOutcome, resolve_provider,
};
use pai_providers::{MaxTokens, Provider, connect};
use pai_tools::{Effect, ToolContext, ToolRegistry};
use pai_types::{Mode, SessionName};

use crate::approve::TerminalApprover;
use crate::cli::{AgentArgs, PromptArgs, RunArgs, StreamArgs};
use crate::input;

/// PAI's files and settings, loaded once per command.
pub struct Env {
    pub paths: Paths,
    pub config: Config,
    pub store: SessionStore,
}

impl Env {
    pub fn load() -> Result<Self> {
        let paths = Paths::from_env()?;
        let config = Config::load(&paths.config_file())?;
        let store = SessionStore::new(paths.clone());
        Ok(Self {
            paths,
            config,
            store,
        })
    }

    /// The named session (validated), else the active one.
    pub fn session(&self, name: Option<&str>) -> Result<SessionName> {
        let name = name.map(SessionName::new).transpose()?;
        Ok(self.store.resolve(name.as_ref())?)
    }

    /// An engine wired to the session's provider, the audit log, the tools `mode` may
    /// offer, the terminal approver and the session and daily budgets.
    pub async fn engine(&self, meta: &SessionMeta, mode: Mode, run: &RunArgs) -> Result<Engine> {
        let resolved = resolve_provider(meta, &self.config)?;
        let mut provider: Arc<dyn Provider> = Arc::from(connect(resolved.config)?);
        if let Some(max) = run.max_tokens {
            provider = Arc::new(MaxTokens::new(provider, max));
        }
        let audit = Arc::new(SqliteAudit::open(&self.paths.audit_db())?);
        let daily = match self.config.budget.daily_tokens {
            Some(cap) => {
                let today = jiff::Timestamp::now().to_string();
                let used: u64 = audit
                    .usage(Some(&today[..10]))?
                    .iter()
                    .map(|r| r.prompt_tokens + r.completion_tokens)
                    .sum();
                Some((cap, used))
            }
            None => None,
        };
        let engine = Engine::new(
            provider,
            audit,
            self.store.clone(),
            ContextManager::new(self.config.context.clone()),
        )
        .with_tools(
            if run.no_tools {
                ToolRegistry::new()
            } else {
                self.tools(mode).await?
            },
            self.tool_context(run)?,
        )
        .with_approver(Arc::new(TerminalApprover))
        .with_budgets(Budgets {
            session: meta.budget_tokens,
            daily,
        });
        Ok(engine)
    }

    /// Built-in tools, plus the tools of configured MCP servers whose declared effects the
    /// mode could offer (a server is only started when its tools could be used).
    pub async fn tools(&self, mode: Mode) -> Result<ToolRegistry> {
        let mut registry = ToolRegistry::new();
        for tool in pai_tools::builtin_tools() {
            registry.register(tool)?;
        }
        let offered = |e: &Effect| match mode {
            Mode::Chat => *e == Effect::Read,
            Mode::Prompt => matches!(e, Effect::Read | Effect::Network),
            Mode::Agent => true,
        };
        let servers: std::collections::BTreeMap<_, _> = self
            .config
            .mcp
            .iter()
            .filter(|(_, cfg)| cfg.effects().iter().all(offered))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, client) in pai_tools::connect_mcp_servers(&servers).await {
            match client {
                Ok(client) => {
                    for tool in client.tools() {
                        registry.register(tool.clone())?;
                    }
                }
                // One broken server must not take the others (or the answer) down.
                Err(e) => eprintln!("warning: MCP server '{name}' is not available: {e}"),
            }
        }
        Ok(registry)
    }

    /// Where file tools may work: `--root`, else `[tools] roots`, else the current directory.
    pub fn tool_context(&self, run: &RunArgs) -> Result<ToolContext> {
        let roots = if !run.roots.is_empty() {
            run.roots.clone()
        } else if !self.config.tools.roots.is_empty() {
            self.config.tools.roots.clone()
        } else {
            vec![std::env::current_dir().context("cannot read the current directory")?]
        };
        let roots = roots
            .iter()
            .map(|r| {
                r.canonicalize().with_context(|| {
                    format!(
                        "tool root '{}' does not exist; create it or pass another --root",
                        r.display()
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ToolContext {
            roots,
            max_output_bytes: self.config.tools.max_output_kib.max(1) * 1024,
            timeout: std::time::Duration::from_secs(self.config.tools.timeout_secs.max(1)),
        })
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
        ..Limits::default()
    };
    let one = OneShot {
        session: args.session,
        text: args.text,
        model: args.model,
        stream: args.stream.enabled(),
    };
    one.run(Mode::Prompt, &args.run, limits).await
}

pub async fn agent(args: AgentArgs) -> Result<ExitCode> {
    let limits = Limits {
        max_steps: args.max_steps,
        budget_tokens: args.run.budget_tokens,
        allow: args.allow.into_iter().collect(),
        ..Limits::default()
    };
    let one = OneShot {
        session: args.session,
        text: args.text,
        model: args.model,
        stream: args.stream.enabled(),
    };
    one.run(Mode::Agent, &args.run, limits).await
}

/// One input run to its end in a session: what `prompt` and `agent` share.
struct OneShot {
    session: Option<String>,
    text: Vec<String>,
    model: Option<String>,
    stream: bool,
}

impl OneShot {
    async fn run(self, mode: Mode, run: &RunArgs, limits: Limits) -> Result<ExitCode> {
        let env = Env::load()?;
        let session = env.session(self.session.as_deref())?;
        let meta = env.store.load_meta(&session)?;
        let input = input::prompt_text(&self.text)?;
        let engine = env
            .engine(&with_model(&meta, self.model.as_deref()), mode, run)
            .await?;
        let turn = Turn {
            session,
            mode,
            input,
            stream: self.stream,
            model: self.model.or(Some(meta.model)),
            limits,
        };
        exit_code(run_turn(&engine, &turn).await?)
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

/// 130 after Ctrl+C, like a shell; success otherwise (a budget stop is a clean end).
fn exit_code(outcome: Option<TurnOutcome>) -> Result<ExitCode> {
    Ok(match outcome {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::from(130),
    })
}

/// Runs a turn, printing the answer as it arrives; `None` when the user pressed Ctrl+C.
pub async fn run_turn(engine: &Engine, turn: &Turn) -> Result<Option<TurnOutcome>> {
    let printer = std::sync::Mutex::new(Printer::default());
    let mut print = |ev| printer.lock().unwrap_or_else(|p| p.into_inner()).event(ev);
    let result = tokio::select! {
        r = engine.run(turn, &mut print) => r,
        _ = tokio::signal::ctrl_c() => {
            let mut printer = printer.lock().unwrap_or_else(|p| p.into_inner());
            printer.finish_line();
            engine.record_cancelled(turn, &printer.answer)?;
            eprintln!("cancelled: the answer was not saved to the session");
            return Ok(None);
        }
    };
    printer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .finish_line();
    let outcome = result?;
    // A budget or step limit ended the turn early: what was produced is kept and saved.
    if let Some(why) = &outcome.stopped {
        eprintln!("stopped: {why}; the answer so far was saved");
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
    Ok(Some(outcome))
}

/// Writes answer text to stdout as it arrives.
#[derive(Default)]
struct Printer {
    answer: String,
}

impl Printer {
    fn event(&mut self, event: Event) {
        match event {
            Event::Delta(text) => {
                crate::output::write(&text);
                self.answer.push_str(&text);
            }
            Event::Folded { usage } => {
                tracing::info!(
                    tokens = usage.total(),
                    "folded earlier turns into the summary"
                );
            }
            // Progress goes to stderr as it happens, so stdout stays the answer alone.
            Event::ToolCall { name, arguments } => {
                self.finish_line();
                let args = if arguments.chars().count() > 120 {
                    format!("{}…", arguments.chars().take(120).collect::<String>())
                } else {
                    arguments
                };
                eprintln!("→ {name} {args}");
            }
            Event::ToolResult { name, outcome } => match outcome {
                ToolOutcome::Done { bytes, truncated } => eprintln!(
                    "← {name}: ok, {bytes} bytes{}",
                    if truncated { " (truncated)" } else { "" }
                ),
                ToolOutcome::Failed(e) => eprintln!("← {name}: failed: {e}"),
                ToolOutcome::Refused(why) => eprintln!("← {name}: refused: {why}"),
            },
        }
    }

    /// Ends the answer with a newline if it did not bring one.
    fn finish_line(&mut self) {
        if !self.answer.is_empty() && !self.answer.ends_with('\n') {
            outln!();
            self.answer.push('\n');
        }
    }
}
