use std::path::PathBuf;

/// Everything that can go wrong while recording or reading the audit log.
///
/// Each message names the file and says what the user can do about it; the underlying
/// cause is part of the message so a single line on stderr is enough.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log's directory could not be created.
    #[error(
        "cannot create the directory {path} for the audit log: {error}; check that PAI_HOME points to a writable place"
    )]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why creating it failed.
        error: std::io::Error,
    },

    /// The log file could not be opened or created.
    #[error("cannot open the audit log at {path}: {error}; check permissions of PAI_HOME")]
    Open {
        /// The log file.
        path: PathBuf,
        /// Why opening it failed.
        error: std::io::Error,
    },

    /// The log file could not be made private to its owner.
    #[error(
        "cannot restrict the audit log file {path} to mode 0600: {error}; make sure you own it, or move it aside"
    )]
    Permissions {
        /// The log file.
        path: PathBuf,
        /// Why changing its mode failed.
        error: std::io::Error,
    },

    /// The file exists but is not SQLite.
    #[error(
        "the audit log at {path} is not a readable SQLite database ({error}); it may be truncated or damaged: keep a copy, then move it and audit.head aside to start a new log"
    )]
    NotADatabase {
        /// The log file.
        path: PathBuf,
        /// What SQLite said on opening it.
        error: rusqlite::Error,
    },

    /// The file is another program's SQLite database.
    #[error(
        "{path} is a SQLite database of another program (it has a table '{table}'), not PAI's audit log; move it aside, or point PAI_HOME elsewhere"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// One of its tables.
        table: String,
    },

    /// Another process (a pai or anything else) held the write lock past the busy timeout.
    #[error(
        "the audit log at {path} stayed locked by another process for 5 s (another pai, or a program holding it open in a transaction); try again, or end that process"
    )]
    Busy {
        /// The locked log file.
        path: PathBuf,
    },

    /// The log was written by a newer pai.
    #[error(
        "the audit log at {path} has schema version {found}, but this pai understands up to {supported}; upgrade pai"
    )]
    NewerSchema {
        /// The log file.
        path: PathBuf,
        /// The schema version the file records.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },

    /// A stored row does not decode into an event.
    #[error(
        "row {id} of the audit log at {path} is unreadable ({detail}); the file may have been edited, verify the hash chain"
    )]
    BadRow {
        /// The log file.
        path: PathBuf,
        /// The row's id.
        id: i64,
        /// Which column failed to decode, and how.
        detail: String,
    },

    /// A number too large for SQLite's signed 64-bit integers.
    #[error(
        "cannot record {field} = {value} in the audit log: it is larger than SQLite can store; this is a bug in the caller"
    )]
    OutOfRange {
        /// The event field that held it.
        field: &'static str,
        /// The value refused.
        value: u64,
    },

    /// Syncing the log's write-ahead file (or its directory) to disk failed.
    #[error(
        "cannot make the audit log's {path} durable: {error}; check free disk space and the disk's health"
    )]
    Sync {
        /// The file that could not be synced.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },

    /// The audit key file could not be read or created.
    #[error(
        "cannot use the audit key file {path}: {detail}; restore it from a backup, or move it aside (the log then fails verification until moved aside too)"
    )]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// A log opened without a key cannot record.
    #[error(
        "the audit log at {path} was opened without its key, so it cannot record; this is a bug in the caller"
    )]
    NoKey {
        /// The log file.
        path: PathBuf,
    },

    /// The head checkpoint could not be read or written.
    #[error(
        "cannot use the audit checkpoint {path}: {error}; check permissions and free disk space"
    )]
    Head {
        /// The checkpoint file.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },

    /// The log was sealed with another key than this run's.
    #[error(
        "the audit log at {path} was sealed with another key ({sealed}) than this run's ({this}); run pai with the key it was sealed with (PAI_ENCRYPTION_KEY set or unset as before), or move audit.db and audit.head aside to start a new log"
    )]
    KeyMismatch {
        /// The log file.
        path: PathBuf,
        /// The sealing key's id and source.
        sealed: String,
        /// This run's key's id and source.
        this: String,
    },

    /// Writing an export failed.
    #[error("cannot write the export of the audit log at {path}: {error}")]
    Export {
        /// The log file.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },

    /// Any other SQLite failure while reading or writing.
    #[error(
        "the audit log at {path} failed: {error}; check free disk space and permissions of PAI_HOME"
    )]
    Sqlite {
        /// The log file.
        path: PathBuf,
        /// What SQLite said.
        error: rusqlite::Error,
    },
}

/// The result of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, AuditError>;
