//! The `pai` binary: parses the command line, wires pai-core's pieces together, renders
//! events. It holds no logic a library user would need: another program can embed
//! pai-core exactly the way this one does.

#[macro_use]
mod output;
mod approve;
mod audit;
mod cli;
mod commands;
#[cfg(test)]
mod generate;
mod input;
mod local;
#[cfg(feature = "otel")]
mod otel;
mod plan;
mod policy;
mod render;
mod repl;
mod resources;
mod scan;
mod sessions;
mod turn;

use std::io::Write;
use std::process::ExitCode;

use clap::FromArgMatches;

use crate::cli::{Cli, Command, rewrite_session_first};

fn main() -> ExitCode {
    let (args, session_first) = rewrite_session_first(std::env::args_os().collect());
    let cli = match cli::command()
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            match session_first {
                // Help and version are not errors; everything else is said in the
                // user's own words, not the rewritten `--session` ones.
                Some(sf)
                    if !matches!(
                        err.kind(),
                        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
                    ) =>
                {
                    eprint!("{}", sf.user_syntax(&err.render().to_string()));
                    return ExitCode::from(2);
                }
                None if err.kind() == ErrorKind::InvalidSubcommand => {
                    match cli::unknown_command_after_session(&args) {
                        Some(message) => {
                            eprint!("{message}");
                            return ExitCode::from(2);
                        }
                        None => err.exit(),
                    }
                }
                _ => err.exit(),
            }
        }
    };
    init_tracing(cli.verbose);
    // Only commands that may run the in-process model need candle's thread count.
    if matches!(
        cli.command,
        Command::Prompt(_) | Command::Agent(_) | Command::Chat(_) | Command::Models(_)
    ) {
        local::set_thread_count();
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            let _ = std::io::stdout().flush();
            // One line: our errors carry their own context and next step.
            eprintln!("error: {}", output::neutralise(&err.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Status(args) => commands::status(args),
        Command::Reset(args) => commands::reset(args),
        Command::Providers(args) => commands::providers(args),
        Command::Sessions(args) => commands::sessions(args),
        Command::Use(args) => commands::use_session(args),
        Command::Model(args) => commands::model(args),
        Command::Keygen => commands::keygen(),
        Command::Encrypt => commands::encrypt(),
        Command::Completions(args) => commands::completions(args),
        Command::Prompt(args) => runtime()?.block_on(turn::prompt(args)),
        Command::Agent(args) => runtime()?.block_on(turn::agent(args)),
        Command::Tools(args) => runtime()?.block_on(commands::tools(args)),
        Command::Usage(args) => commands::usage(args),
        Command::Budget(args) => commands::budget(args),
        Command::Allow(args) => policy::constrain(pai_core::ConstraintKind::Allow, args),
        Command::Deny(args) => policy::constrain(pai_core::ConstraintKind::Deny, args),
        Command::Constraints(args) => policy::constraints(args),
        Command::Safe(args) => policy::safe(args),
        Command::Policy(args) => policy::policy(args),
        Command::Scan(args) => scan::scan(args),
        Command::System(args) => sessions::system(args),
        Command::Roles(args) => sessions::roles(args),
        Command::Rm(args) => sessions::rm(args),
        Command::Rename(args) => sessions::rename(args),
        Command::Export(args) => sessions::export(args),
        Command::Import(args) => sessions::import(args),
        Command::Audit(args) => audit::run(args),
        Command::Resources(args) => resources::resources(args),
        Command::Chat(args) => runtime()?.block_on(repl::chat(args)),
        Command::Models(args) => runtime()?.block_on(commands::models(args)),
        Command::Init(args) => runtime()?.block_on(commands::init(args)),
        Command::Switch(args) => runtime()?.block_on(commands::switch(args)),
    }
}

/// One thread is plenty for one conversation, and starts fastest.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn init_tracing(verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::new(spec),
        // No subscriber logs nothing, as the "off" filter would, without building a
        // filter and a formatter that no event would pass.
        _ if verbose == 0 => return,
        // -v: what PAI decided for each request (pai-core); -vv adds the wire
        // (pai-providers' `pai_wire` target) and every library's debug lines.
        _ => EnvFilter::new(if verbose == 1 {
            "pai=info,pai_core=info,pai_providers=info,pai_cli=info"
        } else {
            "debug"
        }),
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Masked(Vec::new()))
        .with_target(false)
        // Colour only for a person at a terminal; a log file or a pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal() && render::colour_allowed());
    // -v is read by a person: the decisions, without timestamps. -vv keeps them for
    // timing the wire.
    let _ = if verbose == 1 {
        fmt.without_time().try_init()
    } else {
        fmt.try_init()
    };
}

/// One diagnostics event on its way to stderr. Whatever the detectors recognise as a
/// secret in it (a key typed into a prompt for a local model, a token in a server's
/// reply on the wire) is masked first; the endpoint's own key is already scrubbed.
struct Masked(Vec<u8>);

impl Write for Masked {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Masked {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let masked = pai_core::mask_secrets(&text);
        let _ = std::io::stderr().lock().write_all(masked.as_bytes());
    }
}
