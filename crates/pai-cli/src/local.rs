//! The CLI side of the in-process `local` provider: installing and listing models, the
//! model a new local session gets, and candle's thread count.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::Result;
use pai_core::{Config, InstalledModel, LocalSettings, ModelKind, ModelStore, Paths, Workspace};
use pai_providers::DEFAULT_LOCAL_MODEL;
use serde::Serialize;

use crate::cli::{ModelsAction, ModelsAddArgs};
use crate::turn::Env;

/// The settings `set_thread_count` read, kept for the command's own [`workspace`] so that
/// `config.toml` is read and parsed once per process.
static STARTUP: OnceLock<(Paths, Config)> = OnceLock::new();

/// candle sizes its worker pool once, from `CANDLE_NUM_THREADS`, the first time a model
/// runs, and offers no other way to set it. So `[local] threads` becomes that variable
/// here, before any thread exists; a value already in the environment wins.
pub fn set_thread_count() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_some() {
        return;
    }
    let loaded = Paths::from_env()
        .ok()
        .and_then(|p| Config::load(&p.config_file()).ok().map(|c| (p, c)));
    let threads = loaded.as_ref().map_or_else(
        || LocalSettings::default().threads(),
        |(_, c)| c.local.threads(),
    );
    if let Some(loaded) = loaded {
        let _ = STARTUP.set(loaded);
    }
    // SAFETY: called first thing in `main`, while this is the only thread, so nothing can
    // read the environment concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
}

/// The workspace a command works in: with the settings read at start-up when there were
/// any for these paths, else read now (and any error in them reported).
pub fn workspace() -> Result<Workspace> {
    let paths = Paths::from_env()?;
    Ok(match STARTUP.get() {
        Some((read, config)) if *read == paths => Workspace::with_config(paths, config.clone()),
        _ => Workspace::open(paths)?,
    })
}

/// What the `local` provider's endpoint column shows: the default model's file once it is
/// installed, else the directory models go to.
pub fn endpoint(paths: &Paths) -> String {
    let store = ModelStore::new(paths);
    match store.find(DEFAULT_LOCAL_MODEL) {
        Ok(Some(m)) => store.path_of(&m).display().to_string(),
        _ => format!("{}/", store.dir().display()),
    }
}

pub fn run(action: ModelsAction) -> Result<ExitCode> {
    match action {
        ModelsAction::Add(args) => add(args),
    }
}

#[derive(Debug, Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    model: &'a InstalledModel,
    path: String,
    in_use: bool,
}

fn add(args: ModelsAddArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let store = ModelStore::new(env.paths());
    // Progress for a person watching; a script's stderr keeps only the error, if any.
    if std::io::stderr().is_terminal() {
        eprintln!(
            "adding {}: copying into {} and checking that it loads…",
            args.path.display(),
            store.dir().display()
        );
    }
    let added = store.add(&args.path)?;
    if args.json {
        let row = Row {
            model: &added.model,
            path: added.path.display().to_string(),
            in_use: false,
        };
        outln!("{}", serde_json::to_string_pretty(&row)?);
        return Ok(ExitCode::SUCCESS);
    }
    let m = &added.model;
    let what = if added.already {
        "already installed"
    } else {
        "installed"
    };
    outln!(
        "{what}: {} ({}, {}, {}, sha256 {}) at {}",
        m.name,
        m.architecture,
        m.quantization,
        size(m.size),
        &m.sha256[..m.sha256.len().min(12)],
        added.path.display()
    );
    if m.kind == ModelKind::Embedding {
        outln!(
            "resources now store its vectors at import and search hybrid (BM25 and embeddings); 'pai resources reindex --embeddings' adds vectors to documents imported before"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let model_flag = if m.name.eq_ignore_ascii_case(DEFAULT_LOCAL_MODEL) {
        String::new()
    } else {
        format!(" --model {}", m.name)
    };
    outln!("use it with: pai init <session> local{model_flag}");
    Ok(ExitCode::SUCCESS)
}

/// Lists the installed local models; `in_use` is marked.
pub fn list(paths: &Paths, json: bool, in_use: Option<&str>) -> Result<ExitCode> {
    let store = ModelStore::new(paths);
    let models = store.list()?;
    let used = |m: &InstalledModel| {
        in_use.is_some_and(|u| {
            m.name.eq_ignore_ascii_case(u) || store.path_of(m).display().to_string() == u
        })
    };
    if json {
        let rows: Vec<Row<'_>> = models
            .iter()
            .map(|m| Row {
                model: m,
                path: store.path_of(m).display().to_string(),
                in_use: used(m),
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if models.is_empty() {
        outln!(
            "no local models installed in {}; for the default one, {}",
            store.dir().display(),
            pai_providers::GET_DEFAULT_MODEL
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<28} {:<7} {:<6} {:>9}  FILE",
        "LOCAL MODEL",
        "ARCH",
        "QUANT",
        "SIZE"
    );
    for m in &models {
        outln!(
            "{:<28} {:<7} {:<6} {:>9}  {}{}",
            m.name,
            m.architecture,
            m.quantization,
            size(m.size),
            store.path_of(m).display(),
            if used(m) { "  (in use)" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}
