//! Rendering for the everyday session commands: a session's system prompt and the roles
//! from config.toml. The rules live in pai-core; this module parses and prints.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{JsonArg, SystemArgs};
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
