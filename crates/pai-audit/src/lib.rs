//! The audit log of PAI: a durable record of everything that crossed the chokepoints —
//! each prompt sent to a model, each response, summary, error and cancelled turn — with
//! the provider, endpoint, model, locality and token usage involved, stamped with the
//! time and the OS user. Rows are hash-chained so later edits are detectable, and the
//! SQLite file is kept at mode 0600. This crate must never store a secret: API keys live
//! only in the key vault, and credentials found in endpoint URLs are redacted before a
//! row is written.

mod chain;
mod error;
mod event;
mod sink;
mod store;

pub use error::{AuditError, Result};
pub use event::{AuditEvent, EventId, EventKind, StoredEvent};
pub use sink::AuditSink;
pub use store::{BreakReason, BrokenRow, SqliteAudit, UsageRow, VerifyReport};
