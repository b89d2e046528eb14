use std::path::PathBuf;

/// Everything that can go wrong while recording or reading the audit log.
///
/// Each message names the file and says what the user can do about it; the underlying
/// cause is part of the message so a single line on stderr is enough.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "cannot create the directory {path} for the audit log: {error}; check that PAI_HOME points to a writable place"
    )]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("cannot open the audit log at {path}: {error}; check permissions of PAI_HOME")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error(
        "cannot restrict the audit log file {path} to mode 0600: {error}; make sure you own it, or move it aside"
    )]
    Permissions {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error(
        "the audit log at {path} is not a readable SQLite database ({error}); move it aside and PAI will start a new log"
    )]
    NotADatabase {
        path: PathBuf,
        error: rusqlite::Error,
    },

    #[error(
        "the audit log at {path} stayed locked by another pai process for 5 s; try again, or look for a stuck pai process"
    )]
    Busy { path: PathBuf },

    #[error(
        "the audit log at {path} has schema version {found}, but this pai understands up to {supported}; upgrade pai"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error(
        "row {id} of the audit log at {path} is unreadable ({detail}); the file may have been edited, verify the hash chain"
    )]
    BadRow {
        path: PathBuf,
        id: i64,
        detail: String,
    },

    #[error(
        "cannot record {field} = {value} in the audit log: it is larger than SQLite can store; this is a bug in the caller"
    )]
    OutOfRange { field: &'static str, value: u64 },

    #[error(
        "the audit log at {path} failed: {error}; check free disk space and permissions of PAI_HOME"
    )]
    Sqlite {
        path: PathBuf,
        error: rusqlite::Error,
    },
}

/// The result of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, AuditError>;
