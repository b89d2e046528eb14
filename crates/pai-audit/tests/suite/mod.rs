use std::path::PathBuf;

use pai_audit::{AuditEvent, AuditKey, EventKind, SqliteAudit};
use pai_types::{Locality, Usage};

mod chain;
mod check;
mod files;
mod query;
mod record;

/// A fresh temporary PAI_HOME and the audit log path inside it.
fn temp_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit").join("audit.db");
    (dir, path)
}

/// The key every test log is sealed with.
fn key() -> AuditKey {
    AuditKey::derive(b"test secret")
}

/// The log at `path`, opened with [`key`].
fn open(path: &std::path::Path) -> SqliteAudit {
    SqliteAudit::open_keyed(path, key()).unwrap()
}

/// A fully populated event, `n` making it distinct.
fn sample(kind: EventKind, n: u64) -> AuditEvent {
    AuditEvent::new(kind, format!("content number {n}"))
        .session("work")
        .mode(pai_types::Mode::Chat)
        .provider("ollama")
        .endpoint("http://127.0.0.1:11434/v1")
        .model("llama3.2:1b")
        .locality(Locality::Local)
        .usage(Usage {
            prompt_tokens: 10 + n,
            completion_tokens: n,
            estimated: n.is_multiple_of(2),
        })
        .duration_ms(100 * n)
}
