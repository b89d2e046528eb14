use std::io::{IsTerminal, Read};

use anyhow::{Result, bail};

/// Largest stdin PAI accepts: far beyond any model window, small enough to refuse a
/// mistaken `pai prompt < disk.img` at once.
pub const MAX_STDIN: u64 = 8 * 1024 * 1024;

/// The prompt text: piped stdin (or `-`) first, then the words given on the command line.
/// With `may_be_empty` (a role's template may need no input) nothing given is no error.
pub fn prompt_text(words: &[String], may_be_empty: bool) -> Result<String> {
    let dash = words.iter().any(|w| w == "-");
    let text = words
        .iter()
        .filter(|w| *w != "-")
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let stdin = std::io::stdin();
    let piped = if dash || !stdin.is_terminal() {
        read_text(stdin.lock())?
    } else {
        String::new()
    };
    let combined = match (piped.trim().is_empty(), text.trim().is_empty()) {
        (true, true) if may_be_empty => String::new(),
        (true, true) => bail!(
            "nothing to send: give the prompt as text ('pai prompt \"…\"') or pipe it on stdin"
        ),
        (false, true) => piped,
        (true, false) => text,
        (false, false) => format!("{}\n\n{text}", piped.trim_end()),
    };
    Ok(combined)
}

/// Reads all of `reader` as text, refusing binary data and anything over [`MAX_STDIN`].
pub fn read_text(reader: impl Read) -> Result<String> {
    let mut buf = Vec::new();
    reader.take(MAX_STDIN + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_STDIN {
        bail!(
            "stdin is larger than {} MiB; send a smaller excerpt",
            MAX_STDIN / 1024 / 1024
        );
    }
    if buf.contains(&0) {
        bail!("stdin looks binary (it contains NUL bytes); PAI sends text only");
    }
    match String::from_utf8(buf) {
        Ok(s) => Ok(s),
        Err(_) => bail!("stdin is not UTF-8 text; convert it first (e.g. with iconv)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_passes_binary_and_huge_do_not() {
        assert_eq!(read_text(&b"hello\n"[..]).unwrap(), "hello\n");
        assert!(
            read_text(&b"a\0b"[..])
                .unwrap_err()
                .to_string()
                .contains("binary")
        );
        assert!(
            read_text(&[0xff, 0xfe][..])
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
        let huge = vec![b'a'; MAX_STDIN as usize + 1];
        assert!(
            read_text(&huge[..])
                .unwrap_err()
                .to_string()
                .contains("larger")
        );
    }
}
