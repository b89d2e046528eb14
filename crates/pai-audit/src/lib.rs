//! The audit log of PAI: a durable record of everything that crossed the chokepoints —
//! each prompt sent to a model, each response, summary, error and cancelled turn — with
//! the provider, endpoint, model, locality and token usage involved, stamped with the
//! time and the OS user. Rows are hash-chained and each carries an HMAC under a key the
//! model's tools cannot read; a head checkpoint beside the database seals the last row, so
//! edits, re-chaining, truncation and replacement are detectable. The SQLite file is kept
//! at mode 0600. This crate must never store a secret: API keys live
//! only in the key vault, and credentials found in endpoint URLs are redacted before a
//! row is written.

mod chain;
mod check;
mod error;
mod event;
mod head;
mod key;
mod query;
mod sink;
mod store;
mod verify;

pub use check::CheckScope;
pub use error::{AuditError, Result};
pub use event::{AuditEvent, EventId, EventKind, StoredEvent};
pub use key::{AuditKey, KeySource};
pub use query::{EventDetail, Filter, LedgerRow, PurgeReport, PurgeScope};
pub use sink::AuditSink;
pub use store::{ContentMode, SqliteAudit, UsageRow};
pub use verify::{BreakReason, BrokenRow, HeadProblem, HeadStatus, VerifyReport};
