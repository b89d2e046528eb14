//! Files generated from the clap definitions: `docs/cli.md`, the man pages and the shell
//! completions. Test-only, so the shipped binary carries none of it: the tests below check
//! `docs/cli.md` is current, and `cargo xtask docs` / `cargo xtask dist` run them with a
//! variable that says where to write (`PAI_UPDATE_DOCS`, `PAI_DIST_ASSETS`).

use std::fmt::Write as _;
use std::path::Path;

use clap::{Arg, ArgAction, Command};

/// The page's opening, kept by every regeneration; the hand-written guide is docs/usage.md.
const HEADER: &str = "\
# CLI reference

<!-- Generated from the clap definitions by `cargo xtask docs`; do not edit by hand.
     `cargo test -p pai-cli` fails when this file is stale. -->

Every command and flag of `pai`, as `pai <command> --help` prints them. What the commands
are for, with examples: [usage.md](usage.md). Answers go to stdout; progress, notes and
errors to stderr. Every failure is one `error: …` line and a non-zero exit.
";

/// `docs/cli.md`: every command and flag, from the same definition the binary parses with.
pub fn markdown() -> String {
    let mut root = crate::cli::command();
    root.build();
    let mut out = String::from(HEADER);
    let usage = usage(&mut root);
    let _ = write!(out, "\n```text\n{usage}\n```\n");
    if let Some(about) = root.get_long_about().or(root.get_about()) {
        let _ = write!(out, "\n{}\n", prose(&about.to_string()));
    }
    let globals: Vec<&Arg> = root.get_arguments().filter(|a| shown(a, &[])).collect();
    write_args(
        &mut out,
        "Global options (also between a session and its command)",
        &globals,
    );
    if let Some(after) = root.get_after_help() {
        let _ = write!(out, "\n{}\n", prose(&after.to_string()));
    }
    out.push_str("\n## Commands\n\n");
    for sub in root.get_subcommands().filter(|c| listed(c)) {
        let path = format!("pai {}", sub.get_name());
        let _ = writeln!(out, "- [`{path}`](#{}): {}", anchor(&path), summary(sub));
    }
    let inherited: Vec<String> = globals.iter().map(|a| a.get_id().to_string()).collect();
    for sub in root.get_subcommands_mut().filter(|c| listed(c)) {
        write_command(&mut out, sub, 2, &inherited);
    }
    out
}

/// One command's section, then its subcommands' one level down.
fn write_command(out: &mut String, cmd: &mut Command, depth: usize, inherited: &[String]) {
    let path = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
    let _ = write!(out, "\n{} `{path}`\n", "#".repeat(depth));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        let _ = write!(out, "\n{}\n", sentence(prose(&about.to_string())));
    }
    let usage = usage(cmd);
    let _ = write!(out, "\n```text\n{usage}\n```\n");
    let name = cmd.get_name().to_string();
    if depth == 2 && crate::cli::SESSION_FIRST.contains(&name.as_str()) {
        let _ = write!(
            out,
            "\nSession-first form: `pai <SESSION> {name} …` is `pai {name} --session <SESSION> …`.\n"
        );
    }
    let args: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| shown(a, inherited))
        .collect();
    let (positionals, options): (Vec<&Arg>, Vec<&Arg>) =
        args.into_iter().partition(|a| a.is_positional());
    write_args(out, "Arguments", &positionals);
    write_args(out, "Options", &options);
    let subs: Vec<(String, String)> = cmd
        .get_subcommands()
        .filter(|c| listed(c))
        .map(|c| (format!("{path} {}", c.get_name()), summary(c)))
        .collect();
    if !subs.is_empty() {
        out.push_str("\nSubcommands:\n\n");
        for (sub, about) in &subs {
            let _ = writeln!(out, "- [`{sub}`](#{}): {about}", anchor(sub));
        }
    }
    let mut inherited = inherited.to_vec();
    inherited.extend(
        cmd.get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().to_string()),
    );
    for sub in cmd.get_subcommands_mut().filter(|c| listed(c)) {
        write_command(out, sub, (depth + 1).min(6), &inherited);
    }
}

fn write_args(out: &mut String, title: &str, args: &[&Arg]) {
    if args.is_empty() {
        return;
    }
    let _ = write!(out, "\n{title}:\n\n");
    for arg in args {
        let mut line = format!("- `{}`", spelling(arg));
        if let Some(help) = arg.get_long_help().or(arg.get_help()) {
            let text = sentence(prose(&help.to_string()));
            let _ = write!(line, ": {}", text.replace('\n', "\n  "));
        }
        if arg.get_action().takes_values() {
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| format!("`{}`", v.get_name()))
                .collect();
            if !values.is_empty() {
                let _ = write!(line, " Values: {}.", values.join(", "));
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| format!("`{}`", v.to_string_lossy()))
                .collect();
            if !defaults.is_empty() {
                let _ = write!(line, " Default: {}.", defaults.join(", "));
            }
        }
        if let Some(env) = arg.get_env() {
            let _ = write!(line, " Environment: `{}`.", env.to_string_lossy());
        }
        let _ = writeln!(out, "{line}");
    }
}

/// How the argument is written on the command line: `-m, --model <MODEL>`, `[TEXT]...`.
fn spelling(arg: &Arg) -> String {
    let names = arg
        .get_value_names()
        .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|| vec![arg.get_id().as_str().to_uppercase()]);
    let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
    if arg.is_positional() {
        let inner = names.join(" ");
        let one = if arg.is_required_set() {
            format!("<{inner}>")
        } else {
            format!("[{inner}]")
        };
        return if many { format!("{one}...") } else { one };
    }
    let mut flags = Vec::new();
    if let Some(short) = arg.get_short() {
        flags.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        flags.push(format!("--{long}"));
    }
    let mut out = flags.join(", ");
    if arg.get_action().takes_values() {
        let values: Vec<String> = names.iter().map(|n| format!("<{n}>")).collect();
        let _ = write!(out, " {}", values.join(" "));
        if many {
            out.push_str("...");
        }
    }
    if matches!(arg.get_action(), ArgAction::Count) {
        out.push_str(" (repeatable)");
    }
    out
}

/// Arguments worth a line: not hidden, not clap's own help/version, not a global one
/// already listed where it was defined.
fn shown(arg: &Arg, inherited: &[String]) -> bool {
    let id = arg.get_id().as_str();
    !arg.is_hide_set() && id != "help" && id != "version" && !inherited.iter().any(|i| i == id)
}

fn listed(cmd: &Command) -> bool {
    !cmd.is_hide_set() && cmd.get_name() != "help"
}

fn summary(cmd: &Command) -> String {
    cmd.get_about()
        .map(|a| prose(&a.to_string()))
        .unwrap_or_default()
}

/// The usage line without clap's `Usage: ` label.
fn usage(cmd: &mut Command) -> String {
    let usage = cmd.render_usage().to_string();
    usage
        .strip_prefix("Usage: ")
        .unwrap_or(&usage)
        .trim_end()
        .to_string()
}

/// GitHub's anchor for a heading `` `pai models add` ``: lowercase, spaces to dashes.
fn anchor(path: &str) -> String {
    path.to_lowercase().replace(' ', "-")
}

/// Help text as Markdown: outside code spans, `<session>` would be read as an HTML tag and
/// `*.example.org` as emphasis.
fn prose(text: &str) -> String {
    let chars: Vec<char> = text.trim_end().chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut code = false;
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '`' => {
                code = !code;
                out.push(c);
            }
            '<' if !code => out.push_str("&lt;"),
            '*' if !code => out.push_str("\\*"),
            // `RUST_LOG` is safe as it is: only an underscore at a word's edge can emphasise.
            '_' if !code && !inside_word(&chars, i) => out.push_str("\\_"),
            _ => out.push(c),
        }
    }
    out
}

fn inside_word(chars: &[char], i: usize) -> bool {
    let word = |j: Option<usize>| {
        j.and_then(|j| chars.get(j))
            .is_some_and(|c| c.is_alphanumeric())
    };
    word(i.checked_sub(1)) && word(Some(i + 1))
}

/// A help line as a sentence, so what follows it (`Default: …`) reads apart.
fn sentence(text: String) -> String {
    if text.is_empty() || text.ends_with('.') {
        text
    } else {
        text + "."
    }
}

/// The man pages (`pai.1` and one per subcommand) and the bash, zsh and fish completions,
/// under `dir/man` and `dir/completions`.
pub fn dist_assets(dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    // Not built first: clap_mangen turns off the `help` subcommand before it builds, so
    // no `pai-help-*.1` pages appear.
    clap_mangen::generate_to(crate::cli::command(), &man)?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut crate::cli::command(), "pai", &completions)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn cli_md() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md")
    }

    /// `PAI_UPDATE_DOCS=1` (what `cargo xtask docs` sets) writes the file instead.
    #[test]
    fn docs_cli_md_is_current() {
        let want = super::markdown();
        if std::env::var_os("PAI_UPDATE_DOCS").is_some() {
            std::fs::write(cli_md(), &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(cli_md()).unwrap_or_default();
        if have != want {
            let line = have
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
            panic!(
                "docs/cli.md is stale (it differs from the clap definitions from line {}); \
                 regenerate it with `cargo xtask docs` and commit it",
                line + 1
            );
        }
    }

    #[test]
    fn every_command_and_flag_is_in_the_reference() {
        let md = super::markdown();
        for name in crate::cli::COMMANDS.iter().filter(|c| **c != "help") {
            assert!(md.contains(&format!("\n## `pai {name}`\n")), "pai {name}");
        }
        for section in [
            "### `pai models add`",
            "### `pai audit purge`",
            "### `pai resources add`",
        ] {
            assert!(md.contains(section), "{section}");
        }
        for flag in [
            "`-f, --file <PATH>`",
            "`--schema <FILE|JSON>`",
            "`-v, --verbose (repeatable)`",
            "`--purge-audit`",
        ] {
            assert!(md.contains(flag), "{flag}");
        }
        assert!(md.contains("Session-first form: `pai <SESSION> prompt …`"));
        assert!(!md.contains("session_opt") && !md.contains("`pai help`"));
    }

    /// `PAI_DIST_ASSETS=DIR` (what `cargo xtask dist` sets) writes them there to keep.
    #[test]
    fn man_pages_and_completions_are_generated() {
        let temp = tempfile::tempdir().unwrap();
        let dir = std::env::var_os("PAI_DIST_ASSETS")
            .map(PathBuf::from)
            .unwrap_or_else(|| temp.path().to_path_buf());
        super::dist_assets(&dir).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
        let man = read("man/pai.1");
        assert!(
            man.starts_with(".ie \\n(.g .ds Aq") || man.contains(".TH pai 1"),
            "{man}"
        );
        assert!(man.contains("pai\\-prompt(1)"), "{man}");
        assert!(read("man/pai-prompt.1").contains("\\-\\-schema"));
        assert!(read("man/pai-models-add.1").contains(".TH pai-models-add 1"));
        assert!(!dir.join("man/pai-help.1").exists());
        assert!(read("completions/pai.bash").contains("pai__subcmd__prompt)"));
        assert!(read("completions/_pai").starts_with("#compdef pai"));
        assert!(read("completions/pai.fish").contains("complete -c pai"));
    }
}
