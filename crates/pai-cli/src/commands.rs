use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use pai_core::{Described, NewSession, SwitchTo, Vault};
use pai_providers::ProviderKind;
use pai_types::{Locality, Secret, SessionName, redact_endpoint};
use serde::Serialize;

use crate::cli::{
    BudgetArgs, COMMANDS, CompletionsArgs, InitArgs, JsonArg, ModelArgs, ModelsArgs, SessionArg,
    StatusArgs, SwitchArgs, UsageArgs, UseArgs,
};
use crate::turn::Env;

fn print_json(value: &impl Serialize) -> Result<ExitCode> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

/// Reads `--api-key` (or stdin for `-`); pai-core encrypts it with the vault from
/// `PAI_ENCRYPTION_KEY` before anything touches disk.
fn api_key(raw: Option<&str>) -> Result<Option<Secret<String>>> {
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
    Ok(Some(Secret::new(key.to_string())))
}

/// After a key given as an argument was stored: it is already out, but the user can stop
/// doing it. (Said after success, so a failure stays one error line.)
fn warn_if_key_in_argv(raw: Option<&str>) {
    if raw.is_some_and(|k| k != "-") {
        eprintln!(
            "warning: an API key on the command line shows in the process list and your shell history; next time pass --api-key - and send the key on stdin"
        );
    }
}

/// One line saying what a session now talks to, and a note when a remote one has no key.
fn describe(d: &Described) -> String {
    if let Some(var) = &d.missing_key_env {
        eprintln!("note: no API key yet; set {var} or pass --api-key before prompting");
    }
    format!(
        "{} {} at {} ({}); key: {}",
        d.meta.provider, d.meta.model, d.endpoint, d.locality, d.key
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
    let api_key = api_key(args.api_key.as_deref())?;
    if args.purge_audit {
        crate::audit::purge_session(&env, &name)?;
    }
    let new = NewSession {
        name: name.clone(),
        provider: args.provider,
        model: args.model,
        base_url: args.base_url,
        api_key,
        budget_tokens: args.budget_tokens,
        force: args.force,
    };
    let created = env.init(new).await?;
    if let Some(found) = &created.found {
        eprintln!("{found}");
    }
    outln!(
        "created session '{name}': {}. It is now the active session.",
        describe(&created)
    );
    warn_if_key_in_argv(args.api_key.as_deref());
    Ok(ExitCode::SUCCESS)
}

pub async fn switch(args: SwitchArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.as_deref())?;
    let api_key = api_key(args.api_key.as_deref())?;
    let to = SwitchTo {
        provider: args.provider,
        model: args.model,
        base_url: args.base_url,
        api_key,
    };
    let moved = env.switch(&name, to)?;
    let messages = env.store().snapshot(&name)?.history.len();
    outln!(
        "session '{name}' now uses {}; its {messages} message(s) are kept",
        describe(&moved)
    );
    warn_if_key_in_argv(args.api_key.as_deref());
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.or(args.session_opt).as_deref())?;
    let status = env.status(&name)?;
    if args.json {
        return print_json(&status);
    }
    let s = &status;
    outln!(
        "session   {}{}",
        s.session,
        if s.active { " (active)" } else { "" }
    );
    outln!("provider  {}", s.provider);
    outln!("model     {}", s.model);
    match &s.system {
        Some(own) => {
            let first = own.lines().next().unwrap_or_default();
            let shown = if first.chars().count() > 60 || own.lines().count() > 1 {
                format!("{}…", first.chars().take(59).collect::<String>())
            } else {
                first.to_string()
            };
            outln!("system    {}", crate::output::neutralise(&shown));
        }
        None => outln!(
            "system    default ('pai {} system \"…\"' gives the session its own)",
            s.session
        ),
    }
    outln!("endpoint  {}", s.endpoint);
    outln!(
        "runs      {}",
        match s.locality {
            Locality::Local => "locally (this machine or its network)",
            Locality::Remote => "remotely (data leaves this machine)",
        }
    );
    if let Some(proxy) = &s.proxy {
        outln!("proxy     {proxy} ([network] proxy in config.toml)");
    }
    outln!("key       {}", s.key);
    outln!(
        "messages  {} ({} folded into the summary)",
        s.messages,
        s.summarised_messages
    );
    outln!(
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
    let used = s.prompt_tokens + s.completion_tokens;
    match s.budget_tokens {
        Some(cap) => outln!(
            "budget    {used} of {cap} tokens used ({} left)",
            cap.saturating_sub(used)
        ),
        None => outln!(
            "budget    none (set one with 'pai {} budget <tokens>')",
            s.session
        ),
    }
    if s.safe {
        outln!("safe      on: local endpoints and read-only tools only");
    } else {
        outln!(
            "safe      off ('pai {} safe on' limits it to local endpoints and read-only tools)",
            s.session
        );
    }
    if s.constraints.is_empty() {
        outln!(
            "rules     none of its own ('pai {} allow|deny <tool|host|path>')",
            s.session
        );
    } else {
        outln!(
            "rules     {}",
            s.constraints
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    match s.cost_usd {
        Some(c) => outln!("cost      ~${c:.4} (estimated from the price table)"),
        None => outln!(
            "cost      unknown (no price for {}; add one under [prices] in config.toml)",
            s.model
        ),
    }
    outln!("created   {}", s.created_at);
    Ok(ExitCode::SUCCESS)
}

pub fn reset(args: SessionArg) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.or(args.session_opt).as_deref())?;
    let before = env.store().snapshot(&name)?.history.len();
    env.store().reset(&name)?;
    outln!(
        "session '{name}' reset: {before} message(s) and the summary cleared; provider, model and key kept"
    );
    if args.purge_audit {
        crate::audit::purge_session(&env, &name)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn providers(args: JsonArg) -> Result<ExitCode> {
    let env = Env::load()?;
    let mut rows = env.config().provider_entries();
    for r in rows.iter_mut() {
        r.base_url = if r.kind == ProviderKind::Local {
            crate::local::endpoint(env.paths())
        } else {
            // config.toml may hold a URL with a key in it.
            redact_endpoint(&r.base_url).into_owned()
        };
    }
    if args.json {
        return print_json(&rows);
    }
    outln!(
        "{:<11} {:<17} {:<7} {:<32} {:<19} ABOUT",
        "PROVIDER",
        "KIND",
        "RUNS",
        "ENDPOINT",
        "KEY ENV VAR"
    );
    for r in &rows {
        outln!(
            "{:<11} {:<17} {:<7} {:<32} {:<19} {}",
            r.name,
            r.kind,
            r.locality,
            r.base_url,
            r.key_env.as_deref().unwrap_or("-"),
            r.about
        );
    }
    outln!(
        "\nCreate a session with: pai init <session> <provider> --model <model>\n\
         Use whichever local server is running: pai init <session> local-server\n\
         Define your own endpoints in {}",
        env.paths().config_file().display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn sessions(args: JsonArg) -> Result<ExitCode> {
    let env = Env::load()?;
    let list = env.sessions()?;
    if args.json {
        return print_json(&list);
    }
    if list.is_empty() {
        outln!("no sessions yet; create one with: pai init <session> <provider> --model <model>");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "  {:<20} {:<11} {:<24} {:<7} {:>8}  LAST USED (UTC)",
        "SESSION",
        "PROVIDER",
        "MODEL",
        "RUNS",
        "MESSAGES"
    );
    for s in &list {
        // "2026-05-01T09:30:12.345Z" as "2026-05-01 09:30".
        let last: String = s.last_used.replacen('T', " ", 1).chars().take(16).collect();
        outln!(
            "{} {:<20} {:<11} {:<24} {:<7} {:>8}  {last}",
            if s.active { "*" } else { " " },
            // as_str: SessionName's Display ignores width, which would skew the columns.
            s.name.as_str(),
            s.provider,
            s.model,
            s.locality.map_or("?".to_string(), |l| l.to_string()),
            s.messages,
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn use_session(args: UseArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = SessionName::new(&args.session)?;
    env.store().set_active(&name)?;
    outln!("'{name}' is now the active session");
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
    env.store().update(&name, |meta| {
        previous = std::mem::replace(&mut meta.model, model.clone());
        Ok(())
    })?;
    let messages = env.store().snapshot(&name)?.history.len();
    outln!(
        "session '{name}' now uses model {model} (was {previous}); its {messages} message(s) are kept"
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn models(args: ModelsArgs) -> Result<ExitCode> {
    if let Some(action) = args.action {
        return crate::local::run(action);
    }
    let env = Env::load()?;
    // The in-process provider's models are the installed ones. They are also what a
    // plain 'pai models' lists before any session exists: the first thing a user needs.
    if args.provider.is_none() && args.session.is_none() && env.store().active()?.is_none() {
        return crate::local::list(env.paths(), args.json, None);
    }
    let local = match (&args.provider, &args.session) {
        (Some(p), _) => env.config().provider_entry(p)?.kind == ProviderKind::Local,
        (None, s) => {
            let meta = env.store().load_meta(&env.session(s.as_deref())?)?;
            let local = env.config().provider_entry(&meta.provider)?.kind == ProviderKind::Local;
            if local {
                return crate::local::list(env.paths(), args.json, Some(&meta.model));
            }
            false
        }
    };
    if local {
        return crate::local::list(env.paths(), args.json, None);
    }
    // A provider name asks that provider's own endpoint; otherwise the session's.
    let session = args.session.as_deref().map(SessionName::new).transpose()?;
    let (models, in_use) = env
        .endpoint_models(args.provider.as_deref(), session.as_ref())
        .await?;
    if args.json {
        return print_json(&models);
    }
    for m in &models {
        let mark = if in_use.as_deref() == Some(m.id.as_str()) {
            "  (in use)"
        } else {
            ""
        };
        outln!("{}{mark}", m.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn budget(args: BudgetArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.as_deref())?;
    let budget = match args.tokens.trim() {
        "none" | "off" => None,
        n => Some(n.parse::<u64>().ok().filter(|n| *n > 0).with_context(|| {
            format!("'{n}' is not a token count; give a positive number, or 'none'")
        })?),
    };
    env.store().update(&name, |meta| {
        meta.budget_tokens = budget;
        Ok(())
    })?;
    match budget {
        Some(n) => outln!("session '{name}' may now use {n} tokens over its history"),
        None => outln!("session '{name}' has no token budget now"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct ToolRow {
    name: String,
    source: String,
    effects: Vec<pai_tools::Effect>,
    /// The modes that offer it.
    modes: Vec<pai_types::Mode>,
    description: String,
}

pub async fn tools(args: JsonArg) -> Result<ExitCode> {
    let env = Env::load()?;
    use pai_types::Mode;
    let registry = env.offered_tools(Mode::Agent).await?;
    let row = |i: &pai_tools::ToolInfo, modes: Vec<Mode>| ToolRow {
        name: i.spec.name.clone(),
        source: i.source.clone(),
        effects: i.effects.iter().copied().collect(),
        modes,
        description: i.spec.description.clone(),
    };
    let mut rows: Vec<ToolRow> = registry
        .infos()
        .into_iter()
        .map(|i| {
            let modes = [Mode::Chat, Mode::Prompt, Mode::Agent]
                .into_iter()
                .filter(|m| i.effects.iter().all(|e| m.offers(*e)))
                .collect();
            row(i, modes)
        })
        .collect();
    // Engines add these per turn (chat: over attached documents only; none without any
    // documents), so the registry does not hold them.
    rows.extend(
        pai_core::resource_tools()
            .iter()
            .map(|(i, modes)| row(i, modes.clone())),
    );
    if args.json {
        return print_json(&rows);
    }
    outln!(
        "{:<24} {:<14} {:<15} {:<18} DESCRIPTION",
        "TOOL",
        "SOURCE",
        "EFFECTS",
        "MODES"
    );
    for r in &rows {
        let effects = r
            .effects
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(",");
        // The table shows the first sentence; --json has the whole description.
        let first = r.description.split(". ").next().unwrap_or_default();
        let about = if first.chars().count() > 70 {
            format!("{}…", first.chars().take(69).collect::<String>())
        } else {
            first.trim_end_matches('.').to_string()
        };
        let modes = r
            .modes
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(",");
        outln!(
            "{:<24} {:<14} {:<15} {:<18} {about}",
            r.name,
            r.source,
            effects,
            modes
        );
    }
    outln!(
        "\nchat offers read tools; prompt read and network; agent all, asking before write and exec.\n\
         Resource tools are offered once a document exists; in chat only over documents attached with -r."
    );
    Ok(ExitCode::SUCCESS)
}

pub fn usage(args: UsageArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let since = args.days.map(|d| {
        let start =
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * i64::from(d.max(1) - 1));
        start.to_string()[..10].to_string()
    });
    let lines = env.usage(since.as_deref())?;
    // The numbers are only as good as the log they come from.
    if let Some(warning) = env.audit_warning()? {
        eprintln!("warning: {warning}");
    }
    if args.json {
        return print_json(&lines);
    }
    if lines.is_empty() {
        outln!(
            "no model calls recorded{}",
            if args.days.is_some() {
                " in that period"
            } else {
                " yet"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<10} {:<16} {:<11} {:<24} {:>10} {:>10} {:>10}",
        "DAY (UTC)",
        "SESSION",
        "PROVIDER",
        "MODEL",
        "PROMPT",
        "COMPLETION",
        "COST"
    );
    let (mut prompt, mut completion, mut cost, mut unknown) = (0, 0, 0.0, false);
    for l in &lines {
        prompt += l.prompt_tokens;
        completion += l.completion_tokens;
        match l.cost_usd {
            Some(c) => cost += c,
            None => unknown = true,
        }
        outln!(
            "{:<10} {:<16} {:<11} {:<24} {:>10} {:>10} {:>10}",
            l.day,
            l.session,
            l.provider,
            l.model,
            l.prompt_tokens,
            format!(
                "{}{}",
                l.completion_tokens,
                if l.estimated { "~" } else { "" }
            ),
            l.cost_usd.map_or("?".to_string(), |c| format!("${c:.4}"))
        );
    }
    outln!(
        "{:<64} {:>10} {:>10} {:>10}",
        "total",
        prompt,
        completion,
        format!("${cost:.4}{}", if unknown { "+?" } else { "" })
    );
    if lines.iter().any(|l| l.estimated) {
        outln!("~ some counts were estimated because the server reported none");
    }
    if unknown {
        outln!("? no price known for that model; add one under [prices] in config.toml");
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

/// A secret from stdin as a Fernet token under `PAI_ENCRYPTION_KEY`: what `auth_secret`
/// in an `[apis.<name>]` table holds, so config.toml never has the secret in plaintext.
pub fn encrypt() -> Result<ExitCode> {
    let vault = Vault::from_env()?;
    if std::io::stdin().is_terminal() {
        eprintln!("type or paste the secret, then press Enter and Ctrl+D:");
    }
    let text = crate::input::read_text(std::io::stdin().lock())?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("nothing to encrypt: send the secret on stdin (printf %s \"$TOKEN\" | pai encrypt)");
    }
    let token = vault.encrypt(&Secret::new(secret.to_string()));
    outln!("{token}");
    Ok(ExitCode::SUCCESS)
}

pub fn completions(args: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = crate::cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pai", &mut script);
    crate::output::write(&String::from_utf8_lossy(&script));
    Ok(ExitCode::SUCCESS)
}
