//! pai-core against real files in a temporary PAI home: the session store, the key vault
//! (including interop with Python's `cryptography`), key resolution, and the engine with
//! a mocked provider and a recording audit sink.

// clippy.toml allows unwrap in `#[test]` functions only; the suite's helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod concurrency;
mod engine;
mod history_tail;
mod keys;
mod sessions;
mod vault;
mod workspace;

use pai_core::{HistoryEntry, Paths, SessionMeta, SessionStore};
use pai_test_support::TempHome;
use pai_types::{Message, Role, SessionName};

pub const PROVIDER: &str = "lmstudio";
pub const MODEL: &str = "test-model";

/// A store confined to a fresh temporary home; keep the `TempHome` alive as long as it.
pub fn temp_store() -> (TempHome, SessionStore) {
    let home = TempHome::new();
    let store = SessionStore::new(Paths::new(home.home(), home.config()));
    (home, store)
}

pub fn name(s: &str) -> SessionName {
    SessionName::new(s).unwrap()
}

/// Creates session `n` on [`PROVIDER`] / [`MODEL`] and returns its settings.
pub fn create(store: &SessionStore, n: &str) -> SessionMeta {
    let meta = SessionMeta::new(name(n), PROVIDER, MODEL);
    store.create(&meta, false).unwrap();
    meta
}

pub fn entry(role: Role, text: &str) -> HistoryEntry {
    HistoryEntry::new(Message::new(role, text))
}

/// A question and its answer, as the engine appends them.
pub fn turn(q: &str, a: &str) -> [HistoryEntry; 2] {
    [entry(Role::User, q), entry(Role::Assistant, a)]
}

/// `history.jsonl` of session `n`.
pub fn history_path(store: &SessionStore, n: &str) -> std::path::PathBuf {
    store.paths().session_dir(&name(n)).join("history.jsonl")
}

/// The serialised form of `entries`, one JSON line each, as `append` writes them.
pub fn jsonl(entries: &[HistoryEntry]) -> String {
    entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect()
}
