use std::fmt;

use pai_types::{Locality, Usage};
use serde::{Deserialize, Serialize};

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Text sent to a model.
    Prompt,
    /// Text a model answered.
    Response,
    /// A session summary the model produced.
    Summary,
    /// A failure, as the one line the user saw.
    Error,
    /// A turn the user interrupted.
    Cancelled,
    /// One failed HTTP attempt of a model call (retried, or the last before giving up).
    Attempt,
    /// A model's request to call a tool, with its arguments.
    ToolCall,
    /// What a tool call returned (or why it was refused), as sent back to the model.
    ToolResult,
    /// One outbound hop or process spawn: target, resolved address, proxy, bytes and the
    /// SHA-256 of the exact body sent.
    Egress,
    /// A policy decision other than a plain default allow: subject, verdict, rule.
    Policy,
}

impl EventKind {
    /// Every kind, in the order `pai audit list --kind` names them.
    pub const ALL: [EventKind; 10] = [
        EventKind::Prompt,
        EventKind::Response,
        EventKind::Summary,
        EventKind::Error,
        EventKind::Cancelled,
        EventKind::Attempt,
        EventKind::ToolCall,
        EventKind::ToolResult,
        EventKind::Egress,
        EventKind::Policy,
    ];

    /// The kind stored as `name` (`prompt`, `tool_call`, …).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::from_stored(name)
    }

    /// The lowercase name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Prompt => "prompt",
            EventKind::Response => "response",
            EventKind::Summary => "summary",
            EventKind::Error => "error",
            EventKind::Cancelled => "cancelled",
            EventKind::Attempt => "attempt",
            EventKind::ToolCall => "tool_call",
            EventKind::ToolResult => "tool_result",
            EventKind::Egress => "egress",
            EventKind::Policy => "policy",
        }
    }

    pub(crate) fn from_stored(s: &str) -> Option<Self> {
        Some(match s {
            "prompt" => EventKind::Prompt,
            "response" => EventKind::Response,
            "summary" => EventKind::Summary,
            "error" => EventKind::Error,
            "cancelled" => EventKind::Cancelled,
            "attempt" => EventKind::Attempt,
            "tool_call" => EventKind::ToolCall,
            "tool_result" => EventKind::ToolResult,
            "egress" => EventKind::Egress,
            "policy" => EventKind::Policy,
            _ => return None,
        })
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of a stored event; ids grow with every event recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub i64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One thing that crossed a chokepoint: what was sent or received, by which provider and
/// model, where it ran and what it cost.
///
/// The store adds the time and the OS user itself. Never put a secret here: the log keeps
/// whatever it is given, and API keys belong in the key vault only.
///
/// ```
/// use pai_audit::{AuditEvent, EventKind};
/// use pai_types::{Locality, Usage};
///
/// let sent = AuditEvent::new(EventKind::Prompt, "What is WAL mode?")
///     .session("work")
///     .mode("chat")
///     .provider("ollama")
///     .endpoint("http://127.0.0.1:11434/v1")
///     .model("llama3.2")
///     .locality(Locality::Local);
/// let answer = AuditEvent {
///     kind: EventKind::Response,
///     content: "Write-ahead logging.".into(),
///     ..sent.clone()
/// }
/// .usage(Usage { prompt_tokens: 12, completion_tokens: 4, estimated: false })
/// .duration_ms(840);
/// assert_eq!(answer.provider, "ollama");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// What crossed the chokepoint.
    pub kind: EventKind,
    /// The session it belongs to; empty outside one.
    pub session: String,
    /// The mode the turn ran in (`chat`, `prompt`, `agent`).
    pub mode: String,
    /// The provider's name as the user knows it.
    pub provider: String,
    /// The URL the request went to, credentials redacted when stored.
    pub endpoint: String,
    /// The model id as the provider names it.
    pub model: String,
    /// Where the model ran, when a model was involved.
    pub locality: Option<Locality>,
    /// Tokens the call used, when known.
    pub usage: Option<Usage>,
    /// How long the call took, in milliseconds.
    pub duration_ms: Option<u64>,
    /// The prompt text, the response text, or the error line.
    pub content: String,
}

impl AuditEvent {
    /// An event of `kind` carrying `content`; set the rest with the builder methods.
    pub fn new(kind: EventKind, content: impl Into<String>) -> Self {
        Self {
            kind,
            session: String::new(),
            mode: String::new(),
            provider: String::new(),
            endpoint: String::new(),
            model: String::new(),
            locality: None,
            usage: None,
            duration_ms: None,
            content: content.into(),
        }
    }

    /// Accepts a `SessionName`, a `&str` or anything else that displays as the name.
    pub fn session(mut self, session: impl fmt::Display) -> Self {
        self.session = session.to_string();
        self
    }

    /// Accepts a `pai_types::Mode` or its name.
    pub fn mode(mut self, mode: impl fmt::Display) -> Self {
        self.mode = mode.to_string();
        self
    }

    /// Sets the provider's name as the user knows it.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = provider.into();
        self
    }

    /// The URL the request went to. Credentials in it are redacted when stored.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// Sets the model id as the provider names it.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets where the model ran.
    pub fn locality(mut self, locality: Locality) -> Self {
        self.locality = Some(locality);
        self
    }

    /// Sets the tokens the call used.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Sets how long the call took, in milliseconds.
    pub fn duration_ms(mut self, duration_ms: u64) -> Self {
        self.duration_ms = Some(duration_ms);
        self
    }
}

/// An event as the log holds it: with its id, time, user and chain hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The row's id, increasing in insertion order.
    pub id: EventId,
    /// RFC 3339, UTC, millisecond precision, e.g. `2025-01-31T09:15:02.417Z`.
    pub ts: String,
    /// The OS user that ran pai, or `unknown`.
    pub user: String,
    /// What was recorded.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hex SHA-256 linking this row to the one before it.
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn kinds_serialise_lowercase_and_round_trip_through_storage_names() {
        let all = [
            EventKind::Prompt,
            EventKind::Response,
            EventKind::Summary,
            EventKind::Error,
            EventKind::Cancelled,
        ];
        for kind in all {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(EventKind::from_stored(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::from_stored("Prompt"), None);
    }

    #[test]
    fn builder_sets_every_field() {
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            estimated: true,
        };
        let built = AuditEvent::new(EventKind::Error, "boom")
            .session("s")
            .mode(pai_types::Mode::Prompt)
            .provider("p")
            .endpoint("e")
            .model("m")
            .locality(Locality::Remote)
            .usage(usage)
            .duration_ms(7);
        assert_eq!(
            built,
            AuditEvent {
                kind: EventKind::Error,
                session: "s".into(),
                mode: "prompt".into(),
                provider: "p".into(),
                endpoint: "e".into(),
                model: "m".into(),
                locality: Some(Locality::Remote),
                usage: Some(usage),
                duration_ms: Some(7),
                content: "boom".into(),
            }
        );
    }

    #[test]
    fn stored_event_serialises_flat() {
        let stored = StoredEvent {
            id: EventId(3),
            ts: "2025-01-01T00:00:00.000Z".into(),
            user: "ada".into(),
            event: AuditEvent::new(EventKind::Prompt, "hi"),
            hash: "ab".into(),
        };
        let json = serde_json::to_value(&stored).unwrap();
        assert_eq!(json["id"], 3);
        assert_eq!(json["kind"], "prompt");
        assert_eq!(json["content"], "hi");
        let back: StoredEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, stored);
    }
}
