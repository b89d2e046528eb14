//! Opening the audit log with its key, and checking it beside a turn.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use pai_audit::{AuditKey, SqliteAudit};

use crate::error::Result;
use crate::workspace::Workspace;

/// The per-turn check of the audit log ([`SqliteAudit::check`]: the rows written since
/// the last check when the files are as pai left them, every row otherwise), running on
/// its own thread and connection so a turn never waits for it to start.
#[derive(Debug)]
pub struct AuditCheck {
    done: mpsc::Receiver<Step>,
}

/// What the checking thread reports: first what it will cover, then what it found.
#[derive(Debug)]
enum Step {
    /// Only the rows since the last check (`true`), or a full check of a log small enough
    /// to wait for: the command waits for the outcome.
    Scope { wait: bool },
    /// The warning line, if the check found a row that breaks the chain.
    Done(Option<String>),
}

/// Full checks of logs up to this size are waited for at the end of a command (~1.3 KB
/// per event: about 100,000 rows, within [`AUDIT_CHECK_WAIT`] at the measured rate).
const PATIENT_BYTES: u64 = 128 << 20;

impl AuditCheck {
    /// The one-line warning the check found, if it finished and found a row that breaks
    /// the chain (the checkpoint's own findings are warned about when the log is opened).
    /// An incremental check, or a full one of a small log, is waited for up to `wait`; a
    /// full check of a big log that is still running is abandoned: it only reads, and the
    /// next check starts it again.
    pub fn warning(&self, wait: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // Until the thread says what it covers (an open and a few `stat`s), waiting is
            // as for a check worth waiting for.
            match self.done.recv_timeout(left) {
                Ok(Step::Scope { wait: true }) => continue,
                Ok(Step::Scope { wait: false }) => {
                    return match self.done.try_recv() {
                        Ok(Step::Done(found)) => found,
                        _ => None,
                    };
                }
                Ok(Step::Done(found)) => return found,
                Err(_) => return None,
            }
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

    /// Starts the per-turn check of the audit log in the background.
    pub fn audit_check(&self) -> AuditCheck {
        let (tx, rx) = mpsc::channel();
        let path = self.paths().audit_db();
        let small = std::fs::metadata(&path).map_or(true, |m| m.len() <= PATIENT_BYTES);
        let key = self.audit_key();
        std::thread::spawn(move || {
            let found = key
                .ok()
                .and_then(|key| SqliteAudit::open_keyed(&path, key).ok())
                .and_then(|log| {
                    let scope = log.check_scope().ok()??;
                    let wait = scope.incremental_after().is_some() || small;
                    let _ = tx.send(Step::Scope { wait });
                    log.check(&scope).ok()
                })
                .and_then(|report| {
                    report.first_broken.map(|_| {
                        format!(
                            "the audit log at {} fails verification ({}); run 'pai audit verify' for details",
                            path.display(),
                            report.summary()
                        )
                    })
                });
            let _ = tx.send(Step::Done(found));
        });
        AuditCheck { done: rx }
    }

    /// One line when the audit log does not verify (rows or checkpoint), for commands that
    /// report from it (`pai usage`): their numbers are only as good as the log. The same
    /// check as a turn's, run to the end: the rows since the last check when the files are
    /// as pai left them, every row otherwise.
    pub fn audit_warning(&self) -> Result<Option<String>> {
        if !self.paths().audit_db().exists() {
            return Ok(None);
        }
        let log = self.audit()?;
        if let Some(warning) = log.head_warning() {
            return Ok(Some(warning));
        }
        let Some(scope) = log.check_scope()? else {
            return Ok(None);
        };
        let report = log.check(&scope)?;
        Ok(report.first_broken.map(|_| {
            format!(
                "the audit log at {} fails verification ({}); its numbers may be forged: run 'pai audit verify'",
                log.path().display(),
                report.summary()
            )
        }))
    }
}

/// How long the CLI waits at the end of a command for a background check to report,
/// unless `[audit] check_wait_ms` says otherwise.
pub const AUDIT_CHECK_WAIT: Duration = Duration::from_millis(500);
