use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use pai_types::{DataClass, Message, Origin, Role, SessionName, Usage};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result, io};
use crate::paths::{Paths, ensure_private_dir};

const META: &str = "session.json";
const HISTORY: &str = "history.jsonl";
/// Where an unreadable last history line goes instead of being deleted.
const REJECTED: &str = "history.rejected";
const LOCK: &str = ".lock";
const ACTIVE: &str = "active";

/// A session's settings. Written whole and atomically; the API key only as a Fernet token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// The session's validated name, also its folder's.
    pub name: SessionName,
    /// A built-in provider's name or one from `[providers.<name>]`.
    pub provider: String,
    /// The model asked by default (a turn may override it).
    pub model: String,
    /// The session's own endpoint, over the provider's (never with credentials in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The API key encrypted under `PAI_ENCRYPTION_KEY`, when the user stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC: the last change of these settings.
    pub updated_at: String,
    /// Running summary of the history entries before `folded`.
    #[serde(default)]
    pub summary: String,
    /// How many history entries the summary covers.
    #[serde(default)]
    pub folded: usize,
    /// Tokens the session may use over its whole history; none means no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// The class of the running summary: the highest of the parts folded into it.
    #[serde(default, skip_serializing_if = "DataClass::is_default")]
    pub summary_class: DataClass,
    /// `pai <session> allow|deny …`, enforced by the policy on every turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<pai_policy::Constraint>,
    /// Safe mode: local endpoints and read-only tools only (`pai <session> safe on`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub safe: bool,
    /// The session's own system prompt (`pai <session> system "…"`), over `[context]
    /// system_prompt`; a run's `--system` or `--role` goes over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

impl SessionMeta {
    /// A new session's settings: no endpoint override, key, summary or budget.
    pub fn new(name: SessionName, provider: &str, model: &str) -> Self {
        let now = now();
        Self {
            name,
            provider: provider.into(),
            model: model.into(),
            base_url: None,
            api_key: None,
            created_at: now.clone(),
            updated_at: now,
            summary: String::new(),
            folded: 0,
            budget_tokens: None,
            summary_class: DataClass::default(),
            constraints: Vec::new(),
            safe: false,
            system: None,
        }
    }
}

/// One line of `history.jsonl`: a message, when it was written, and for answers the
/// model and token counts that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// RFC 3339, UTC.
    pub at: String,
    /// The model that gave an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What the turn that gave an answer cost, all its model calls together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// How sensitive it is: an answer derived from secret parts (a local model that read
    /// a key file) stays secret, so a later remote call does not get it.
    #[serde(default, skip_serializing_if = "DataClass::is_default")]
    pub class: DataClass,
}

impl HistoryEntry {
    /// `message`, stamped now.
    pub fn new(message: Message) -> Self {
        Self {
            role: message.role,
            class: message.provenance.class,
            content: message.content,
            at: now(),
            model: None,
            usage: None,
        }
    }

    /// The entry as a message for a model's context.
    pub fn message(&self) -> Message {
        Message::new(self.role, self.content.clone()).with_provenance(Origin::History, self.class)
    }
}

/// A consistent read of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// The settings, summary and fold point.
    pub meta: SessionMeta,
    /// Every readable history entry, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl SessionSnapshot {
    /// Token totals over the whole history.
    pub fn usage(&self) -> Usage {
        let mut total = Usage::default();
        for u in self.history.iter().filter_map(|e| e.usage.as_ref()) {
            total.add(u);
        }
        total
    }

    /// Entries the running summary does not cover yet.
    pub fn unfolded(&self) -> &[HistoryEntry] {
        &self.history[self.meta.folded.min(self.history.len())..]
    }
}

/// A line of `pai sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    /// The session's name.
    pub name: SessionName,
    /// Its provider.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// It is the active session.
    pub active: bool,
}

/// Sessions on disk: one folder each under `PAI_HOME/sessions`, holding `session.json`
/// (replaced atomically), `history.jsonl` (append-only, one entry a line), `.lock`
/// (an advisory lock, so concurrent `pai` processes serialise their writes) and, once a
/// last history line could not be read, `history.rejected` holding it. Reads write
/// nothing, so status and listings work on a read-only `PAI_HOME`; writes keep the home,
/// `sessions/` and the session's folder at 0700.
#[derive(Debug, Clone)]
pub struct SessionStore {
    paths: Paths,
}

/// Holds a session's advisory lock until dropped.
struct LockGuard(#[allow(dead_code)] File);

impl SessionStore {
    /// The sessions under `paths.home`.
    pub fn new(paths: Paths) -> Self {
        Self { paths }
    }

    /// Where the store keeps its files.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    fn dir(&self, name: &SessionName) -> PathBuf {
        self.paths.session_dir(name)
    }

    /// Creates (0700) or tightens the directories a write to `name` goes through.
    fn prepare(&self, name: &SessionName) -> Result<PathBuf> {
        ensure_private_dir(&self.paths.home)?;
        ensure_private_dir(&self.paths.sessions_dir())?;
        let dir = self.dir(name);
        ensure_private_dir(&dir)?;
        Ok(dir)
    }

    fn lock(&self, name: &SessionName, exclusive: bool) -> Result<LockGuard> {
        let path = self.dir(name).join(LOCK);
        let create = || {
            private_options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        };
        // A reader opens the lock read-only (flock needs no write access), so reading
        // works on a read-only PAI_HOME and never opens anything there for writing.
        let opened = if exclusive {
            create()
        } else {
            match File::open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(),
                other => other,
            }
        };
        let file = opened.map_err(io("open the lock file", &path))?;
        if exclusive {
            file.lock().map_err(io("lock", &path))?;
        } else {
            file.lock_shared().map_err(io("lock", &path))?;
        }
        Ok(LockGuard(file))
    }

    /// Whether session `name` has a folder.
    pub fn exists(&self, name: &SessionName) -> bool {
        self.dir(name).join(META).is_file()
    }

    /// Writes a new session; refuses to replace one unless `force`, which also empties its history.
    pub fn create(&self, meta: &SessionMeta, force: bool) -> Result<()> {
        let dir = self.prepare(&meta.name)?;
        let _lock = self.lock(&meta.name, true)?;
        if dir.join(META).exists() && !force {
            return Err(CoreError::SessionExists(meta.name.to_string()));
        }
        write_atomic(&dir.join(META), &to_json(meta)?)?;
        truncate(&dir.join(HISTORY))
    }

    /// Session `name`'s settings, under its shared lock.
    pub fn load_meta(&self, name: &SessionName) -> Result<SessionMeta> {
        let _lock = self.lock_existing(name, false)?;
        self.read_meta(name)
    }

    fn lock_existing(&self, name: &SessionName, exclusive: bool) -> Result<LockGuard> {
        if !self.exists(name) {
            return Err(CoreError::NoSuchSession(name.to_string()));
        }
        self.lock(name, exclusive)
    }

    fn read_meta(&self, name: &SessionName) -> Result<SessionMeta> {
        let path = self.dir(name).join(META);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CoreError::NoSuchSession(name.to_string()));
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        let mut meta: SessionMeta =
            serde_json::from_slice(&text).map_err(|e| CoreError::Corrupt {
                what: "session file",
                path,
                detail: e.to_string(),
            })?;
        // The folder's name is the session's: a rename is one atomic move of the folder.
        meta.name = name.clone();
        Ok(meta)
    }

    /// The session's settings and whole history, read under one shared lock.
    pub fn snapshot(&self, name: &SessionName) -> Result<SessionSnapshot> {
        let _lock = self.lock_existing(name, false)?;
        let meta = self.read_meta(name)?;
        let history = read_history(&self.dir(name).join(HISTORY))?;
        Ok(SessionSnapshot { meta, history })
    }

    /// Appends entries in one write under the exclusive lock: O(1) in the history's length
    /// (only the last line is looked at), and either all of a turn lands or (on a crash
    /// mid-write) a torn last line that readers skip and the next append moves aside.
    pub fn append(&self, name: &SessionName, entries: &[HistoryEntry]) -> Result<()> {
        let mut buf = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut buf, e).map_err(|e| CoreError::Corrupt {
                what: "history entry",
                path: self.dir(name).join(HISTORY),
                detail: e.to_string(),
            })?;
            buf.push(b'\n');
        }
        let _lock = self.lock_existing(name, true)?;
        let dir = self.prepare(name)?;
        let path = dir.join(HISTORY);
        let mut file = private_options()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open", &path))?;
        if settle_tail(&mut file, &path, &dir.join(REJECTED))? {
            buf.insert(0, b'\n');
        }
        file.write_all(&buf).map_err(io("append to", &path))?;
        file.sync_data().map_err(io("sync", &path))
    }

    /// Changes a session's settings under the exclusive lock; `change` may refuse.
    pub fn update(
        &self,
        name: &SessionName,
        change: impl FnOnce(&mut SessionMeta) -> Result<()>,
    ) -> Result<SessionMeta> {
        let _lock = self.lock_existing(name, true)?;
        self.prepare(name)?;
        let mut meta = self.read_meta(name)?;
        change(&mut meta)?;
        meta.updated_at = now();
        write_atomic(&self.dir(name).join(META), &to_json(&meta)?)?;
        Ok(meta)
    }

    /// Records a new running summary covering the first `folded` entries, unless another
    /// process changed the summary meanwhile (then its fold stands and this one is dropped).
    pub fn fold(
        &self,
        name: &SessionName,
        expected: usize,
        (summary, class): (String, DataClass),
        folded: usize,
    ) -> Result<bool> {
        let mut applied = false;
        self.update(name, |meta| {
            if meta.folded == expected {
                meta.summary = summary;
                meta.summary_class = class;
                meta.folded = folded;
                applied = true;
            }
            Ok(())
        })?;
        Ok(applied)
    }

    /// Empties history and summary; provider, model and key stay.
    pub fn reset(&self, name: &SessionName) -> Result<()> {
        let _lock = self.lock_existing(name, true)?;
        self.prepare(name)?;
        let mut meta = self.read_meta(name)?;
        meta.summary.clear();
        meta.summary_class = DataClass::default();
        meta.folded = 0;
        meta.updated_at = now();
        write_atomic(&self.dir(name).join(META), &to_json(&meta)?)?;
        truncate(&self.dir(name).join(HISTORY))
    }

    /// Removes session `name` with its history: its folder is first moved aside under the
    /// session's lock (so no reader sees half of it), then deleted. An active session
    /// stops being the active one.
    pub fn remove(&self, name: &SessionName) -> Result<()> {
        let dir = self.dir(name);
        let aside = self
            .paths
            .sessions_dir()
            .join(format!(".removed-{name}-{}", std::process::id()));
        {
            let _lock = self.lock_existing(name, true)?;
            fs::rename(&dir, &aside).map_err(io("remove", &dir))?;
        }
        if self.active()?.as_ref() == Some(name) {
            let active = self.paths.home.join(ACTIVE);
            fs::remove_file(&active).map_err(io("remove", &active))?;
        }
        fs::remove_dir_all(&aside).map_err(io("delete", &aside))
    }

    /// Renames session `from` to `to` in one atomic move of its folder; refuses when `to`
    /// exists. The active session stays active under its new name.
    pub fn rename(&self, from: &SessionName, to: &SessionName) -> Result<()> {
        let target = self.dir(to);
        {
            let _lock = self.lock_existing(from, true)?;
            if self.exists(to) || target.exists() {
                return Err(CoreError::SessionExists(to.to_string()));
            }
            fs::rename(self.dir(from), &target).map_err(io("rename", self.dir(from)))?;
        }
        // Tidy the stored name (readers take the folder's name anyway).
        self.update(to, |_| Ok(()))?;
        if self.active()?.as_ref() == Some(from) {
            self.set_active(to)?;
        }
        Ok(())
    }

    /// Writes a whole session (settings and history) that must not exist yet: built in a
    /// hidden folder, synced, then moved into place in one step, so a failure leaves
    /// nothing behind and no reader ever sees half of it.
    pub fn create_whole(&self, meta: &SessionMeta, history: &[HistoryEntry]) -> Result<()> {
        ensure_private_dir(&self.paths.home)?;
        let sessions = self.paths.sessions_dir();
        ensure_private_dir(&sessions)?;
        if self.exists(&meta.name) || self.dir(&meta.name).exists() {
            return Err(CoreError::SessionExists(meta.name.to_string()));
        }
        let staging = tempfile::Builder::new()
            .prefix(".import-")
            .tempdir_in(&sessions)
            .map_err(io("write into", &sessions))?;
        let mut lines = Vec::new();
        for e in history {
            serde_json::to_writer(&mut lines, e).map_err(|e| CoreError::Corrupt {
                what: "history entry",
                path: staging.path().join(HISTORY),
                detail: e.to_string(),
            })?;
            lines.push(b'\n');
        }
        write_atomic(&staging.path().join(HISTORY), &lines)?;
        write_atomic(&staging.path().join(META), &to_json(meta)?)?;
        let target = self.dir(&meta.name);
        if target.exists() {
            return Err(CoreError::SessionExists(meta.name.to_string()));
        }
        let staged = staging.keep();
        fs::rename(&staged, &target).map_err(|e| {
            let _ = fs::remove_dir_all(&staged);
            io("create", &target)(e)
        })?;
        #[cfg(unix)]
        File::open(&sessions)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &sessions))?;
        Ok(())
    }

    /// Every session, by name, with the active one marked.
    pub fn list(&self) -> Result<Vec<SessionSummary>> {
        let dir = self.paths.sessions_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &dir)(e)),
        };
        let active = self.active()?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| SessionName::new(n).ok())
            else {
                continue;
            };
            if !self.exists(&name) {
                continue;
            }
            let meta = self.read_meta(&name)?;
            out.push(SessionSummary {
                active: active.as_ref() == Some(&name),
                name,
                provider: meta.provider,
                model: meta.model,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Makes `name` (which must exist) the session used when none is named.
    pub fn set_active(&self, name: &SessionName) -> Result<()> {
        if !self.exists(name) {
            return Err(CoreError::NoSuchSession(name.to_string()));
        }
        ensure_private_dir(&self.paths.home)?;
        write_atomic(&self.paths.home.join(ACTIVE), name.as_str().as_bytes())
    }

    /// The active session, if one is set.
    pub fn active(&self) -> Result<Option<SessionName>> {
        let path = self.paths.home.join(ACTIVE);
        match fs::read_to_string(&path) {
            Ok(text) => SessionName::new(text.trim())
                .map(Some)
                .map_err(|e| CoreError::Corrupt {
                    what: "active-session file",
                    path,
                    detail: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// The named session, else the active one.
    pub fn resolve(&self, name: Option<&SessionName>) -> Result<SessionName> {
        match name {
            Some(n) => Ok(n.clone()),
            None => self.active()?.ok_or(CoreError::NoActiveSession),
        }
    }
}

fn read_history(path: &Path) -> Result<Vec<HistoryEntry>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", path)(e)),
    };
    let mut out = Vec::new();
    // A line that does not parse is only corruption once another line follows it. As the
    // last line it is what a crash mid-append leaves (or a line no turn completed): not
    // part of the history, and the next append moves it to `history.rejected`.
    let mut unreadable: Option<(usize, serde_json::Error)> = None;
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(io("read", path))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some((at, e)) = unreadable.take() {
            return Err(CoreError::Corrupt {
                what: "session history",
                path: path.to_path_buf(),
                detail: format!("line {}: {e}", at + 1),
            });
        }
        match serde_json::from_slice::<HistoryEntry>(&line) {
            Ok(entry) => out.push(entry),
            Err(e) => unreadable = Some((i, e)),
        }
    }
    if let Some((at, e)) = unreadable {
        tracing::warn!(
            path = %path.display(),
            line = at + 1,
            error = %e,
            "skipping an unreadable last history line; the next turn moves it to {REJECTED}"
        );
    }
    Ok(out)
}

/// Makes the history end on a whole, readable line before an append, by the rule readers
/// follow: a last line that does not parse is not part of the history. Such a line (torn
/// by a crash mid-append, or complete but unreadable) is appended to `history.rejected`,
/// synced there first so it is never lost, then cut off: appending after it would make it
/// a corrupt middle line and the session unreadable. A last entry that parses but lacks
/// its newline is kept, and `true` asks the caller to end it. Reads backwards from the
/// end, never more than the last line (and any blank lines after it).
fn settle_tail(file: &mut File, path: &Path, rejected: &Path) -> Result<bool> {
    let (line_start, tail) = last_line(file).map_err(io("read the last line of", path))?;
    let ends_in_newline = tail.last().is_none_or(|&b| b == b'\n');
    if tail.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<HistoryEntry>(&tail).is_ok()
    {
        return Ok(!ends_in_newline);
    }
    let mut line = tail.trim_ascii_end().to_vec();
    line.push(b'\n');
    #[cfg(unix)]
    let created = !rejected.exists();
    let mut out = private_options()
        .create(true)
        .append(true)
        .open(rejected)
        .map_err(io("open", rejected))?;
    out.write_all(&line)
        .and_then(|()| out.sync_data())
        .map_err(io("write", rejected))?;
    // A new file's name lives in the directory: make it as durable as its content before
    // the line leaves the history. (A crash before the cut only moves the line twice.)
    #[cfg(unix)]
    if created && let Some(dir) = rejected.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", dir))?;
    }
    file.set_len(line_start)
        .map_err(io("cut the unreadable last line of", path))?;
    tracing::warn!(
        path = %path.display(),
        to = %rejected.display(),
        "moved an unreadable last history line aside before appending"
    );
    Ok(false)
}

/// The start offset and bytes of the file's last non-blank line, with whatever follows it
/// (its newline, blank lines, or nothing when it is torn).
fn last_line(file: &mut File) -> std::io::Result<(u64, Vec<u8>)> {
    const CHUNK: u64 = 8192;
    let len = file.metadata()?.len();
    // Chunks read so far, last first; `start` is the file offset of the earliest.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut start = len;
    let mut seen_text = false;
    let line_start = 'search: loop {
        if start == 0 {
            break 0;
        }
        let from = start.saturating_sub(CHUNK);
        let mut piece = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut piece)?;
        // Scanning backwards: the first newline met after some text starts the last line.
        for (i, &b) in piece.iter().enumerate().rev() {
            if b == b'\n' && seen_text {
                let at = from + i as u64 + 1;
                chunks.push(piece);
                break 'search at;
            }
            seen_text |= !b.is_ascii_whitespace();
        }
        chunks.push(piece);
        start = from;
    };
    let mut tail: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    // The earliest chunk may begin before the line: drop that part.
    let tail_offset = len - tail.len() as u64;
    tail.drain(..(line_start - tail_offset) as usize);
    Ok((line_start, tail))
}

fn to_json(meta: &SessionMeta) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(meta).map_err(|e| CoreError::Corrupt {
        what: "session file",
        path: PathBuf::from(META),
        detail: e.to_string(),
    })?;
    v.push(b'\n');
    Ok(v)
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

fn truncate(path: &Path) -> Result<()> {
    let file = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io("write", path))?;
    file.sync_all().map_err(io("sync", path))
}

/// Write to a temp file beside `path`, sync, then rename over it: readers see the old
/// file or the new one, never half of either. The temp file is created 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    ensure_private_dir(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("write into", dir))?;
    tmp.write_all(bytes).map_err(io("write", path))?;
    tmp.as_file().sync_all().map_err(io("sync", path))?;
    tmp.persist(path)
        .map_err(|e| io("replace", path)(e.error))?;
    // The rename itself lives in the directory: sync it too, or a crash can bring back the
    // old file (never a torn one).
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))?;
    Ok(())
}
