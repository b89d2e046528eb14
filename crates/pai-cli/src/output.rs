//! stdout for answers and listings. A reader that goes away (`pai … | head`) is not an
//! error worth a panic or a message: PAI stops quietly, as command-line tools do.

use std::io::Write;

/// Writes `text` to stdout; exits quietly if the reader has gone.
pub fn write(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes `text` to stdout and flushes it, reporting failure to the caller (a turn that
/// must record why it ended early).
pub fn try_write(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush())
}

/// `println!` for stdout that survives a closed pipe.
macro_rules! outln {
    () => {
        $crate::output::write("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::write(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `text` with every control character but newline and tab made visible: C0 controls as
/// their Unicode control pictures (ESC becomes `␛`), DEL as `␡`, C1 controls as `\u{9b}`.
/// Model text may carry escape sequences that write the clipboard (OSC 52), hide text,
/// move the cursor or retitle the window; shown this way, none of them reaches the
/// terminal as a command. Only what is printed changes; stored text stays as it came.
pub fn neutralise(text: &str) -> std::borrow::Cow<'_, str> {
    let harmful =
        |c: char| (c.is_control() && c != '\n' && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c);
    if !text.chars().any(harmful) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\u{7f}' => out.push('\u{2421}'),
            c if (c as u32) < 0x20 => {
                out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'));
            }
            c if harmful(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::neutralise;

    #[test]
    fn control_sequences_become_visible_and_text_stays() {
        let evil = "ok\x1b]52;c;ZXZpbA==\x07 \x1b[2J\x1b[8mhidden\r\u{9b}31m\x7f\tend\n";
        let shown = neutralise(evil);
        assert_eq!(
            shown,
            "ok\u{241b}]52;c;ZXZpbA==\u{2407} \u{241b}[2J\u{241b}[8mhidden\u{240d}\\u{9b}31m\u{2421}\tend\n"
        );
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        );
        assert!(matches!(
            neutralise("plain text\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
