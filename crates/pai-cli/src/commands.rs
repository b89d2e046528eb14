use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use pai_core::{
    KeySource, SessionMeta, Vault, key_source, probe_local_servers, resolve_provider,
    session_endpoint,
};
use pai_providers::{ProviderEntry, connect};
use pai_types::{Locality, Secret, SessionName};
use serde::Serialize;

use crate::cli::{
    COMMANDS, Cli, CompletionsArgs, InitArgs, JsonArg, ModelArgs, ModelsArgs, SessionArg,
    StatusArgs, SwitchArgs, UseArgs,
};
use crate::turn::Env;

fn print_json(value: &impl Serialize) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

/// Reads `--api-key` (or stdin for `-`) and encrypts it before anything touches disk,
/// so a missing or bad `PAI_ENCRYPTION_KEY` writes nothing.
fn encrypted_key(raw: Option<&str>) -> Result<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    let key = if raw == "-" {
        crate::input::read_text(std::io::stdin().lock())?
    } else {
        raw.to_string()
    };
    let key = key.trim();
    if key.is_empty() {
        bail!("--api-key is empty; pass the key, or '-' to read it from stdin");
    }
    Ok(Some(
        Vault::from_env()?.encrypt(&Secret::new(key.to_string())),
    ))
}

fn check_base_url(url: Option<&str>) -> Result<Option<String>> {
    let Some(url) = url else { return Ok(None) };
    let ok = url.starts_with("http://") || url.starts_with("https://");
    if !ok || url.split("://").nth(1).is_none_or(str::is_empty) {
        bail!("--base-url '{url}' is not an http(s) URL; pass one like http://127.0.0.1:8080/v1");
    }
    Ok(Some(url.trim_end_matches('/').to_string()))
}

fn check_model(model: Option<&str>) -> Result<Option<String>> {
    match model.map(str::trim) {
        Some("") => {
            bail!("--model cannot be empty; name the model to ask, e.g. --model gpt-4o-mini")
        }
        other => Ok(other.map(str::to_string)),
    }
}

/// One line saying what a session now talks to, and a note when a remote one has no key.
fn describe(meta: &SessionMeta, entry: &ProviderEntry) -> String {
    let (endpoint, locality) = session_endpoint(meta, entry);
    let key = key_source(meta, entry);
    if key == KeySource::None
        && locality == Locality::Remote
        && let Some(var) = &entry.key_env
    {
        eprintln!("note: no API key yet; set {var} or pass --api-key before prompting");
    }
    format!(
        "{} {} at {endpoint} ({locality}); key: {key}",
        meta.provider, meta.model
    )
}

pub async fn init(args: InitArgs) -> Result<ExitCode> {
    let name = SessionName::new(&args.session)?;
    if COMMANDS.contains(&name.as_str()) {
        bail!(
            "'{name}' is a pai command, so 'pai {name} …' would be ambiguous; pick another session name"
        );
    }
    let env = Env::load()?;
    let model = check_model(args.model.as_deref())?;
    let base_url = check_base_url(args.base_url.as_deref())?;
    let (entry, model) = if args.provider == LOCAL_SERVER {
        detect_local_server(&env, model).await?
    } else {
        let entry = env.config.provider_entry(&args.provider)?;
        let Some(model) = model else {
            bail!(
                "name the model with --model, e.g. 'pai init {name} {} --model <model>'; 'pai models {}' lists what the endpoint serves",
                entry.name,
                entry.name
            );
        };
        (entry, model)
    };
    let api_key = encrypted_key(args.api_key.as_deref())?;
    let mut meta = SessionMeta::new(name.clone(), &entry.name, &model);
    meta.base_url = base_url;
    meta.api_key = api_key;
    env.store.create(&meta, args.force)?;
    env.store.set_active(&name)?;
    println!(
        "created session '{name}': {}. It is now the active session.",
        describe(&meta, &entry)
    );
    Ok(ExitCode::SUCCESS)
}

/// The pseudo-provider that means "whichever local server is running".
const LOCAL_SERVER: &str = "local-server";

/// The first known local server that answers, and a model it serves.
async fn detect_local_server(env: &Env, model: Option<String>) -> Result<(ProviderEntry, String)> {
    let probes = probe_local_servers(&env.config).await;
    let mut tried = Vec::new();
    for probe in probes {
        match probe.models {
            Ok(models) => {
                let chosen = match model {
                    Some(m) => m,
                    None => match models.first() {
                        Some(m) => m.id.clone(),
                        None => bail!(
                            "{} at {} is running but serves no models; load or pull one, then run this again",
                            probe.entry.name,
                            probe.entry.base_url
                        ),
                    },
                };
                eprintln!(
                    "found {} at {} ({} model(s))",
                    probe.entry.name,
                    probe.entry.base_url,
                    models.len()
                );
                return Ok((probe.entry, chosen));
            }
            Err(_) => tried.push(format!("{} ({})", probe.entry.base_url, probe.entry.name)),
        }
    }
    bail!(
        "no local model server answered; tried {}. Start one (e.g. 'ollama serve' or 'llama-server -m model.gguf'), or name a provider",
        tried.join(", ")
    )
}

pub async fn switch(args: SwitchArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.as_deref())?;
    let entry = env.config.provider_entry(&args.provider)?;
    let model = check_model(args.model.as_deref())?;
    let base_url = check_base_url(args.base_url.as_deref())?;
    let api_key = encrypted_key(args.api_key.as_deref())?;
    let meta = env.store.update(&name, |meta| {
        let same_provider = meta.provider == entry.name;
        meta.provider = entry.name.clone();
        if let Some(m) = model {
            meta.model = m;
        }
        // A stored key or endpoint belongs to the provider it was given for.
        if base_url.is_some() || !same_provider {
            meta.base_url = base_url;
        }
        if api_key.is_some() || !same_provider {
            meta.api_key = api_key;
        }
        Ok(())
    })?;
    let messages = env.store.snapshot(&name)?.history.len();
    println!(
        "session '{name}' now uses {}; its {messages} message(s) are kept",
        describe(&meta, &entry)
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct Status {
    session: String,
    active: bool,
    provider: String,
    model: String,
    endpoint: String,
    locality: Locality,
    key: KeySource,
    messages: usize,
    summarised_messages: usize,
    prompt_tokens: u64,
    completion_tokens: u64,
    tokens_estimated: bool,
    created_at: String,
    updated_at: String,
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.or(args.session_opt).as_deref())?;
    let snap = env.store.snapshot(&name)?;
    let usage = snap.usage();
    let meta = &snap.meta;
    let entry = env.config.provider_entry(&meta.provider)?;
    let (endpoint, locality) = session_endpoint(meta, &entry);
    let status = Status {
        active: env.store.active()?.as_ref() == Some(&name),
        session: name.to_string(),
        provider: meta.provider.clone(),
        model: meta.model.clone(),
        locality,
        endpoint,
        key: key_source(meta, &entry),
        messages: snap.history.len(),
        summarised_messages: meta.folded.min(snap.history.len()),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        tokens_estimated: usage.estimated,
        created_at: meta.created_at.clone(),
        updated_at: meta.updated_at.clone(),
    };
    if args.json {
        return print_json(&status);
    }
    let s = &status;
    println!(
        "session   {}{}",
        s.session,
        if s.active { " (active)" } else { "" }
    );
    println!("provider  {}", s.provider);
    println!("model     {}", s.model);
    println!("endpoint  {}", s.endpoint);
    println!(
        "runs      {}",
        match s.locality {
            Locality::Local => "locally (this machine or its network)",
            Locality::Remote => "remotely (data leaves this machine)",
        }
    );
    println!("key       {}", s.key);
    println!(
        "messages  {} ({} folded into the summary)",
        s.messages, s.summarised_messages
    );
    println!(
        "tokens    {} prompt + {} completion = {}{}",
        s.prompt_tokens,
        s.completion_tokens,
        s.prompt_tokens + s.completion_tokens,
        if s.tokens_estimated {
            " (partly estimated)"
        } else {
            ""
        }
    );
    println!("created   {}", s.created_at);
    Ok(ExitCode::SUCCESS)
}

pub fn reset(args: SessionArg) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.or(args.session_opt).as_deref())?;
    let before = env.store.snapshot(&name)?.history.len();
    env.store.reset(&name)?;
    println!(
        "session '{name}' reset: {before} message(s) and the summary cleared; provider, model and key kept"
    );
    Ok(ExitCode::SUCCESS)
}

pub fn providers(args: JsonArg) -> Result<ExitCode> {
    let env = Env::load()?;
    let rows = env.config.provider_entries();
    if args.json {
        return print_json(&rows);
    }
    println!(
        "{:<11} {:<17} {:<7} {:<32} {:<19} ABOUT",
        "PROVIDER", "KIND", "RUNS", "ENDPOINT", "KEY ENV VAR"
    );
    for r in &rows {
        println!(
            "{:<11} {:<17} {:<7} {:<32} {:<19} {}",
            r.name,
            r.kind,
            r.locality,
            r.base_url,
            r.key_env.as_deref().unwrap_or("-"),
            r.about
        );
    }
    println!(
        "\nCreate a session with: pai init <session> <provider> --model <model>\n\
         Use whichever local server is running: pai init <session> local-server\n\
         Define your own endpoints in {}",
        env.paths.config_file().display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn sessions(args: JsonArg) -> Result<ExitCode> {
    let env = Env::load()?;
    let list = env.store.list()?;
    if args.json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no sessions yet; create one with: pai init <session> <provider> --model <model>");
        return Ok(ExitCode::SUCCESS);
    }
    for s in &list {
        println!(
            "{} {:<20} {:<11} {}",
            if s.active { "*" } else { " " },
            // as_str: SessionName's Display ignores width, which would skew the columns.
            s.name.as_str(),
            s.provider,
            s.model
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn use_session(args: UseArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = SessionName::new(&args.session)?;
    env.store.set_active(&name)?;
    println!("'{name}' is now the active session");
    Ok(ExitCode::SUCCESS)
}

pub fn model(args: ModelArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.as_deref())?;
    let model = args.model.trim().to_string();
    if model.is_empty() {
        bail!("the model name cannot be empty");
    }
    let mut previous = String::new();
    env.store.update(&name, |meta| {
        previous = std::mem::replace(&mut meta.model, model.clone());
        Ok(())
    })?;
    let messages = env.store.snapshot(&name)?.history.len();
    println!(
        "session '{name}' now uses model {model} (was {previous}); its {messages} message(s) are kept"
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn models(args: ModelsArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    // A provider name asks that provider's own endpoint; otherwise the session's.
    let (config, in_use) = match args.provider.as_deref() {
        Some(provider) => {
            let entry = env.config.provider_entry(provider)?;
            let meta = SessionMeta::new(SessionName::new("models")?, &entry.name, "");
            (resolve_provider(&meta, &env.config)?.config, None)
        }
        None => {
            let name = env.session(args.session.as_deref())?;
            let meta = env.store.load_meta(&name)?;
            (
                resolve_provider(&meta, &env.config)?.config,
                Some(meta.model),
            )
        }
    };
    let models = connect(config)?.models().await?;
    if args.json {
        return print_json(&models);
    }
    for m in &models {
        let mark = if in_use.as_deref() == Some(m.id.as_str()) {
            "  (in use)"
        } else {
            ""
        };
        println!("{}{mark}", m.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn keygen() -> Result<ExitCode> {
    let key = Vault::generate_key();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", key.expose()).context("cannot write to stdout")?;
    if std::io::stdout().is_terminal() {
        eprintln!(
            "export it so PAI can encrypt stored API keys:\n  export PAI_ENCRYPTION_KEY='{}'",
            key.expose()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn completions(args: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "pai", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
