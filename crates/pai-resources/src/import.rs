//! Import from the filesystem: paths, directories (walked like ripgrep does, `.gitignore`
//! honoured, hidden files skipped) and globs, one file at a time — each read, checked,
//! hashed, converted to text and stored on its own (a transaction, or part of the store's
//! batch), so memory holds one document and a crash never leaves half of one. Files that cannot be text are skipped
//! with a reason; nothing aborts the import half-way.

use std::path::{Path, PathBuf};

use pai_types::DataClass;
use sha2::{Digest, Sha256};

use crate::model::{Added, NewDocument, ResourceId};
use crate::store::ResourceStore;

/// Files larger than this are skipped unless the caller sets another limit.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Turns HTML into readable text (the CLI hands in the one `http_get` uses).
pub type HtmlToText = dyn Fn(&[u8]) -> Result<String, String> + Send + Sync;

/// How files are imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Class of every document imported.
    pub class: DataClass,
    /// Tags of every document imported.
    pub tags: Vec<String>,
    /// Title for the document (only sensible for one file); else the first Markdown
    /// heading or the file name.
    pub title: Option<String>,
    /// Larger files are skipped.
    pub max_file_bytes: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            class: DataClass::Internal,
            tags: Vec::new(),
            title: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored as a new document.
    Added(ResourceId),
    /// Its text changed since the last import: replaced.
    Updated(ResourceId),
    /// Same SHA-256 as stored: nothing done.
    Unchanged(ResourceId),
    /// Not text PAI can index (binary, not UTF-8, too large, …).
    Skipped(String),
    /// It could not be read or stored.
    Failed(String),
}

/// One file and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The path as found.
    pub path: PathBuf,
    /// What happened.
    pub outcome: Outcome,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// New documents.
    pub added: u64,
    /// Replaced documents.
    pub updated: u64,
    /// Unchanged files.
    pub unchanged: u64,
    /// Skipped files.
    pub skipped: u64,
    /// Failed files.
    pub failed: u64,
    /// Bytes read from files that were stored.
    pub bytes: u64,
}

impl Report {
    fn count(&mut self, item: &Item) {
        match item.outcome {
            Outcome::Added(_) => self.added += 1,
            Outcome::Updated(_) => self.updated += 1,
            Outcome::Unchanged(_) => self.unchanged += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }
}

/// Imports files into a store.
pub struct Importer<'a> {
    store: &'a dyn ResourceStore,
    opts: ImportOptions,
    html: Option<&'a HtmlToText>,
}

impl std::fmt::Debug for Importer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl<'a> Importer<'a> {
    /// An importer into `store`. Without an HTML converter, HTML files are skipped.
    pub fn new(store: &'a dyn ResourceStore, opts: ImportOptions) -> Self {
        Self {
            store,
            opts,
            html: None,
        }
    }

    /// HTML files become text through `convert`.
    pub fn with_html(mut self, convert: &'a HtmlToText) -> Self {
        self.html = Some(convert);
        self
    }

    /// Imports every file `args` name (files, directories, globs), calling `on_item` after
    /// each; returns the counts.
    pub fn add(&self, args: &[String], on_item: &mut dyn FnMut(&Item)) -> Report {
        let mut report = Report::default();
        let mut emit = |item: Item, report: &mut Report| {
            report.count(&item);
            on_item(&item);
        };
        for arg in args {
            let path = Path::new(arg);
            if path.is_file() {
                let item = self.file(path, &mut report);
                emit(item, &mut report);
            } else if path.is_dir() {
                self.walk(path, None, &mut |item, r| emit(item, r), &mut report);
            } else if arg.contains(['*', '?', '[', '{']) {
                match globset::GlobBuilder::new(arg)
                    .literal_separator(true)
                    .build()
                {
                    Ok(glob) => {
                        let matcher = glob.compile_matcher();
                        let base = glob_base(arg);
                        let before = report.clone();
                        self.walk(
                            &base,
                            Some(&matcher),
                            &mut |item, r| emit(item, r),
                            &mut report,
                        );
                        if report == before {
                            emit(
                                Item {
                                    path: PathBuf::from(arg),
                                    outcome: Outcome::Failed("no file matches this pattern".into()),
                                },
                                &mut report,
                            );
                        }
                    }
                    Err(e) => emit(
                        Item {
                            path: PathBuf::from(arg),
                            outcome: Outcome::Failed(format!("not a valid pattern: {e}")),
                        },
                        &mut report,
                    ),
                }
            } else {
                emit(
                    Item {
                        path: PathBuf::from(arg),
                        outcome: Outcome::Failed("does not exist".into()),
                    },
                    &mut report,
                );
            }
        }
        report
    }

    fn walk(
        &self,
        base: &Path,
        only: Option<&globset::GlobMatcher>,
        emit: &mut dyn FnMut(Item, &mut Report),
        report: &mut Report,
    ) {
        for entry in walker(base) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = match &e {
                        ignore::Error::WithPath { path, .. } => path.clone(),
                        _ => base.to_path_buf(),
                    };
                    emit(
                        Item {
                            path,
                            outcome: Outcome::Failed(e.to_string()),
                        },
                        report,
                    );
                    continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            if only.is_some_and(|m| !m.is_match(entry.path())) {
                continue;
            }
            let item = self.file(entry.path(), report);
            emit(item, report);
        }
    }

    /// Imports the files under `dir` — walked as [`Importer::add`] walks a directory,
    /// `.gitignore` honoured — whose source (`file:///…`) `wanted` accepts: `reindex`
    /// passes the ones not stored yet. Calls `on_item` after each file imported.
    pub fn add_new(
        &self,
        dir: &Path,
        wanted: &dyn Fn(&str) -> bool,
        on_item: &mut dyn FnMut(&Item),
    ) -> Report {
        let mut report = Report::default();
        for entry in walker(dir) {
            let item = match entry {
                Ok(e) if !e.file_type().is_some_and(|t| t.is_file()) => continue,
                Ok(e) => match source_of(e.path()) {
                    Ok(source) if !wanted(&source) => continue,
                    _ => self.file(e.path(), &mut report),
                },
                Err(e) => Item {
                    path: match &e {
                        ignore::Error::WithPath { path, .. } => path.clone(),
                        _ => dir.to_path_buf(),
                    },
                    outcome: Outcome::Failed(e.to_string()),
                },
            };
            report.count(&item);
            on_item(&item);
        }
        report
    }

    /// Imports one file.
    pub fn file(&self, path: &Path, report: &mut Report) -> Item {
        let outcome = self.file_outcome(path, report);
        Item {
            path: path.to_path_buf(),
            outcome,
        }
    }

    fn file_outcome(&self, path: &Path, report: &mut Report) -> Outcome {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(format!("cannot read it: {e}")),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(skip) = self.precheck(&name, meta.len()) {
            return skip;
        }
        let source = match source_of(path) {
            Ok(s) => s,
            Err(outcome) => return outcome,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(format!("cannot read it: {e}")),
        };
        let name = if name.is_empty() {
            source.trim_start_matches("file://").to_string()
        } else {
            name
        };
        self.bytes_outcome(&source, &name, None, bytes, None, report)
    }

    /// Whether an object named `name` (a file or key name, for its extension) of `size`
    /// bytes is skipped before it is read: too large, or binary by its extension. Remote
    /// sources ask before downloading.
    pub fn precheck(&self, name: &str, size: u64) -> Option<Outcome> {
        if size > self.opts.max_file_bytes {
            return Some(Outcome::Skipped(format!(
                "larger than {}",
                human_bytes(self.opts.max_file_bytes)
            )));
        }
        let ext = extension(name);
        if ext != "pdf" && BINARY_EXTENSIONS.contains(&ext.as_str()) {
            return Some(Outcome::Skipped(format!("binary file (.{ext})")));
        }
        None
    }

    /// Imports bytes fetched from `source` (an `s3://` object, a URL) with the same checks
    /// and text extraction as a file. `name` gives the extension and the fallback title;
    /// `media_type` (from the server) wins over the extension when given; `etag` is kept
    /// for refreshes.
    pub fn remote(
        &self,
        source: &str,
        name: &str,
        media_type: Option<&str>,
        bytes: Vec<u8>,
        etag: Option<String>,
        report: &mut Report,
    ) -> Item {
        let outcome = match self.precheck(name, bytes.len() as u64) {
            Some(skip) if media_type.is_none() => skip,
            _ if bytes.len() as u64 > self.opts.max_file_bytes => Outcome::Skipped(format!(
                "larger than {}",
                human_bytes(self.opts.max_file_bytes)
            )),
            _ => self.bytes_outcome(source, name, media_type, bytes, etag, report),
        };
        Item {
            path: PathBuf::from(source),
            outcome,
        }
    }

    fn bytes_outcome(
        &self,
        source: &str,
        name: &str,
        media_type: Option<&str>,
        bytes: Vec<u8>,
        etag: Option<String>,
        report: &mut Report,
    ) -> Outcome {
        let size = bytes.len() as u64;
        let media_type = media_type.unwrap_or_else(|| media_type_of(&extension(name)));
        let is_pdf = media_type == "application/pdf";
        let sha256 = hex::encode(Sha256::digest(&bytes));
        match self.store.find_source(source) {
            // With an ETag the store is asked anyway: it keeps the new one.
            Ok(Some((id, known))) if known == sha256 && etag.is_none() => {
                return Outcome::Unchanged(id);
            }
            Ok(_) => {}
            Err(e) => return Outcome::Failed(e.to_string()),
        }
        let head = &bytes[..bytes.len().min(8192)];
        if !is_pdf && head.contains(&0) {
            return Outcome::Skipped("binary file".into());
        }
        let mut page_title = None;
        let text = if is_pdf {
            match pdf_text(&bytes) {
                Ok(t) => t,
                Err(why) => return Outcome::Skipped(why),
            }
        } else if media_type == "text/html" {
            page_title = html_title(&bytes);
            let Some(convert) = self.html else {
                return Outcome::Skipped("HTML, and no converter was given".into());
            };
            match convert(&bytes) {
                Ok(t) => t,
                Err(e) => return Outcome::Skipped(format!("cannot turn the HTML into text: {e}")),
            }
        } else {
            match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => return Outcome::Skipped("not valid UTF-8 text".into()),
            }
        };
        // A page names itself in <title>; else its first heading, else the file or URL.
        let title = self.opts.title.clone().unwrap_or_else(|| {
            page_title
                .or_else(|| {
                    matches!(media_type, "text/markdown" | "text/html")
                        .then(|| first_heading(&text))
                        .flatten()
                })
                .unwrap_or_else(|| {
                    // A web page is better named by its whole URL than by its last part.
                    if source.starts_with("http://") || source.starts_with("https://") {
                        source.to_string()
                    } else {
                        name.to_string()
                    }
                })
        });
        let doc = NewDocument {
            title,
            source: source.to_string(),
            media_type: media_type.to_string(),
            tags: self.opts.tags.clone(),
            class: self.opts.class,
            size,
            sha256,
            text,
            etag,
        };
        match self.store.add(doc) {
            Ok(added) => {
                report.bytes += size;
                match added {
                    Added::New(id) => Outcome::Added(id),
                    Added::Replaced(id) => Outcome::Updated(id),
                    Added::Unchanged(id) => Outcome::Unchanged(id),
                }
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// Walks `base` the way `add` does: `.gitignore` honoured, hidden files skipped, by name.
fn walker(base: &Path) -> ignore::Walk {
    ignore::WalkBuilder::new(base)
        // Honour .gitignore even outside a git repository: the user's notes folder
        // need not be one.
        .require_git(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build()
}

/// The source a file is stored under: `file://` and its canonical path.
pub fn source_of(path: &Path) -> Result<String, Outcome> {
    let abs = path
        .canonicalize()
        .map_err(|e| Outcome::Failed(format!("cannot read it: {e}")))?;
    match abs.to_str() {
        Some(s) => Ok(format!("file://{s}")),
        None => Err(Outcome::Skipped("its path is not valid UTF-8".into())),
    }
}

/// A name's extension, lowercase ("" when it has none).
fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The directory a glob's walk starts from: its components before the first with a
/// pattern character.
fn glob_base(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for c in Path::new(pattern).components() {
        if c.as_os_str()
            .to_str()
            .is_some_and(|s| s.contains(['*', '?', '[', '{']))
        {
            break;
        }
        base.push(c);
    }
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

/// The text of a PDF. pdf-extract (and lopdf under it) can panic on malformed files: one
/// bad PDF must not end an import, so a panic is caught (and kept off stderr) and the file
/// skipped with a reason.
#[cfg(feature = "pdf")]
fn pdf_text(bytes: &[u8]) -> Result<String, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes));
    std::panic::set_hook(hook);
    match out {
        Ok(Ok(text)) if !text.trim().is_empty() => Ok(text),
        Ok(Ok(_)) => Err("the PDF has no text layer (a scan?)".into()),
        Ok(Err(e)) => Err(format!("cannot read the PDF: {e}")),
        Err(_) => Err("cannot read the PDF: it is malformed".into()),
    }
}

#[cfg(not(feature = "pdf"))]
fn pdf_text(_bytes: &[u8]) -> Result<String, String> {
    Err("PDF, and this pai was built without PDF support (feature 'pdf')".into())
}

/// `bytes` as MiB or KiB, for messages.
fn human_bytes(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// The first `# Title` of a Markdown text, within its first lines.
fn first_heading(text: &str) -> Option<String> {
    text.lines()
        .take(20)
        .find_map(|l| l.strip_prefix("# "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The text of an HTML page's `<title>`, entities decoded and whitespace collapsed; looked
/// for in the first 64 KiB (the head), `None` when absent or blank.
fn html_title(bytes: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    let lower = head.to_ascii_lowercase();
    let mut from = 0;
    let open = loop {
        let at = from + lower[from..].find("<title")?;
        // `<title>` or `<title lang=…>`, not `<titles>`.
        if lower[at + 6..].starts_with(|c: char| c == '>' || c.is_ascii_whitespace()) {
            break at;
        }
        from = at + 6;
    };
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let title = decode_entities(&head[start..end])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let title: String = title.chars().take(200).collect();
    (!title.is_empty()).then_some(title)
}

/// The entities a title commonly holds: the five XML ones, `&nbsp;` and numeric ones.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

const BINARY_EXTENSIONS: &[&str] = &[
    "7z",
    "a",
    "avi",
    "bin",
    "bmp",
    "class",
    "dll",
    "dylib",
    "exe",
    "flac",
    "gif",
    "gz",
    "ico",
    "jar",
    "jpeg",
    "jpg",
    "mkv",
    "mov",
    "mp3",
    "mp4",
    "o",
    "ogg",
    "pdf",
    "png",
    "pyc",
    "so",
    "sqlite",
    "tar",
    "tgz",
    "wasm",
    "wav",
    "webm",
    "webp",
    "xz",
    "zip",
    "zst",
    "db",
    "gguf",
    "safetensors",
    "docx",
    "xlsx",
    "pptx",
    "odt",
];

/// The media type PAI stores for a file extension.
fn media_type_of(ext: &str) -> &'static str {
    match ext {
        "md" | "markdown" | "mdx" => "text/markdown",
        "html" | "htm" | "xhtml" => "text/html",
        "csv" => "text/csv",
        "json" => "application/json",
        "rs" => "text/x-rust",
        "py" => "text/x-python",
        "js" | "mjs" | "cjs" => "text/javascript",
        "ts" | "tsx" => "text/x-typescript",
        "go" => "text/x-go",
        "c" | "h" => "text/x-c",
        "cc" | "cpp" | "hpp" | "cxx" => "text/x-c++",
        "java" => "text/x-java",
        "sh" | "bash" | "zsh" => "text/x-shellscript",
        "toml" => "text/x-toml",
        "yaml" | "yml" => "text/x-yaml",
        "pdf" => "application/pdf",
        _ => "text/plain",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_bases_stop_at_the_first_pattern() {
        assert_eq!(glob_base("docs/**/*.md"), PathBuf::from("docs"));
        assert_eq!(glob_base("*.md"), PathBuf::from("."));
        assert_eq!(glob_base("/a/b/c*.txt"), PathBuf::from("/a/b"));
    }

    #[test]
    fn html_titles_come_from_the_title_element() {
        assert_eq!(
            html_title(b"<html><head><TITLE lang=en>\n  Fish &amp; chips &#8211; a&nbsp;guide </TITLE></head>"),
            Some("Fish & chips \u{2013} a guide".into())
        );
        assert_eq!(
            html_title(b"<titles>no</titles><title>yes</title>"),
            Some("yes".into())
        );
        assert_eq!(html_title(b"<title>  </title><h1>Heading</h1>"), None);
        assert_eq!(html_title(b"<h1>No title</h1>"), None);
        assert_eq!(html_title(b"<title>unclosed"), None);
        assert_eq!(
            decode_entities("a &bogus; b & c &#x41;"),
            "a &bogus; b & c A"
        );
    }

    #[test]
    fn binary_extensions_are_sorted_enough_to_read() {
        assert!(BINARY_EXTENSIONS.contains(&"pdf"));
        assert_eq!(media_type_of(&extension("notes.MD")), "text/markdown");
        assert_eq!(
            first_heading("\n# Title here\nbody"),
            Some("Title here".into())
        );
    }
}
