//! Rendering for the everyday session commands: a session's system prompt, the roles
//! from config.toml, rm, rename, export and import. The rules live in pai-core; this
//! module parses, asks and prints.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use pai_types::SessionName;

use crate::cli::{COMMANDS, ExportArgs, ImportArgs, JsonArg, RenameArgs, RmArgs, SystemArgs};
use crate::turn::Env;

fn print_json(value: &impl serde::Serialize) -> Result<ExitCode> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

pub fn system(args: SystemArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.as_deref())?;
    match args.text.as_deref().map(str::trim) {
        None => match env.store().load_meta(&name)?.system {
            Some(own) => outln!("{own}"),
            None => {
                outln!("{}", env.config().context.system_prompt);
                eprintln!(
                    "(the default from [context] system_prompt; set the session's own with 'pai {name} system \"…\"')"
                );
            }
        },
        Some("none") => {
            env.set_system(&name, None)?;
            outln!(
                "session '{name}' has no system prompt of its own now; the default ([context] system_prompt) applies"
            );
        }
        Some(text) => {
            env.set_system(&name, Some(text.to_string()))?;
            outln!("session '{name}' now runs with its own system prompt");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn roles(args: JsonArg) -> Result<ExitCode> {
    let env = Env::load()?;
    let roles = env.roles();
    if args.json {
        return print_json(&roles);
    }
    if roles.is_empty() {
        outln!(
            "no roles yet; define one in {} under [roles.<name>] with system = \"…\" (docs/configuration.md)",
            env.paths().config_file().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{:<16} {:<20} {:<5} ABOUT", "ROLE", "MODEL", "TEMP");
    for r in &roles {
        let about = if r.about.chars().count() > 60 {
            format!("{}…", r.about.chars().take(59).collect::<String>())
        } else {
            r.about.clone()
        };
        let vars: Vec<&str> = r
            .placeholders
            .iter()
            .map(String::as_str)
            .filter(|p| *p != "input")
            .collect();
        let vars = if vars.is_empty() {
            String::new()
        } else {
            format!(" (--var {})", vars.join(", --var "))
        };
        outln!(
            "{:<16} {:<20} {:<5} {about}{vars}",
            r.name,
            r.model.as_deref().unwrap_or("-"),
            r.temperature.map_or("-".to_string(), |t| t.to_string()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the user at the terminal answers yes to `question` (stderr, one line read).
fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, Write};
    let mut err = std::io::stderr();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub fn rm(args: RmArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let env = Env::load()?;
    let name = SessionName::new(&args.session)?;
    let messages = env.store().snapshot(&name)?.history.len();
    if !args.yes {
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            bail!(
                "not removing session '{name}' without confirmation, and there is no terminal to ask on; pass --yes"
            );
        }
        let audit = if args.purge_audit {
            ", and purge its content from the audit log"
        } else {
            ""
        };
        if !confirm(&format!(
            "remove session '{name}' and its {messages} message(s){audit}? This cannot be undone."
        ))? {
            outln!("kept session '{name}'");
            return Ok(ExitCode::FAILURE);
        }
    }
    env.store().remove(&name)?;
    if !args.purge_audit {
        outln!(
            "removed session '{name}' and its {messages} message(s); its audit rows stay in the audit log"
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!("removed session '{name}' and its {messages} message(s)");
    // The session is gone either way; a failed purge says how to finish it.
    crate::audit::purge_session(&env, &name).map_err(|e| {
        anyhow::anyhow!(
            "{e}; the session is removed but its audit content is not: run 'pai audit purge --session {name}'"
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn rename(args: RenameArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let old = SessionName::new(&args.old)?;
    let new = new_name(&args.new)?;
    env.store().rename(&old, &new)?;
    outln!("renamed session '{old}' to '{new}'");
    Ok(ExitCode::SUCCESS)
}

/// A name a new session may take: valid, and not a command's (`pai <name> …` would be
/// ambiguous).
fn new_name(name: &str) -> Result<SessionName> {
    let name = SessionName::new(name)?;
    if COMMANDS.contains(&name.as_str()) {
        bail!(
            "'{name}' is a pai command, so 'pai {name} …' would be ambiguous; pick another session name"
        );
    }
    Ok(name)
}

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let name = env.session(args.session.or(args.session_opt).as_deref())?;
    let transcript = env.export(&name)?;
    if args.format == "markdown" {
        crate::output::write(&transcript.to_markdown());
        return Ok(ExitCode::SUCCESS);
    }
    print_json(&transcript)
}

pub fn import(args: ImportArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let text = if args.file.as_os_str() == "-" {
        crate::input::read_text(std::io::stdin().lock())?
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        crate::input::read_text(file)
            .with_context(|| format!("cannot import {}", args.file.display()))?
    };
    let rename = args.as_name.as_deref().map(new_name).transpose()?;
    if rename.is_none() {
        // The transcript's own name must also be one a session may take.
        if let Some(name) = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["session"].as_str().map(str::to_string))
        {
            new_name(&name)?;
        }
    }
    let meta = env.import(&text, rename)?;
    let messages = env.store().snapshot(&meta.name)?.history.len();
    outln!(
        "imported session '{}' ({} {}, {messages} message(s)); 'pai use {}' makes it the active one",
        meta.name,
        meta.provider,
        meta.model,
        meta.name
    );
    Ok(ExitCode::SUCCESS)
}
