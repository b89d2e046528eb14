use std::borrow::Cow;
use std::process::ExitCode;

use anyhow::Result;
use pai_core::{Cancel, Limits, Turn, TurnEnd};
use pai_types::Mode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustyline::error::ReadlineError;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{
    Cmd, Completer, ConditionalEventHandler, Event, EventContext, EventHandler, Helper,
    Highlighter, Hinter, KeyEvent, RepeatCount,
};

use crate::cli::ChatArgs;
use crate::turn::{Env, Shown, exit, run_turn};

/// Multi-line input: a line ending in `\` continues, and so does an open ``` fence.
#[derive(Completer, Helper, Highlighter, Hinter)]
struct InputHelper;

impl Validator for InputHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        let open_fence = input.matches("```").count() % 2 == 1;
        if input.ends_with('\\') || open_fence {
            Ok(ValidationResult::Incomplete)
        } else {
            Ok(ValidationResult::Valid(None))
        }
    }
}

/// Notes whether the line was empty when Ctrl+C was pressed, then lets rustyline
/// interrupt as usual: an empty line's Ctrl+C counts towards leaving, a typed one's only
/// cancels what was typed.
struct CtrlC(Arc<AtomicBool>);

impl ConditionalEventHandler for CtrlC {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        self.0
            .store(ctx.line().trim().is_empty(), Ordering::Relaxed);
        None
    }
}

/// What Ctrl+C at the prompt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    /// The typed line is dropped; a fresh prompt follows.
    CancelLine,
    /// On an empty line: say how to leave.
    Hint,
    /// The second in a row on an empty line: leave the chat.
    Leave,
}

/// Ctrl+C on an empty line once shows a hint, twice in a row leaves; `armed` says the
/// last thing at the prompt was such a Ctrl+C.
fn on_interrupt(line_was_empty: bool, armed: &mut bool) -> Interrupt {
    if !line_was_empty {
        *armed = false;
        return Interrupt::CancelLine;
    }
    if std::mem::replace(armed, true) {
        Interrupt::Leave
    } else {
        Interrupt::Hint
    }
}

/// A chat line that is a command to the chat itself rather than a message.
#[derive(Debug, PartialEq, Eq)]
enum ChatCommand<'a> {
    /// `/file PATH`: attach a file to the next message.
    File(&'a str),
    /// `/files`: list what the next message carries.
    Files,
    /// `/drop`: attach nothing after all.
    Drop,
    /// `/help`.
    Help,
}

/// Reads a chat command; any other line, `/etc/hosts?` included, is a message.
fn chat_command(line: &str) -> Option<ChatCommand<'_>> {
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    match (word, rest.is_empty()) {
        ("/file", false) => Some(ChatCommand::File(rest)),
        ("/file" | "/files", true) => Some(ChatCommand::Files),
        ("/drop", true) => Some(ChatCommand::Drop),
        ("/help", true) => Some(ChatCommand::Help),
        _ => None,
    }
}

const CHAT_HELP: &str = "\
/file PATH   attach a file (text, or an image for models that read them) to your next message
/files       list what your next message carries
/drop        attach nothing after all
exit, quit   leave (so do Ctrl+D and Ctrl+C twice on an empty line)
a line ending in \\ continues on the next";

/// `~/x` as the user's home, as a shell would have it.
fn expand_home(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => std::path::PathBuf::from(path),
    }
}

/// What the next message carries, as one line.
fn describe(attached: &[pai_core::Attachment]) -> String {
    if attached.is_empty() {
        return "nothing is attached".into();
    }
    let names: Vec<String> = attached
        .iter()
        .map(|a| match &a.image {
            Some(_) => format!("{} (image)", a.name),
            None => format!("{} ({} bytes)", a.name, a.text.len()),
        })
        .collect();
    format!("your next message carries {}", names.join(", "))
}

/// Joins `\`-continued lines: the backslash only marks the line break.
fn clean(input: &str) -> Cow<'_, str> {
    if input.contains("\\\n") {
        Cow::Owned(input.replace("\\\n", "\n"))
    } else {
        Cow::Borrowed(input)
    }
}

pub async fn chat(args: ChatArgs) -> Result<ExitCode> {
    let env = Env::load()?;
    let session = env.session(args.session.or(args.session_opt).as_deref())?;
    let mut meta = env.store().load_meta(&session)?;
    // The role is checked (and its model and temperature taken) before the first line.
    if let Some(role) = args.ask.role.as_deref() {
        let role = env.role(role)?;
        if let Some(model) = &role.model {
            meta.model = model.clone();
        }
    }
    let temperature = args
        .ask
        .role
        .as_deref()
        .and_then(|r| env.role(r).ok())
        .and_then(|r| r.temperature);
    // Files named on the command line are read (a binary one refused) before the chat
    // starts; they go with the first message.
    let mut attached = args
        .files
        .iter()
        .map(|f| pai_core::Attachment::read(f))
        .collect::<pai_core::Result<Vec<_>>>()?;
    let engine = env
        .engine(&meta, Mode::Chat, &args.run, temperature)
        .await?;
    let stream = args.stream.enabled();

    let mut editor = rustyline::Editor::<InputHelper, rustyline::history::FileHistory>::new()?;
    editor.set_helper(Some(InputHelper));
    let empty_at_ctrl_c = Arc::new(AtomicBool::new(true));
    editor.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(CtrlC(empty_at_ctrl_c.clone()))),
    );
    let history_path = env.paths().chat_history();
    // What was typed may be as private as the sessions: the file is created 0600 here,
    // before rustyline ever writes it.
    if let Err(e) = private_history_file(&history_path) {
        tracing::warn!(error = %e, "could not prepare the chat history file");
    }
    let _ = editor.load_history(&history_path);
    let info = engine.provider().info();
    eprintln!(
        "chatting in '{session}' with {} {} ({}, {}); 'exit' or Ctrl+D leaves, /help lists the chat's commands",
        info.name,
        meta.model,
        info.locality,
        pai_types::redact_endpoint(&info.endpoint)
    );
    let prompt = format!("{session}> ");
    let mut failed = false;
    let mut shown = Shown::default();
    shown.raw = args.stream.raw;
    let mut armed = false;
    loop {
        let line = match editor.readline(&prompt) {
            Ok(line) => {
                armed = false;
                line
            }
            Err(ReadlineError::Interrupted) => {
                match on_interrupt(empty_at_ctrl_c.swap(true, Ordering::Relaxed), &mut armed) {
                    Interrupt::CancelLine => {}
                    Interrupt::Hint => eprintln!("(press Ctrl+C again or Ctrl+D to leave)"),
                    Interrupt::Leave => break,
                }
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let text = clean(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if matches!(text, "exit" | "quit") {
            break;
        }
        // The line history is a file on disk: secrets typed into it are kept as placeholders.
        let _ = editor.add_history_entry(pai_core::mask_secrets(line.as_str()));
        if let Some(command) = chat_command(text) {
            match command {
                ChatCommand::File(path) => match pai_core::Attachment::read(&expand_home(path)) {
                    Ok(file) => {
                        attached.push(file);
                        eprintln!("{}", describe(&attached));
                    }
                    Err(err) => {
                        eprintln!("error: {err}");
                        failed = true;
                    }
                },
                ChatCommand::Files => eprintln!("{}", describe(&attached)),
                ChatCommand::Drop => {
                    attached.clear();
                    eprintln!("{}", describe(&attached));
                }
                ChatCommand::Help => eprintln!("{CHAT_HELP}"),
            }
            continue;
        }
        // Each line goes through the role's template; a line it refuses is reported.
        let told = match env.instructions(args.ask.ask(text.to_string())) {
            Ok(told) => told,
            Err(err) => {
                eprintln!("error: {err}");
                continue;
            }
        };
        let turn = Turn {
            session: session.clone(),
            mode: Mode::Chat,
            input: told.input,
            system: told.system,
            attachments: std::mem::take(&mut attached),
            schema: None,
            stream,
            model: Some(meta.model.clone()),
            limits: env.limits(Limits {
                budget_tokens: args.run.budget_tokens,
                dry_run: args.run.dry_run,
                ..Limits::default()
            }),
        };
        // A failed turn is reported and the conversation goes on; SIGTERM or a closed
        // output ends the chat (Ctrl+C only ends the turn).
        match run_turn(&env, &engine, &turn, &mut shown).await {
            Err(err) => {
                eprintln!("error: {err}");
                if !turn.attachments.is_empty() {
                    eprintln!(
                        "(the files attached to that message were dropped; /file attaches them again)"
                    );
                }
                failed = true;
            }
            Ok(TurnEnd::Cancelled { reason, .. }) if reason != Cancel::Interrupted => {
                let _ = save_history(&mut editor, &history_path);
                return Ok(ExitCode::from(match reason {
                    Cancel::OutputClosed => exit::OUTPUT_CLOSED,
                    _ => exit::TERMINATED,
                }));
            }
            Ok(_) => {}
        }
    }
    if let Err(e) = save_history(&mut editor, &history_path) {
        tracing::warn!(error = %e, "could not save chat history");
    }
    // Scripts piping a conversation in learn that a turn failed.
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Creates the chat history file with mode 0600 if it is missing (never truncating it),
/// and takes group and other access away from one that had it.
fn private_history_file(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        let mode = file.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    options.open(path)?;
    Ok(())
}

fn save_history(
    editor: &mut rustyline::Editor<InputHelper, rustyline::history::FileHistory>,
    path: &std::path::Path,
) -> Result<()> {
    // rustyline rewrites the file in place, so the mode set at creation stays.
    editor.save_history(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_c_twice_on_an_empty_line_leaves_and_anything_between_resets() {
        let mut armed = false;
        assert_eq!(on_interrupt(true, &mut armed), Interrupt::Hint);
        assert_eq!(on_interrupt(true, &mut armed), Interrupt::Leave);
        let mut armed = false;
        assert_eq!(on_interrupt(true, &mut armed), Interrupt::Hint);
        assert_eq!(on_interrupt(false, &mut armed), Interrupt::CancelLine);
        assert_eq!(on_interrupt(true, &mut armed), Interrupt::Hint);
    }

    #[test]
    fn chat_commands_are_read_and_other_slash_lines_are_messages() {
        assert_eq!(
            chat_command("/file my notes.md"),
            Some(ChatCommand::File("my notes.md"))
        );
        assert_eq!(chat_command("/file"), Some(ChatCommand::Files));
        assert_eq!(chat_command("/files"), Some(ChatCommand::Files));
        assert_eq!(chat_command("/drop"), Some(ChatCommand::Drop));
        assert_eq!(chat_command("/help"), Some(ChatCommand::Help));
        assert_eq!(chat_command("/etc/hosts says what?"), None);
        assert_eq!(chat_command("/drop everything"), None);
        assert_eq!(chat_command("hello"), None);
    }

    #[test]
    fn continuation_backslashes_are_removed() {
        assert_eq!(clean("a\\\nb"), "a\nb");
        assert_eq!(clean("plain"), "plain");
    }
}
