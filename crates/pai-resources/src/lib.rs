//! The user's own documents, for the model to search and read: the [`ResourceStore`]
//! trait and its embedded default, [`SqliteStore`] — metadata kept once per document,
//! text split into chunks at natural boundaries, an FTS5 index ranked with BM25 — and the
//! [`Importer`] that brings files in one at a time. Nothing here loads a whole corpus into
//! memory, decides who may read what (pai-core asks the policy with each document's
//! class) or talks to a model.

mod chunk;
#[cfg(feature = "embed")]
pub mod embed;
mod error;
mod import;
mod model;
mod query;
#[cfg(feature = "s3")]
mod s3;
mod store;
pub mod vector;

pub use error::{ResourceError, Result};
pub use import::{
    DEFAULT_MAX_FILE_BYTES, HtmlToText, ImportOptions, Importer, Item, Outcome, Report, source_of,
};
pub use model::{
    Added, Change, DEFAULT_MAX_CANDIDATES, Document, Excerpt, Filter, Found, Hit, NewDocument,
    ResourceId, Root, SearchMode, SearchOptions, check_tag,
};
#[cfg(feature = "s3")]
pub use s3::{Fetched, ObjectInfo, S3Bucket, S3Config, S3Url};
pub use store::{KeptOut, ResourceStore, SqliteStore, Stats, VectorStats};
pub use vector::Embed;
