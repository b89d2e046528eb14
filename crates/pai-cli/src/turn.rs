use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use pai_audit::SqliteAudit;
use pai_core::{
    Config, ContextManager, Engine, Event, Paths, SessionMeta, SessionStore, Turn, TurnOutcome,
    resolve_provider,
};
use pai_providers::{Provider, connect};
use pai_types::{Mode, SessionName};

use crate::cli::{PromptArgs, StreamArgs};
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

    /// An engine wired to the session's provider and the audit log.
    pub fn engine(&self, meta: &SessionMeta) -> Result<Engine> {
        let resolved = resolve_provider(meta, &self.config)?;
        let provider: Arc<dyn Provider> = Arc::from(connect(resolved.config)?);
        let audit = Arc::new(SqliteAudit::open(&self.paths.audit_db())?);
        Ok(Engine::new(
            provider,
            audit,
            self.store.clone(),
            ContextManager::new(self.config.context.clone()),
        ))
    }
}

impl StreamArgs {
    /// Stream when asked, or by default when stdout is a terminal.
    pub fn enabled(&self) -> bool {
        !self.no_stream && (self.stream || std::io::stdout().is_terminal())
    }
}

pub async fn prompt(args: PromptArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let session = env.session(args.session.as_deref())?;
    let meta = env.store.load_meta(&session)?;
    let input = input::prompt_text(&args.text)?;
    let engine = env.engine(&meta)?;
    let turn = Turn {
        session,
        mode: Mode::Prompt,
        input,
        stream: args.stream.enabled(),
        model: args.model.or(Some(meta.model)),
    };
    Ok(match run_turn(&engine, &turn).await? {
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
            let printer = printer.lock().unwrap_or_else(|p| p.into_inner());
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
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
                self.answer.push_str(&text);
            }
            Event::Folded { usage } => {
                tracing::info!(
                    tokens = usage.total(),
                    "folded earlier turns into the summary"
                );
            }
        }
    }

    /// Ends the answer with a newline if it did not bring one.
    fn finish_line(&self) {
        if !self.answer.is_empty() && !self.answer.ends_with('\n') {
            println!();
        }
    }
}
