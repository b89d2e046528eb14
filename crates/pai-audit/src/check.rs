//! The per-turn check: only the rows written since the last check, as long as the
//! database files are as pai left them; every row otherwise.
//!
//! Each append (and purge) records in the checkpoint the identity of `audit.db` and
//! `audit.db-wal` as it left them: inode, size and modification time of both, and the
//! status-change time (`ctime`) of the database. It does so only when the files were still
//! as the checkpoint said before it wrote, so a change made in between by anything else
//! makes the record "unknown" (`-`) until a full check passes again. A user program cannot
//! set `ctime` back, so an edit that reaches the database file shows even if it restores
//! the modification time. The WAL's `ctime` is left out: SQLite, run as root, changes the
//! WAL's owner (to the same owner) each time it opens it. So an edit that stays in the WAL
//! without growing it (after a WAL restart) and restores the WAL's modification time, an
//! edit within the same clock tick as a pai write, or one by someone who controls the
//! clock or the file system, is not seen by the per-turn check — `pai audit verify`
//! checks every row regardless.

use std::fs;
use std::path::Path;

use crate::head::{self, ReadHead, UNKNOWN_FILES};
use crate::store::HeadLock;
use crate::{EventId, Result, SqliteAudit, VerifyReport};

/// What a per-turn check will cover, decided from the checkpoint and the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckScope {
    /// Check only the rows after this one (the files are as pai left them); `None` or 0:
    /// all.
    after: Option<i64>,
}

impl CheckScope {
    /// `Some(row)` when only the rows after `row` will be checked; `None` for a full check.
    pub fn incremental_after(&self) -> Option<EventId> {
        self.after.filter(|a| *a > 0).map(EventId)
    }
}

/// The identity of the log's files: `d<db>,w<wal>`, each `-` when missing, else its inode,
/// size and modification time in nanoseconds, and for the database its status-change time.
pub(crate) fn files_identity(db: &Path) -> String {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    format!(
        "d{},w{}",
        one_file(db, true),
        one_file(Path::new(&wal), false)
    )
}

#[cfg(unix)]
fn one_file(path: &Path, with_ctime: bool) -> String {
    use std::os::unix::fs::MetadataExt;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    match fs::metadata(path) {
        Ok(m) if with_ctime => format!(
            "{}.{}.{}.{}",
            m.ino(),
            m.size(),
            ns(m.mtime(), m.mtime_nsec()),
            ns(m.ctime(), m.ctime_nsec()),
        ),
        Ok(m) => format!("{}.{}.{}", m.ino(), m.size(), ns(m.mtime(), m.mtime_nsec())),
        Err(_) => "-".into(),
    }
}

#[cfg(not(unix))]
fn one_file(path: &Path, _with_ctime: bool) -> String {
    let modified = |m: &fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    };
    match fs::metadata(path) {
        Ok(m) => format!("{}.{}", m.len(), modified(&m)),
        Err(_) => "-".into(),
    }
}

impl SqliteAudit {
    /// What a per-turn check would cover now; `None` for a log opened without a key.
    pub fn check_scope(&self) -> Result<Option<CheckScope>> {
        let Some((file, head_path, _)) = self.seal_parts() else {
            return Ok(None);
        };
        let Some(key) = self.key() else {
            return Ok(None);
        };
        // Under the shared lock: an append holds it exclusively from before it writes
        // until it has recorded the files as it left them.
        let _guard = HeadLock::shared(file, head_path)?;
        let files = files_identity(self.path());
        let read = head::read(file, key).map_err(crate::store::head_io(head_path))?;
        let after = match read {
            ReadHead::Valid(h) if h.files != UNKNOWN_FILES && h.files == files => Some(h.verified),
            _ => None,
        };
        Ok(Some(CheckScope { after }))
    }

    /// Checks the rows `scope` covers — their hashes, links and MACs — and the log's end
    /// against the checkpoint, as [`Self::verify`] does for every row. When they hold, the
    /// checkpoint records how far the log was checked, so the next check starts there;
    /// when they do not, the next check reads every row again.
    pub fn check(&self, scope: &CheckScope) -> Result<VerifyReport> {
        let after = match scope.after {
            Some(after) if after > 0 => after,
            _ => {
                self.begin_full_check()?;
                0
            }
        };
        let (report, last) = match self.verify_after(after)? {
            Some(done) => done,
            // The row checked last is gone: a change the files' identity missed.
            None => {
                self.begin_full_check()?;
                self.verify_all()?
            }
        };
        let holds = report.first_broken.is_none()
            && !report.never_sealed
            && matches!(
                report.head,
                None | Some(crate::HeadProblem::Unsealed {
                    macs_hold: true,
                    ..
                })
            );
        self.record_checked(holds.then_some(last))?;
        Ok(report)
    }

    /// Before a full check: records the files as they are with nothing checked yet. Every
    /// later pai write then keeps them known, so a full check that runs alongside a turn
    /// (or is abandoned) leaves the next check a full one, never a blessed unchecked log.
    fn begin_full_check(&self) -> Result<()> {
        self.update_head(|h, now| {
            h.files = now;
            h.verified = 0;
        })
    }

    /// After a check: moves the "checked through" mark to `last` when the rows held,
    /// else marks the files unknown so the next check reads every row again.
    fn record_checked(&self, last: Option<i64>) -> Result<()> {
        self.update_head(|h, _| match last {
            Some(last) => h.verified = h.verified.max(last),
            None => {
                h.files = UNKNOWN_FILES.to_string();
                h.verified = 0;
            }
        })
    }

    /// Rewrites the checkpoint's check fields under its exclusive lock (its seal left as
    /// it is); nothing when the checkpoint is not being advanced.
    fn update_head(&self, change: impl FnOnce(&mut head::Head, String)) -> Result<()> {
        let Some((file, head_path, key)) = self.sealing_parts() else {
            return Ok(());
        };
        let _guard = HeadLock::exclusive(file, head_path)?;
        let io = crate::store::head_io(head_path);
        let ReadHead::Valid(mut h) = head::read(file, key).map_err(&io)? else {
            return Ok(());
        };
        let before = h.clone();
        change(&mut h, files_identity(self.path()));
        if h == before {
            return Ok(());
        }
        // Not synced: a lost update only makes the next check a longer one.
        head::write(file, &h, key, false).map_err(io)
    }
}
