use crate::{AuditEvent, EventId, Result};

/// Where audit events go. Every step of a turn passes through one of these.
///
/// Implementations fill in the time and the OS user themselves, so a caller cannot
/// back-date an event or record it under somebody else's name.
pub trait AuditSink: Send + Sync {
    /// Stores `event` durably and returns the id it was stored under.
    fn record(&self, event: &AuditEvent) -> Result<EventId>;
}
