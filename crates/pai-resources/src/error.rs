use std::path::PathBuf;

/// What went wrong in the resource store. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The database could not be opened or used.
    #[error("the resource database {path} cannot be used: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file around the database could not be created or protected.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No resource has this id.
    #[error("there is no resource {0}; 'pai resources list' shows the ids")]
    UnknownId(i64),
    /// No resource carries this tag.
    #[error("no resource is tagged '{0}'; 'pai resources list' shows the tags")]
    UnknownTag(String),
    /// A tag that cannot be stored.
    #[error(
        "'{0}' is not a valid tag: use letters, digits, '-', '_', '.', '/' or ':' (at most 64)"
    )]
    InvalidTag(String),
    /// A chunk index past the document's end.
    #[error("resource {id} has {chunks} chunks; chunk {asked} does not exist")]
    NoSuchChunk {
        /// The resource.
        id: i64,
        /// How many it has.
        chunks: u32,
        /// What was asked.
        asked: u32,
    },
    /// A remote source (an S3 bucket, a URL) could not be reached or read.
    #[error("cannot read {source_name}: {why}")]
    Remote {
        /// The bucket or URL.
        source_name: String,
        /// What went wrong, in one line.
        why: String,
    },
    /// A database error inside an import's batch rolled the batch back.
    #[error(
        "a database error rolled back the last {documents} documents stored ({why}); run the same 'pai resources add' again"
    )]
    BatchLost {
        /// Documents of the batch that were rolled back (before the failed one).
        documents: usize,
        /// The error.
        why: String,
    },
    /// The embedding model could not be loaded or run.
    #[error(
        "the embedding model cannot be used ({0}); 'pai resources search --bm25' searches without it, and '[resources] embeddings = false' in config.toml turns it off"
    )]
    Embedding(String),
    /// The stored data is not what this version writes.
    #[error("the resource database holds an unreadable value ({0}); run 'pai resources reindex'")]
    Corrupt(String),
}

impl ResourceError {
    pub(crate) fn db(path: &std::path::Path) -> impl Fn(rusqlite::Error) -> ResourceError + '_ {
        move |source| ResourceError::Database {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, ResourceError>;
