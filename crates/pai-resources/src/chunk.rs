//! Splits a document into chunks at natural boundaries: Markdown headings start a new
//! chunk, paragraphs are packed together up to a target size, a fenced code block stays
//! whole unless it alone is past the maximum. Each chunk remembers the heading it is under,
//! so a hit can say where in the document it is.

/// A chunk is closed once it holds this many bytes and the next block would not fit.
pub(crate) const TARGET_BYTES: usize = 1500;
/// No chunk is larger than this: a longer block is cut at line ends, then at characters.
pub(crate) const MAX_BYTES: usize = 4000;

/// One piece of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The heading the text is under (`Setup › Linux`), empty before the first one.
    pub heading: String,
    /// The text.
    pub text: String,
}

/// `text` in chunks. `markdown` turns on headings and code fences.
pub(crate) fn split(text: &str, markdown: bool) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut block = String::new();
    let mut fence: Option<&str> = None;

    let path = |headings: &[(usize, String)]| {
        headings
            .iter()
            .map(|(_, h)| h.as_str())
            .collect::<Vec<_>>()
            .join(" › ")
    };
    let flush_block = |block: &mut String, current: &mut String, out: &mut Vec<Piece>, h: &str| {
        let trimmed = block.trim_matches('\n');
        if trimmed.trim().is_empty() {
            block.clear();
            return;
        }
        if !current.is_empty() && current.len() + trimmed.len() + 2 > TARGET_BYTES {
            push(out, h, std::mem::take(current));
        }
        if trimmed.len() > MAX_BYTES {
            for part in cut(trimmed) {
                push(out, h, part);
            }
        } else {
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(trimmed);
        }
        block.clear();
    };

    for line in text.lines() {
        let trimmed = line.trim_start();
        if markdown {
            if let Some(open) = fence {
                block.push_str(line);
                block.push('\n');
                if trimmed.starts_with(open)
                    && trimmed
                        .trim_end()
                        .trim_start_matches(open.chars().next().unwrap_or('`'))
                        .is_empty()
                {
                    fence = None;
                    let h = path(&headings);
                    flush_block(&mut block, &mut current, &mut out, &h);
                }
                continue;
            }
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                let h = path(&headings);
                flush_block(&mut block, &mut current, &mut out, &h);
                fence = Some(if trimmed.starts_with("```") {
                    "```"
                } else {
                    "~~~"
                });
                block.push_str(line);
                block.push('\n');
                continue;
            }
            if let Some((level, title)) = heading(line) {
                let h = path(&headings);
                flush_block(&mut block, &mut current, &mut out, &h);
                if !current.is_empty() {
                    push(&mut out, &h, std::mem::take(&mut current));
                }
                headings.retain(|(l, _)| *l < level);
                headings.push((level, title.to_string()));
                continue;
            }
        }
        if line.trim().is_empty() {
            let h = path(&headings);
            flush_block(&mut block, &mut current, &mut out, &h);
        } else {
            block.push_str(line);
            block.push('\n');
        }
    }
    let h = path(&headings);
    flush_block(&mut block, &mut current, &mut out, &h);
    if !current.is_empty() {
        push(&mut out, &h, current);
    }
    out
}

fn push(out: &mut Vec<Piece>, heading: &str, text: String) {
    out.push(Piece {
        heading: heading.to_string(),
        text,
    });
}

/// An ATX heading (`## Title`): its level and text.
fn heading(line: &str) -> Option<(usize, &str)> {
    let hashes = line.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &line[hashes..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim();
    Some((hashes, title))
}

/// A block past [`MAX_BYTES`] in pieces: at line ends where it can, else at a character
/// boundary.
fn cut(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.split_inclusive('\n') {
        if cur.len() + line.len() > MAX_BYTES && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        let mut rest = line;
        while rest.len() > MAX_BYTES {
            let mut at = MAX_BYTES;
            while !rest.is_char_boundary(at) {
                at -= 1;
            }
            out.push(rest[..at].to_string());
            rest = &rest[at..];
        }
        cur.push_str(rest);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|s| s.trim_end_matches('\n').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn headings_start_chunks_and_are_remembered_as_a_path() {
        let doc =
            "intro text\n\n# Setup\n\nrun it\n\n## Linux\n\napt install\n\n# Use\n\ncall it\n";
        let pieces = split(doc, true);
        let got: Vec<(&str, &str)> = pieces
            .iter()
            .map(|p| (p.heading.as_str(), p.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("", "intro text"),
                ("Setup", "run it"),
                ("Setup › Linux", "apt install"),
                ("Use", "call it"),
            ]
        );
    }

    #[test]
    fn code_fences_stay_whole_and_hide_their_hash_lines() {
        let doc = "# A\n\n```sh\n# not a heading\n\necho hi\n```\nafter\n";
        let pieces = split(doc, true);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].heading, "A");
        assert!(pieces[0].text.contains("# not a heading\n\necho hi\n```"));
        assert!(pieces[0].text.ends_with("after"));
    }

    #[test]
    fn paragraphs_are_packed_and_no_chunk_passes_the_maximum() {
        let para = "word ".repeat(100);
        let doc = vec![para.as_str(); 20].join("\n\n");
        let pieces = split(&doc, false);
        assert!(pieces.len() > 1 && pieces.len() < 20, "{}", pieces.len());
        assert!(pieces.iter().all(|p| p.text.len() <= MAX_BYTES));
        let huge = "é".repeat(10_000);
        let pieces = split(&huge, false);
        assert!(pieces.len() >= 5);
        assert!(pieces.iter().all(|p| p.text.len() <= MAX_BYTES));
        assert_eq!(pieces.concat_text(), huge);
    }

    #[test]
    fn plain_text_has_no_headings() {
        let pieces = split("# not markdown\n\nbody", false);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].heading, "");
    }

    #[test]
    fn blank_documents_have_no_chunks() {
        assert!(split("\n \n\t\n", true).is_empty());
    }

    trait Concat {
        fn concat_text(&self) -> String;
    }
    impl Concat for Vec<Piece> {
        fn concat_text(&self) -> String {
            self.iter().map(|p| p.text.as_str()).collect()
        }
    }
}
