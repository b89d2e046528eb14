//! Sessions as files and listings: `pai sessions` with last use and locality, `pai export`
//! (a transcript as JSON or Markdown, with no key in it) and `pai import` (validated whole
//! before a byte is written).

use pai_types::{DataClass, Locality, Role, SessionName, redact_endpoint};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::keys::session_endpoint;
use crate::session::{HistoryEntry, SessionMeta};
use crate::workspace::Workspace;

/// What an exported transcript says it is, so an import can refuse anything else.
pub const TRANSCRIPT_FORMAT: &str = "pai-transcript/1";

/// A line of `pai sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionLine {
    /// The session's name.
    pub name: SessionName,
    /// Its provider.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// It is the active session.
    pub active: bool,
    /// Where its model runs; none when its provider is no longer configured.
    pub locality: Option<Locality>,
    /// Messages in its history.
    pub messages: usize,
    /// When it was last used (its last message, else its last change), RFC 3339 UTC.
    pub last_used: String,
}

/// A session's transcript: its settings (never its key) and its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    /// Always [`TRANSCRIPT_FORMAT`].
    pub format: String,
    /// The session's name.
    pub session: SessionName,
    /// Its provider.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// Its own endpoint, credentials masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Its own system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// The running summary and how many messages it covers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// Messages the summary covers.
    #[serde(default)]
    pub folded: usize,
    /// The summary's class.
    #[serde(default, skip_serializing_if = "DataClass::is_default")]
    pub summary_class: DataClass,
    /// The history, oldest first.
    pub messages: Vec<HistoryEntry>,
}

impl Transcript {
    /// The transcript as Markdown: a heading, the settings, then each message.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "# Session {}\n", self.session);
        let _ = writeln!(out, "- provider: {}", self.provider);
        let _ = writeln!(out, "- model: {}", self.model);
        let _ = writeln!(out, "- created: {}", self.created_at);
        if let Some(system) = &self.system {
            let _ = writeln!(out, "- system prompt: {}", system.replace('\n', " "));
        }
        if !self.summary.is_empty() {
            let _ = writeln!(
                out,
                "\n## Summary of the first {} messages\n\n{}",
                self.folded, self.summary
            );
        }
        for m in &self.messages {
            let who = match m.role {
                Role::User => "You",
                Role::Assistant => "Assistant",
                Role::System => "System",
                Role::Tool => "Tool",
            };
            let model = m
                .model
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "\n## {who}{model} · {}\n\n{}",
                m.at,
                m.content.trim_end()
            );
        }
        out
    }
}

impl Workspace {
    /// Every session with its last use, message count, model and locality.
    pub fn sessions(&self) -> Result<Vec<SessionLine>> {
        let mut out = Vec::new();
        for s in self.store().list()? {
            let snap = self.store().snapshot(&s.name)?;
            let locality = self
                .config()
                .provider_entry(&snap.meta.provider)
                .ok()
                .map(|entry| session_endpoint(&snap.meta, &entry, self.paths()).1);
            let last_used = snap
                .history
                .last()
                .map_or_else(|| snap.meta.updated_at.clone(), |e| e.at.clone());
            out.push(SessionLine {
                name: s.name,
                provider: s.provider,
                model: s.model,
                active: s.active,
                locality,
                messages: snap.history.len(),
                last_used,
            });
        }
        Ok(out)
    }

    /// Session `name`'s transcript. Found secrets are masked whatever `[context]
    /// keep_secrets_in_history` says (a transcript is made to leave the machine), and the
    /// stored key is never in it.
    pub fn export(&self, name: &SessionName) -> Result<Transcript> {
        let snap = self.store().snapshot(name)?;
        let meta = snap.meta;
        let mask = crate::mask_secrets;
        Ok(Transcript {
            format: TRANSCRIPT_FORMAT.into(),
            session: meta.name,
            provider: meta.provider,
            model: meta.model,
            base_url: meta.base_url.map(|u| redact_endpoint(&u).into_owned()),
            system: meta.system.map(|s| mask(&s)),
            created_at: meta.created_at,
            summary: mask(&meta.summary),
            folded: meta.folded,
            summary_class: meta.summary_class,
            messages: snap
                .history
                .into_iter()
                .map(|e| HistoryEntry {
                    content: mask(&e.content),
                    ..e
                })
                .collect(),
        })
    }

    /// Creates a session from an exported transcript (`text`), named `rename` or as it
    /// was. Everything is checked first (format, provider, name free, messages); then the
    /// session is written whole or not at all. No key comes with it: give one with
    /// `pai <session> switch <provider> --api-key …` or the provider's env var.
    pub fn import(&self, text: &str, rename: Option<SessionName>) -> Result<SessionMeta> {
        let bad = |why: String| CoreError::Invalid(format!("cannot import: {why}"));
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not JSON ({e}); give a file written by 'pai export <session> --format json'"
            ))
        })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(TRANSCRIPT_FORMAT) {
            return Err(bad(format!(
                "not a PAI transcript (no \"format\": \"{TRANSCRIPT_FORMAT}\"); give a file written by 'pai export <session> --format json'"
            )));
        }
        let t: Transcript = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let entry = self.config().provider_entry(&t.provider)?;
        if t.model.trim().is_empty() {
            return Err(bad("the transcript names no model".into()));
        }
        if let Some(i) = t
            .messages
            .iter()
            .position(|m| !matches!(m.role, Role::User | Role::Assistant))
        {
            return Err(bad(format!(
                "message {} has role '{}'; a session history holds user and assistant messages only",
                i + 1,
                t.messages[i].role.as_str()
            )));
        }
        if t.folded > t.messages.len() {
            return Err(bad(format!(
                "the summary covers {} messages but there are {}",
                t.folded,
                t.messages.len()
            )));
        }
        // The same rules as --base-url: an http(s) URL with no credential in it.
        let base_url = crate::manage::check_base_url(t.base_url.as_deref())?;
        let name = rename.unwrap_or(t.session);
        let mut meta = SessionMeta::new(name, &entry.name, &t.model);
        meta.base_url = base_url;
        meta.system = t.system;
        meta.created_at = t.created_at;
        meta.summary = t.summary;
        meta.folded = t.folded;
        meta.summary_class = t.summary_class;
        self.store().create_whole(&meta, &t.messages)?;
        Ok(meta)
    }
}
