//! The user's resources in a turn: what the model is shown of them (a short catalogue),
//! the tools that search and read them, and the checkpoint every read passes. Each read
//! asks the policy with the document's class (`read`, then `part` for this endpoint):
//! a document this endpoint may not see goes out as a note saying it was withheld, and
//! the class of what did go out travels with the tool result, so the egress gate screens
//! it again. Every read is audited: id, class, chunks, decision.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pai_audit::{AuditEvent, AuditSink, EventKind};
use pai_policy::{Action, Decision, Policy, Subject, Verdict};
use pai_resources::{
    Change, Document, Filter, NewDocument, ResourceError, ResourceId, ResourceStore, SearchOptions,
    SqliteStore,
};
use pai_tools::{Effect, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};
use pai_types::{DataClass, Locality, Message, Mode, Origin, Role, SessionName, ToolSpec};
use serde_json::{Value, json};

use crate::error::Result;
use crate::paths::Paths;

/// The resource tools' names (constraints may name them whatever the mode).
pub(crate) const TOOL_NAMES: [&str; 4] = [
    "search_resources",
    "read_resource",
    "add_note",
    "update_resource",
];

/// Catalogue entries shown to the model at most, and the bytes they may take.
const CATALOG_ENTRIES: usize = 30;
const CATALOG_BYTES: usize = 2000;
/// Bytes of text one `read_resource` call returns at most (whole chunks).
const READ_BYTES: usize = 8000;
/// Hits one `search_resources` call returns at most.
const SEARCH_LIMIT: usize = 10;

/// Where the resource database lives.
pub fn resources_db(paths: &Paths) -> std::path::PathBuf {
    paths.home.join("resources.db")
}

/// Opens the resource store under `paths` (creating it), for BM25 alone.
pub fn open_resources(paths: &Paths) -> Result<SqliteStore> {
    Ok(SqliteStore::open(&resources_db(paths))?)
}

/// Opens the resource store under `paths` with the installed embedding model, if any and
/// unless `[resources] embeddings = false`: imports then store chunk vectors, and searches
/// over documents that have them are hybrid. The model is loaded only when first needed.
pub fn open_resources_for(
    paths: &Paths,
    settings: &crate::config::ResourceSettings,
) -> Result<SqliteStore> {
    let store = open_resources(paths)?;
    if settings.embeddings != Some(false) {
        attach_embedder(paths, &store)?;
    }
    Ok(store)
}

#[cfg(feature = "local")]
fn attach_embedder(paths: &Paths, store: &SqliteStore) -> Result<()> {
    let models = crate::models::ModelStore::new(paths);
    if let Some(m) = models.embedding_model()? {
        let dir = models.path_of(&m);
        let id = crate::models::ModelStore::vector_model_id(&m);
        let name = id.clone();
        store.set_embedder_loader(&id, move || {
            pai_resources::embed::BertEmbedder::load(&dir, &name)
                .map(|e| Arc::new(e) as Arc<dyn pai_resources::Embed>)
                .map_err(|e| format!("{} in {}: {e}", m.name, dir.display()))
        });
    }
    Ok(())
}

#[cfg(not(feature = "local"))]
fn attach_embedder(_paths: &Paths, _store: &SqliteStore) -> Result<()> {
    Ok(())
}

/// How to reach `bucket`: its `[resources.s3.<name>]` entry (the one whose `bucket`, or
/// name, is this bucket), else the standard `AWS_*` variables (`AWS_ENDPOINT_URL` too).
/// Encrypted credentials are opened with `vault`, asked only when one is configured.
#[cfg(feature = "s3")]
pub fn s3_config(
    config: &crate::config::Config,
    bucket: &str,
    vault: &dyn Fn() -> Result<crate::vault::Vault>,
) -> Result<pai_resources::S3Config> {
    use crate::error::CoreError;
    use pai_types::Secret;
    let env = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(Secret::new)
    };
    let entry = config
        .resources
        .s3
        .iter()
        .find(|(name, s)| s.bucket.as_deref().unwrap_or(name) == bucket);
    let Some((name, s)) = entry else {
        return Ok(pai_resources::S3Config {
            endpoint: env("AWS_ENDPOINT_URL").map(|s| s.expose().clone()),
            region: env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .map(|s| s.expose().clone()),
            access_key_id: env("AWS_ACCESS_KEY_ID"),
            secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
            session_token: env("AWS_SESSION_TOKEN"),
        });
    };
    let secret =
        |token: &Option<String>, var: &Option<String>, default: &str, what: &str| match token {
            Some(token) => vault()?.decrypt(token).map(Some).map_err(|e| {
                CoreError::Invalid(format!(
                    "[resources.s3.{name}] {what}_encrypted cannot be opened ({e}); \
                     make it again with 'pai encrypt'"
                ))
            }),
            None => Ok(env(var.as_deref().unwrap_or(default))),
        };
    Ok(pai_resources::S3Config {
        endpoint: s.endpoint.clone(),
        region: s
            .region
            .clone()
            .or_else(|| env("AWS_REGION").map(|s| s.expose().clone())),
        access_key_id: secret(
            &s.access_key_id_encrypted,
            &s.access_key_id_env,
            "AWS_ACCESS_KEY_ID",
            "access_key_id",
        )?,
        secret_access_key: secret(
            &s.secret_access_key_encrypted,
            &s.secret_access_key_env,
            "AWS_SECRET_ACCESS_KEY",
            "secret_access_key",
        )?,
        session_token: None,
    })
}

/// The documents `specs` name: each an id, or a tag (all documents carrying it).
pub fn resolve_resources(store: &dyn ResourceStore, specs: &[String]) -> Result<Vec<ResourceId>> {
    let mut ids = Vec::new();
    for spec in specs {
        let found: Vec<ResourceId> = match spec.parse::<ResourceId>() {
            Ok(id) => vec![store.get(id)?.id],
            Err(_) => store
                .list(&Filter {
                    tag: Some(spec.clone()),
                    ..Filter::default()
                })?
                .into_iter()
                .map(|d| d.id)
                .collect(),
        };
        for id in found {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// The resources of one engine: the store, what the user attached, and who decides.
pub struct ResourceAccess {
    store: Arc<dyn ResourceStore>,
    attached: Vec<ResourceId>,
    mode: Mode,
    policy: Arc<dyn Policy>,
    audit: Arc<dyn AuditSink>,
    session: SessionName,
    provider: String,
    locality: Locality,
    /// The highest class a resource tool put into its last output; the engine takes it
    /// right after the call (calls run one at a time), so the result carries it.
    last_class: Mutex<Option<DataClass>>,
    /// The highest class any resource tool of this engine put out: a note the model
    /// writes afterwards may hold any of it.
    seen: Mutex<DataClass>,
}

impl std::fmt::Debug for ResourceAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceAccess")
            .field("attached", &self.attached)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Who a read is for: everything [`ResourceAccess`] needs beyond the store.
#[derive(Clone)]
pub(crate) struct ReadContext {
    pub policy: Arc<dyn Policy>,
    pub audit: Arc<dyn AuditSink>,
    pub session: SessionName,
    pub provider: String,
    pub locality: Locality,
}

impl ResourceAccess {
    pub(crate) fn new(
        store: Arc<dyn ResourceStore>,
        attached: Vec<ResourceId>,
        mode: Mode,
        cx: ReadContext,
    ) -> Self {
        Self {
            store,
            attached,
            mode,
            policy: cx.policy,
            audit: cx.audit,
            session: cx.session,
            provider: cx.provider,
            locality: cx.locality,
            last_class: Mutex::new(None),
            seen: Mutex::new(DataClass::Public),
        }
    }

    /// The tools this mode offers: chat searches and reads the attached resources only
    /// (none attached, none offered); prompt searches and reads all; agent may also write
    /// notes and change metadata (write effect: the policy asks first).
    pub(crate) fn tools(self: &Arc<Self>) -> Vec<Arc<dyn Tool>> {
        if self.mode == Mode::Chat && self.attached.is_empty() {
            return Vec::new();
        }
        let mut tools: Vec<Arc<dyn Tool>> = vec![
            Arc::new(ResourceTool::new(self.clone(), Kind::Search)),
            Arc::new(ResourceTool::new(self.clone(), Kind::Read)),
        ];
        if self.mode == Mode::Agent {
            tools.push(Arc::new(ResourceTool::new(self.clone(), Kind::AddNote)));
            tools.push(Arc::new(ResourceTool::new(self.clone(), Kind::Update)));
        }
        tools
    }

    /// The class the last resource tool call put into its output, taken.
    pub(crate) fn take_class(&self) -> Option<DataClass> {
        self.last_class
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn raise_class(&self, class: DataClass) {
        let mut last = self.last_class.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some(last.map_or(class, |c| c.max(class)));
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        *seen = (*seen).max(class);
    }

    /// Chat mode reaches only what was attached.
    fn scope(&self) -> Option<Vec<ResourceId>> {
        (self.mode == Mode::Chat).then(|| self.attached.clone())
    }

    /// The catalogue part: what resources exist (ids, titles, tags), within a small
    /// budget, attached ones first. A document this endpoint may not see is listed by id
    /// and class only.
    pub(crate) fn catalog(&self) -> Option<Message> {
        let docs = match self.store.list(&Filter {
            ids: self.scope(),
            ..Filter::default()
        }) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not list resources for the context");
                return None;
            }
        };
        if docs.is_empty() {
            return None;
        }
        let total = docs.len();
        let (mut first, rest): (Vec<Document>, Vec<Document>) = docs
            .into_iter()
            .partition(|d| self.attached.contains(&d.id));
        // The most recently changed ones are likelier to matter.
        let mut rest = rest;
        rest.sort_by(|a, b| b.updated.cmp(&a.updated));
        first.extend(rest);
        let mut text = String::from(
            "The user's resources (documents you can search with search_resources and read with read_resource):\n",
        );
        let mut shown = 0;
        for d in first.iter().take(CATALOG_ENTRIES) {
            let mut line = String::new();
            let attached = if self.attached.contains(&d.id) {
                " (attached to this request)"
            } else {
                ""
            };
            if self.part_verdict(d).decision == Decision::Allow {
                let tags = if d.tags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", d.tags.join(", "))
                };
                let _ = writeln!(line, "- {}: {}{tags}{attached}", d.id, d.title);
            } else {
                let _ = writeln!(line, "- {}: a {} document{attached}", d.id, d.class);
            }
            if text.len() + line.len() > CATALOG_BYTES {
                break;
            }
            text.push_str(&line);
            shown += 1;
        }
        if shown < total {
            let _ = writeln!(text, "({} more: search to find them)", total - shown);
        }
        if !self.attached.is_empty() {
            text.push_str(
                "The user attached resources to this request: read them before answering.\n",
            );
        }
        Some(Message::new(Role::System, text).with_provenance(
            Origin::Resource {
                id: "catalog".into(),
            },
            DataClass::Internal,
        ))
    }

    /// What the policy says about sending this document's text to the endpoint.
    fn part_verdict(&self, d: &Document) -> Verdict {
        let origin = Origin::Resource {
            id: d.id.to_string(),
        };
        self.policy.check(&Subject::part(
            &origin,
            d.class,
            self.locality,
            &self.provider,
        ))
    }

    /// The read checkpoint for `d`: the `read` rules, then whether this endpoint may see
    /// the text. Ok(()) lets the text through; Err(note) replaces it. Audited either way.
    fn checkpoint(&self, d: &Document, what: &str) -> std::result::Result<(), String> {
        self.checkpoint_of(d.id, d.class, what)
    }

    /// [`Self::checkpoint`] for resource `id` of class `class` (a search hit carries both).
    fn checkpoint_of(
        &self,
        id: ResourceId,
        class: DataClass,
        what: &str,
    ) -> std::result::Result<(), String> {
        let origin = Origin::Resource { id: id.to_string() };
        let read = self.policy.check(&Subject {
            class: Some(class),
            origin: Some(&origin),
            mode: Some(self.mode),
            provider: Some(&self.provider),
            locality: Some(self.locality),
            ..Subject::new(Action::Read)
        });
        let verdict = if matches!(read.decision, Decision::Allow) {
            self.policy.check(&Subject::part(
                &origin,
                class,
                self.locality,
                &self.provider,
            ))
        } else {
            read
        };
        let allowed = verdict.decision == Decision::Allow;
        let outcome = if allowed { "sent" } else { "withheld" };
        let row = AuditEvent::new(
            EventKind::Policy,
            format!(
                "read resource {} ({}), {what}: {} by {}: {outcome}",
                id, class, verdict.decision, verdict.rule
            ),
        )
        .session(&self.session)
        .mode(self.mode)
        .provider(self.provider.clone())
        .locality(self.locality);
        if let Err(e) = self.audit.record_deferred(&row) {
            tracing::warn!(error = %e, "could not record a resource read");
        }
        if allowed {
            self.raise_class(class);
            Ok(())
        } else {
            Err(format!(
                "[withheld: resource {} is {} data, which policy rule '{}' keeps from {} ({}): {}]",
                id, class, verdict.rule, self.provider, self.locality, verdict.reason
            ))
        }
    }

    fn search(&self, args: &Value) -> std::result::Result<String, ToolError> {
        let query = str_arg(args, "query")?;
        let limit = args
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(5, |n| n as usize)
            .clamp(1, SEARCH_LIMIT);
        let opts = SearchOptions {
            limit,
            filter: Filter {
                ids: self.scope(),
                tag: args.get("tag").and_then(Value::as_str).map(str::to_string),
                ..Filter::default()
            },
            ..SearchOptions::default()
        };
        let failed = |e: ResourceError| ToolError::Failed(e.to_string());
        // A broken embedding model must not take the documents away from a turn: the
        // keyword index does not need it. (`pai resources search` reports the error, since
        // there the user can act on it.)
        let (found, note) = match self.store.search(query, &opts) {
            Err(ResourceError::Embedding(why)) => {
                tracing::warn!(%why, "embedding model unusable; search_resources falls back to BM25");
                let keywords = SearchOptions {
                    bm25_only: true,
                    ..opts
                };
                let found = self.store.search(query, &keywords).map_err(failed)?;
                // The reason names files under PAI's home: the user's log, not the model's.
                let note = "(keyword matches only: the embedding model cannot be used)\n";
                (found, note.to_string())
            }
            other => (other.map_err(failed)?, String::new()),
        };
        if found.hits.is_empty() {
            return Ok(format!("{note}no resource matches '{query}'"));
        }
        let mut out = note;
        for hit in &found.hits {
            let what = format!("search hit, chunk {}", hit.chunk);
            match self.checkpoint_of(hit.id, hit.class, &what) {
                Ok(()) => {
                    let _ = writeln!(
                        out,
                        "- resource {} chunk {}: {} ({})\n  {}",
                        hit.id, hit.chunk, hit.heading, hit.source, hit.snippet
                    );
                }
                Err(note) => {
                    let _ = writeln!(out, "- resource {} chunk {}: {note}", hit.id, hit.chunk);
                }
            }
        }
        if found.approximate {
            out.push_str("(very common words: the best of the first matches are shown; add a rarer word to narrow it)\n");
        }
        out.push_str("Read one with read_resource (id, and chunk to start from).");
        Ok(out)
    }

    fn read(&self, args: &Value) -> std::result::Result<String, ToolError> {
        let id = id_arg(args)?;
        if let Some(scope) = self.scope()
            && !scope.contains(&id)
        {
            return Err(ToolError::Failed(format!(
                "resource {id} is not attached to this chat; the user can attach it with -r {id}"
            )));
        }
        let chunk = args.get("chunk").and_then(Value::as_u64).unwrap_or(0) as u32;
        let doc = self
            .store
            .get(id)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        if doc.chunks == 0 {
            return Ok(format!("resource {id} ({}) has no text", doc.title));
        }
        // The checkpoint comes before the text is read from the store at all.
        let excerpt_what = format!("chunk {chunk}");
        if let Err(note) = self.checkpoint(&doc, &excerpt_what) {
            return Ok(note);
        }
        let excerpt = self
            .store
            .read(id, chunk, READ_BYTES)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let more = if excerpt.to < doc.chunks {
            format!(
                "\n[chunks {}–{} of {}; read on with chunk {}]",
                excerpt.from,
                excerpt.to - 1,
                doc.chunks,
                excerpt.to
            )
        } else {
            String::new()
        };
        Ok(format!(
            "resource {id}: {} ({})\n{}{more}",
            doc.title, doc.source, excerpt.text
        ))
    }

    fn add_note(&self, args: &Value) -> std::result::Result<String, ToolError> {
        use sha2::Digest;
        let title = str_arg(args, "title")?;
        let text = str_arg(args, "text")?;
        let tags: Vec<String> = args
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let sha256 = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        // A note holds what the model saw: it is as sensitive as the documents it read
        // and anything the detectors find in it, and never less than internal.
        let found = pai_policy::detect::scan(text)
            .iter()
            .map(|f| f.class)
            .max()
            .unwrap_or(DataClass::Internal);
        let seen = *self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let class = DataClass::Internal.max(found).max(seen);
        let stamp = jiff::Timestamp::now().as_nanosecond();
        let doc = NewDocument {
            title: title.to_string(),
            source: format!("note:{stamp}"),
            media_type: "text/markdown".into(),
            tags,
            class,
            size: text.len() as u64,
            sha256,
            text: text.to_string(),
            etag: None,
        };
        let added = self
            .store
            .add(doc)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok(format!("saved as resource {} ({class})", added.id()))
    }

    fn update(&self, args: &Value) -> std::result::Result<String, ToolError> {
        let id = id_arg(args)?;
        let change = Change {
            title: args
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_string),
            class: None,
            tags: args.get("tags").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            }),
        };
        let doc = self
            .store
            .update(id, &change)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok(format!(
            "resource {id} is now '{}' [{}]",
            doc.title,
            doc.tags.join(", ")
        ))
    }
}

fn str_arg<'a>(args: &'a Value, name: &str) -> std::result::Result<&'a str, ToolError> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ToolError::InvalidArguments(format!("'{name}' (a string) is required")))
}

fn id_arg(args: &Value) -> std::result::Result<ResourceId, ToolError> {
    let v = args.get("id");
    v.and_then(Value::as_i64)
        .or_else(|| {
            v.and_then(Value::as_str)
                .and_then(|s| s.trim().parse().ok())
        })
        .ok_or_else(|| {
            ToolError::InvalidArguments("'id' (a resource id number) is required".into())
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Search,
    Read,
    AddNote,
    Update,
}

struct ResourceTool {
    access: Arc<ResourceAccess>,
    kind: Kind,
    info: ToolInfo,
}

impl ResourceTool {
    fn new(access: Arc<ResourceAccess>, kind: Kind) -> Self {
        Self {
            access,
            kind,
            info: Self::info_of(kind),
        }
    }

    fn info_of(kind: Kind) -> ToolInfo {
        let (name, description, parameters, effect) = match kind {
            Kind::Search => (
                "search_resources",
                "Search the user's own documents (notes, docs, code they added to PAI). Returns the best matching documents with a snippet each.",
                json!({"type": "object", "properties": {
                    "query": {"type": "string", "description": "words to look for"},
                    "limit": {"type": "integer", "description": "most documents to return (1-10, default 5)"},
                    "tag": {"type": "string", "description": "only documents with this tag"}
                }, "required": ["query"]}),
                Effect::Read,
            ),
            Kind::Read => (
                "read_resource",
                "Read one of the user's documents by id, a few chunks at a time.",
                json!({"type": "object", "properties": {
                    "id": {"type": "integer", "description": "the resource id"},
                    "chunk": {"type": "integer", "description": "chunk to start from (default 0)"}
                }, "required": ["id"]}),
                Effect::Read,
            ),
            Kind::AddNote => (
                "add_note",
                "Save a note among the user's documents (needs the user's approval).",
                json!({"type": "object", "properties": {
                    "title": {"type": "string"},
                    "text": {"type": "string", "description": "Markdown"},
                    "tags": {"type": "array", "items": {"type": "string"}}
                }, "required": ["title", "text"]}),
                Effect::Write,
            ),
            Kind::Update => (
                "update_resource",
                "Change a document's title or tags (needs the user's approval).",
                json!({"type": "object", "properties": {
                    "id": {"type": "integer"},
                    "title": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}}
                }, "required": ["id"]}),
                Effect::Write,
            ),
        };
        ToolInfo {
            spec: ToolSpec {
                name: name.into(),
                description: description.into(),
                parameters,
            },
            effects: [effect].into(),
            source: "resources".into(),
        }
    }
}

/// The resource tools as `pai tools` lists them, each with the modes that offer it (see
/// [`ResourceAccess`]: chat only over attached documents, agent alone writes).
pub fn resource_tools() -> Vec<(ToolInfo, Vec<Mode>)> {
    let reads = vec![Mode::Chat, Mode::Prompt, Mode::Agent];
    vec![
        (ResourceTool::info_of(Kind::Search), reads.clone()),
        (ResourceTool::info_of(Kind::Read), reads),
        (ResourceTool::info_of(Kind::AddNote), vec![Mode::Agent]),
        (ResourceTool::info_of(Kind::Update), vec![Mode::Agent]),
    ]
}

#[async_trait]
impl Tool for ResourceTool {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: Value,
        _cx: &ToolContext,
    ) -> std::result::Result<ToolOutput, ToolError> {
        let a = &self.access;
        let text = match self.kind {
            Kind::Search => a.search(&args)?,
            Kind::Read => a.read(&args)?,
            Kind::AddNote => a.add_note(&args)?,
            Kind::Update => a.update(&args)?,
        };
        Ok(ToolOutput::text(text))
    }
}

/// Whether a resource store with at least one document exists under `paths` (engines
/// offer no resource tools otherwise, and create no database).
pub(crate) fn has_resources(db: &Path) -> bool {
    db.is_file()
        && SqliteStore::open(db)
            .and_then(|s| s.stats())
            .is_ok_and(|s| s.documents > 0)
}
