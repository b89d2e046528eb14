//! HTML to text for `http_get`, with work bounded by the page itself.
//!
//! html5ever's tree builder scans the stack of open elements for most start tags, so a page
//! of N nested elements costs O(N²) to parse (1.4 MB of nested `<div>`s kept a core busy for
//! minutes), and html2text's layout copies every line once per enclosing indented block or
//! table. The conversion runs on a blocking thread that a timeout cannot stop, so the bound
//! has to come from limits checked first: one linear pass with html5ever's tokenizer alone
//! measures nesting and elements and stops once it has more text than the output can show.
//! A page within the limits is laid out by html2text up to that point; one past them
//! becomes plain text from the same pass.

use std::cell::RefCell;
use std::io::{self, Read};

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use html5ever::{LocalName, local_name};

use super::Cancel;
use crate::tool::ToolError;

/// Deepest nesting laid out; real pages stay far below it (elements that close implicitly,
/// such as `<li>` or `<td>`, are not counted).
const MAX_DEPTH: usize = 100;
/// Deepest nesting of tables laid out: each level lays out everything inside it again.
const MAX_TABLE_DEPTH: usize = 10;
/// Most elements laid out: several times a long encyclopedia article.
const MAX_ELEMENTS: usize = 100_000;
/// The tokenizer is fed this much HTML at a time, so it stops soon after the text budget.
const CHUNK_BYTES: usize = 16 * 1024;

/// A page as text.
#[derive(Debug)]
pub(super) struct Converted {
    pub(super) text: String,
    /// Bytes at the end of the page left unconverted: the text before them already filled
    /// the budget.
    pub(super) skipped: usize,
}

/// `html` as text wrapped at `width` columns, converted only as far as `text_budget` bytes
/// of text. A page past the nesting or element limits comes back as plain text after a
/// note saying so.
pub(super) fn to_text(
    html: &[u8],
    width: usize,
    text_budget: usize,
    cancel: &Cancel,
) -> Result<Converted, ToolError> {
    let html = String::from_utf8_lossy(html);
    let (scan, end) = scan(&html, text_budget, cancel)?;
    let skipped = html.len() - end;
    if let Some(reason) = scan.over_limits() {
        let text = format!(
            "[page too complex to lay out ({reason}); reduced to plain text]\n\n{}",
            scan.text
        );
        return Ok(Converted { text, skipped });
    }
    let text = html2text::config::plain()
        .allow_width_overflow()
        .no_link_wrapping()
        .string_from_read(
            Stoppable {
                rest: &html.as_bytes()[..end],
                cancel,
            },
            width,
        )
        .map_err(|e| ToolError::Failed(format!("cannot turn the page into text: {e}")))?;
    Ok(Converted { text, skipped })
}

/// Hands the page to html2text's parser a piece at a time and ends the parse once the
/// caller stopped waiting; the limits bound the work, this only saves what is left of it.
struct Stoppable<'a> {
    rest: &'a [u8],
    cancel: &'a Cancel,
}

impl Read for Stoppable<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_set() {
            return Err(io::Error::other("the call was stopped"));
        }
        self.rest.read(buf)
    }
}

/// Runs the tokenizer alone over `html` (linear in its length, whatever the nesting) until
/// the page's text passes `text_budget`; returns what it saw and where it stopped.
fn scan(html: &str, text_budget: usize, cancel: &Cancel) -> Result<(Scan, usize), ToolError> {
    let tokenizer = Tokenizer::new(Sink(RefCell::default()), TokenizerOpts::default());
    let input = BufferQueue::default();
    let mut end = 0;
    while end < html.len() && tokenizer.sink.0.borrow().text.len() <= text_budget {
        cancel.check()?;
        let mut next = (end + CHUNK_BYTES).min(html.len());
        while !html.is_char_boundary(next) {
            next += 1;
        }
        input.push_back(StrTendril::from_slice(&html[end..next]));
        // The sink never asks to pause for a script, so a feed takes all it can.
        let _ = tokenizer.feed(&input);
        end = next;
    }
    tokenizer.end();
    Ok((tokenizer.sink.0.take(), end))
}

/// What one tokenizer pass learned about a page.
#[derive(Debug, Default)]
struct Scan {
    /// Open elements, as far as tags alone tell; kept only while within [`MAX_DEPTH`].
    open: Vec<LocalName>,
    /// Deepest nesting seen, counted until it passes [`MAX_DEPTH`].
    depth: usize,
    /// `<table>`s among the open elements, and the most seen at once.
    tables: usize,
    table_depth: usize,
    elements: usize,
    /// Inside `<script>`, `<style>` or `<template>`: their text is not page content.
    hidden: Option<LocalName>,
    /// The page as plain text: text runs with collapsed spaces, a line per block.
    text: String,
    /// A block started or ended since the last text: the next text starts a new line.
    line_break: bool,
    /// Whitespace since the last text: the next text is a new word.
    space: bool,
}

impl Scan {
    fn over_limits(&self) -> Option<String> {
        if self.depth > MAX_DEPTH {
            Some(format!("elements nested more than {MAX_DEPTH} deep"))
        } else if self.table_depth > MAX_TABLE_DEPTH {
            Some(format!("tables nested more than {MAX_TABLE_DEPTH} deep"))
        } else if self.elements > MAX_ELEMENTS {
            Some(format!("more than {MAX_ELEMENTS} elements"))
        } else {
            None
        }
    }

    fn start(&mut self, name: LocalName, self_closing: bool) {
        self.elements += 1;
        if is_block(&name) {
            self.line_break = true;
        }
        if self.hidden.is_none()
            && matches!(
                name,
                local_name!("script") | local_name!("style") | local_name!("template")
            )
        {
            self.hidden = Some(name.clone());
        }
        // Void elements and those whose end tag may be left out (the next `<li>` ends the
        // last one) do not nest; counting them would call an ordinary list deep. `<div/>`
        // does nest: only inside SVG or MathML does a `/>` close an element.
        let closed = self_closing
            && self
                .open
                .iter()
                .any(|open| matches!(*open, local_name!("svg") | local_name!("math")));
        if closed || is_void(&name) || ends_implicitly(&name) || self.depth > MAX_DEPTH {
            return;
        }
        if name == local_name!("table") {
            self.tables += 1;
            self.table_depth = self.table_depth.max(self.tables);
        }
        self.open.push(name);
        self.depth = self.depth.max(self.open.len());
        if self.depth > MAX_DEPTH {
            // The verdict is in; stop tracking so end tags never search a huge stack.
            self.open = Vec::new();
        }
    }

    fn end(&mut self, name: &LocalName) {
        if is_block(name) {
            self.line_break = true;
        }
        if self.hidden.as_ref() == Some(name) {
            self.hidden = None;
        }
        // An end tag closes the innermost open element of its name and all inside it,
        // as the tree builder does; a stray one closes nothing.
        if let Some(at) = self.open.iter().rposition(|open| open == name) {
            let tables = self.open[at..]
                .iter()
                .filter(|open| **open == local_name!("table"))
                .count();
            self.tables -= tables;
            self.open.truncate(at);
        }
    }

    fn characters(&mut self, text: &str) {
        if self.hidden.is_some() {
            return;
        }
        if text.starts_with(char::is_whitespace) {
            self.space = true;
        }
        for (i, word) in text.split_whitespace().enumerate() {
            if !self.text.is_empty() {
                if self.line_break {
                    self.text.push('\n');
                } else if self.space || i > 0 {
                    self.text.push(' ');
                }
            }
            self.text.push_str(word);
            self.line_break = false;
            self.space = false;
        }
        if text.ends_with(char::is_whitespace) {
            self.space = true;
        }
    }
}

struct Sink(RefCell<Scan>);

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut scan = self.0.borrow_mut();
        match token {
            Token::TagToken(tag) if tag.kind == TagKind::StartTag => {
                // The tokenizer needs the tree builder's hint for elements whose content
                // is not markup, or a `<` inside a script would open a tag.
                let next = match tag.name {
                    local_name!("script") => TokenSinkResult::RawData(RawKind::ScriptData),
                    local_name!("style")
                    | local_name!("xmp")
                    | local_name!("iframe")
                    | local_name!("noembed")
                    | local_name!("noframes") => TokenSinkResult::RawData(RawKind::Rawtext),
                    local_name!("textarea") | local_name!("title") => {
                        TokenSinkResult::RawData(RawKind::Rcdata)
                    }
                    local_name!("plaintext") => TokenSinkResult::Plaintext,
                    _ => TokenSinkResult::Continue,
                };
                scan.start(tag.name, tag.self_closing);
                return next;
            }
            Token::TagToken(tag) => scan.end(&tag.name),
            Token::CharacterTokens(text) => scan.characters(&text),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

fn is_void(name: &LocalName) -> bool {
    matches!(
        *name,
        local_name!("area")
            | local_name!("base")
            | local_name!("br")
            | local_name!("col")
            | local_name!("embed")
            | local_name!("hr")
            | local_name!("img")
            | local_name!("input")
            | local_name!("keygen")
            | local_name!("link")
            | local_name!("meta")
            | local_name!("param")
            | local_name!("source")
            | local_name!("track")
            | local_name!("wbr")
    )
}

/// Elements the next sibling of their kind closes without an end tag.
fn ends_implicitly(name: &LocalName) -> bool {
    matches!(
        *name,
        local_name!("html")
            | local_name!("head")
            | local_name!("body")
            | local_name!("p")
            | local_name!("li")
            | local_name!("dt")
            | local_name!("dd")
            | local_name!("option")
            | local_name!("optgroup")
            | local_name!("rb")
            | local_name!("rt")
            | local_name!("rtc")
            | local_name!("rp")
            | local_name!("colgroup")
            | local_name!("caption")
            | local_name!("thead")
            | local_name!("tbody")
            | local_name!("tfoot")
            | local_name!("tr")
            | local_name!("td")
            | local_name!("th")
    )
}

/// Elements that start a new line in the plain-text reduction.
fn is_block(name: &LocalName) -> bool {
    matches!(
        *name,
        local_name!("address")
            | local_name!("article")
            | local_name!("aside")
            | local_name!("blockquote")
            | local_name!("br")
            | local_name!("dd")
            | local_name!("details")
            | local_name!("div")
            | local_name!("dl")
            | local_name!("dt")
            | local_name!("figcaption")
            | local_name!("figure")
            | local_name!("footer")
            | local_name!("form")
            | local_name!("h1")
            | local_name!("h2")
            | local_name!("h3")
            | local_name!("h4")
            | local_name!("h5")
            | local_name!("h6")
            | local_name!("header")
            | local_name!("hr")
            | local_name!("li")
            | local_name!("main")
            | local_name!("nav")
            | local_name!("ol")
            | local_name!("p")
            | local_name!("pre")
            | local_name!("section")
            | local_name!("summary")
            | local_name!("table")
            | local_name!("title")
            | local_name!("tr")
            | local_name!("ul")
    )
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::{Cancel, MAX_DEPTH, MAX_TABLE_DEPTH, scan, to_text};

    fn limits(html: &str) -> Option<String> {
        scan(html, usize::MAX, &Cancel::default())
            .unwrap()
            .0
            .over_limits()
    }

    #[test]
    fn ordinary_pages_are_within_the_limits() {
        let list = format!("<ul>{}</ul>", "<li>item".repeat(5000));
        let paragraphs = "<p>text".repeat(5000);
        let rows = format!("<table>{}</table>", "<tr><td>a<td>b".repeat(5000));
        let icons = format!("<svg>{}</svg>", "<path d='M0'/>".repeat(5000));
        let nested = format!(
            "{}x{}",
            "<div>".repeat(MAX_DEPTH),
            "</div>".repeat(MAX_DEPTH)
        );
        let unclosed = "<div>a</div>".repeat(5000) + "<br><img src=x><hr>";
        for page in [list, paragraphs, rows, icons, nested, unclosed] {
            assert_eq!(limits(&page), None, "{}", &page[..100.min(page.len())]);
        }
    }

    #[test]
    fn deep_or_huge_pages_are_over_the_limits() {
        let deep = "<div>".repeat(MAX_DEPTH + 1);
        // HTML ignores `/>` outside SVG and MathML: these nest.
        let self_closed = "<span/>".repeat(MAX_DEPTH + 1);
        let tables = "<table><tr><td>".repeat(MAX_TABLE_DEPTH + 1);
        let many = "<b>x</b>".repeat(100_001);
        assert_eq!(
            limits(&deep).as_deref(),
            Some("elements nested more than 100 deep")
        );
        assert_eq!(
            limits(&self_closed).as_deref(),
            Some("elements nested more than 100 deep")
        );
        assert_eq!(
            limits(&tables).as_deref(),
            Some("tables nested more than 10 deep")
        );
        assert_eq!(limits(&many).as_deref(), Some("more than 100000 elements"));
    }

    #[test]
    fn a_page_over_the_limits_becomes_plain_text_without_scripts_or_styles() {
        let page = format!(
            "<html><head><title>Deep</title><style>p {{ color: red }}</style>\
             <script>if (a<b) {{ x = \"<div>\" }}</script></head><body>\
             <h1>Top   heading</h1>{}<p>first <b>bold</b> words</p>\n<p>second&amp;last</p>",
            "<div>".repeat(1000)
        );
        let page = to_text(page.as_bytes(), 80, 1 << 20, &Cancel::default()).unwrap();
        assert_eq!(
            page.text,
            "[page too complex to lay out (elements nested more than 100 deep); reduced to \
             plain text]\n\nDeep\nTop heading\nfirst bold words\nsecond&last"
        );
        assert_eq!(page.skipped, 0);
    }

    #[test]
    fn conversion_stops_once_the_text_fills_the_budget() {
        let page = "<p>twelve bytes</p>".repeat(10_000);
        let converted = to_text(page.as_bytes(), 80, 1000, &Cancel::default()).unwrap();
        // It stops within a chunk of the budget, and says how much it left out.
        assert!(converted.text.len() > 1000, "{}", converted.text.len());
        assert!(converted.text.len() < 1000 + super::CHUNK_BYTES);
        assert!(converted.skipped > page.len() - 2 * super::CHUNK_BYTES);
        assert!(converted.text.starts_with("twelve bytes\n\ntwelve bytes\n"));

        let all = to_text(page.as_bytes(), 80, usize::MAX, &Cancel::default()).unwrap();
        assert_eq!(all.skipped, 0);
    }

    #[test]
    fn a_stopped_call_stops_converting() {
        let cancel = Cancel::default();
        cancel.0.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(to_text(b"<p>hi</p>", 80, 1000, &cancel).is_err());
    }
}
