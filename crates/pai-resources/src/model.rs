//! The values the store takes and gives back.

use pai_types::{DataClass, Origin, Provenance};
use serde::Serialize;

use crate::error::{ResourceError, Result};

/// A resource's id: a small number, stable for the life of the resource.
pub type ResourceId = i64;

/// A tag as stored: checked on the way in, so lookups and listings stay simple.
pub fn check_tag(tag: &str) -> Result<String> {
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
    if ok {
        Ok(tag.to_string())
    } else {
        Err(ResourceError::InvalidTag(tag.to_string()))
    }
}

/// A document to store: its metadata and its whole text (one document at a time is
/// what the store ever holds in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocument {
    /// Shown to the user and the model.
    pub title: String,
    /// Where it came from (`file:///…`, `note:…`); a second add of the same source
    /// replaces the first, or is skipped when the text is unchanged.
    pub source: String,
    /// `text/markdown`, `text/plain`, `text/html`, `text/x-rust`, …
    pub media_type: String,
    /// Tags to find it by.
    pub tags: Vec<String>,
    /// How sensitive it is.
    pub class: DataClass,
    /// Size of the original (before any conversion to text), in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the original bytes.
    pub sha256: String,
    /// The text to index.
    pub text: String,
    /// The remote source's validator (an S3 or HTTP ETag, or an HTTP Last-Modified), so a
    /// refresh can ask "changed since?" instead of downloading again.
    pub etag: Option<String>,
}

/// A stored document's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    /// Its id.
    pub id: ResourceId,
    /// Its title.
    pub title: String,
    /// Where it came from.
    pub source: String,
    /// Its media type.
    pub media_type: String,
    /// Its tags, sorted.
    pub tags: Vec<String>,
    /// Its class.
    pub class: DataClass,
    /// Size of the original in bytes.
    pub size: u64,
    /// SHA-256 of the original.
    pub sha256: String,
    /// When it was first added (RFC 3339).
    pub added: String,
    /// When its text or metadata last changed (RFC 3339).
    pub updated: String,
    /// How many chunks its text was split into.
    pub chunks: u32,
    /// The remote source's validator (ETag or Last-Modified), for refreshes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl Document {
    /// Where a piece of this document comes from, for the policy.
    pub fn provenance(&self) -> Provenance {
        Provenance::new(
            Origin::Resource {
                id: self.id.to_string(),
            },
            self.class,
        )
    }
}

/// What an add did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new document.
    New(ResourceId),
    /// The source was known and its text changed: replaced, same id.
    Replaced(ResourceId),
    /// The source was known with the same SHA-256: nothing done.
    Unchanged(ResourceId),
}

impl Added {
    /// The document's id, whatever happened.
    pub fn id(self) -> ResourceId {
        match self {
            Added::New(id) | Added::Replaced(id) | Added::Unchanged(id) => id,
        }
    }
}

/// Which documents a listing or search covers. Empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only documents with this tag.
    pub tag: Option<String>,
    /// Only documents of this class.
    pub class: Option<DataClass>,
    /// Only these documents (chat mode: the attached ones).
    pub ids: Option<Vec<ResourceId>>,
}

/// A change to a document's metadata; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// A new title.
    pub title: Option<String>,
    /// A new class.
    pub class: Option<DataClass>,
    /// The new set of tags (replaces the old one).
    pub tags: Option<Vec<String>>,
}

/// How a search runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOptions {
    /// Most documents returned (the best chunk of each).
    pub limit: usize,
    /// Which documents.
    pub filter: Filter,
    /// Matching chunks scored at most; past it the best of the first ones are returned
    /// and the result says it is approximate.
    pub max_candidates: usize,
    /// BM25 alone, even when chunk vectors and an embedding model are there.
    pub bm25_only: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            limit: 10,
            filter: Filter::default(),
            max_candidates: DEFAULT_MAX_CANDIDATES,
            bm25_only: false,
        }
    }
}

/// Matching chunks scored per query unless the caller says otherwise: enough that a
/// specific query is ranked exactly, few enough that one of very common words stays fast.
pub const DEFAULT_MAX_CANDIDATES: usize = 2000;

/// One document found by a search: its best chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The document.
    pub id: ResourceId,
    /// Its title.
    pub title: String,
    /// Its source.
    pub source: String,
    /// Its class.
    pub class: DataClass,
    /// The chunk that matched best (0-based).
    pub chunk: u32,
    /// The heading the chunk is under.
    pub heading: String,
    /// A few words around the matches, each match between `**`.
    pub snippet: String,
    /// Relevance, higher is better: the BM25 score, or in a hybrid search the fused
    /// reciprocal-rank score.
    pub score: f64,
}

impl Hit {
    /// Where the snippet comes from, for the policy.
    pub fn provenance(&self) -> Provenance {
        Provenance::new(
            Origin::Resource {
                id: self.id.to_string(),
            },
            self.class,
        )
    }
}

/// A search's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found {
    /// The words searched for (after stopwords were dropped).
    pub terms: Vec<String>,
    /// Best first.
    pub hits: Vec<Hit>,
    /// More chunks matched than were scored: the hits are the best of the first
    /// `max_candidates` matches, not of all.
    pub approximate: bool,
    /// How the hits were ranked.
    pub mode: SearchMode,
}

/// How a search ranked its hits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Full-text BM25 alone.
    #[default]
    Bm25,
    /// BM25 and embedding similarity, fused by reciprocal rank.
    Hybrid,
}

/// Consecutive chunks of one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excerpt {
    /// The document.
    pub document: Document,
    /// The first chunk returned (0-based).
    pub from: u32,
    /// One past the last chunk returned.
    pub to: u32,
    /// The chunks' text, each after its heading line when the heading changes.
    pub text: String,
}

/// A folder or an S3 prefix the user added: `reindex` lists it again, imports what is new
/// under it with its class and tags, and removes documents whose file or object is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Root {
    /// `file:///abs/dir` or `s3://bucket/prefix` (`s3://bucket` for a whole bucket),
    /// without a trailing `/`.
    pub uri: String,
    /// The class new documents under it get.
    pub class: DataClass,
    /// The tags new documents under it get.
    pub tags: Vec<String>,
}

impl Root {
    /// A root for `uri`; a trailing `/` is dropped, so `s3://b/notes/` and `s3://b/notes`
    /// are the same root.
    pub fn new(uri: &str, class: DataClass, tags: Vec<String>) -> Self {
        Self {
            uri: normalise_root(uri),
            class,
            tags,
        }
    }

    /// Whether `source` lies under this root (by whole path segments: `/notes` does not
    /// cover `/notes2/a.md`).
    pub fn covers(&self, source: &str) -> bool {
        if self.uri.ends_with('/') {
            return source.starts_with(&self.uri);
        }
        source == self.uri
            || source
                .strip_prefix(&self.uri)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// A root URI without its trailing `/` (but `file:///` stays whole).
pub(crate) fn normalise_root(uri: &str) -> String {
    let trimmed = uri.trim_end_matches('/');
    if trimmed.ends_with(':') || trimmed.is_empty() {
        uri.to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_cover_whole_path_segments_only() {
        let r = Root::new("s3://notes/2024/", DataClass::Internal, vec![]);
        assert_eq!(r.uri, "s3://notes/2024");
        assert!(r.covers("s3://notes/2024/a.md"));
        assert!(r.covers("s3://notes/2024"));
        assert!(!r.covers("s3://notes/20245/a.md"));
        let bucket = Root::new("s3://notes/", DataClass::Internal, vec![]);
        assert!(bucket.covers("s3://notes/x/y.md"));
        assert!(!bucket.covers("s3://notes2/y.md"));
        let dir = Root::new("file:///home/me/notes", DataClass::Internal, vec![]);
        assert!(dir.covers("file:///home/me/notes/deep/a.md"));
        assert!(!dir.covers("file:///home/me/notes.md"));
    }
}
