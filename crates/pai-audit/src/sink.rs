use crate::{AuditEvent, EventId, Result};

/// Where audit events go. Every step of a turn passes through one of these.
///
/// Implementations fill in the time and the OS user themselves, so a caller cannot
/// back-date an event or record it under somebody else's name.
pub trait AuditSink: Send + Sync {
    /// Stores `event` durably (it survives a power loss once this returns) and returns the
    /// id it was stored under. For what must be on record before something happens, such as
    /// a request before it leaves.
    fn record(&self, event: &AuditEvent) -> Result<EventId>;

    /// Stores `event` so that it survives the process (a crash, a kill) at once, but may
    /// leave it to the next durable write to make it survive a power loss: one sync fewer
    /// for a row written just before a commit point of the caller's own (the history line
    /// after an answer), where waiting for a second sync would only slow the turn down.
    /// Rows keep their order either way: a later durable write covers every earlier row.
    ///
    /// The default stores it durably.
    fn record_deferred(&self, event: &AuditEvent) -> Result<EventId> {
        self.record(event)
    }
}
