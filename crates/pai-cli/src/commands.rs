use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use pai_core::{KeySource, SessionMeta, Vault, key_source};
use pai_providers::{BUILTIN, connect, find_builtin, infer_locality};
use pai_types::{Locality, Secret, SessionName};
use serde::Serialize;

use crate::cli::{
    COMMANDS, Cli, CompletionsArgs, InitArgs, JsonArg, ModelArgs, ModelsArgs, SessionArg,
    StatusArgs, UseArgs,
};
use crate::turn::Env;

fn print_json(value: &impl Serialize) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

pub fn init(args: InitArgs) -> Result<ExitCode> {
    let name = SessionName::new(&args.session)?;
    if COMMANDS.contains(&name.as_str()) {
        bail!(
            "'{name}' is a pai command, so 'pai {name} …' would be ambiguous; pick another session name"
        );
    }
    let Some(spec) = find_builtin(&args.provider) else {
        bail!(
            "unknown provider '{}'; 'pai providers' lists the ones PAI knows, and any OpenAI-compatible server works with 'openai --base-url URL'",
            args.provider
        );
    };
    if args.model.trim().is_empty() {
        bail!("--model cannot be empty; name the model to ask, e.g. --model gpt-4o-mini");
    }
    if let Some(url) = &args.base_url {
        let ok = url.starts_with("http://") || url.starts_with("https://");
        if !ok || url.split("://").nth(1).is_none_or(str::is_empty) {
            bail!(
                "--base-url '{url}' is not an http(s) URL; pass one like http://127.0.0.1:8080/v1"
            );
        }
    }
    let env = Env::load()?;
    // Encrypt before touching disk, so a missing or bad PAI_ENCRYPTION_KEY writes nothing.
    let api_key = match args.api_key.as_deref() {
        None => None,
        Some(raw) => {
            let key = if raw == "-" {
                crate::input::read_text(std::io::stdin().lock())?
            } else {
                raw.to_string()
            };
            let key = key.trim();
            if key.is_empty() {
                bail!("--api-key is empty; pass the key, or '-' to read it from stdin");
            }
            Some(Vault::from_env()?.encrypt(&Secret::new(key.to_string())))
        }
    };
    let mut meta = SessionMeta::new(name.clone(), spec.name, args.model.trim());
    meta.base_url = args.base_url.map(|u| u.trim_end_matches('/').to_string());
    meta.api_key = api_key;
    env.store.create(&meta, args.force)?;
    env.store.set_active(&name)?;
    let endpoint = meta.base_url.as_deref().unwrap_or(spec.base_url);
    println!(
        "created session '{name}': {} {} at {endpoint} ({}); key: {}. It is now the active session.",
        spec.name,
        meta.model,
        infer_locality(endpoint),
        key_source(&meta)
    );
    if key_source(&meta) == KeySource::None
        && infer_locality(endpoint) == Locality::Remote
        && let Some(var) = spec.key_env
    {
        eprintln!("note: no API key yet; set {var} or re-run with --api-key before prompting");
    }
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
    let endpoint = meta
        .base_url
        .clone()
        .or_else(|| find_builtin(&meta.provider).map(|s| s.base_url.to_string()))
        .unwrap_or_default();
    let status = Status {
        active: env.store.active()?.as_ref() == Some(&name),
        session: name.to_string(),
        provider: meta.provider.clone(),
        model: meta.model.clone(),
        locality: infer_locality(&endpoint),
        endpoint,
        key: key_source(meta),
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

#[derive(Debug, Serialize)]
struct ProviderRow {
    name: &'static str,
    locality: Locality,
    endpoint: &'static str,
    key_env: Option<&'static str>,
    about: &'static str,
}

pub fn providers(args: JsonArg) -> Result<ExitCode> {
    let rows: Vec<ProviderRow> = BUILTIN
        .iter()
        .map(|p| ProviderRow {
            name: p.name,
            locality: infer_locality(p.base_url),
            endpoint: p.base_url,
            key_env: p.key_env,
            about: p.about,
        })
        .collect();
    if args.json {
        return print_json(&rows);
    }
    println!(
        "{:<11} {:<7} {:<32} {:<19} ABOUT",
        "PROVIDER", "RUNS", "ENDPOINT", "KEY ENV VAR"
    );
    for r in &rows {
        println!(
            "{:<11} {:<7} {:<32} {:<19} {}",
            r.name,
            r.locality,
            r.endpoint,
            r.key_env.unwrap_or("-"),
            r.about
        );
    }
    println!("\nCreate a session with: pai init <session> <provider> --model <model>");
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
            s.name,
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
    let name = env.session(args.session.or(args.session_opt).as_deref())?;
    let meta = env.store.load_meta(&name)?;
    let resolved = pai_core::resolve_provider(&meta, &env.config)?;
    let provider = connect(resolved.config)?;
    let models = provider.models().await?;
    if args.json {
        return print_json(&models);
    }
    for m in &models {
        println!(
            "{}{}",
            m.id,
            if m.id == meta.model { "  (in use)" } else { "" }
        );
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
