//! The folders and S3 prefixes the user added, so `reindex` can list them again and find
//! what is new, and the documents the user removed from under them, so `reindex` does not
//! bring those back. Removed documents are remembered by the SHA-256 of their source only:
//! `rm` leaves neither their text nor their path in the file.

use std::collections::HashSet;

use pai_types::DataClass;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::{SqliteStore, now};
use crate::error::{ResourceError, Result};
use crate::model::{Document, ResourceId, Root};

/// Tables added after schema version 3. An older pai ignores them, so they need no new
/// version: they are created when missing, on open.
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS roots (
    uri TEXT PRIMARY KEY,
    class TEXT NOT NULL,
    tags TEXT NOT NULL,
    added TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kept_out (
    root TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    PRIMARY KEY (root, source_sha256)
) WITHOUT ROWID;
";

/// Creates the tables when an older store lacks them.
pub(super) fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    let have: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('roots', 'kept_out')",
        [],
        |r| r.get(0),
    )?;
    if have < 2 {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(TABLES)?;
        tx.commit()?;
    }
    Ok(())
}

/// A source as `kept_out` remembers it.
fn key(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

/// Sources the user removed from under the roots: `reindex` leaves them out.
#[derive(Debug, Clone, Default)]
pub struct KeptOut(HashSet<String>);

impl KeptOut {
    /// Whether `source` was removed by the user.
    pub fn contains(&self, source: &str) -> bool {
        !self.0.is_empty() && self.0.contains(&key(source))
    }
}

fn roots_in(conn: &Connection) -> rusqlite::Result<Vec<Root>> {
    let mut stmt = conn.prepare_cached("SELECT uri, class, tags FROM roots ORDER BY uri")?;
    stmt.query_map([], |r| {
        let class: String = r.get(1)?;
        let tags: String = r.get(2)?;
        Ok(Root {
            uri: r.get(0)?,
            // Only the four class names are ever written.
            class: class.parse().unwrap_or(DataClass::Secret),
            tags: tags
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
        })
    })?
    .collect()
}

/// Whether any document lies under `uri` (the source index answers, no scan: `0` is the
/// character after `/`).
fn has_documents_under(conn: &Connection, uri: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM documents WHERE source = ?1 \
         OR (source >= ?1 || '/' AND source < ?1 || '0') LIMIT 1",
        [uri],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

/// Inside `rm`'s transaction: remembers each removed document under a root, so `reindex`
/// does not import it again, and forgets a root nothing is left under (the user removed
/// the folder's documents: `reindex` stops listing it).
pub(super) fn keep_out(conn: &Connection, removed: &[Document]) -> rusqlite::Result<()> {
    let roots = roots_in(conn)?;
    if roots.is_empty() {
        return Ok(());
    }
    let mut touched = Vec::new();
    for doc in removed {
        for root in roots.iter().filter(|r| r.covers(&doc.source)) {
            conn.execute(
                "INSERT OR IGNORE INTO kept_out(root, source_sha256) VALUES (?1, ?2)",
                params![root.uri, key(&doc.source)],
            )?;
            if !touched.contains(&root.uri) {
                touched.push(root.uri.clone());
            }
        }
    }
    for uri in touched {
        if !has_documents_under(conn, &uri)? {
            conn.execute("DELETE FROM roots WHERE uri = ?1", [&uri])?;
            conn.execute("DELETE FROM kept_out WHERE root = ?1", [&uri])?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Remembers a folder or prefix the user added (the latest class and tags win), and
    /// forgets what was removed from under it: adding a folder again imports all of it.
    /// Commits an import's open batch first.
    pub fn add_root(&self, root: &Root) -> Result<()> {
        for tag in &root.tags {
            crate::model::check_tag(tag)?;
        }
        self.commit_batch()?;
        let mut conn = self.lock();
        let db = ResourceError::db(&self.path);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        tx.execute(
            "INSERT INTO roots(uri, class, tags, added) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(uri) DO UPDATE SET class = excluded.class, tags = excluded.tags",
            params![root.uri, root.class.as_str(), root.tags.join(","), now()],
        )
        .map_err(&db)?;
        tx.execute("DELETE FROM kept_out WHERE root = ?1", [&root.uri])
            .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    /// The folders and prefixes added, by URI.
    pub fn roots(&self) -> Result<Vec<Root>> {
        roots_in(&self.lock()).map_err(self.db())
    }

    /// What the user removed from under the roots.
    pub fn kept_out(&self) -> Result<KeptOut> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT source_sha256 FROM kept_out")
            .map_err(self.db())?;
        let keys = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.db())?
            .collect::<rusqlite::Result<HashSet<String>>>()
            .map_err(self.db())?;
        Ok(KeptOut(keys))
    }

    /// Removes documents whose file or object is gone from under a root (`reindex`): the
    /// text leaves the file as with `rm`, but the source is not kept out — should the file
    /// come back, the next `reindex` imports it again.
    pub fn remove_vanished(&self, ids: &[ResourceId]) -> Result<Vec<Document>> {
        self.remove_in(ids, false)
    }
}
