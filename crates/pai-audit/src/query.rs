//! Reading the log back: filtered listings, full-text search, one event, the egress
//! ledger. Every filter maps onto an index (`events_ts`, `events_session_ts`,
//! `events_kind_ts`) or the FTS5 table `events_fts`.

use pai_types::Locality;
use rusqlite::OptionalExtension;
use rusqlite::types::Value;
use serde::{Deserialize, Serialize};

use crate::chain::HASHED_COLUMNS;
use crate::store::{classify, decode_row};
use crate::{EventId, EventKind, Result, SqliteAudit, StoredEvent};

/// Which events a listing or search returns. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this session.
    pub session: Option<String>,
    /// Only events at or after this RFC 3339 UTC time (a prefix such as `2026-11-30` works).
    pub since: Option<String>,
    /// Only events before this RFC 3339 UTC time.
    pub until: Option<String>,
    /// Only these kinds.
    pub kinds: Vec<EventKind>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only models or endpoints that ran here.
    pub locality: Option<Locality>,
    /// Only this mode (`chat`, `prompt`, `agent`).
    pub mode: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<usize>,
}

/// An event as `pai audit show` prints it: the row, whether its content was purged,
/// and its chain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDetail {
    /// The event.
    #[serde(flatten)]
    pub stored: StoredEvent,
    /// Hex SHA-256 of the content as written (`None` on legacy rows).
    pub content_sha256: Option<String>,
    /// The previous row's hash.
    pub prev_hash: String,
    /// The row's MAC (`None` on legacy rows).
    pub mac: Option<String>,
    /// The content was purged; the hashes remain.
    pub purged: bool,
    /// The requests that left for this prompt (its `egress` rows), when it is one.
    pub egress: Vec<StoredEvent>,
}

/// Requests to one endpoint from one locality, as `pai audit egress` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    /// Where requests went (the endpoint, or the URL of a tool's hop; credentials redacted).
    pub endpoint: String,
    /// `local` / `remote`, when recorded.
    pub locality: Option<String>,
    /// Requests that left.
    pub requests: u64,
    /// Bytes of request bodies sent.
    pub bytes_out: u64,
    /// Bytes received, where the row recorded them.
    pub bytes_in: u64,
    /// Tokens sent and received by model calls to this endpoint.
    pub tokens: u64,
    /// Data classes that went out.
    pub classes: Vec<String>,
    /// Values replaced by placeholders before leaving.
    pub redactions: u64,
    /// Requests or spawns policy refused for this endpoint.
    pub refusals: u64,
}

impl SqliteAudit {
    /// Events matching `filter`, newest first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<StoredEvent>> {
        self.select(filter, None)
    }

    /// Events matching `filter` whose content matches the FTS5 query `text` (words,
    /// `"phrases"`, `prefix*`, `AND`/`OR`/`NOT`), newest first.
    pub fn search(&self, text: &str, filter: &Filter) -> Result<Vec<StoredEvent>> {
        self.select(filter, Some(text))
    }

    fn select(&self, filter: &Filter, text: Option<&str>) -> Result<Vec<StoredEvent>> {
        let cols: Vec<String> = HASHED_COLUMNS.iter().map(|c| format!("e.{c}")).collect();
        // A search walks the FTS5 index newest match first and joins each row by id, so a
        // LIMIT stops it early however many rows match; a listing walks the filter's
        // (…, ts) index newest first (ids break ties within a millisecond).
        let (from, order) = match text {
            Some(_) => (
                "events_fts JOIN events e ON e.id = events_fts.rowid",
                "events_fts.rowid DESC",
            ),
            None => ("events e", "e.ts DESC, e.id DESC"),
        };
        let mut sql = format!(
            "SELECT e.id, e.hash, {} FROM {from} WHERE 1",
            cols.join(", ")
        );
        let mut params: Vec<Value> = Vec::new();
        let mut cond = |clause: &str, value: Value| {
            params.push(value);
            sql.push_str(&format!(" AND {clause} ?{}", params.len()));
        };
        if let Some(t) = text {
            cond("events_fts MATCH", Value::Text(t.to_string()));
        }
        if let Some(s) = &filter.session {
            cond("e.session =", Value::Text(s.clone()));
        }
        if let Some(s) = &filter.since {
            cond("e.ts >=", Value::Text(s.clone()));
        }
        if let Some(s) = &filter.until {
            cond("e.ts <", Value::Text(s.clone()));
        }
        if let Some(p) = &filter.provider {
            cond("e.provider =", Value::Text(p.clone()));
        }
        if let Some(l) = filter.locality {
            cond("e.locality =", Value::Text(l.to_string()));
        }
        if let Some(m) = &filter.mode {
            cond("e.mode =", Value::Text(m.clone()));
        }
        if !filter.kinds.is_empty() {
            let names: Vec<String> = filter
                .kinds
                .iter()
                .map(|k| format!("'{}'", k.as_str()))
                .collect();
            sql.push_str(&format!(" AND e.kind IN ({})", names.join(", ")));
        }
        sql.push_str(&format!(" ORDER BY {order}"));
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(
                " LIMIT {}",
                i64::try_from(limit).unwrap_or(i64::MAX)
            ));
        }
        let path = self.path().to_path_buf();
        let conn = self.lock();
        let mut stmt = conn.prepare(&sql).map_err(|e| classify(&path, e))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| classify(&path, e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| classify(&path, e))? {
            out.push(decode_row(&path, row)?);
        }
        Ok(out)
    }

    /// One event with its chain fields and, for a prompt, the requests that carried it.
    pub fn show(&self, id: EventId) -> Result<Option<EventDetail>> {
        let path = self.path().to_path_buf();
        let sql = |e| classify(&path, e);
        let conn = self.lock();
        let select = format!(
            "SELECT id, hash, {}, content_sha256, prev_hash, mac, purged FROM events WHERE id = ?1",
            HASHED_COLUMNS.join(", ")
        );
        let mut stmt = conn.prepare(&select).map_err(sql)?;
        let mut rows = stmt.query([id.0]).map_err(sql)?;
        let Some(row) = rows.next().map_err(sql)? else {
            return Ok(None);
        };
        let stored = decode_row(&path, row)?;
        let n = HASHED_COLUMNS.len() + 2;
        let mut detail = EventDetail {
            content_sha256: row.get(n).map_err(sql)?,
            prev_hash: row.get(n + 1).map_err(sql)?,
            mac: row.get(n + 2).map_err(sql)?,
            purged: row.get::<_, i64>(n + 3).map_err(sql)? != 0,
            egress: Vec::new(),
            stored,
        };
        drop(rows);
        if detail.stored.event.kind == EventKind::Prompt {
            // The requests a prompt went out in follow it, up to the session's next prompt.
            let select = format!(
                "SELECT id, hash, {} FROM events WHERE id > ?1 AND session = ?2 AND kind = 'egress' \
                 AND id < coalesce((SELECT min(id) FROM events WHERE id > ?1 AND session = ?2 \
                 AND kind = 'prompt'), 9223372036854775807) ORDER BY id LIMIT 50",
                HASHED_COLUMNS.join(", ")
            );
            let mut stmt = conn.prepare(&select).map_err(sql)?;
            let mut rows = stmt
                .query(rusqlite::params![id.0, detail.stored.event.session])
                .map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                detail.egress.push(decode_row(&path, row)?);
            }
        }
        Ok(Some(detail))
    }

    /// The egress ledger since `since` (RFC 3339 prefix; `None`: all time), per endpoint
    /// and locality, busiest first.
    pub fn egress_ledger(&self, since: Option<&str>) -> Result<Vec<LedgerRow>> {
        let path = self.path().to_path_buf();
        let sql = |e| classify(&path, e);
        let conn = self.lock();
        // Egress rows carry JSON (url, bytes, classes, redacted); a row whose content is
        // not JSON (an MCP spawn, a purged row) counts as a request of unknown size.
        let mut stmt = conn
            .prepare(
                "WITH e AS (SELECT * FROM events WHERE ts >= ?1), \
                 hops AS (SELECT CASE WHEN endpoint != '' THEN endpoint \
                   WHEN json_valid(content) THEN coalesce(json_extract(content, '$.url'), '') \
                   ELSE '' END AS target, \
                   coalesce(locality, CASE WHEN json_valid(content) \
                     THEN json_extract(content, '$.locality') END) AS loc, content \
                   FROM e WHERE kind = 'egress') \
                 SELECT target, loc, count(*), \
                   sum(CASE WHEN json_valid(content) THEN coalesce(json_extract(content, '$.bytes'), 0) ELSE 0 END), \
                   sum(CASE WHEN json_valid(content) THEN coalesce(json_extract(content, '$.bytes_in'), \
                     json_extract(content, '$.received'), 0) ELSE 0 END), \
                   (SELECT coalesce(sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)), 0) \
                     FROM e WHERE kind IN ('response', 'summary') AND endpoint = target \
                     AND coalesce(locality, '') = coalesce(loc, '')), \
                   (SELECT group_concat(DISTINCT j.value) FROM hops h2, json_each(h2.content, '$.classes') j \
                     WHERE h2.target = hops.target AND coalesce(h2.loc, '') = coalesce(hops.loc, '') \
                     AND json_valid(h2.content)), \
                   (SELECT coalesce(sum(j.value), 0) FROM hops h2, json_each(h2.content, '$.redacted') j \
                     WHERE h2.target = hops.target AND coalesce(h2.loc, '') = coalesce(hops.loc, '') \
                     AND json_valid(h2.content)), \
                   (SELECT count(*) FROM e WHERE kind = 'policy' AND endpoint = target \
                     AND endpoint != '' AND content LIKE 'deny%') \
                 FROM hops GROUP BY target, loc ORDER BY count(*) DESC, target",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([since.unwrap_or("")], |r| {
                let n = |i| {
                    r.get::<_, Option<i64>>(i)
                        .map(|v| v.unwrap_or(0).max(0) as u64)
                };
                let classes: Option<String> = r.get(6)?;
                let mut classes: Vec<String> = classes
                    .map(|c| c.split(',').map(str::to_string).collect())
                    .unwrap_or_default();
                classes.sort();
                Ok(LedgerRow {
                    endpoint: r.get(0)?,
                    locality: r.get(1)?,
                    requests: n(2)?,
                    bytes_out: n(3)?,
                    bytes_in: n(4)?,
                    tokens: n(5)?,
                    classes,
                    redactions: n(7)?,
                    refusals: n(8)?,
                })
            })
            .map_err(sql)?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(sql)
    }
}

/// What `purge` removes the content of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeScope {
    /// Every event before this RFC 3339 UTC time (or date prefix).
    Before(String),
    /// Every event of this session.
    Session(String),
}

/// What a purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Rows whose content was removed now.
    pub rows: u64,
    /// The first and last of them.
    pub range: Option<(EventId, EventId)>,
}

impl SqliteAudit {
    /// Removes the content of the events in `scope` (and their words from the search
    /// index), keeping every row with its hash and MAC as a tombstone, so `verify` still
    /// passes; then rewrites the file (`VACUUM`) and empties the WAL, so the removed bytes
    /// leave the disk's copy of the log, not just its index.
    pub fn purge(&self, scope: &PurgeScope) -> Result<PurgeReport> {
        self.keeping_files(|| {
            let report = self.purge_rows(scope)?;
            if report.rows > 0 {
                let path = self.path().to_path_buf();
                let conn = self.lock();
                conn.execute_batch("VACUUM")
                    .map_err(|e| classify(&path, e))?;
                checkpoint(&conn, &path)?;
            }
            Ok(report)
        })
    }

    /// Purges events older than `keep_days` days; cheap when there are none (one lookup
    /// in an index of unpurged rows), so it runs on every open that asks for it. Freed
    /// pages are zeroed (`secure_delete`) and the WAL emptied, without a full `VACUUM`.
    pub fn apply_retention(&self, keep_days: u32) -> Result<PurgeReport> {
        let cutoff =
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * i64::from(keep_days));
        let cutoff = format!("{cutoff:.3}");
        let path = self.path().to_path_buf();
        let any: bool = self
            .lock()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE purged = 0 AND ts < ?1)",
                [&cutoff],
                |r| r.get(0),
            )
            .map_err(|e| classify(&path, e))?;
        if !any {
            return Ok(PurgeReport::default());
        }
        self.keeping_files(|| {
            let report = self.purge_rows(&PurgeScope::Before(cutoff))?;
            checkpoint(&self.lock(), &path)?;
            Ok(report)
        })
    }

    fn purge_rows(&self, scope: &PurgeScope) -> Result<PurgeReport> {
        let path = self.path().to_path_buf();
        let sql = |e| classify(&path, e);
        let (clause, value) = match scope {
            PurgeScope::Before(ts) => ("ts < ?1", ts),
            PurgeScope::Session(s) => ("session = ?1", s),
        };
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        // The index forgets each row's words first: an external-content FTS5 table needs
        // the content being removed to find them.
        let forgot = tx
            .execute(
                &format!(
                    "INSERT INTO events_fts (events_fts, rowid, content) \
                     SELECT 'delete', id, content FROM events WHERE purged = 0 AND {clause}"
                ),
                [value],
            )
            .map_err(sql)?;
        let range: Option<(i64, i64)> = tx
            .query_row(
                &format!("SELECT min(id), max(id) FROM events WHERE purged = 0 AND {clause}"),
                [value],
                |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?)),
            )
            .map_err(sql)?;
        let rows = tx
            .execute(
                &format!(
                    "UPDATE events SET content = '', purged = 1 WHERE purged = 0 AND {clause}"
                ),
                [value],
            )
            .map_err(sql)?;
        debug_assert_eq!(forgot, rows);
        tx.commit().map_err(sql)?;
        Ok(PurgeReport {
            rows: rows as u64,
            range: range.map(|(a, b)| (EventId(a), EventId(b))),
        })
    }
}

/// Copies the WAL into the database and truncates it, so old page images (with content
/// since removed) do not linger in it.
fn checkpoint(conn: &rusqlite::Connection, path: &std::path::Path) -> Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| classify(path, e))
}

impl SqliteAudit {
    /// Writes the log as JSON Lines to `out`: first a header (format, key id, the
    /// checkpoint line, and the link into the first exported row), then every row from
    /// `since` on (RFC 3339 prefix; `None`: all) with every stored column, so the chain can
    /// be re-verified outside PAI (docs/audit.md). Returns the rows written.
    pub fn export(&self, since: Option<&str>, out: &mut dyn std::io::Write) -> Result<u64> {
        let path = self.path().to_path_buf();
        let sql = |e| classify(&path, e);
        let io = |error| crate::AuditError::Export {
            path: path.clone(),
            error,
        };
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql)?;
        let first: Option<i64> = tx
            .query_row(
                "SELECT min(id) FROM events WHERE ts >= ?1",
                [since.unwrap_or("")],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let first = first.unwrap_or(i64::MAX);
        let (prev_hash, prev_mac): (String, String) = tx
            .query_row(
                "SELECT hash, coalesce(mac, hash) FROM events WHERE id = ?1 - 1",
                [first],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql)?
            .unwrap_or_else(|| (crate::chain::GENESIS.into(), crate::chain::GENESIS.into()));
        let head = self.head_line()?;
        let header = serde_json::json!({
            "format": "pai-audit-export/1",
            "key_id": self.key().map(|k| k.id().to_string()),
            "head": head,
            "first_id": if first == i64::MAX { None } else { Some(first) },
            "prev_hash": prev_hash,
            "prev_mac": prev_mac,
        });
        writeln!(out, "{header}").map_err(io)?;
        let mut stmt = tx
            .prepare(
                "SELECT id, ts, user, session, mode, kind, provider, endpoint, model, locality, \
                 prompt_tokens, completion_tokens, tokens_estimated, duration_ms, content, \
                 content_sha256, prev_hash, hash, mac, purged FROM events WHERE id >= ?1 ORDER BY id",
            )
            .map_err(sql)?;
        let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
        let mut rows = stmt.query([first]).map_err(sql)?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(sql)? {
            let mut obj = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let v = match row.get_ref(i).map_err(sql)? {
                    rusqlite::types::ValueRef::Null => serde_json::Value::Null,
                    rusqlite::types::ValueRef::Integer(v) => v.into(),
                    rusqlite::types::ValueRef::Real(v) => v.into(),
                    rusqlite::types::ValueRef::Text(t) => {
                        String::from_utf8_lossy(t).into_owned().into()
                    }
                    rusqlite::types::ValueRef::Blob(b) => hex::encode(b).into(),
                };
                obj.insert(name.clone(), v);
            }
            writeln!(out, "{}", serde_json::Value::Object(obj)).map_err(io)?;
            n += 1;
        }
        out.flush().map_err(io)?;
        Ok(n)
    }
}
