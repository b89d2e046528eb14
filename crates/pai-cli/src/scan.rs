//! `pai scan [FILE|-] [--json]`: the detectors the egress gate uses, run over a file or
//! stdin, so a user (or a pre-commit hook) sees what PAI would redact. Exit 1 when something
//! is found, 0 when the text is clean, 2 when it cannot be scanned.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Result;
use pai_core::policy::{detect, inject};
use serde::Serialize;

use crate::cli::ScanArgs;

/// Larger inputs are refused rather than read into memory whole.
const MAX_BYTES: u64 = 64 << 20;

/// One finding as printed: never the value itself.
#[derive(Debug, Serialize)]
struct Reported {
    kind: &'static str,
    rule: String,
    line: usize,
    column: usize,
    class: &'static str,
    preview: String,
    /// Prompt-injection findings only: the scorer's score.
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<u32>,
}

pub fn scan(args: ScanArgs) -> Result<ExitCode> {
    let (name, text) = match read(args.file.as_deref()) {
        Ok(read) => read,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    // The user's own `[[detect.rule]]` rules count here as they do before a prompt leaves.
    if let Ok(paths) = pai_core::Paths::from_env() {
        pai_core::Config::load(&paths.config_file())?;
    }
    let found = findings(&text);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        for f in &found {
            outln!(
                "{name}:{}:{}: {} {} ({}) {}",
                f.line,
                f.column,
                f.kind,
                f.rule,
                f.class,
                f.preview
            );
        }
    }
    Ok(if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Everything the detectors report about `text`: secrets and personal data, each where it
/// is; then, when the prompt-injection scorer rates the whole text high (as the engine
/// would rate a tool's output), one `INJECTION` finding with its score and the shapes found.
fn findings(text: &str) -> Vec<Reported> {
    let mut lines = LineIndex::new(text);
    let mut found: Vec<Reported> = detect::scan(text)
        .into_iter()
        .map(|f| {
            let (line, column) = lines.locate(f.start);
            Reported {
                kind: f.kind,
                rule: f.rule.to_string(),
                line,
                column,
                class: f.class.as_str(),
                preview: preview(&text[f.start..f.end]),
                score: None,
            }
        })
        .collect();
    let assessment = inject::assess(text);
    if assessment.is_high() {
        found.push(Reported {
            kind: "INJECTION",
            rule: assessment.kinds(),
            line: 1,
            column: 1,
            class: "untrusted",
            preview: format!("score {}", assessment.score),
            score: Some(assessment.score),
        });
    }
    found
}

/// The first few characters and an ellipsis: enough to recognise a value, never all of
/// it (a third at most, four at the very most).
fn preview(value: &str) -> String {
    let n = value.chars().count();
    let shown: String = value
        .chars()
        .take((n / 3).min(4))
        .filter(|c| !c.is_control())
        .collect();
    format!("{shown}…")
}

/// Reads the file (or stdin for `-` or nothing), refusing huge or binary input. The error
/// is one line saying what to do.
fn read(file: Option<&std::path::Path>) -> std::result::Result<(String, String), String> {
    let (name, bytes) = match file {
        None => ("<stdin>".to_string(), read_capped(std::io::stdin().lock())?),
        Some(p) if p.as_os_str() == "-" => {
            ("<stdin>".to_string(), read_capped(std::io::stdin().lock())?)
        }
        Some(p) => {
            let f =
                std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            (p.display().to_string(), read_capped(f)?)
        }
    };
    if bytes.contains(&0) {
        return Err(format!(
            "{name} looks binary (it contains NUL bytes); pai scan reads text only"
        ));
    }
    let text = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok((name, text))
}

fn read_capped(r: impl Read) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    r.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the input: {e}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "the input is larger than {} MiB; scan it in parts (e.g. with split)",
            MAX_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// Byte offsets to 1-based line and column (in characters), for offsets given in order.
struct LineIndex<'a> {
    text: &'a str,
    line: usize,
    line_start: usize,
    pos: usize,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            line: 1,
            line_start: 0,
            pos: 0,
        }
    }

    fn locate(&mut self, offset: usize) -> (usize, usize) {
        if offset < self.pos {
            *self = Self::new(self.text);
        }
        for (i, b) in self.text.as_bytes()[self.pos..offset].iter().enumerate() {
            if *b == b'\n' {
                self.line += 1;
                self.line_start = self.pos + i + 1;
            }
        }
        self.pos = offset;
        let column = self.text[self.line_start..offset].chars().count() + 1;
        (self.line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_never_show_the_whole_value() {
        assert_eq!(preview("AKIAQ3EGRJ7MNOZ4V5XA"), "AKIA…");
        assert_eq!(preview("hunter2"), "hu…");
        assert_eq!(preview("ab"), "…");
    }

    #[test]
    fn lines_and_columns_are_one_based_in_characters() {
        let text = "ab\nçd x\n";
        let mut idx = LineIndex::new(text);
        assert_eq!(idx.locate(0), (1, 1));
        assert_eq!(idx.locate(text.find('x').unwrap()), (2, 4));
    }
}
