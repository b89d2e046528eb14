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
    ResourceStore, SearchOptions, SqliteStore,
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
    /// Import files, directories (recursively, .gitignore honoured) or glob patterns;
    /// unchanged files are skipped, changed ones replaced.
    Add {
        /// Files, directories or quoted globs ('notes/**/*.md').
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
    /// Search documents (BM25), best first, with highlighted snippets.
    Search {
        /// What to look for.
        query: String,
        /// Most documents shown.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-read every document's source: changed files are re-imported, the index rebuilt.
    Reindex,
}

fn parse_class(s: &str) -> Result<DataClass, String> {
    s.parse::<DataClass>().map_err(|e| e.to_string())
}

fn store() -> Result<SqliteStore> {
    let ws = crate::local::workspace()?;
    Ok(pai_core::open_resources(ws.paths())?)
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
        ResourcesAction::Search { query, limit, json } => search(&query, limit, json),
        ResourcesAction::Reindex => reindex(),
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

fn report_item(progress: &mut Progress, item: &Item) {
    let path = item.path.display();
    match &item.outcome {
        Outcome::Skipped(why) => progress.note(&format!("skipped {path}: {why}")),
        Outcome::Failed(why) => progress.note(&format!("failed {path}: {why}")),
        _ => {}
    }
    progress.tick(item);
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
    if title.is_some() && (paths.len() != 1 || !std::path::Path::new(&paths[0]).is_file()) {
        bail!("--title names one document; give exactly one file with it");
    }
    for tag in &tags {
        pai_core::resources::check_tag(tag)?;
    }
    let store = store()?;
    let opts = ImportOptions {
        class,
        tags,
        title,
        ..ImportOptions::default()
    };
    let importer = Importer::new(&store, opts).with_html(&html);
    let mut progress = Progress::new();
    let report = importer.add(paths, &mut |item| report_item(&mut progress, item));
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

fn search(query: &str, limit: u32, json: bool) -> Result<ExitCode> {
    let store = store()?;
    let found = store.search(
        query,
        &SearchOptions {
            limit: limit as usize,
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

fn reindex() -> Result<ExitCode> {
    let store = store()?;
    let mut report = Report::default();
    let mut missing = 0u64;
    let mut progress = Progress::new();
    for (id, source) in store.sources()? {
        let Some(path) = source.strip_prefix("file://") else {
            continue;
        };
        let path = std::path::Path::new(path);
        if !path.is_file() {
            missing += 1;
            progress.note(&format!(
                "missing {}: resource {id} kept as it was ('pai resources rm {id}' removes it)",
                path.display()
            ));
            continue;
        }
        let d = store.get(id)?;
        let opts = ImportOptions {
            class: d.class,
            tags: d.tags,
            title: Some(d.title),
            ..ImportOptions::default()
        };
        let importer = Importer::new(&store, opts).with_html(&html);
        let item = importer.file(path, &mut report);
        report_item(&mut progress, &item);
        match item.outcome {
            Outcome::Added(_) => report.added += 1,
            Outcome::Updated(_) => report.updated += 1,
            Outcome::Unchanged(_) => report.unchanged += 1,
            Outcome::Skipped(_) => report.skipped += 1,
            Outcome::Failed(_) => report.failed += 1,
        }
    }
    progress.clear();
    store.rebuild_index()?;
    outln!(
        "{} updated, {} unchanged, {} missing, {} skipped, {} failed; index rebuilt",
        report.updated,
        report.unchanged,
        missing,
        report.skipped,
        report.failed
    );
    Ok(ExitCode::SUCCESS)
}
