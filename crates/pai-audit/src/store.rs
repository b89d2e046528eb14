use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pai_types::{Locality, Usage, redact_endpoint};
use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::chain::{GENESIS, HASHED_COLUMNS, row_hash};
use crate::{AuditError, AuditEvent, AuditSink, EventId, EventKind, Result, StoredEvent};

const SCHEMA_VERSION: i64 = 1;

/// Long enough to outlast another pai process's insert, short enough to report a stuck one.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

const SCHEMA: &str = "
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
";

/// WAL frames (pages) after which a commit copies the WAL into the database file. The WAL
/// outlives each process (no checkpoint on close, see [`SqliteAudit::open`]) and the first
/// connection of a process rebuilds its index by reading all of it, so a small WAL keeps
/// start-up flat; a checkpoint costs two syncs, about once every twenty turns.
const WAL_AUTOCHECKPOINT: i64 = 64;

/// The audit log in one SQLite file (WAL mode, mode 0600, hash-chained rows).
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
    /// Syncs `record` made, for tests.
    #[cfg(test)]
    syncs: AtomicUsize,
}

impl fmt::Debug for SqliteAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteAudit")
            .field("path", &self.path)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The outcome of [`SqliteAudit::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// How many rows the log holds.
    pub rows: u64,
    /// The first row that does not match the chain, or `None` when every row does.
    pub first_broken: Option<BrokenRow>,
}

impl VerifyReport {
    /// Every row matches the chain.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// A row where the hash chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenRow {
    /// The first row that does not match.
    pub id: EventId,
    /// How it fails to match.
    pub reason: BreakReason,
}

/// Why a row does not match the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakReason {
    /// The row's contents changed after it was written.
    HashMismatch,
    /// The row does not follow the one stored before it: a row was removed, inserted,
    /// or rewritten together with its hash.
    PrevHashMismatch,
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

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakReason::HashMismatch => "its contents changed after it was written",
            BreakReason::PrevHashMismatch => "it does not follow the row stored before it",
        })
    }
}

/// How often opening retries a setup step that found the file busy (20 ms apart).
const SETUP_RETRIES: u32 = 250;

impl SqliteAudit {
    /// Opens the audit log at `path`, creating it (and its directory) if missing.
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
        let conn = Connection::open(path).map_err(sql)?;
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
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)
            .map_err(sql)?;
        restrict_companions(path)?;

        Ok(SqliteAudit {
            path: path.to_path_buf(),
            user: whoami::username().unwrap_or_else(|_| "unknown".to_string()),
            conn: Mutex::new(conn),
            wal: in_wal.then_some(wal),
            wal_is_new: AtomicBool::new(!wal_existed),
            #[cfg(test)]
            syncs: AtomicUsize::new(0),
        })
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

    /// Recomputes the hash chain over every row and reports the first row that breaks it.
    pub fn verify(&self) -> Result<VerifyReport> {
        let conn = self.lock();
        let sql = format!(
            "SELECT id, prev_hash, hash, {cols} FROM events ORDER BY id ASC",
            cols = HASHED_COLUMNS.join(", ")
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| classify(&self.path, e))?;
        let mut rows = stmt.query([]).map_err(|e| classify(&self.path, e))?;

        let mut report = VerifyReport {
            rows: 0,
            first_broken: None,
        };
        let mut expected_prev = GENESIS.to_string();
        while let Some(row) = rows.next().map_err(|e| classify(&self.path, e))? {
            report.rows += 1;
            let get = |i| row.get_ref(i).map_err(|e| classify(&self.path, e));
            let id: i64 = row.get(0).map_err(|e| classify(&self.path, e))?;
            let prev_hash = get(1)?;
            let hash = get(2)?;
            let mut cells = Vec::with_capacity(HASHED_COLUMNS.len());
            for i in 0..HASHED_COLUMNS.len() {
                cells.push(get(i + 3)?);
            }

            if report.first_broken.is_none() {
                let reason = if prev_hash != ValueRef::Text(expected_prev.as_bytes()) {
                    Some(BreakReason::PrevHashMismatch)
                } else if hash != ValueRef::Text(row_hash(&expected_prev, &cells).as_bytes()) {
                    Some(BreakReason::HashMismatch)
                } else {
                    None
                };
                report.first_broken = reason.map(|reason| BrokenRow {
                    id: EventId(id),
                    reason,
                });
            }
            // The next row must follow this one as stored, so one edit is reported once.
            expected_prev = match hash {
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                _ => String::new(),
            };
        }
        Ok(report)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic elsewhere cannot leave the connection mid-transaction: rusqlite rolls
        // back on drop, so the connection is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decode(&self, row: &Row<'_>) -> Result<StoredEvent> {
        let id: i64 = row.get(0).map_err(|e| classify(&self.path, e))?;
        let bad = |detail: String| AuditError::BadRow {
            path: self.path.clone(),
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
                    u64::try_from(v)
                        .map_err(|_| bad(format!("column {} is negative", column_name(i))))
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
        // Same order as HASHED_COLUMNS.
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
            ValueRef::Text(event.content.as_bytes()),
        ];

        let sql = |e| classify(&self.path, e);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let prev_hash: String = tx
            .prepare_cached("SELECT hash FROM events ORDER BY id DESC LIMIT 1")
            .map_err(sql)?
            .query_row([], |r| r.get(0))
            .optional()
            .map_err(sql)?
            .unwrap_or_else(|| GENESIS.to_string());
        let hash = row_hash(&prev_hash, &cells);
        {
            let mut stmt = tx.prepare_cached(INSERT_SQL).map_err(sql)?;
            let params = cells.iter().map(|c| ToSqlOutput::Borrowed(*c)).chain([
                ToSqlOutput::Borrowed(ValueRef::Text(prev_hash.as_bytes())),
                ToSqlOutput::Borrowed(ValueRef::Text(hash.as_bytes())),
            ]);
            stmt.execute(rusqlite::params_from_iter(params))
                .map_err(sql)?;
        }
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql)?;
        if durable {
            // Should this fail, the row stays in the log unsynced and the caller does not
            // go on (nothing is sent): the log may claim a request that never left, never
            // miss one that did.
            self.sync_wal()?;
        }
        Ok(EventId(id))
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

/// The insert of one row: [`HASHED_COLUMNS`], then `prev_hash` and `hash`.
const INSERT_SQL: &str = "INSERT INTO events (ts, user, session, mode, kind, provider, \
     endpoint, model, locality, prompt_tokens, completion_tokens, tokens_estimated, \
     duration_ms, content, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

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
    // Two processes may race to create the schema; IMMEDIATE serialises them and
    // IF NOT EXISTS makes the loser's attempt a no-op.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        classify(path, e)
    })
}

fn classify(path: &Path, error: rusqlite::Error) -> AuditError {
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

    fn open_temp() -> (tempfile::TempDir, SqliteAudit) {
        let dir = tempfile::tempdir().unwrap();
        let audit = SqliteAudit::open(&dir.path().join("audit.db")).unwrap();
        (dir, audit)
    }

    #[test]
    fn insert_sql_matches_hashed_columns() {
        let n = HASHED_COLUMNS.len() + 2;
        let placeholders: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
        let built = format!(
            "INSERT INTO events ({cols}, prev_hash, hash) VALUES ({vals})",
            cols = HASHED_COLUMNS.join(", "),
            vals = placeholders.join(", ")
        );
        assert_eq!(INSERT_SQL, built);
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
        let audit = SqliteAudit::open(&path).unwrap();
        audit
            .record(&AuditEvent::new(EventKind::Summary, "s"))
            .unwrap();
        drop(audit);
        let audit = SqliteAudit::open(&path).unwrap();
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
        let audit = SqliteAudit::open(&path).unwrap();
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

        let audit = SqliteAudit::open(&path).unwrap();
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
    fn debug_shows_path_but_not_the_connection() {
        let (_dir, audit) = open_temp();
        let dbg = format!("{audit:?}");
        assert!(dbg.starts_with("SqliteAudit { path: "), "{dbg}");
        assert!(!dbg.contains("conn"), "{dbg}");
    }
}
