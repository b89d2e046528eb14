//! The embedded store: one SQLite file (WAL, mode 0600) holding documents' metadata once,
//! their text in chunks, and an FTS5 index over the chunks that searches rank with BM25.
//! Every add is one transaction — or, during an import, part of a batch committed every
//! 250 ms or 1000 documents, so a crash loses at most that batch (the same import again
//! brings it back) and never leaves half a document; a removal really removes (SQLite's `secure_delete` zeroes freed space, FTS5's
//! `secure-delete` drops the terms instead of marking them, and the WAL is truncated).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pai_types::DataClass;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use crate::chunk;
use crate::error::{ResourceError, Result};
use crate::model::{
    Added, Change, Document, Excerpt, Filter, Found, Hit, NewDocument, ResourceId, SearchMode,
    SearchOptions, check_tag,
};
use crate::query::Terms;
use crate::vector::{self, Embed, RRF_K, TopK};

mod rank;
mod roots;
pub use roots::KeptOut;

/// The documents a model may read: add, look up, change, remove and search them.
pub trait ResourceStore: Send + Sync + fmt::Debug {
    /// Stores `doc`; a known source is replaced when its text changed, else left alone.
    fn add(&self, doc: NewDocument) -> Result<Added>;
    /// The document with `id`.
    fn get(&self, id: ResourceId) -> Result<Document>;
    /// The id and SHA-256 stored for `source`, if it is known.
    fn find_source(&self, source: &str) -> Result<Option<(ResourceId, String)>>;
    /// The documents `filter` selects, by id.
    fn list(&self, filter: &Filter) -> Result<Vec<Document>>;
    /// Changes a document's metadata.
    fn update(&self, id: ResourceId, change: &Change) -> Result<Document>;
    /// Removes documents, all or none, text and index entries included.
    fn remove(&self, ids: &[ResourceId]) -> Result<Vec<Document>>;
    /// The documents best matching `query`, best first, one hit each.
    fn search(&self, query: &str, opts: &SearchOptions) -> Result<Found>;
    /// Chunks of document `id` from chunk `from`, at least one, as many as fit `max_bytes`.
    fn read(&self, id: ResourceId, from: u32, max_bytes: usize) -> Result<Excerpt>;
}

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    source TEXT NOT NULL UNIQUE,
    media_type TEXT NOT NULL,
    class TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    added TEXT NOT NULL,
    updated TEXT NOT NULL,
    chunks INTEGER NOT NULL DEFAULT 0,
    etag TEXT
);
CREATE TABLE tags (
    doc INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (doc, tag)
) WITHOUT ROWID;
CREATE INDEX tags_by_tag ON tags(tag, doc);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    doc INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    heading TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX chunks_by_doc ON chunks(doc, seq);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    heading, text, content='chunks', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);
INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('secure-delete', 1);
INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('hashsize', 8388608);
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, heading, text)
        VALUES ('delete', old.id, old.heading, old.text);
END;
CREATE TRIGGER chunks_au AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, heading, text)
        VALUES ('delete', old.id, old.heading, old.text);
    INSERT INTO chunks_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text);
END;
";

const DOC_COLUMNS: &str = "d.id, d.title, d.source, d.media_type, d.class, d.size, d.sha256, \
    d.added, d.updated, d.chunks, \
    (SELECT group_concat(tag, ',') FROM (SELECT tag FROM tags WHERE doc = d.id ORDER BY tag)), \
    d.etag";

/// Version 1 had no `etag` (the validator of a remote source); versions 1 and 2 indexed
/// new chunks by trigger, which made FTS5 flush per chunk (see `add_in`).
const MIGRATE_1_TO_2: &str = "ALTER TABLE documents ADD COLUMN etag TEXT;";
const MIGRATE_2_TO_3: &str = "DROP TRIGGER IF EXISTS chunks_ai;
    INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('hashsize', 8388608);";

/// Chunk vectors for hybrid search, beside the chunks: one int8 vector per chunk (see
/// [`vector::quantize`]), made by the model in `embed_models`. Created on open when
/// missing, whatever the schema version (a store without them searches with BM25 alone,
/// and an older pai ignores them); a chunk's vector goes with the chunk (`ON DELETE
/// CASCADE`), so replacing or removing a document removes its vectors.
const VECTOR_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS embed_models (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    dims INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunk_vectors (
    chunk INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    model INTEGER NOT NULL REFERENCES embed_models(id),
    vec BLOB NOT NULL
);
";

/// Chunks a hybrid search takes from each ranking (BM25 and vectors) into the fusion.
const FUSION_DEPTH: usize = 100;

/// Chunks embedded per round when filling in vectors for stored chunks.
const FILL_BATCH: usize = 64;

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// In a batch: `Some`.
    batch: Mutex<Option<Batch>>,
    /// The embedding model, if any: loaded on first use.
    embedder: Mutex<Embedder>,
}

/// The store's embedding model.
enum Embedder {
    None,
    /// Named, loaded when first needed (a search with no stored vectors never loads it).
    Pending {
        name: String,
        load: Box<dyn FnOnce() -> std::result::Result<Arc<dyn Embed>, String> + Send>,
    },
    Ready(Arc<dyn Embed>),
    Failed {
        name: String,
        why: String,
    },
}

impl Embedder {
    fn name(&self) -> Option<&str> {
        match self {
            Embedder::None => None,
            Embedder::Pending { name, .. } | Embedder::Failed { name, .. } => Some(name),
            Embedder::Ready(e) => Some(e.model()),
        }
    }
}

/// How many chunks have a vector of the store's embedding model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VectorStats {
    /// The embedding model (`None`: none is set).
    pub model: Option<String>,
    /// Chunks stored.
    pub chunks: u64,
    /// Chunks with a vector of this model.
    pub with_vectors: u64,
}

/// A batch commits when its transaction is this old, or holds this many documents: a
/// crash loses at most that much work (the same `add` again brings it back), and the write
/// lock is never held longer by one import.
const BATCH_AGE: Duration = Duration::from_millis(250);
const BATCH_DOCS: usize = 1000;

/// An import's batch: its limits, and its open transaction — when it began and the
/// documents in it (`None` between a commit and the next add).
#[derive(Debug)]
struct Batch {
    max_age: Duration,
    max_docs: usize,
    open: Option<(Instant, usize)>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600 in a 0700 directory) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        create_private_file(path)?;
        let db = ResourceError::db(path);
        let conn = Connection::open(path).map_err(&db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&db)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(&db)?;
        // One sync per checkpoint instead of per commit: a crash may lose the last
        // commits, never corrupt; an import re-run picks up what was lost.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&db)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(&db)?;
        // 16 MiB of page cache: an import updates the index b-trees page by page.
        conn.pragma_update(None, "cache_size", -16384)
            .map_err(&db)?;
        // Deleted text is overwritten with zeros, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(&db)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&db)?;
        if version == 0 {
            let tx = conn.unchecked_transaction().map_err(&db)?;
            // Another process may have created it between the read and the lock.
            let again: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(&db)?;
            if again == 0 {
                tx.execute_batch(SCHEMA).map_err(&db)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(&db)?;
            }
            tx.commit().map_err(&db)?;
        } else if version == 1 || version == 2 {
            let tx = conn.unchecked_transaction().map_err(&db)?;
            let again: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(&db)?;
            if again == 1 {
                tx.execute_batch(MIGRATE_1_TO_2).map_err(&db)?;
            }
            if again == 1 || again == 2 {
                tx.execute_batch(MIGRATE_2_TO_3).map_err(&db)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(&db)?;
            }
            tx.commit().map_err(&db)?;
        } else if version != SCHEMA_VERSION {
            return Err(ResourceError::Corrupt(format!(
                "schema version {version}, this pai reads {SCHEMA_VERSION}"
            )));
        }
        roots::upgrade(&conn).map_err(&db)?;
        let has_vectors: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'chunk_vectors'",
                [],
                |r| r.get(0),
            )
            .map_err(&db)?;
        if has_vectors == 0 {
            let tx = conn.unchecked_transaction().map_err(&db)?;
            tx.execute_batch(VECTOR_SCHEMA).map_err(&db)?;
            tx.commit().map_err(&db)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            batch: Mutex::new(None),
            embedder: Mutex::new(Embedder::None),
        })
    }

    /// Uses `embedder` for vectors from now on: at import, and for hybrid searches.
    pub fn set_embedder(&self, embedder: Arc<dyn Embed>) {
        *self.embedder.lock().unwrap_or_else(|p| p.into_inner()) = Embedder::Ready(embedder);
    }

    /// Uses the embedding model called `name`, loaded by `load` the first time one is
    /// needed: an import, or a search when stored vectors of this model exist.
    pub fn set_embedder_loader(
        &self,
        name: &str,
        load: impl FnOnce() -> std::result::Result<Arc<dyn Embed>, String> + Send + 'static,
    ) {
        *self.embedder.lock().unwrap_or_else(|p| p.into_inner()) = Embedder::Pending {
            name: name.to_string(),
            load: Box::new(load),
        };
    }

    /// The embedding model's name, without loading it.
    pub fn embedding_model(&self) -> Option<String> {
        self.embedder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .name()
            .map(str::to_string)
    }

    /// The embedding model, loaded now if it was not yet.
    fn embedder(&self) -> Result<Option<Arc<dyn Embed>>> {
        let mut slot = self.embedder.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *slot, Embedder::None) {
            Embedder::None => Ok(None),
            Embedder::Ready(e) => {
                *slot = Embedder::Ready(e.clone());
                Ok(Some(e))
            }
            Embedder::Failed { name, why } => {
                *slot = Embedder::Failed {
                    name,
                    why: why.clone(),
                };
                Err(ResourceError::Embedding(why))
            }
            Embedder::Pending { name, load } => match load() {
                Ok(e) => {
                    *slot = Embedder::Ready(e.clone());
                    Ok(Some(e))
                }
                Err(why) => {
                    *slot = Embedder::Failed {
                        name,
                        why: why.clone(),
                    };
                    Err(ResourceError::Embedding(why))
                }
            },
        }
    }

    /// The id `embed_models` gives `model` (added if new).
    fn model_id(conn: &Connection, model: &str, dims: usize) -> rusqlite::Result<i64> {
        conn.execute(
            "INSERT OR IGNORE INTO embed_models(name, dims) VALUES (?1, ?2)",
            params![model, dims as i64],
        )?;
        conn.query_row(
            "SELECT id FROM embed_models WHERE name = ?1",
            [model],
            |r| r.get(0),
        )
    }

    /// The id of `model` if any chunk has a vector of it.
    fn stored_model(conn: &Connection, model: &str) -> rusqlite::Result<Option<i64>> {
        conn.query_row(
            "SELECT m.id FROM embed_models m WHERE m.name = ?1 \
             AND EXISTS (SELECT 1 FROM chunk_vectors v WHERE v.model = m.id)",
            [model],
            |r| r.get(0),
        )
        .optional()
    }

    /// Chunks, and chunks with a vector of the store's embedding model.
    pub fn vector_stats(&self) -> Result<VectorStats> {
        let model = self.embedding_model();
        let conn = self.lock();
        let chunks: i64 = conn
            .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
            .map_err(self.db())?;
        let with: i64 = match &model {
            Some(m) => conn
                .query_row(
                    "SELECT count(*) FROM chunk_vectors v JOIN embed_models m ON m.id = v.model \
                     WHERE m.name = ?1",
                    [m],
                    |r| r.get(0),
                )
                .map_err(self.db())?,
            None => 0,
        };
        Ok(VectorStats {
            model,
            chunks: chunks as u64,
            with_vectors: with as u64,
        })
    }

    /// Computes vectors, with the store's embedding model, for every chunk that has none
    /// of it (chunks stored before the model was installed, or by another model), a
    /// batch at a time: the database is not locked while the model runs. Calls
    /// `progress` with the chunks done and to do; returns how many were embedded.
    pub fn fill_vectors(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<u64> {
        let Some(embedder) = self.embedder()? else {
            return Ok(0);
        };
        let model = embedder.model().to_string();
        let dims = embedder.dims();
        let db = self.db();
        let todo: i64 = {
            let conn = self.lock();
            conn.query_row(
                "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM chunk_vectors v \
                 JOIN embed_models m ON m.id = v.model WHERE v.chunk = c.id AND m.name = ?1)",
                [&model],
                |r| r.get(0),
            )
            .map_err(&db)?
        };
        let mut done = 0u64;
        let mut after = 0i64;
        loop {
            let rows: Vec<(i64, String, String)> = {
                let conn = self.lock();
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT c.id, c.heading, c.text FROM chunks c WHERE c.id > ?2 AND NOT EXISTS \
                         (SELECT 1 FROM chunk_vectors v JOIN embed_models m ON m.id = v.model \
                         WHERE v.chunk = c.id AND m.name = ?1) ORDER BY c.id LIMIT ?3",
                    )
                    .map_err(&db)?;
                stmt.query_map(params![model, after, FILL_BATCH as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(&db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(&db)?
            };
            let Some(last) = rows.last() else {
                break;
            };
            after = last.0;
            let texts: Vec<String> = rows.iter().map(|(_, h, t)| embed_text(h, t)).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = embedder.embed(&refs).map_err(ResourceError::Embedding)?;
            let mut conn = self.lock();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&db)?;
            let id = Self::model_id(&tx, &model, dims).map_err(&db)?;
            {
                let mut put = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO chunk_vectors(chunk, model, vec) \
                         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?1)",
                    )
                    .map_err(&db)?;
                for ((chunk, _, _), v) in rows.iter().zip(&vectors) {
                    check_dims(v, dims)?;
                    put.execute(params![chunk, id, vector::quantize(v)])
                        .map_err(&db)?;
                }
            }
            tx.commit().map_err(&db)?;
            done += rows.len() as u64;
            progress(done, todo.max(0) as u64);
        }
        Ok(done)
    }

    /// Starts a batch: until [`SqliteStore::end_batch`], adds share one transaction that
    /// commits every 250 ms or 1000 documents. Per-document transactions made FTS5 flush
    /// a new index segment and merge segments at every commit (65% of an import's time);
    /// batched, the terms of many documents are flushed at once. A database error inside
    /// a batch rolls back the open batch ([`ResourceError::BatchLost`] says how many
    /// documents). Only adds may run inside a batch.
    pub fn begin_batch(&self) -> Result<()> {
        self.begin_batch_with(BATCH_AGE, BATCH_DOCS)
    }

    /// [`SqliteStore::begin_batch`] with other limits (tests use a count alone).
    pub fn begin_batch_with(&self, max_age: Duration, max_docs: usize) -> Result<()> {
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        if batch.is_none() {
            *batch = Some(Batch {
                max_age,
                max_docs: max_docs.max(1),
                open: None,
            });
        }
        Ok(())
    }

    /// Commits the open batch, if any, and leaves batch mode.
    pub fn end_batch(&self) -> Result<()> {
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Batch { open: Some(_), .. }) = batch.take() {
            self.lock().execute_batch("COMMIT").map_err(self.db())?;
        }
        Ok(())
    }

    /// Commits the open batch's transaction now, staying in batch mode.
    fn commit_batch(&self) -> Result<()> {
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = batch.as_mut()
            && b.open.take().is_some()
        {
            self.lock().execute_batch("COMMIT").map_err(self.db())?;
        }
        Ok(())
    }

    /// Commits a batch's transaction once it is due, so that neither the work a crash
    /// could lose nor the write lock outlives the batch's age while an import goes on
    /// (also past files that turned out unchanged).
    fn commit_if_due(&self, batch: &mut Option<Batch>, conn: &Connection) -> Result<()> {
        if let Some(b) = batch {
            let due = b
                .open
                .is_some_and(|(began, docs)| docs >= b.max_docs || began.elapsed() >= b.max_age);
            if due {
                conn.execute_batch("COMMIT").map_err(self.db())?;
                b.open = None;
            }
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> ResourceError + '_ {
        ResourceError::db(&self.path)
    }

    /// Every document's id and source, for a refresh; small rows, read at once.
    pub fn sources(&self) -> Result<Vec<(ResourceId, String)>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id, source FROM documents ORDER BY id")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.db())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.db())?;
        Ok(rows)
    }

    /// Rebuilds the full-text index from the stored chunks and merges it into one
    /// segment (faster searches); the WAL is truncated after.
    pub fn rebuild_index(&self) -> Result<()> {
        let conn = self.lock();
        conn.execute_batch(
            "INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');
             INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize');",
        )
        .map_err(self.db())?;
        checkpoint(&conn).map_err(self.db())
    }

    /// Documents, chunks and bytes on disk (database and WAL).
    pub fn stats(&self) -> Result<Stats> {
        let conn = self.lock();
        let (documents, chunks) = conn
            .query_row(
                "SELECT count(*), coalesce(sum(chunks), 0) FROM documents",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .map_err(self.db())?;
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        Ok(Stats {
            documents: documents as u64,
            chunks: chunks as u64,
            bytes: size(&self.path) + size(&wal),
        })
    }

    fn doc(conn: &Connection, id: ResourceId) -> rusqlite::Result<Option<Document>> {
        conn.query_row(
            &format!("SELECT {DOC_COLUMNS} FROM documents d WHERE d.id = ?1"),
            [id],
            row_to_doc,
        )
        .optional()
    }

    /// One search result: chunk `seq` of document `doc`, its snippet on one line.
    fn hit(
        &self,
        conn: &Connection,
        doc: ResourceId,
        seq: i64,
        heading: String,
        snippet: &str,
        score: f64,
    ) -> Result<Hit> {
        let meta = self.must_doc(conn, doc)?;
        Ok(Hit {
            id: doc,
            title: meta.title,
            source: meta.source,
            class: meta.class,
            chunk: seq as u32,
            heading,
            snippet: snippet.split_whitespace().collect::<Vec<_>>().join(" "),
            score,
        })
    }

    fn must_doc(&self, conn: &Connection, id: ResourceId) -> Result<Document> {
        Self::doc(conn, id)
            .map_err(self.db())?
            .ok_or(ResourceError::UnknownId(id))
    }

    /// One add inside `tx` (a transaction or a savepoint), not committed; `vectors`, when
    /// given, are the chunks' vectors in order (see [`SqliteStore::vectors_for`]).
    fn add_in(
        tx: &Connection,
        path: &Path,
        doc: NewDocument,
        vectors: Option<&Vectors>,
    ) -> Result<Added> {
        let markdown = doc.media_type == "text/markdown";
        let db = ResourceError::db(path);
        let known: Option<(ResourceId, String, Option<String>)> = tx
            .query_row(
                "SELECT id, sha256, etag FROM documents WHERE source = ?1",
                [&doc.source],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(&db)?;
        let now = now();
        let added = match known {
            Some((id, sha, etag)) if sha == doc.sha256 => {
                // Same bytes under a new ETag (a re-upload): remember the new one, so the
                // next refresh does not download it again.
                if doc.etag.is_some() && doc.etag != etag {
                    tx.execute(
                        "UPDATE documents SET etag = ?2 WHERE id = ?1",
                        params![id, doc.etag],
                    )
                    .map_err(&db)?;
                }
                return Ok(Added::Unchanged(id));
            }
            Some((id, _, _)) => {
                tx.execute("DELETE FROM chunks WHERE doc = ?1", [id])
                    .map_err(&db)?;
                tx.execute("DELETE FROM tags WHERE doc = ?1", [id])
                    .map_err(&db)?;
                tx.execute(
                    "UPDATE documents SET title = ?2, media_type = ?3, class = ?4, size = ?5, \
                     sha256 = ?6, updated = ?7, etag = ?8 WHERE id = ?1",
                    params![
                        id,
                        doc.title,
                        doc.media_type,
                        doc.class.as_str(),
                        doc.size as i64,
                        doc.sha256,
                        now,
                        doc.etag
                    ],
                )
                .map_err(&db)?;
                Added::Replaced(id)
            }
            None => {
                tx.execute(
                    "INSERT INTO documents(title, source, media_type, class, size, sha256, added, updated, etag) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                    params![
                        doc.title,
                        doc.source,
                        doc.media_type,
                        doc.class.as_str(),
                        doc.size as i64,
                        doc.sha256,
                        now,
                        doc.etag
                    ],
                )
                .map_err(&db)?;
                Added::New(tx.last_insert_rowid())
            }
        };
        let id = added.id();
        insert_tags(tx, path, id, &doc.tags)?;
        let pieces = chunk::split(&doc.text, markdown);
        let vectors = match vectors {
            Some(v) if v.blobs.len() == pieces.len() => {
                Some((Self::model_id(tx, &v.model, v.dims).map_err(&db)?, &v.blobs))
            }
            _ => None,
        };
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO chunks(doc, seq, heading, text) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(&db)?;
            // The index entry is written here, not by a trigger: a statement that fires a
            // trigger runs in a statement savepoint, and FTS5 flushes its pending terms
            // into a new segment (and merges) at every savepoint — per chunk, most of an
            // import's time. Single-row inserts need none, so terms pile up in memory
            // until the transaction commits.
            let mut index = tx
                .prepare_cached("INSERT INTO chunks_fts(rowid, heading, text) VALUES (?1, ?2, ?3)")
                .map_err(&db)?;
            let mut put = match vectors {
                Some(_) => Some(
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO chunk_vectors(chunk, model, vec) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(&db)?,
                ),
                None => None,
            };
            for (seq, piece) in pieces.iter().enumerate() {
                let heading = heading_for(&doc.title, &piece.heading);
                stmt.execute(params![id, seq as i64, heading, piece.text])
                    .map_err(&db)?;
                let chunk = tx.last_insert_rowid();
                index
                    .execute(params![chunk, heading, piece.text])
                    .map_err(&db)?;
                if let (Some(put), Some((model, blobs))) = (put.as_mut(), vectors) {
                    put.execute(params![chunk, model, blobs[seq]])
                        .map_err(&db)?;
                }
            }
        }
        tx.execute(
            "UPDATE documents SET chunks = ?2 WHERE id = ?1",
            params![id, pieces.len() as i64],
        )
        .map_err(&db)?;
        Ok(added)
    }

    /// The vectors of `doc`'s chunks, when the store has an embedding model and the
    /// document is new or changed. The model runs with the database unlocked: an open
    /// import batch is committed first (with vectors to compute, a commit per document
    /// costs little beside them).
    fn vectors_for(&self, doc: &NewDocument) -> Result<Option<Vectors>> {
        if self.embedding_model().is_none() {
            return Ok(None);
        }
        {
            let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            let conn = self.lock();
            let known: Option<String> = conn
                .query_row(
                    "SELECT sha256 FROM documents WHERE source = ?1",
                    [&doc.source],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.db())?;
            if known.as_deref() == Some(doc.sha256.as_str()) {
                return Ok(None);
            }
            if let Some(b) = batch.as_mut()
                && b.open.is_some()
            {
                conn.execute_batch("COMMIT").map_err(self.db())?;
                b.open = None;
            }
        }
        let Some(embedder) = self.embedder()? else {
            return Ok(None);
        };
        let pieces = chunk::split(&doc.text, doc.media_type == "text/markdown");
        let texts: Vec<String> = pieces
            .iter()
            .map(|p| embed_text(&heading_for(&doc.title, &p.heading), &p.text))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let dims = embedder.dims();
        let got = embedder.embed(&refs).map_err(ResourceError::Embedding)?;
        let mut blobs = Vec::with_capacity(got.len());
        for v in &got {
            check_dims(v, dims)?;
            blobs.push(vector::quantize(v));
        }
        Ok(Some(Vectors {
            model: embedder.model().to_string(),
            dims,
            blobs,
        }))
    }

    /// A hybrid search: the BM25 ranking of chunks (every term, then any term) and the
    /// ranking of chunks by the cosine of their vector with the query's (a scan of the
    /// stored int8 vectors, keeping the best few), fused by reciprocal rank; then the best
    /// chunk of each document, as in a BM25 search.
    fn search_hybrid(
        &self,
        query: &str,
        terms: &Terms,
        opts: &SearchOptions,
        model_id: i64,
        limits: rank::Limits,
    ) -> Result<Found> {
        let embedder = self
            .embedder()?
            .ok_or_else(|| ResourceError::Embedding("no embedding model is set".into()))?;
        let dims = embedder.dims();
        let qv = embedder
            .embed(&[query])
            .map_err(ResourceError::Embedding)?
            .pop()
            .ok_or_else(|| ResourceError::Embedding("no vector for the query".into()))?;
        check_dims(&qv, dims)?;
        let q = vector::quantize(&qv);
        let (_, qb) = vector::parts(&q, dims)
            .ok_or_else(|| ResourceError::Embedding("a malformed query vector".into()))?;
        let mut found = Found {
            terms: terms.0.clone(),
            hits: Vec::new(),
            approximate: false,
            mode: SearchMode::Hybrid,
        };
        let conn = self.lock();
        let db = self.db();
        let cap = opts.max_candidates.max(opts.limit);

        // BM25: chunks with every term, then chunks with any (the rest of the ranking).
        let mut bm25 = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let counts = rank::count_terms(&conn, &terms.0, limits).map_err(&db)?;
        let mut exprs = vec![(terms.all(), terms.0.clone(), counts.clone(), true)];
        if terms.0.len() > 1 {
            let (some, their) = rank::fallback(&terms.0, &counts);
            exprs.push((Terms(some.clone()).any(), some, their, false));
        }
        for (i, (expr, expr_terms, expr_counts, all)) in exprs.iter().enumerate() {
            if bm25.len() >= FUSION_DEPTH {
                break;
            }
            let e = rank::Expr {
                text: expr,
                terms: expr_terms,
                counts: expr_counts,
                all: *all,
            };
            let mut cands = rank::candidates(&conn, &e, &opts.filter, cap, limits).map_err(&db)?;
            if cands.len() > cap {
                cands.truncate(cap);
                // Said for the every-term list, as in a BM25 search: the any-term list
                // only fills the ranking up.
                found.approximate |= i == 0;
            }
            cands.sort_by(|a, b| b.1.total_cmp(&a.1));
            for (rowid, _) in cands {
                if seen.insert(rowid) {
                    bm25.push(rowid);
                }
            }
        }
        bm25.truncate(FUSION_DEPTH);

        // Vectors: every stored one of this model (within the filter), the best kept.
        let mut args: Vec<rusqlite::types::Value> = vec![model_id.into()];
        let mut sql = String::from("SELECT chunk, vec FROM chunk_vectors WHERE model = ?");
        if let Some(docs) = doc_filter(&opts.filter, &mut args) {
            sql.push_str(&format!(
                " AND chunk IN (SELECT id FROM chunks WHERE doc IN ({docs}))"
            ));
        }
        let mut top = TopK::new(FUSION_DEPTH);
        {
            let mut stmt = conn.prepare_cached(&sql).map_err(&db)?;
            let mut rows = stmt.query(params_from_iter(args)).map_err(&db)?;
            while let Some(row) = rows.next().map_err(&db)? {
                let chunk: i64 = row.get(0).map_err(&db)?;
                let blob =
                    row.get_ref(1).map_err(&db)?.as_blob().map_err(|e| {
                        ResourceError::Corrupt(format!("chunk {chunk}'s vector: {e}"))
                    })?;
                if let Some((scale, body)) = vector::parts(blob, dims) {
                    top.push(chunk, scale * vector::dot_i8(qb, body) as f32);
                }
            }
        }
        let by_vector: Vec<i64> = top.into_sorted().into_iter().map(|(id, _)| id).collect();

        let fused = vector::rrf(&[&bm25, &by_vector], RRF_K);
        let any = terms.any();
        let mut chunk_of = conn
            .prepare_cached("SELECT doc, seq, heading, text FROM chunks WHERE id = ?1")
            .map_err(&db)?;
        let mut snippet = conn
            .prepare_cached(
                "SELECT snippet(chunks_fts, 1, '**', '**', '…', 24) FROM chunks_fts \
                 WHERE chunks_fts MATCH ?1 AND rowid = ?2",
            )
            .map_err(&db)?;
        let mut docs_seen = std::collections::HashSet::new();
        for (rowid, score) in fused {
            if found.hits.len() >= opts.limit {
                break;
            }
            let Some((doc, seq, heading, text)): Option<(ResourceId, i64, String, String)> =
                chunk_of
                    .query_row([rowid], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                    .map_err(&db)?
            else {
                continue;
            };
            if !docs_seen.insert(doc) {
                continue;
            }
            // A chunk found by its vector alone may hold none of the words: its opening.
            let snip: Option<String> = if terms.is_empty() {
                None
            } else {
                snippet
                    .query_row(params![any, rowid], |r| r.get(0))
                    .optional()
                    .map_err(&db)?
            };
            let snip = snip.unwrap_or_else(|| opening(&text, 24));
            found
                .hits
                .push(self.hit(&conn, doc, seq, heading, &snip, score)?);
        }
        Ok(found)
    }

    /// [`ResourceStore::search`] with other limits for ranking without `bm25()` (tests
    /// use small ones).
    fn search_with_limits(
        &self,
        query: &str,
        opts: &SearchOptions,
        limits: rank::Limits,
    ) -> Result<Found> {
        let terms = Terms::parse(query);

        let mut found = Found {
            terms: terms.0.clone(),
            hits: Vec::new(),
            approximate: false,
            mode: SearchMode::Bm25,
        };
        if terms.is_empty() || opts.limit == 0 {
            return Ok(found);
        }
        // Hybrid when an embedding model is set and chunks have vectors of it.
        if !opts.bm25_only
            && let Some(model) = self.embedding_model()
        {
            let stored = Self::stored_model(&self.lock(), &model).map_err(self.db())?;
            if let Some(model_id) = stored {
                return self.search_hybrid(query, &terms, opts, model_id, limits);
            }
        }
        let conn = self.lock();
        let db = self.db();
        let cap = opts.max_candidates.max(opts.limit);
        let counts = rank::count_terms(&conn, &terms.0, limits).map_err(&db)?;
        let mut exprs = vec![(terms.all(), terms.0.clone(), counts.clone(), true)];
        if terms.0.len() > 1 {
            let (some, their) = rank::fallback(&terms.0, &counts);
            exprs.push((Terms(some.clone()).any(), some, their, false));
        }
        let mut seen = std::collections::HashSet::new();
        for (expr, expr_terms, expr_counts, all) in exprs {
            if found.hits.len() >= opts.limit {
                break;
            }
            let e = rank::Expr {
                text: &expr,
                terms: &expr_terms,
                counts: &expr_counts,
                all,
            };
            let mut cands = rank::candidates(&conn, &e, &opts.filter, cap, limits).map_err(&db)?;
            if cands.len() > cap {
                cands.truncate(cap);
                found.approximate = true;
            }
            cands.sort_by(|a, b| b.1.total_cmp(&a.1));
            let mut chunk_of = conn
                .prepare_cached("SELECT doc, seq, heading FROM chunks WHERE id = ?1")
                .map_err(&db)?;
            let mut snippet = conn
                .prepare_cached(
                    "SELECT snippet(chunks_fts, 1, '**', '**', '…', 24) FROM chunks_fts \
                     WHERE chunks_fts MATCH ?1 AND rowid = ?2",
                )
                .map_err(&db)?;
            for (rowid, score) in cands {
                if found.hits.len() >= opts.limit {
                    break;
                }
                let (doc, seq, heading): (ResourceId, i64, String) = chunk_of
                    .query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(&db)?;
                if !seen.insert(doc) {
                    continue;
                }
                let snip: String = snippet
                    .query_row(params![expr, rowid], |r| r.get(0))
                    .map_err(&db)?;
                found
                    .hits
                    .push(self.hit(&conn, doc, seq, heading, &snip, score)?);
            }
        }
        Ok(found)
    }

    /// Removes documents, all or none; with `keep_out`, those under an added folder or
    /// prefix are remembered so `reindex` leaves them out.
    fn remove_in(&self, ids: &[ResourceId], keep_out: bool) -> Result<Vec<Document>> {
        let mut conn = self.lock();
        let db = ResourceError::db(&self.path);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let mut removed = Vec::with_capacity(ids.len());
        for &id in ids {
            let doc = Self::doc(&tx, id)
                .map_err(&db)?
                .ok_or(ResourceError::UnknownId(id))?;
            tx.execute("DELETE FROM chunks WHERE doc = ?1", [id])
                .map_err(&db)?;
            tx.execute("DELETE FROM tags WHERE doc = ?1", [id])
                .map_err(&db)?;
            tx.execute("DELETE FROM documents WHERE id = ?1", [id])
                .map_err(&db)?;
            removed.push(doc);
        }
        if keep_out {
            roots::keep_out(&tx, &removed).map_err(&db)?;
        }
        tx.commit().map_err(&db)?;
        // The old pages live on in the WAL until it is checkpointed and truncated.
        checkpoint(&conn).map_err(&db)?;
        Ok(removed)
    }
}

/// Size of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Documents stored.
    pub documents: u64,
    /// Chunks indexed.
    pub chunks: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// A `SELECT id FROM documents …` for `filter`, pushing its arguments; `None` when it
/// selects every document.
fn doc_filter(filter: &Filter, args: &mut Vec<rusqlite::types::Value>) -> Option<String> {
    let mut conds = Vec::new();
    if let Some(class) = filter.class {
        conds.push("class = ?".to_string());
        args.push(class.as_str().to_string().into());
    }
    if let Some(tag) = &filter.tag {
        conds.push("id IN (SELECT doc FROM tags WHERE tag = ?)".to_string());
        args.push(tag.clone().into());
    }
    if let Some(ids) = &filter.ids {
        let list = ids
            .iter()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        conds.push(format!("id IN ({list})"));
    }
    if conds.is_empty() {
        return None;
    }
    Some(format!(
        "SELECT id FROM documents WHERE {}",
        conds.join(" AND ")
    ))
}

fn row_to_doc(r: &rusqlite::Row<'_>) -> rusqlite::Result<Document> {
    let class: String = r.get(4)?;
    let tags: Option<String> = r.get(10)?;
    Ok(Document {
        id: r.get(0)?,
        title: r.get(1)?,
        source: r.get(2)?,
        media_type: r.get(3)?,
        // Only the four class names are ever written.
        class: class.parse().unwrap_or(DataClass::Secret),
        size: r.get::<_, i64>(5)? as u64,
        sha256: r.get(6)?,
        added: r.get(7)?,
        updated: r.get(8)?,
        chunks: r.get::<_, i64>(9)? as u32,
        tags: tags
            .map(|t| t.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        etag: r.get(11)?,
    })
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

/// A chunk's heading: the title, then the section (a first heading that repeats the
/// title is not said twice).
fn heading_for(title: &str, section: &str) -> String {
    if section.is_empty() || section == title {
        title.to_string()
    } else if section.starts_with(&format!("{title} › ")) {
        section.to_string()
    } else {
        format!("{title} › {section}")
    }
}

/// The chunk's vectors as [`SqliteStore::vectors_for`] makes them.
#[derive(Debug)]
struct Vectors {
    model: String,
    dims: usize,
    blobs: Vec<Vec<u8>>,
}

/// What a chunk's vector is computed from: its heading path, then its text.
fn embed_text(heading: &str, text: &str) -> String {
    format!("{heading}\n\n{text}")
}

fn check_dims(v: &[f32], dims: usize) -> Result<()> {
    if v.len() == dims {
        Ok(())
    } else {
        Err(ResourceError::Embedding(format!(
            "it returned a vector of {} numbers, not {dims}",
            v.len()
        )))
    }
}

/// The first `words` words of `text`, with `…` when there are more.
fn opening(text: &str, words: usize) -> String {
    let mut it = text.split_whitespace();
    let head: Vec<&str> = it.by_ref().take(words).collect();
    let mut out = head.join(" ");
    if it.next().is_some() {
        out.push('…');
    }
    out
}

fn insert_tags(tx: &Connection, path: &Path, id: ResourceId, tags: &[String]) -> Result<()> {
    for tag in tags {
        let tag = check_tag(tag)?;
        tx.execute(
            "INSERT OR IGNORE INTO tags(doc, tag) VALUES (?1, ?2)",
            params![id, tag],
        )
        .map_err(ResourceError::db(path))?;
    }
    Ok(())
}

impl ResourceStore for SqliteStore {
    fn add(&self, doc: NewDocument) -> Result<Added> {
        for tag in &doc.tags {
            check_tag(tag)?;
        }
        let vectors = self.vectors_for(&doc)?;
        let vectors = vectors.as_ref();
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        let mut conn = self.lock();
        let db = ResourceError::db(&self.path);
        let Some(Batch { open, .. }) = batch.as_mut() else {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&db)?;
            let added = Self::add_in(&tx, &self.path, doc, vectors)?;
            tx.commit().map_err(&db)?;
            return Ok(added);
        };
        if open.is_none() {
            conn.execute_batch("BEGIN IMMEDIATE").map_err(&db)?;
            *open = Some((Instant::now(), 0));
        }
        // No savepoint per document: FTS5 flushes its pending terms into a new segment
        // (and merges segments) at every savepoint release, as at every commit — that was
        // 65% of an import's time. Tags are checked above, so what can fail here is the
        // database itself; then the whole open batch is rolled back, and said so.
        let added = match Self::add_in(&conn, &self.path, doc, vectors) {
            Ok(added) => added,
            Err(e) => {
                let lost = open.map_or(0, |(_, docs)| docs);
                let _ = conn.execute_batch("ROLLBACK");
                *open = None;
                return Err(ResourceError::BatchLost {
                    documents: lost,
                    why: e.to_string(),
                });
            }
        };
        if let Some((_, docs)) = open.as_mut() {
            *docs += 1;
        }
        self.commit_if_due(&mut batch, &conn)?;
        Ok(added)
    }

    fn get(&self, id: ResourceId) -> Result<Document> {
        let conn = self.lock();
        self.must_doc(&conn, id)
    }

    fn find_source(&self, source: &str) -> Result<Option<(ResourceId, String)>> {
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        let conn = self.lock();
        self.commit_if_due(&mut batch, &conn)?;
        conn.query_row(
            "SELECT id, sha256 FROM documents WHERE source = ?1",
            [source],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.db())
    }

    fn list(&self, filter: &Filter) -> Result<Vec<Document>> {
        let conn = self.lock();
        if let Some(tag) = &filter.tag {
            let known: Option<i64> = conn
                .query_row("SELECT 1 FROM tags WHERE tag = ?1 LIMIT 1", [tag], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(self.db())?;
            if known.is_none() {
                return Err(ResourceError::UnknownTag(tag.clone()));
            }
        }
        let mut args = Vec::new();
        let sql = match doc_filter(filter, &mut args) {
            Some(docs) => format!(
                "SELECT {DOC_COLUMNS} FROM documents d WHERE d.id IN ({docs}) ORDER BY d.id"
            ),
            None => format!("SELECT {DOC_COLUMNS} FROM documents d ORDER BY d.id"),
        };
        let mut stmt = conn.prepare(&sql).map_err(self.db())?;
        let docs = stmt
            .query_map(params_from_iter(args), row_to_doc)
            .map_err(self.db())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.db())?;
        Ok(docs)
    }

    fn update(&self, id: ResourceId, change: &Change) -> Result<Document> {
        if let Some(tags) = &change.tags {
            for tag in tags {
                check_tag(tag)?;
            }
        }
        let mut conn = self.lock();
        let db = ResourceError::db(&self.path);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let old = Self::doc(&tx, id)
            .map_err(&db)?
            .ok_or(ResourceError::UnknownId(id))?;
        if let Some(title) = &change.title {
            tx.execute(
                "UPDATE documents SET title = ?2 WHERE id = ?1",
                params![id, title],
            )
            .map_err(&db)?;
            // Headings start with the title, which is searched with them.
            tx.execute(
                "UPDATE chunks SET heading = ?2 || substr(heading, ?3) WHERE doc = ?1",
                params![id, title, old.title.chars().count() as i64 + 1],
            )
            .map_err(&db)?;
        }
        if let Some(class) = change.class {
            tx.execute(
                "UPDATE documents SET class = ?2 WHERE id = ?1",
                params![id, class.as_str()],
            )
            .map_err(&db)?;
        }
        if let Some(tags) = &change.tags {
            tx.execute("DELETE FROM tags WHERE doc = ?1", [id])
                .map_err(&db)?;
            insert_tags(&tx, &self.path, id, tags)?;
        }
        tx.execute(
            "UPDATE documents SET updated = ?2 WHERE id = ?1",
            params![id, now()],
        )
        .map_err(&db)?;
        let doc = Self::doc(&tx, id)
            .map_err(&db)?
            .ok_or(ResourceError::UnknownId(id))?;
        tx.commit().map_err(&db)?;
        Ok(doc)
    }

    fn remove(&self, ids: &[ResourceId]) -> Result<Vec<Document>> {
        // Removed by the user: a folder's reindex must not bring them back.
        self.remove_in(ids, true)
    }

    fn search(&self, query: &str, opts: &SearchOptions) -> Result<Found> {
        self.search_with_limits(query, opts, rank::LIMITS)
    }

    fn read(&self, id: ResourceId, from: u32, max_bytes: usize) -> Result<Excerpt> {
        let conn = self.lock();
        let document = self.must_doc(&conn, id)?;
        if from >= document.chunks.max(1) {
            return Err(ResourceError::NoSuchChunk {
                id,
                chunks: document.chunks,
                asked: from,
            });
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, heading, text FROM chunks WHERE doc = ?1 AND seq >= ?2 ORDER BY seq",
            )
            .map_err(self.db())?;
        let mut rows = stmt.query(params![id, from as i64]).map_err(self.db())?;
        let mut text = String::new();
        let mut to = from;
        let mut last_heading = String::new();
        while let Some(row) = rows.next().map_err(self.db())? {
            let seq: i64 = row.get(0).map_err(self.db())?;
            let heading: String = row.get(1).map_err(self.db())?;
            let body: String = row.get(2).map_err(self.db())?;
            let head = if heading != last_heading {
                format!("[{heading}]\n")
            } else {
                String::new()
            };
            if to > from && text.len() + head.len() + body.len() + 2 > max_bytes {
                break;
            }
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&head);
            text.push_str(&body);
            last_heading = heading;
            to = seq as u32 + 1;
        }
        Ok(Excerpt {
            document,
            from,
            to,
            text,
        })
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let io = |source| ResourceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(io)
    }
}

/// Creates the database file 0600 before SQLite does (SQLite gives its WAL and shared
/// memory files the same mode), and narrows an existing one.
fn create_private_file(path: &Path) -> Result<()> {
    let io = |source| ResourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let file = opts.open(path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
    }
    #[cfg(not(unix))]
    {
        opts.open(path).map_err(io)?;
    }
    Ok(())
}
