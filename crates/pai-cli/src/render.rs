//! Markdown answers on a terminal, rendered while they stream: each line is styled as soon
//! as it is complete (headings, lists, quotes, emphasis, inline code, links), the whole
//! words of a paragraph, list item or quote as soon as nothing after them can restyle
//! them, and fenced code blocks are syntax-highlighted line by line. Block structure is
//! read a line at a time, which is what lets output appear promptly; inline markup within
//! a line is parsed by pulldown-cmark. Colours are the terminal's own 16, so light and
//! dark themes both work.
//!
//! The text given here must already be neutralised (`output::neutralise`): the renderer
//! adds its own escape sequences and must never pass the model's through.

use std::fmt::Write as _;
use std::sync::OnceLock;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use syntect::easy::HighlightLines;
use syntect::highlighting::{Color, FontStyle, ScopeSelectors, StyleModifier, Theme, ThemeItem};
use syntect::parsing::SyntaxSet;

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";

/// Whether answers printed to stdout are rendered: only on a terminal, and not with
/// `--raw`, `NO_COLOR` (set and not empty, per no-color.org) or `TERM=dumb`.
pub fn wanted(raw: bool, stdout_is_terminal: bool) -> bool {
    stdout_is_terminal && !raw && colour_allowed()
}

/// `NO_COLOR` and `TERM=dumb` ask for no escape sequences at all.
pub fn colour_allowed() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb
}

/// A streaming Markdown renderer: text in as it arrives, styled complete lines out.
pub struct Renderer {
    /// The line being received, not yet complete (past what `continued` emitted).
    line: String,
    /// The current line's start (its block marker and some whole words) was already
    /// shown; the rest of it is inline text.
    continued: bool,
    /// The open code fence, if inside one.
    fence: Option<Fence>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("line", &self.line)
            .field("in_fence", &self.fence.is_some())
            .finish()
    }
}

/// An open fenced code block.
struct Fence {
    /// The character (` or ~) and how many opened it: the close needs at least as many.
    marker: char,
    len: usize,
    /// Highlighting state across the block's lines; none for an unknown language.
    highlighter: Option<HighlightLines<'static>>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Self {
        Self {
            line: String::new(),
            continued: false,
            fence: None,
        }
    }

    /// Takes `text` and returns what can be shown now: every line it completed, styled,
    /// and of a paragraph, list item or quote still arriving, the whole words that are
    /// safe to style already.
    pub fn push(&mut self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('\n') {
            self.line.push_str(&rest[..i]);
            let line = std::mem::take(&mut self.line);
            self.render_rest(&line, &mut out);
            out.push('\n');
            rest = &rest[i + 1..];
        }
        self.line.push_str(rest);
        self.words(&mut out);
        out
    }

    /// The unfinished last line, styled (the answer ended, or something else must be
    /// printed now); the renderer is ready for a new answer after it.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() || self.continued {
            self.render_rest(&line, &mut out);
        }
        self.fence = None;
        out
    }

    /// What remains of the current line, which has ended.
    fn render_rest(&mut self, line: &str, out: &mut String) {
        if std::mem::take(&mut self.continued) {
            let line = line.strip_suffix('\r').unwrap_or(line);
            inline(line, "", out);
        } else {
            self.render_line(line, out);
        }
    }

    /// Shows the whole words of the line so far when nothing at the cut can change how
    /// they look: a long paragraph appears as it is written, not when it ends. Headings,
    /// tables, fences and code lines wait for their line to end.
    fn words(&mut self, out: &mut String) {
        if self.fence.is_some() {
            return;
        }
        let Some(space) = self.line.rfind([' ', '\t']) else {
            return;
        };
        let head = self.line[..space].trim_end_matches([' ', '\t']);
        if head.trim().is_empty() || !(self.continued || streamable_start(head)) {
            return;
        }
        let text = if self.continued {
            head
        } else {
            inline_part(head)
        };
        // A task box (`- [x]`) is settled by the space after it.
        if !balanced(text) || matches!(text, "[ ]" | "[x]" | "[X]") {
            return;
        }
        let gap = &self.line[head.len()..=space];
        if self.continued {
            inline(head, "", out);
        } else {
            block_line(head, out);
        }
        out.push_str(gap);
        self.line.drain(..=space);
        self.continued = true;
    }

    fn render_line(&mut self, line: &str, out: &mut String) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(fence) = &mut self.fence {
            if closes(line, fence.marker, fence.len) {
                self.fence = None;
                let _ = write!(out, "{DIM}{line}{RESET}");
            } else {
                code_line(fence.highlighter.as_mut(), line, out);
            }
            return;
        }
        if let Some((marker, len, lang)) = opens(line) {
            self.fence = Some(Fence {
                marker,
                len,
                highlighter: highlighter(lang),
            });
            let _ = write!(out, "{DIM}{line}{RESET}");
            return;
        }
        block_line(line, out);
    }
}

/// ```` ```rust ```` (or `~~~`, indented at most 3): the fence's character, length and
/// the language named after it.
fn opens(line: &str) -> Option<(char, usize, &str)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = trimmed.chars().take_while(|c| *c == marker).count();
    if len < 3 {
        return None;
    }
    let info = trimmed[len..].trim();
    // A backtick fence's info string may not hold a backtick (that is inline code).
    if marker == '`' && info.contains('`') {
        return None;
    }
    Some((marker, len, info.split_whitespace().next().unwrap_or("")))
}

fn closes(line: &str, marker: char, len: usize) -> bool {
    let trimmed = line.trim_start_matches(' ');
    line.len() - trimmed.len() <= 3
        && trimmed.chars().take_while(|c| *c == marker).count() >= len
        && trimmed.trim_end().chars().all(|c| c == marker)
}

/// One line outside a code block: its block marker (heading, list item, quote, rule)
/// styled, then its inline markup.
fn block_line(line: &str, out: &mut String) {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    if trimmed.is_empty() {
        out.push_str(line);
        return;
    }
    // A thematic break: three or more of -, * or _ alone (spaces allowed).
    let rule: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    if rule.len() >= 3
        && let Some(first) = rule.chars().next()
        && matches!(first, '-' | '*' | '_')
        && rule.chars().all(|c| c == first)
    {
        let _ = write!(out, "{indent}{DIM}{}{RESET}", "─".repeat(40));
        return;
    }
    let hashes = trimmed.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&hashes) && (trimmed.len() == hashes || trimmed[hashes..].starts_with(' '))
    {
        let text = trimmed[hashes..].trim().trim_end_matches('#').trim_end();
        // Level 1 underlined too; every heading bold and coloured.
        let base = if hashes == 1 {
            "\x1b[1;4;35m"
        } else {
            "\x1b[1;35m"
        };
        out.push_str(indent);
        inline(text, base, out);
        return;
    }
    if let Some(rest) = trimmed.strip_prefix('>') {
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let _ = write!(out, "{indent}{DIM}│{RESET} ");
        // A quote may hold any other line: a list item, a heading, another quote.
        let mut inner = String::new();
        block_line(rest, &mut inner);
        out.push_str(&inner);
        return;
    }
    if let Some(rest) = ["- ", "* ", "+ "]
        .iter()
        .find_map(|m| trimmed.strip_prefix(m))
    {
        let (mark, rest) = match task(rest) {
            Some((done, rest)) => (if done { "☑" } else { "☐" }, rest),
            None => ("•", rest),
        };
        let _ = write!(out, "{indent}\x1b[33m{mark}{RESET} ");
        inline(rest, "", out);
        return;
    }
    let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
    if (1..=9).contains(&digits)
        && let Some(rest) = trimmed[digits..]
            .strip_prefix(". ")
            .or_else(|| trimmed[digits..].strip_prefix(") "))
    {
        let _ = write!(out, "{indent}\x1b[33m{}{RESET} ", &trimmed[..digits + 1]);
        inline(rest, "", out);
        return;
    }
    if trimmed.starts_with('|') {
        // A table row: its pipes are the structure, shown as they are.
        out.push_str(line);
        return;
    }
    out.push_str(indent);
    inline(trimmed, "", out);
}

/// Whether a line starting with `head` is a paragraph, a list item or a quote of those,
/// whose kind `head` already settles: a heading, table, fence, HTML or a rule waits.
fn streamable_start(head: &str) -> bool {
    let trimmed = head.trim_start();
    if let Some(rest) = trimmed.strip_prefix('>') {
        return streamable_start(rest);
    }
    let Some(first) = trimmed.chars().next() else {
        return false;
    };
    match first {
        '#' | '|' | '`' | '~' | '<' | '=' => false,
        '-' | '*' | '_' | '+' => {
            // A list item with words, not a rule (`- - -`) or emphasis at the start.
            ["- ", "* ", "+ "].iter().any(|m| trimmed.starts_with(m))
                && trimmed[2..]
                    .chars()
                    .any(|c| !matches!(c, '-' | '*' | '_' | ' ' | '\t'))
        }
        c if c.is_ascii_digit() => {
            // `12. x` is an item, `2024` a word: digits, or digits and their `.`, could
            // still be either.
            let after = trimmed.trim_start_matches(|c: char| c.is_ascii_digit());
            !after.is_empty() && !matches!(after, "." | ")")
        }
        _ => true,
    }
}

/// The inline text of a streamable line's start: past its quote and list markers.
fn inline_part(head: &str) -> &str {
    let mut text = head.trim_start();
    loop {
        if let Some(rest) = text.strip_prefix('>') {
            text = rest.trim_start();
        } else if let Some(rest) = ["- ", "* ", "+ "].iter().find_map(|m| text.strip_prefix(m)) {
            text = rest.trim_start();
        } else {
            return text;
        }
    }
}

/// No inline construct can be open at the end of `text`: code spans, emphasis, links
/// and autolinks all closed (underscores counted even inside words: a `snake_case`
/// line just waits for its end).
fn balanced(text: &str) -> bool {
    let count = |c: char| text.chars().filter(|x| *x == c).count();
    count('`') % 2 == 0
        && count('*') % 2 == 0
        && count('_') % 2 == 0
        && count('~') % 2 == 0
        && count('[') == count(']')
        && count('(') == count(')')
        && count('<') == count('>')
        && !text.ends_with('\\')
}

/// `[ ] rest` or `[x] rest` of a task list item.
fn task(text: &str) -> Option<(bool, &str)> {
    let rest = text
        .strip_prefix("[ ] ")
        .map(|r| (false, r))
        .or_else(|| text.strip_prefix("[x] ").map(|r| (true, r)))
        .or_else(|| text.strip_prefix("[X] ").map(|r| (true, r)))?;
    Some(rest)
}

/// Inline styles active at a point of a line.
#[derive(Default, Clone, Copy)]
struct Inline {
    strong: u8,
    emphasis: u8,
    strike: u8,
    link: u8,
    code: bool,
}

impl Inline {
    /// The SGR sequences for these styles on top of `base`.
    fn codes(self, base: &str) -> String {
        let mut codes = base.to_string();
        for (on, code) in [
            (self.strong > 0, "\x1b[1m"),
            (self.emphasis > 0, "\x1b[3m"),
            (self.strike > 0, "\x1b[9m"),
            (self.link > 0, "\x1b[4;34m"),
            (self.code, "\x1b[36m"),
        ] {
            if on {
                codes.push_str(code);
            }
        }
        codes
    }
}

/// Writes styled text, switching styles only where they change.
#[derive(Default)]
struct Styled {
    current: String,
}

impl Styled {
    fn text(&mut self, codes: &str, text: &str, out: &mut String) {
        if text.is_empty() {
            return;
        }
        if codes != self.current {
            if !self.current.is_empty() {
                out.push_str(RESET);
            }
            out.push_str(codes);
            self.current = codes.to_string();
        }
        out.push_str(text);
    }

    fn end(&mut self, out: &mut String) {
        if !std::mem::take(&mut self.current).is_empty() {
            out.push_str(RESET);
        }
    }
}

/// `text`'s inline markup styled on top of `base` (an SGR sequence, or empty). A line
/// that pulldown-cmark reads as a block of its own (HTML, a list marker we do not
/// know) is shown as it is rather than lose characters.
fn inline(text: &str, base: &str, out: &mut String) {
    let events: Vec<Event<'_>> = Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH).collect();
    let plain = !matches!(events.first(), Some(Event::Start(Tag::Paragraph)))
        || events.iter().any(|e| {
            matches!(
                e,
                Event::Start(
                    Tag::List(_)
                        | Tag::Item
                        | Tag::Heading { .. }
                        | Tag::CodeBlock(_)
                        | Tag::BlockQuote(_)
                        | Tag::HtmlBlock
                        | Tag::Table(_)
                ) | Event::Html(_)
            )
        });
    let mut styled = Styled::default();
    if plain {
        styled.text(base, text, out);
        styled.end(out);
        return;
    }
    let mut state = Inline::default();
    let mut links: Vec<String> = Vec::new();
    for event in events {
        match event {
            Event::Text(t)
            | Event::InlineHtml(t)
            | Event::InlineMath(t)
            | Event::DisplayMath(t) => styled.text(&state.codes(base), &t, out),
            Event::Code(t) => {
                let code = Inline {
                    code: true,
                    ..state
                };
                styled.text(&code.codes(base), &t, out);
            }
            Event::SoftBreak | Event::HardBreak => styled.text(&state.codes(base), " ", out),
            Event::Start(Tag::Strong) => state.strong += 1,
            Event::End(TagEnd::Strong) => state.strong = state.strong.saturating_sub(1),
            Event::Start(Tag::Emphasis) => state.emphasis += 1,
            Event::End(TagEnd::Emphasis) => state.emphasis = state.emphasis.saturating_sub(1),
            Event::Start(Tag::Strikethrough) => state.strike += 1,
            Event::End(TagEnd::Strikethrough) => state.strike = state.strike.saturating_sub(1),
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                state.link += 1;
                links.push(dest_url.into_string());
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                state.link = state.link.saturating_sub(1);
                // The address is shown, so a link's text cannot hide where it points.
                if let Some(url) = links.pop() {
                    styled.text(DIM, &format!(" ({url})"), out);
                }
            }
            _ => {}
        }
    }
    styled.end(out);
}

/// The syntax set, loaded the first time a code block names a language: most answers
/// have none, and `pai --version` should not pay for it.
fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// A theme in the terminal's own palette: colours with alpha 0 carry an ANSI colour
/// number in `r`, alpha 1 means the terminal's default colour.
fn theme() -> &'static Theme {
    static THEME: OnceLock<Theme> = OnceLock::new();
    THEME.get_or_init(|| {
        let ansi = |n: u8| Color {
            r: n,
            g: 0,
            b: 0,
            a: 0,
        };
        let items = [
            ("comment, punctuation.definition.comment", ansi(8), None),
            ("string, constant.character, punctuation.definition.string", ansi(2), None),
            ("constant.numeric, constant.language, constant.other", ansi(5), None),
            ("keyword - keyword.operator, storage, keyword.operator.word", ansi(4), None),
            ("entity.name.function, support.function, meta.function-call", ansi(3), None),
            (
                "entity.name.type, entity.name.class, entity.name.struct, entity.name.enum, support.type, support.class, storage.type.primitive",
                ansi(6),
                None,
            ),
            ("entity.name.tag, meta.attribute-with-value, entity.other.attribute-name", ansi(4), None),
            ("variable.language, variable.parameter", ansi(1), None),
            ("markup.heading", ansi(5), Some(FontStyle::BOLD)),
            ("markup.bold", ansi(7), Some(FontStyle::BOLD)),
            ("markup.italic", ansi(7), Some(FontStyle::ITALIC)),
            ("markup.inserted", ansi(2), None),
            ("markup.deleted", ansi(1), None),
            ("invalid", ansi(1), None),
        ];
        let mut theme = Theme::default();
        theme.settings.foreground = Some(Color {
            r: 0,
            g: 0,
            b: 0,
            a: 1,
        });
        for (scopes, colour, font) in items {
            let Ok(scope) = scopes.parse::<ScopeSelectors>() else {
                continue;
            };
            theme.scopes.push(ThemeItem {
                scope,
                style: StyleModifier {
                    foreground: Some(colour),
                    background: None,
                    font_style: font,
                },
            });
        }
        theme
    })
}

/// The highlighter for a fence's language; none when it names none or one we lack.
fn highlighter(lang: &str) -> Option<HighlightLines<'static>> {
    if lang.is_empty() {
        return None;
    }
    let set = syntaxes();
    let syntax = set.find_syntax_by_token(lang)?;
    Some(HighlightLines::new(syntax, theme()))
}

/// One line of a code block, highlighted when its language is known.
fn code_line(highlighter: Option<&mut HighlightLines<'static>>, line: &str, out: &mut String) {
    let mut styled = Styled::default();
    let Some(h) = highlighter else {
        styled.text("\x1b[36m", line, out);
        styled.end(out);
        return;
    };
    // The syntaxes are the `newlines` kind: each line is parsed with its line break.
    let with_newline = format!("{line}\n");
    let Ok(pieces) = h.highlight_line(&with_newline, syntaxes()) else {
        out.push_str(line);
        return;
    };
    for (style, piece) in pieces {
        let piece = piece.strip_suffix('\n').unwrap_or(piece);
        let mut codes = String::new();
        let fg = style.foreground;
        if fg.a == 0 {
            // 0–7 normal, 8–15 bright.
            let code = if fg.r < 8 { 30 + fg.r } else { 90 + fg.r - 8 };
            let _ = write!(codes, "\x1b[{code}m");
        }
        if style.font_style.contains(FontStyle::BOLD) {
            codes.push_str("\x1b[1m");
        }
        if style.font_style.contains(FontStyle::ITALIC) {
            codes.push_str("\x1b[3m");
        }
        styled.text(&codes, piece, out);
    }
    styled.end(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "# Title\n\
        Some **bold**, *italic*, ~~gone~~ and `code` with a [link](https://example.org).\n\
        \n\
        ## Steps\n\
        - first item\n\
        - [x] done item\n\
        1. numbered **one**\n\
        > a quote with `code`\n\
        ---\n\
        ```rust\n\
        fn main() {\n    let x = \"hi\"; // greet\n    println!(\"{x}\");\n}\n\
        ```\n\
        ```\n\
        plain block\n\
        ```\n\
        | a | b |\n\
        snake_case_name and 2 * 3 * 4 stay as they are\n\
        trailing line without newline";

    /// Escape sequences shown as `<…>` so the snapshot is readable.
    fn visible(text: &str) -> String {
        text.replace('\x1b', "<ESC>")
    }

    /// `text` without the renderer's SGR sequences.
    fn strip_sgr(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('\x1b') {
            out.push_str(&rest[..i]);
            let end = rest[i..].find('m').unwrap();
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn markdown_renders_with_styles_and_highlighted_code() {
        let mut r = Renderer::new();
        let mut out = r.push(ANSWER);
        out.push_str(&r.finish());
        insta::assert_snapshot!(visible(&out));
    }

    /// Lines whose kind or styles are settled late.
    const TRICKY: &str = "- [ ] todo item\n\
        10) tenth **strong words here** end\n\
        > - quoted item with `a b c` code\n\
        > # quoted heading\n\
        text with _under score_ and *em words* and [a link](https://x.org/a b) end\n\
        - - -\n\
        12345\n\
        3.5 is a number\n\
        ***\n\
        ~~~\n\
        tilde fence\n\
        ~~~\n\
        words then a trailing backslash \\\n\
        last words";

    #[test]
    fn chunking_does_not_change_what_is_shown() {
        for input in [ANSWER, TRICKY] {
            chunked_as_whole(input);
        }
    }

    fn chunked_as_whole(input: &str) {
        let mut whole = Renderer::new();
        let mut expected = whole.push(input);
        expected.push_str(&whole.finish());
        // Words shown early may carry their style codes apart; the text and its styles
        // per character are the same.
        let expected = styled_chars(&expected);
        for size in [1, 2, 3, 5, 7, 11, 64] {
            let mut r = Renderer::new();
            let mut got = String::new();
            let chars: Vec<char> = input.chars().collect();
            for chunk in chars.chunks(size) {
                got.push_str(&r.push(&chunk.iter().collect::<String>()));
            }
            got.push_str(&r.finish());
            assert_eq!(styled_chars(&got), expected, "chunks of {size}");
        }
    }

    /// Each character with the SGR sequences in force for it.
    fn styled_chars(text: &str) -> Vec<(char, String)> {
        let mut out = Vec::new();
        let mut style = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('\x1b') {
                let end = after.find('m').unwrap();
                let code = &after[..=end];
                if code == "[0m" {
                    style.clear();
                } else {
                    style.push_str(code);
                }
                rest = &after[end + 1..];
            } else {
                let c = rest.chars().next().unwrap();
                out.push((c, style.clone()));
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }

    #[test]
    fn lines_appear_as_soon_as_they_are_complete() {
        let mut r = Renderer::new();
        assert_eq!(r.push("# Hea"), "");
        assert!(r.push("ding\nnext").contains("Heading"));
        assert!(r.finish().contains("next"));
    }

    #[test]
    fn a_paragraph_shows_its_whole_words_while_it_arrives() {
        let mut r = Renderer::new();
        assert_eq!(strip_sgr(&r.push("Some **bold** and")), "Some bold ");
        // An open code span waits for its end.
        assert_eq!(r.push(" `code wi"), "");
        assert_eq!(strip_sgr(&r.push("th space` ok")), "and code with space ");
        assert_eq!(strip_sgr(&r.push("\n")), "ok\n");
        // A list item's marker is settled by its first word; a heading waits.
        assert_eq!(strip_sgr(&r.push("- item one ")), "• item one ");
        assert_eq!(strip_sgr(&r.push("two\n## Head ")), "two\n");
        assert_eq!(strip_sgr(&r.finish()), "Head");
        // A rule in the making is not taken for a list item.
        let mut r = Renderer::new();
        assert_eq!(r.push("- - "), "");
        assert_eq!(
            strip_sgr(&(r.push("-\n") + &r.finish())),
            "─".repeat(40) + "\n"
        );
    }

    #[test]
    fn neutralised_text_stays_neutralised_and_only_our_escapes_are_added() {
        let evil =
            crate::output::neutralise("**x**\x1b]52;c;ZXZpbA==\x07\n```sh\necho \x1b[2J\n```\n");
        let mut r = Renderer::new();
        let out = r.push(&evil) + &r.finish();
        let text = strip_sgr(&out);
        assert!(text.contains("x\u{241b}]52;c;ZXZpbA==\u{2407}"), "{text:?}");
        assert!(text.contains("echo \u{241b}[2J"), "{text:?}");
        // Every escape in the output is one of ours: SGR styles, nothing else.
        for (i, _) in out.match_indices('\x1b') {
            let rest = &out[i + 1..];
            let end = rest.find('m').unwrap();
            assert!(
                rest.starts_with('[')
                    && rest[1..end].chars().all(|c| c.is_ascii_digit() || c == ';'),
                "{:?}",
                &rest[..end]
            );
        }
    }
}
