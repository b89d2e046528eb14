//! Opening the audit log with its key, and checking it beside a turn.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use pai_audit::{AuditKey, SqliteAudit};

use crate::error::Result;
use crate::workspace::Workspace;

/// A full check of the audit log (every row's hash and MAC) running on its own thread and
/// connection, so a turn never waits for it.
#[derive(Debug)]
pub struct AuditCheck {
    done: mpsc::Receiver<Option<String>>,
    /// The log is small enough to check within the wait (about 100,000 rows at the
    /// measured rate); a bigger one is not waited for.
    patient: bool,
}

/// Logs up to this size are waited for at the end of a command (~1.3 KB per event).
const PATIENT_BYTES: u64 = 128 << 20;

impl AuditCheck {
    /// The one-line warning the check found, if it finished (within `wait`, for a log
    /// small enough to check in that time) and found a row that breaks the chain (the
    /// checkpoint's own findings are warned about when the log is opened). A check still
    /// running is abandoned: it only reads, and `pai audit verify` is the full check.
    pub fn warning(&self, wait: Duration) -> Option<String> {
        if self.patient {
            self.done.recv_timeout(wait).ok().flatten()
        } else {
            self.done.try_recv().ok().flatten()
        }
    }
}

impl Workspace {
    /// The key audit rows are sealed with: the one the log was sealed with when the user
    /// holds it (so setting `PAI_ENCRYPTION_KEY` later does not lock out a log sealed with
    /// the key file); for a new log, derived from the secret the caller passed
    /// (`PAI_ENCRYPTION_KEY` in the CLI), else the `audit.key` file in the config dir,
    /// created on first use.
    pub fn audit_key(&self) -> Result<AuditKey> {
        let derived = self
            .audit_secret()
            .map(|secret| AuditKey::derive(secret.expose().trim().as_bytes()));
        let file = self.paths().audit_key();
        if let Some(sealed) = SqliteAudit::sealed_key_id(&self.paths().audit_db()) {
            if let Some(key) = derived.as_ref().filter(|k| k.id() == sealed) {
                return Ok(key.clone());
            }
            if file.exists() {
                let key = AuditKey::load_or_create(&file)?;
                if key.id() == sealed {
                    return Ok(key);
                }
            }
        }
        match derived {
            Some(key) => Ok(key),
            None => Ok(AuditKey::load_or_create(&file)?),
        }
    }

    /// The audit log, opened with its key and `[audit]` settings (retention applied);
    /// [`SqliteAudit::head_warning`] says whether its checkpoint agreed with it.
    pub fn audit(&self) -> Result<Arc<SqliteAudit>> {
        let settings = &self.config().audit;
        let log = SqliteAudit::open_keyed(&self.paths().audit_db(), self.audit_key()?)?
            .with_content(settings.content);
        if let Some(days) = settings.keep_days {
            log.apply_retention(days)?;
        }
        Ok(Arc::new(log))
    }

    /// Starts a full check of the audit log in the background.
    pub fn audit_check(&self) -> AuditCheck {
        let (tx, rx) = mpsc::channel();
        let path = self.paths().audit_db();
        let patient = std::fs::metadata(&path).map_or(true, |m| m.len() <= PATIENT_BYTES);
        let key = self.audit_key();
        std::thread::spawn(move || {
            let found = key
                .ok()
                .and_then(|key| SqliteAudit::open_keyed(&path, key).ok())
                .and_then(|log| log.verify().ok())
                .and_then(|report| {
                    report.first_broken.map(|_| {
                        format!(
                            "the audit log at {} fails verification ({}); run 'pai audit verify' for details",
                            path.display(),
                            report.summary()
                        )
                    })
                });
            let _ = tx.send(found);
        });
        AuditCheck { done: rx, patient }
    }

    /// One line when the audit log does not verify (rows or checkpoint), for commands that
    /// report from it (`pai usage`): their numbers are only as good as the log.
    pub fn audit_warning(&self) -> Result<Option<String>> {
        if !self.paths().audit_db().exists() {
            return Ok(None);
        }
        let log = self.audit()?;
        if let Some(warning) = log.head_warning() {
            return Ok(Some(warning));
        }
        let report = log.verify()?;
        Ok(report.first_broken.map(|_| {
            format!(
                "the audit log at {} fails verification ({}); its numbers may be forged: run 'pai audit verify'",
                log.path().display(),
                report.summary()
            )
        }))
    }
}

/// How long the CLI waits at the end of a command for a background check to report.
pub const AUDIT_CHECK_WAIT: Duration = Duration::from_millis(500);
