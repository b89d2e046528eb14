use std::ffi::c_int;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pai_types::{Locality, Usage, redact_endpoint};
use rusqlite::config::DbConfig;
use rusqlite::hooks::Wal;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::chain::{GENESIS, HASHED_COLUMNS, content_sha256, row_hash_v2, row_mac};
use crate::head::{self, Head, ReadHead};
use crate::verify::{HeadProblem, HeadStatus};
use crate::{AuditError, AuditEvent, AuditKey, AuditSink, EventId, EventKind, Result, StoredEvent};

/// 1: hash-chained rows. 2: keyed rows (`mac`), `content_sha256`, `purged`, filter indexes,
/// and `events_fts`, an external-content FTS5 index of `content` kept by the append path
/// (its `secure-delete` option on, so purged words leave the index).
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// Long enough to outlast another pai process's insert, short enough to report a stuck one.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Each step takes the schema from version `i` to `i + 1`; a new file runs them all.
const MIGRATIONS: [&str; 2] = [
    "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    user TEXT NOT NULL,
    session TEXT NOT NULL,
    mode TEXT NOT NULL,
    kind TEXT NOT NULL,
    provider TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    locality TEXT NULL,
    prompt_tokens INTEGER NULL,
    completion_tokens INTEGER NULL,
    tokens_estimated INTEGER NULL,
    duration_ms INTEGER NULL,
    content TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
",
    "
ALTER TABLE events ADD COLUMN content_sha256 TEXT NULL;
ALTER TABLE events ADD COLUMN mac TEXT NULL;
ALTER TABLE events ADD COLUMN purged INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_session_ts ON events(session, ts);
CREATE INDEX IF NOT EXISTS events_kind_ts ON events(kind, ts);
CREATE INDEX IF NOT EXISTS events_unpurged_ts ON events(ts) WHERE purged = 0;
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
    content, content = 'events', content_rowid = 'id'
);
INSERT INTO events_fts(events_fts) VALUES ('rebuild');
INSERT INTO events_fts(events_fts, rank) VALUES ('secure-delete', 1);
",
];

/// WAL frames (pages) after which a row recorded after a request (a deferred one) copies
/// the WAL into the database file. The WAL outlives each process (no checkpoint on close,
/// see [`SqliteAudit::open`]) and the first connection of a process rebuilds its index by
/// reading all of it, so a small WAL keeps start-up flat; a checkpoint costs four syncs
/// (the WAL, its directory, the database, the WAL's header when it starts over). A turn
/// adds about 24 frames (three rows, each touching the table, its four indexes and the
/// FTS5 index), so this is a checkpoint about every ten turns.
const WAL_AUTOCHECKPOINT: i64 = 256;

/// A log that only ever records rows before requests (never deferred ones) is still
/// checkpointed, at this many frames.
const WAL_HARD_LIMIT: i64 = 4 * WAL_AUTOCHECKPOINT;

/// The audit log in one SQLite file (WAL mode, mode 0600, hash-chained rows, each keyed
/// row carrying an HMAC) and, when opened with a key, its head checkpoint beside it.
///
/// Several pai processes may hold the same file open: each insert reads the chain's
/// head and appends inside one `BEGIN IMMEDIATE` transaction, so the chain never forks.
///
/// Durability: every commit is written to the WAL (`synchronous=NORMAL`), which a crash
/// of the process cannot lose. [`AuditSink::record`] then syncs the WAL once, so its row
/// and every row before it survive a power loss before the call returns;
/// [`AuditSink::record_deferred`] leaves that to the next `record` or checkpoint. After a
/// power loss SQLite replays the WAL up to its last whole synced commit, so the chain
/// stays an intact prefix.
pub struct SqliteAudit {
    path: PathBuf,
    user: String,
    conn: Mutex<Connection>,
    /// The WAL that `record` syncs; `None` when the file system kept the rollback
    /// journal, where SQLite syncs every commit itself (`synchronous=FULL`).
    wal: Option<PathBuf>,
    /// This connection created the WAL, so its directory entry needs one sync too.
    wal_is_new: AtomicBool,
    /// Frames in the WAL after this connection's last commit (SQLite's WAL hook).
    wal_frames: Arc<AtomicI64>,
    /// The key and checkpoint; `None` for a reader opened without a key.
    seal: Option<Seal>,
    /// How much of each event's content is kept.
    content: ContentMode,
    /// Syncs `record` made, for tests.
    #[cfg(test)]
    syncs: AtomicUsize,
}

/// The keyed half of a log opened with [`SqliteAudit::open_keyed`].
pub(crate) struct Seal {
    key: AuditKey,
    head_path: PathBuf,
    head_file: fs::File,
    /// What the checkpoint said when the log was opened.
    status: HeadStatus,
    /// Appends advance the checkpoint; off once it disagreed with the log, so the
    /// disagreement stays on record until the user acts on it.
    sealing: bool,
    legacy_through: i64,
}

impl fmt::Debug for SqliteAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteAudit")
            .field("path", &self.path)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// How much of each event's content the log keeps (`[audit] content` in config.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentMode {
    /// The content as the caller gives it (pai-core masks secrets and personal data
    /// before recording, so this is the redacted text).
    #[default]
    Redacted,
    /// Only the content's SHA-256: the row proves what was sent without keeping it
    /// (like a row purged at once).
    Hash,
    /// The content unmasked (pai-core skips its masking): every secret and personal datum
    /// typed, sent or received stays in the file until purged.
    Full,
}

/// Tokens used by one model on one day in one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The session the calls were made for.
    pub session: String,
    /// The provider's name as the session knows it.
    pub provider: String,
    /// Where it ran, when recorded (older rows may lack it).
    pub locality: Option<Locality>,
    /// The model that answered.
    pub model: String,
    /// Tokens sent, all calls together.
    pub prompt_tokens: u64,
    /// Tokens received, all calls together.
    pub completion_tokens: u64,
    /// Some counts were estimated because the server reported none.
    pub estimated: bool,
    /// Model calls counted.
    pub calls: u64,
}

/// How often opening retries a setup step that found the file busy (20 ms apart).
const SETUP_RETRIES: u32 = 250;

/// Holds the checkpoint file's advisory lock; released on drop.
pub(crate) struct HeadLock<'a>(&'a fs::File);

impl<'a> HeadLock<'a> {
    pub(crate) fn exclusive(file: &'a fs::File, path: &Path) -> Result<Self> {
        file.lock().map_err(head_io(path))?;
        Ok(Self(file))
    }

    pub(crate) fn shared(file: &'a fs::File, path: &Path) -> Result<Self> {
        file.lock_shared().map_err(head_io(path))?;
        Ok(Self(file))
    }
}

impl Drop for HeadLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

pub(crate) fn head_io(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |error| AuditError::Head {
        path: path.to_path_buf(),
        error,
    }
}

/// The last row of the log: id, hash, and MAC (its hash for a legacy row).
pub(crate) fn last_row(conn: &Connection, path: &Path) -> Result<Option<(i64, String, String)>> {
    conn.prepare_cached("SELECT id, hash, coalesce(mac, hash) FROM events ORDER BY id DESC LIMIT 1")
        .map_err(|e| classify(path, e))?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(|e| classify(path, e))
}

impl SqliteAudit {
    /// Opens the audit log at `path` to read it, creating it (and its directory) if
    /// missing; without a key it cannot record, check MACs or read the checkpoint.
    ///
    /// The file is created with mode 0600 before SQLite touches it, and an existing file
    /// (and its `-wal`/`-shm` companions) is restricted to 0600.
    pub fn open(path: &Path) -> Result<SqliteAudit> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|error| AuditError::CreateDir {
                path: dir.to_path_buf(),
                error,
            })?;
        }
        create_private_file(path)?;
        let wal = companion(path, "-wal");
        let wal_existed = wal.exists();

        let sql = |error| classify(path, error);
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // Returns the mode in effect; a filesystem without shared memory keeps the
        // rollback journal, which is slower under contention but still correct.
        // Switching a new file to WAL and creating the schema need the file to themselves;
        // SQLite answers BUSY at once (without waiting) when two processes create the log
        // together, so the loser waits its turn here instead of failing.
        let mut tries = 0;
        let mode = loop {
            let setup = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
                .map_err(sql)
                .and_then(|mode| ensure_schema(&conn, path).map(|()| mode));
            match setup {
                Err(AuditError::Busy { .. }) if tries < SETUP_RETRIES => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let in_wal = mode.eq_ignore_ascii_case("wal");
        // In WAL mode `record` syncs the WAL itself: SQLite's FULL would do the same one
        // sync per commit, plus a sync of the directory at each connection's first one,
        // which costs as much again and which a WAL that already existed does not need.
        let level = if in_wal { "NORMAL" } else { "FULL" };
        conn.pragma_update(None, "synchronous", level)
            .map_err(sql)?;
        // A checkpoint when the last connection closes costs two syncs per process, and
        // deleting the WAL makes the next process create it again. The WAL is kept
        // instead and checkpointed as it grows; closing loses nothing, since the WAL is
        // part of the database.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(sql)?;
        // SQLite's own automatic checkpoint runs in whichever commit crosses its limit, the
        // row recorded before a request included, which would then wait on four syncs
        // before the request leaves. This hook replaces it: it only notes the WAL's size,
        // and `insert` checkpoints after a deferred row (see WAL_AUTOCHECKPOINT).
        let wal_frames = Arc::new(AtomicI64::new(0));
        let seen = wal_frames.clone();
        conn.wal_hook(Some(move |_: &mut Wal, frames: c_int| {
            seen.store(i64::from(frames), Ordering::Relaxed);
            Ok(())
        }))
        .map_err(sql)?;
        // Purged content must leave the file, not linger in free pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(sql)?;
        restrict_companions(path)?;

        Ok(SqliteAudit {
            path: path.to_path_buf(),
            user: whoami::username().unwrap_or_else(|_| "unknown".to_string()),
            conn: Mutex::new(conn),
            wal: in_wal.then_some(wal),
            wal_is_new: AtomicBool::new(!wal_existed),
            wal_frames,
            seal: None,
            content: ContentMode::default(),
            #[cfg(test)]
            syncs: AtomicUsize::new(0),
        })
    }

    /// Opens the audit log at `path` with `key`: rows it records carry a MAC, and its head
    /// checkpoint (`audit.head` beside `audit.db`) is compared with the log's last row.
    ///
    /// A disagreement does not fail the open (the user's work goes on, and is recorded);
    /// it is kept in [`Self::head_status`], and the checkpoint is left as it was so that
    /// `verify` keeps reporting it. A log with only unkeyed rows and no checkpoint (one
    /// written before keys) is sealed here as it stands: its rows stay unkeyed legacy
    /// rows. A checkpoint made with another key refuses recording
    /// ([`AuditError::KeyMismatch`]), since rows under two keys could never verify.
    pub fn open_keyed(path: &Path, key: AuditKey) -> Result<SqliteAudit> {
        let mut audit = Self::open(path)?;
        let head_path = head::path_for(path);
        let head_file = open_head(&head_path)?;
        let (status, legacy_through) = {
            let conn = audit.lock();
            let _guard = HeadLock::shared(&head_file, &head_path)?;
            check_head(&conn, path, &head_file, &head_path, &key)?
        };
        let sealing = match &status {
            HeadStatus::Problem(HeadProblem::Unsealed { macs_hold, .. }) => *macs_hold,
            HeadStatus::Problem(_) => false,
            _ => true,
        };
        let seal = Seal {
            key,
            head_path,
            head_file,
            status,
            sealing,
            legacy_through,
        };
        if let HeadStatus::Migrated { legacy_through } = seal.status {
            // The legacy rows are sealed as they stand, under the exclusive lock, so a
            // concurrent first open of the same old log writes the same checkpoint.
            let conn = audit.lock();
            let _guard = HeadLock::exclusive(&seal.head_file, &seal.head_path)?;
            if let Some((id, hash, mac)) = last_row(&conn, path)? {
                let head = Head {
                    seq: id,
                    hash,
                    mac,
                    legacy_through: legacy_through.0,
                    key_id: seal.key.id().to_string(),
                    source: seal.key.source().as_str().to_string(),
                    verified: 0,
                    files: head::UNKNOWN_FILES.to_string(),
                };
                head::write(&seal.head_file, &head, &seal.key, true)
                    .map_err(head_io(&seal.head_path))?;
            }
        }
        audit.seal = Some(seal);
        Ok(audit)
    }

    /// Keeps only each new event's content digest ([`ContentMode::Hash`]), or its text.
    pub fn with_content(mut self, mode: ContentMode) -> Self {
        self.content = mode;
        self
    }

    /// The id of the key the checkpoint beside the log at `path` was made with, if there
    /// is one (read without checking it): lets a caller holding several keys pick the one
    /// the log was sealed with.
    pub fn sealed_key_id(path: &Path) -> Option<String> {
        head::sealed_key_id(path)
    }

    /// What the checkpoint said when the log was opened (`None` without a key).
    pub fn head_status(&self) -> Option<&HeadStatus> {
        self.seal.as_ref().map(|s| &s.status)
    }

    /// One line for the user when the checkpoint disagreed with the log on opening,
    /// saying what to do.
    pub fn head_warning(&self) -> Option<String> {
        match self.head_status()? {
            HeadStatus::Problem(problem) => Some(format!(
                "the audit log at {} {problem}; run 'pai audit verify' for details",
                self.path.display()
            )),
            _ => None,
        }
    }

    /// The checkpoint's line as stored (without padding), for `export`.
    pub(crate) fn head_line(&self) -> Result<Option<String>> {
        let Some(seal) = &self.seal else {
            return Ok(None);
        };
        let _guard = HeadLock::shared(&seal.head_file, &seal.head_path)?;
        head::raw_line(&seal.head_file).map_err(head_io(&seal.head_path))
    }

    /// The key this log was opened with.
    pub(crate) fn key(&self) -> Option<&AuditKey> {
        self.seal.as_ref().map(|s| &s.key)
    }

    /// The checkpoint file and the legacy boundary, for `verify`.
    pub(crate) fn seal_parts(&self) -> Option<(&fs::File, &Path, i64)> {
        self.seal
            .as_ref()
            .map(|s| (&s.head_file, s.head_path.as_path(), s.legacy_through))
    }

    /// The checkpoint file, its path and the key, while appends advance the checkpoint
    /// (not once it disagreed with the log: then it stays as it was).
    pub(crate) fn sealing_parts(&self) -> Option<(&fs::File, &Path, &AuditKey)> {
        self.seal
            .as_ref()
            .filter(|s| s.sealing)
            .map(|s| (&s.head_file, s.head_path.as_path(), &s.key))
    }

    /// The file this log lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest `limit` events, oldest first.
    pub fn events(&self, limit: usize) -> Result<Vec<StoredEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let sql = format!(
            "SELECT * FROM (SELECT id, hash, {cols} FROM events ORDER BY id DESC LIMIT ?1) \
             ORDER BY id ASC",
            cols = HASHED_COLUMNS.join(", ")
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| classify(&self.path, e))?;
        let mut rows = stmt.query([limit]).map_err(|e| classify(&self.path, e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| classify(&self.path, e))? {
            out.push(self.decode(row)?);
        }
        Ok(out)
    }

    /// Token usage of model answers (responses and summaries) since `since` (an RFC 3339
    /// UTC prefix such as `2026-11-26`; `None` for all time), summed by UTC day,
    /// session, provider, locality and model, oldest day first.
    pub fn usage(&self, since: Option<&str>) -> Result<Vec<UsageRow>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT substr(ts, 1, 10) AS day, session, provider, locality, model, \
                 SUM(prompt_tokens), SUM(completion_tokens), MAX(tokens_estimated), COUNT(*) \
                 FROM events \
                 WHERE kind IN ('response', 'summary') AND prompt_tokens IS NOT NULL \
                   AND ts >= ?1 \
                 GROUP BY day, session, provider, locality, model \
                 ORDER BY day, session, provider, model",
            )
            .map_err(|e| classify(&self.path, e))?;
        let rows = stmt
            .query_map([since.unwrap_or("")], |r| {
                Ok(UsageRow {
                    day: r.get(0)?,
                    session: r.get(1)?,
                    provider: r.get(2)?,
                    locality: r
                        .get::<_, Option<String>>(3)?
                        .and_then(|l| match l.as_str() {
                            "local" => Some(Locality::Local),
                            "remote" => Some(Locality::Remote),
                            _ => None,
                        }),
                    model: r.get(4)?,
                    prompt_tokens: r.get::<_, i64>(5)?.max(0) as u64,
                    completion_tokens: r.get::<_, i64>(6)?.max(0) as u64,
                    estimated: r.get::<_, Option<i64>>(7)?.unwrap_or(0) != 0,
                    calls: r.get::<_, i64>(8)?.max(0) as u64,
                })
            })
            .map_err(|e| classify(&self.path, e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| classify(&self.path, e))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic elsewhere cannot leave the connection mid-transaction: rusqlite rolls
        // back on drop, so the connection is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decode(&self, row: &Row<'_>) -> Result<StoredEvent> {
        decode_row(&self.path, row)
    }
}

/// Decodes a row selected as `id, hash, HASHED_COLUMNS…`.
pub(crate) fn decode_row(path: &Path, row: &Row<'_>) -> Result<StoredEvent> {
    let id: i64 = row.get(0).map_err(|e| classify(path, e))?;
    let bad = |detail: String| AuditError::BadRow {
        path: path.to_path_buf(),
        id,
        detail,
    };
    let text = |i: usize| -> Result<String> {
        row.get::<_, String>(i)
            .map_err(|e| bad(format!("column {}: {e}", column_name(i))))
    };
    let int = |i: usize| -> Result<Option<i64>> {
        row.get::<_, Option<i64>>(i)
            .map_err(|e| bad(format!("column {}: {e}", column_name(i))))
    };
    let unsigned = |i: usize| -> Result<Option<u64>> {
        int(i)?
            .map(|v| {
                u64::try_from(v).map_err(|_| bad(format!("column {} is negative", column_name(i))))
            })
            .transpose()
    };

    // Column order: id, hash, then HASHED_COLUMNS.
    let kind_text = text(6)?;
    let kind = EventKind::from_stored(&kind_text)
        .ok_or_else(|| bad(format!("unknown kind '{kind_text}'")))?;
    let locality = match row.get::<_, Option<String>>(10) {
        Ok(None) => None,
        Ok(Some(s)) if s == "local" => Some(Locality::Local),
        Ok(Some(s)) if s == "remote" => Some(Locality::Remote),
        Ok(Some(s)) => return Err(bad(format!("unknown locality '{s}'"))),
        Err(e) => return Err(bad(format!("column locality: {e}"))),
    };
    let usage = match (unsigned(11)?, unsigned(12)?, int(13)?) {
        (None, None, None) => None,
        (prompt, completion, estimated) => Some(Usage {
            prompt_tokens: prompt.unwrap_or(0),
            completion_tokens: completion.unwrap_or(0),
            estimated: estimated.unwrap_or(0) != 0,
        }),
    };

    Ok(StoredEvent {
        id: EventId(id),
        hash: text(1)?,
        ts: text(2)?,
        user: text(3)?,
        event: AuditEvent {
            kind,
            session: text(4)?,
            mode: text(5)?,
            provider: text(7)?,
            endpoint: text(8)?,
            model: text(9)?,
            locality,
            usage,
            duration_ms: unsigned(14)?,
            content: text(15)?,
        },
    })
}

/// Opens (creating, 0600) the checkpoint file for reading and writing.
fn open_head(path: &Path) -> Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(head_io(path))
}

/// Compares the checkpoint with the log's last row; cheap (two reads), run on every open.
fn check_head(
    conn: &Connection,
    path: &Path,
    file: &fs::File,
    head_path: &Path,
    key: &AuditKey,
) -> Result<(HeadStatus, i64)> {
    let last = last_row(conn, path)?;
    let read = head::read(file, key).map_err(head_io(head_path))?;
    let last_id = last.as_ref().map_or(0, |l| l.0);
    Ok(match read {
        ReadHead::Missing => match last {
            None => (HeadStatus::Fresh, 0),
            Some(_) if !has_keyed_rows(conn, path)? => (
                HeadStatus::Migrated {
                    legacy_through: EventId(last_id),
                },
                last_id,
            ),
            Some(_) => (
                HeadStatus::Problem(HeadProblem::Missing {
                    last: EventId(last_id),
                }),
                0,
            ),
        },
        ReadHead::OtherKey { key_id, source } => (
            HeadStatus::Problem(HeadProblem::OtherKey {
                key_id,
                source,
                this_key: key.id().to_string(),
                this_source: key.source().as_str().to_string(),
            }),
            0,
        ),
        ReadHead::Forged => (HeadStatus::Problem(HeadProblem::Forged), 0),
        ReadHead::Valid(head) => {
            let legacy = head.legacy_through;
            let status = if last_id < head.seq {
                HeadStatus::Problem(HeadProblem::Truncated {
                    sealed: EventId(head.seq),
                    last: EventId(last_id),
                })
            } else {
                let sealed_row = sealed_row(conn, path, head.seq)?;
                let matches = sealed_row
                    .as_ref()
                    .is_some_and(|(h, m)| *h == head.hash && *m == head.mac);
                if !matches {
                    HeadStatus::Problem(HeadProblem::Replaced {
                        sealed: EventId(head.seq),
                    })
                } else if last_id > head.seq {
                    let macs_hold = tail_macs_hold(conn, path, key, &head)?;
                    HeadStatus::Problem(HeadProblem::Unsealed {
                        from: EventId(head.seq + 1),
                        to: EventId(last_id),
                        macs_hold,
                    })
                } else {
                    HeadStatus::Sealed
                }
            };
            (status, legacy)
        }
    })
}

fn has_keyed_rows(conn: &Connection, path: &Path) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM events WHERE mac IS NOT NULL)",
        [],
        |r| r.get(0),
    )
    .map_err(|e| classify(path, e))
}

/// Row `seq`'s hash and MAC (its hash for a legacy row, the genesis for row 0).
pub(crate) fn sealed_row(
    conn: &Connection,
    path: &Path,
    seq: i64,
) -> Result<Option<(String, String)>> {
    if seq == 0 {
        return Ok(Some((GENESIS.to_string(), GENESIS.to_string())));
    }
    conn.query_row(
        "SELECT hash, coalesce(mac, hash) FROM events WHERE id = ?1",
        [seq],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(|e| classify(path, e))
}

/// Whether every row after the checkpoint carries a MAC that chains from it (rows a pai
/// process wrote but stopped before sealing), checked by MAC alone: `verify` checks
/// their contents.
fn tail_macs_hold(conn: &Connection, path: &Path, key: &AuditKey, head: &Head) -> Result<bool> {
    let mut stmt = conn
        .prepare("SELECT id, hash, mac FROM events WHERE id > ?1 ORDER BY id")
        .map_err(|e| classify(path, e))?;
    let mut rows = stmt.query([head.seq]).map_err(|e| classify(path, e))?;
    let mut prev_mac = head.mac.clone();
    let mut expected = head.seq + 1;
    while let Some(row) = rows.next().map_err(|e| classify(path, e))? {
        let id: i64 = row.get(0).map_err(|e| classify(path, e))?;
        let hash: String = row.get(1).map_err(|e| classify(path, e))?;
        let mac: Option<String> = row.get(2).map_err(|e| classify(path, e))?;
        let Some(mac) = mac else { return Ok(false) };
        if id != expected
            || !head::constant_eq(
                row_mac(key, id, &prev_mac, &hash).as_bytes(),
                mac.as_bytes(),
            )
        {
            return Ok(false);
        }
        prev_mac = mac;
        expected += 1;
    }
    Ok(true)
}

impl AuditSink for SqliteAudit {
    fn record(&self, event: &AuditEvent) -> Result<EventId> {
        self.insert(event, true)
    }

    fn record_deferred(&self, event: &AuditEvent) -> Result<EventId> {
        self.insert(event, false)
    }
}

impl SqliteAudit {
    /// Appends `event` to the chain; `durable` syncs it (and every row before it).
    fn insert(&self, event: &AuditEvent, durable: bool) -> Result<EventId> {
        let Some(seal) = &self.seal else {
            return Err(AuditError::NoKey {
                path: self.path.clone(),
            });
        };
        if let HeadStatus::Problem(HeadProblem::OtherKey {
            key_id,
            source,
            this_key,
            this_source,
        }) = &seal.status
        {
            return Err(AuditError::KeyMismatch {
                path: self.path.clone(),
                sealed: format!("{key_id} ({})", source_name(source)),
                this: format!("{this_key} ({})", source_name(this_source)),
            });
        }
        let ts = format!("{:.3}", jiff::Timestamp::now());
        let endpoint = redact_endpoint(&event.endpoint);
        let usage = event.usage;
        let int = |field, value: Option<u64>| -> Result<ValueRef<'static>> {
            match value {
                None => Ok(ValueRef::Null),
                Some(v) => i64::try_from(v)
                    .map(ValueRef::Integer)
                    .map_err(|_| AuditError::OutOfRange { field, value: v }),
            }
        };
        let text = |s: &'static str| ValueRef::Text(s.as_bytes());
        let digest = content_sha256(event.content.as_bytes());
        // Same order as HASHED_COLUMNS_V2.
        let cells: [ValueRef<'_>; 14] = [
            ValueRef::Text(ts.as_bytes()),
            ValueRef::Text(self.user.as_bytes()),
            ValueRef::Text(event.session.as_bytes()),
            ValueRef::Text(event.mode.as_bytes()),
            text(event.kind.as_str()),
            ValueRef::Text(event.provider.as_bytes()),
            ValueRef::Text(endpoint.as_bytes()),
            ValueRef::Text(event.model.as_bytes()),
            event
                .locality
                .map_or(ValueRef::Null, |l| text(locality_name(l))),
            int("prompt_tokens", usage.map(|u| u.prompt_tokens))?,
            int("completion_tokens", usage.map(|u| u.completion_tokens))?,
            usage.map_or(ValueRef::Null, |u| {
                ValueRef::Integer(i64::from(u.estimated))
            }),
            int("duration_ms", event.duration_ms)?,
            ValueRef::Text(digest.as_bytes()),
        ];

        let sql = |e| classify(&self.path, e);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        // Taken before anything is written, so the files are compared with the checkpoint
        // before this write and recorded after it with no other pai write in between;
        // readers compare the checkpoint with the last row under the shared lock, so the
        // commit and the checkpoint that seals it change together for them.
        let guard = if seal.sealing {
            Some(HeadLock::exclusive(&seal.head_file, &seal.head_path)?)
        } else {
            None
        };
        let marks = guard.as_ref().map(|_| self.marks_before_write(seal));
        let (prev_id, prev_hash, prev_mac) = last_row(&tx, &self.path)?
            .unwrap_or_else(|| (0, GENESIS.to_string(), GENESIS.to_string()));
        let id = prev_id + 1;
        let hash = row_hash_v2(&prev_hash, &cells);
        let mac = row_mac(&seal.key, id, &prev_mac, &hash);
        // Hash mode keeps the digest (in the hash) and drops the text, marked 2: kept out
        // at write time, as opposed to 1, purged later.
        let (content, purged) = match self.content {
            ContentMode::Redacted | ContentMode::Full => (event.content.as_str(), 0),
            ContentMode::Hash => ("", 2),
        };
        {
            let mut stmt = tx.prepare_cached(INSERT_SQL).map_err(sql)?;
            let params = cells[..13]
                .iter()
                .map(|c| ToSqlOutput::Borrowed(*c))
                .chain([
                    ToSqlOutput::Borrowed(ValueRef::Text(content.as_bytes())),
                    ToSqlOutput::Borrowed(ValueRef::Text(digest.as_bytes())),
                    ToSqlOutput::Borrowed(ValueRef::Text(prev_hash.as_bytes())),
                    ToSqlOutput::Borrowed(ValueRef::Text(hash.as_bytes())),
                    ToSqlOutput::Borrowed(ValueRef::Text(mac.as_bytes())),
                    ToSqlOutput::Borrowed(ValueRef::Integer(id)),
                    ToSqlOutput::Borrowed(ValueRef::Integer(purged)),
                ]);
            stmt.execute(rusqlite::params_from_iter(params))
                .map_err(sql)?;
            tx.prepare_cached("INSERT INTO events_fts (rowid, content) VALUES (?1, ?2)")
                .map_err(sql)?
                .execute(rusqlite::params![id, content])
                .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        // `conn` stays locked until the checkpoint is written: another thread of this
        // process shares the checkpoint's lock (one descriptor), so only the mutex keeps
        // an older seal from overwriting a newer one.
        if durable {
            // Should this fail, the row stays in the log unsynced and the caller does not
            // go on (nothing is sent): the log may claim a request that never left, never
            // miss one that did.
            self.sync_wal()?;
        }
        self.checkpoint_if_grown(&conn, durable);
        if let Some((verified, files_known)) = marks {
            let head = Head {
                seq: id,
                hash,
                mac,
                legacy_through: seal.legacy_through,
                key_id: seal.key.id().to_string(),
                source: seal.key.source().as_str().to_string(),
                verified,
                files: self.files_after_write(files_known),
            };
            // Not synced, even after a synced row: written after that row's sync returned,
            // it can never reach the disk ahead of the row, only lag it after a power loss
            // (the next open then reports the rows after it as unsealed, written by pai,
            // and the next write seals them). One sync before a request leaves, not two.
            head::write(&seal.head_file, &head, &seal.key, false)
                .map_err(head_io(&seal.head_path))?;
        }
        drop(guard);
        Ok(EventId(id))
    }

    /// Under the checkpoint's exclusive lock, before a write: how far the log was checked,
    /// and whether the files are still as the checkpoint recorded them (anything else
    /// changed them since, and the next check must cover every row).
    pub(crate) fn marks_before_write(&self, seal: &Seal) -> (i64, bool) {
        match head::read(&seal.head_file, &seal.key) {
            Ok(ReadHead::Valid(h)) if h.files != head::UNKNOWN_FILES => {
                let same = crate::check::files_identity(&self.path) == h.files;
                (if same { h.verified } else { 0 }, same)
            }
            _ => (0, false),
        }
    }

    /// The files' identity to record after a write: as they are now when they were as
    /// recorded before it, unknown otherwise (sticky until a full check passes).
    pub(crate) fn files_after_write(&self, known: bool) -> String {
        if known {
            crate::check::files_identity(&self.path)
        } else {
            head::UNKNOWN_FILES.to_string()
        }
    }

    /// Runs `change` (a purge: its own transactions, a `VACUUM`, a WAL checkpoint) and
    /// keeps the checkpoint's record of the files true, as an append does. The lock is not
    /// held across `change`, which takes SQLite's locks itself (an append takes SQLite's
    /// first): the files are recorded only if no pai write came in between.
    pub(crate) fn keeping_files<T>(&self, change: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some(seal) = self.seal.as_ref().filter(|s| s.sealing) else {
            return change();
        };
        let before = {
            let _guard = HeadLock::exclusive(&seal.head_file, &seal.head_path)?;
            let (_, known) = self.marks_before_write(seal);
            match head::read(&seal.head_file, &seal.key) {
                Ok(ReadHead::Valid(h)) if known => Some(h),
                _ => None,
            }
        };
        let out = change()?;
        if let Some(before) = before {
            let _guard = HeadLock::exclusive(&seal.head_file, &seal.head_path)?;
            if let Ok(ReadHead::Valid(now)) = head::read(&seal.head_file, &seal.key)
                && now == before
            {
                let head = Head {
                    files: crate::check::files_identity(&self.path),
                    ..now
                };
                head::write(&seal.head_file, &head, &seal.key, false)
                    .map_err(head_io(&seal.head_path))?;
            }
        }
        Ok(out)
    }

    /// Copies the WAL into the database once it holds [`WAL_AUTOCHECKPOINT`] frames, after
    /// a deferred row (the answer's, when the request has come back), so that the row
    /// recorded before a request never waits on a checkpoint's syncs; after a synced row
    /// only past [`WAL_HARD_LIMIT`]. Like SQLite's own automatic checkpoint it is
    /// `PASSIVE` and its failure is not the row's: a reader in the way, or an error, leaves
    /// the WAL to the next row's try.
    fn checkpoint_if_grown(&self, conn: &Connection, durable: bool) {
        let limit = if durable {
            WAL_HARD_LIMIT
        } else {
            WAL_AUTOCHECKPOINT
        };
        if self.wal.is_none() || self.wal_frames.load(Ordering::Relaxed) < limit {
            return;
        }
        if conn
            .wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE)
            .is_ok()
        {
            self.wal_frames.store(0, Ordering::Relaxed);
        }
    }

    /// Makes every commit so far survive a power loss: one `fdatasync` of the WAL (the
    /// file, whichever descriptor), and once a sync of its directory if this connection
    /// created it. While this connection is open no other can delete the WAL, and one
    /// that restarts it has checkpointed (and synced) these rows into the database first.
    fn sync_wal(&self) -> Result<()> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        let failed = |path: &Path| {
            let path = path.to_path_buf();
            move |error| AuditError::Sync { path, error }
        };
        fs::File::open(wal)
            .and_then(|f| f.sync_data())
            .map_err(failed(wal))?;
        if self.wal_is_new.load(Ordering::Relaxed)
            && let Some(dir) = wal.parent()
        {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(failed(dir))?;
            self.wal_is_new.store(false, Ordering::Relaxed);
        }
        #[cfg(test)]
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn source_name(source: &str) -> &'static str {
    match source {
        "env" => "derived from PAI_ENCRYPTION_KEY",
        "file" => "the audit.key file",
        _ => "unknown source",
    }
}

/// The insert of one keyed row: the first 13 hashed columns, `content`, `content_sha256`,
/// `prev_hash`, `hash`, `mac`, `id`, `purged`.
const INSERT_SQL: &str = "INSERT INTO events (ts, user, session, mode, kind, provider, \
     endpoint, model, locality, prompt_tokens, completion_tokens, tokens_estimated, \
     duration_ms, content, content_sha256, prev_hash, hash, mac, id, purged) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

fn locality_name(l: Locality) -> &'static str {
    match l {
        Locality::Local => "local",
        Locality::Remote => "remote",
    }
}

/// The name of column `i` in the `events()` query (id, hash, then the hashed columns).
fn column_name(i: usize) -> &'static str {
    match i {
        0 => "id",
        1 => "hash",
        _ => HASHED_COLUMNS.get(i - 2).copied().unwrap_or("?"),
    }
}

fn ensure_schema(conn: &Connection, path: &Path) -> Result<()> {
    let sql = |e| classify(path, e);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version > SCHEMA_VERSION {
        return Err(AuditError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    // Two processes may race to migrate; IMMEDIATE serialises them, and the loser finds
    // the version already moved on and runs nothing.
    let mut foreign = None;
    let mut run = || -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let now: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if now == 0 {
            // Checked under the write lock: another pai creating the log at this moment
            // has either committed (version set) or not started. A version-0 file with
            // tables is another program's database, which must not be written into.
            foreign = conn
                .query_row(
                    "SELECT name FROM sqlite_master WHERE name != 'events' LIMIT 1",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .optional()?;
            if foreign.is_some() {
                return conn.execute_batch("ROLLBACK");
            }
        }
        let from = usize::try_from(now.max(0)).unwrap_or(0);
        for step in MIGRATIONS.iter().skip(from) {
            conn.execute_batch(step)?;
        }
        if now < SCHEMA_VERSION {
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        conn.execute_batch("COMMIT")
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        classify(path, e)
    })?;
    match foreign {
        Some(table) => Err(AuditError::Foreign {
            path: path.to_path_buf(),
            table,
        }),
        None => Ok(()),
    }
}

pub(crate) fn classify(path: &Path, error: rusqlite::Error) -> AuditError {
    let path = path.to_path_buf();
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            AuditError::NotADatabase { path, error }
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => AuditError::Busy { path },
        _ => AuditError::Sqlite { path, error },
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // Only directories created here get 0700; an existing PAI_HOME is left as it is.
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates `path` as 0600 if missing, so SQLite never creates it with the umask's mode.
fn create_private_file(path: &Path) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    // Never truncate: an existing log is evidence.
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|error| AuditError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    restrict(path, true)
}

/// SQLite gives `-wal`/`-shm` the database file's mode; this covers files left by older runs.
fn restrict_companions(path: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm"] {
        restrict(&companion(path, suffix), false)?;
    }
    Ok(())
}

/// SQLite's name for a file beside the database: `audit.db-wal`, `audit.db-shm`.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(unix)]
fn restrict(path: &Path, must_exist: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let err = |error| AuditError::Permissions {
        path: path.to_path_buf(),
        error,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    if meta.permissions().mode() & 0o777 != 0o600 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _must_exist: bool) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn keyed(path: &Path) -> SqliteAudit {
        SqliteAudit::open_keyed(path, AuditKey::derive(b"test key")).unwrap()
    }

    fn open_temp() -> (tempfile::TempDir, SqliteAudit) {
        let dir = tempfile::tempdir().unwrap();
        let audit = keyed(&dir.path().join("audit.db"));
        (dir, audit)
    }

    #[test]
    fn insert_sql_matches_hashed_columns() {
        let n = HASHED_COLUMNS.len() + 6;
        let placeholders: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
        let built = format!(
            "INSERT INTO events ({cols}, content_sha256, prev_hash, hash, mac, id, purged) VALUES ({vals})",
            cols = HASHED_COLUMNS.join(", "),
            vals = placeholders.join(", ")
        );
        assert_eq!(INSERT_SQL, built);
        assert_eq!(crate::chain::HASHED_COLUMNS_V2[..13], HASHED_COLUMNS[..13]);
        assert_eq!(crate::chain::HASHED_COLUMNS_V2[13], "content_sha256");
    }

    #[test]
    fn first_row_links_to_genesis_and_second_to_first() {
        let (_dir, audit) = open_temp();
        audit
            .record(&AuditEvent::new(EventKind::Prompt, "a"))
            .unwrap();
        audit
            .record(&AuditEvent::new(EventKind::Response, "b"))
            .unwrap();
        let conn = audit.lock();
        let links: Vec<(String, String)> = conn
            .prepare("SELECT prev_hash, hash FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(links[0].0, GENESIS);
        assert_eq!(links[1].0, links[0].1);
    }

    #[test]
    fn schema_version_is_set_and_reopening_keeps_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let audit = keyed(&path);
        audit
            .record(&AuditEvent::new(EventKind::Summary, "s"))
            .unwrap();
        drop(audit);
        let audit = keyed(&path);
        let version: i64 = audit
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(audit.events(10).unwrap().len(), 1);
    }

    #[test]
    fn newer_schema_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        drop(SqliteAudit::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = SqliteAudit::open(&path).unwrap_err();
        assert!(
            matches!(err, AuditError::NewerSchema { found: 99, .. }),
            "{err:?}"
        );
        assert!(err.to_string().ends_with("upgrade pai"), "{err}");
    }

    #[test]
    fn journal_is_wal_and_timestamps_have_milliseconds() {
        let (_dir, audit) = open_temp();
        let mode: String = audit
            .lock()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        audit
            .record(&AuditEvent::new(EventKind::Prompt, "x"))
            .unwrap();
        let ts = &audit.events(1).unwrap()[0].ts;
        // 2025-01-31T09:15:02.417Z
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
    }

    #[test]
    fn endpoint_credentials_never_reach_the_file() {
        let (_dir, audit) = open_temp();
        audit
            .record(
                &AuditEvent::new(EventKind::Prompt, "x")
                    .endpoint("https://me:pw@h.example/v1?key=sk-123"),
            )
            .unwrap();
        let stored = audit.events(1).unwrap().remove(0);
        assert_eq!(
            stored.event.endpoint,
            "https://[REDACTED]@h.example/v1?key=[REDACTED]"
        );
        assert!(audit.verify().unwrap().is_intact());
    }

    #[test]
    fn oversized_numbers_are_refused_not_wrapped() {
        let (_dir, audit) = open_temp();
        let err = audit
            .record(&AuditEvent::new(EventKind::Response, "x").duration_ms(u64::MAX))
            .unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::OutOfRange {
                    field: "duration_ms",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(audit.events(10).unwrap(), vec![]);
    }

    #[test]
    fn record_syncs_the_wal_once_and_record_deferred_leaves_it_to_a_later_record() {
        let (_dir, audit) = open_temp();
        let syncs = || audit.syncs.load(Ordering::Relaxed);
        let synchronous: i64 = audit
            .lock()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        // NORMAL: SQLite writes the WAL and leaves the sync to `record`.
        assert_eq!(synchronous, 1);
        assert!(audit.wal.is_some());
        audit
            .record_deferred(&AuditEvent::new(EventKind::Response, "a"))
            .unwrap();
        assert_eq!(syncs(), 0);
        assert!(audit.wal_is_new.load(Ordering::Relaxed));
        audit
            .record(&AuditEvent::new(EventKind::Prompt, "b"))
            .unwrap();
        assert_eq!(syncs(), 1);
        // The new WAL's directory entry was synced with it, once.
        assert!(!audit.wal_is_new.load(Ordering::Relaxed));
        let kinds: Vec<EventKind> = audit
            .events(10)
            .unwrap()
            .into_iter()
            .map(|e| e.event.kind)
            .collect();
        assert_eq!(kinds, vec![EventKind::Response, EventKind::Prompt]);
        assert!(audit.verify().unwrap().is_intact());
    }

    #[test]
    fn closing_keeps_the_wal_and_its_rows_instead_of_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let audit = keyed(&path);
        audit
            .record(&AuditEvent::new(EventKind::Prompt, "q"))
            .unwrap();
        audit
            .record_deferred(&AuditEvent::new(EventKind::Response, "a"))
            .unwrap();
        drop(audit);
        // A checkpoint on close would have synced twice and deleted the WAL.
        let wal = dir.path().join("audit.db-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);

        let audit = keyed(&path);
        assert!(!audit.wal_is_new.load(Ordering::Relaxed));
        let contents: Vec<String> = audit
            .events(10)
            .unwrap()
            .into_iter()
            .map(|e| e.event.content)
            .collect();
        assert_eq!(contents, vec!["q", "a"]);
        assert!(audit.verify().unwrap().is_intact());
    }

    #[test]
    fn a_growing_wal_is_checkpointed_and_no_row_is_lost() {
        let (dir, audit) = open_temp();
        let wal = dir.path().join("audit.db-wal");
        let page = 4096;
        // Each row fills most of a page, so every commit adds at least one WAL frame.
        let big = "x".repeat(3000);
        let rows = 3 * WAL_AUTOCHECKPOINT as usize;
        for i in 0..rows {
            audit
                .record_deferred(&AuditEvent::new(EventKind::Response, format!("{i} {big}")))
                .unwrap();
            let frames = std::fs::metadata(&wal).unwrap().len() / (page + 24);
            assert!(
                frames <= 2 * WAL_AUTOCHECKPOINT as u64,
                "{frames} frames after {i} rows"
            );
        }
        assert_eq!(audit.verify().unwrap().rows, rows as u64);
        assert!(audit.verify().unwrap().is_intact());
    }

    #[test]
    fn a_row_recorded_before_a_request_never_waits_on_a_checkpoint() {
        let (_dir, audit) = open_temp();
        let frames = || audit.wal_frames.load(Ordering::Relaxed);
        let big = "x".repeat(3000);
        let row = |i: usize| AuditEvent::new(EventKind::Prompt, format!("{i} {big}"));
        let mut rows = 0;
        // Synced rows until a checkpoint starts the WAL over, noting its largest size.
        let synced_until_checkpoint = |rows: &mut usize| {
            let mut most = 0;
            for _ in 0..2000 {
                audit.record(&row(*rows)).unwrap();
                *rows += 1;
                if frames() < most {
                    return most;
                }
                most = frames();
            }
            panic!("no checkpoint at {most} frames");
        };
        audit.record(&row(rows)).unwrap();
        rows += 1;
        // The answer's row checkpoints past the limit, not the rows before requests.
        let mut deferred = 0;
        while frames() <= WAL_AUTOCHECKPOINT {
            audit.record(&row(rows)).unwrap();
            rows += 1;
            if rows % 8 == 0 {
                let before = frames();
                audit
                    .record_deferred(&AuditEvent::new(EventKind::Response, "a"))
                    .unwrap();
                deferred += 1;
                assert!(frames() >= before, "checkpointed below the limit");
            }
        }
        audit
            .record_deferred(&AuditEvent::new(EventKind::Response, "a"))
            .unwrap();
        audit
            .record_deferred(&AuditEvent::new(EventKind::Response, "b"))
            .unwrap();
        rows += deferred + 2;
        assert!(frames() < 32, "{} frames after a checkpoint", frames());
        // A log that only records synced rows is still checkpointed, later.
        // (`most` is the size before the row that crossed the hard limit and checkpointed.)
        let most = synced_until_checkpoint(&mut rows);
        assert!(
            (2 * WAL_AUTOCHECKPOINT..WAL_HARD_LIMIT).contains(&most),
            "checkpointed after {most} frames"
        );
        let report = audit.verify().unwrap();
        assert_eq!(report.rows, rows as u64);
        assert!(report.is_intact());
    }

    #[test]
    fn debug_shows_path_but_not_the_connection() {
        let (_dir, audit) = open_temp();
        let dbg = format!("{audit:?}");
        assert!(dbg.starts_with("SqliteAudit { path: "), "{dbg}");
        assert!(!dbg.contains("conn"), "{dbg}");
    }
}
