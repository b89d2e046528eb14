//! Objects in S3 and S3-compatible stores (MinIO, Ceph, …) through `object_store`: list a
//! prefix, fetch one object at a time (conditionally on its ETag, so a refresh downloads
//! only what changed). The bytes go through the same [`crate::Importer`] checks as a file.
//! Async: the caller brings the tokio runtime.

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use pai_types::Secret;

use crate::error::{ResourceError, Result};

/// Where an S3 source lives and how to sign in. Secrets only ever in [`Secret`]s.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); none means AWS.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when none is given).
    pub region: Option<String>,
    /// The access key id; with none, the request is sent unsigned.
    pub access_key_id: Option<Secret<String>>,
    /// The secret access key.
    pub secret_access_key: Option<Secret<String>>,
    /// A session token, for temporary credentials.
    pub session_token: Option<Secret<String>>,
}

/// An `s3://bucket/prefix` split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key or key prefix (no leading `/`; may be empty).
    pub key: String,
}

impl S3Url {
    /// Parses `s3://bucket[/key]`; `None` when `s` is not an S3 URL.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| Self {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The URI a document from this object keeps as its source.
    pub fn source(bucket: &str, key: &str) -> String {
        format!("s3://{bucket}/{key}")
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag, when the store gives one.
    pub etag: Option<String>,
}

/// What a fetch found.
#[derive(Debug)]
pub enum Fetched {
    /// The object's bytes and ETag.
    Body {
        /// The bytes.
        bytes: Vec<u8>,
        /// The ETag.
        etag: Option<String>,
    },
    /// Its ETag is the one given: not downloaded.
    NotModified,
    /// No such object (any more).
    Missing,
}

/// One bucket of one store.
#[derive(Debug)]
pub struct S3Bucket {
    bucket: String,
    store: AmazonS3,
}

impl S3Bucket {
    /// A client for `bucket` under `config`. Nothing is sent yet.
    pub fn new(bucket: &str, config: &S3Config) -> Result<Self> {
        // TLS goes through ring, as for every other client (no aws-lc C build): object_store
        // builds its reqwest client on rustls's process-wide provider. One an embedder
        // installed first is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::new()
            // Two retries within 15 s, not object_store's ten over three minutes: a
            // stopped server or a wrong endpoint is said promptly.
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: std::time::Duration::from_secs(15),
                ..object_store::RetryConfig::default()
            })
            .with_bucket_name(bucket)
            .with_region(config.region.as_deref().unwrap_or("us-east-1"));
        if let Some(endpoint) = &config.endpoint {
            // A custom endpoint is addressed by path (`endpoint/bucket/key`), as MinIO and
            // most S3-compatible servers expect; plain http only where the user wrote it.
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => {
                b = b
                    .with_access_key_id(id.expose())
                    .with_secret_access_key(secret.expose());
                if let Some(token) = &config.session_token {
                    b = b.with_token(token.expose());
                }
            }
            _ => b = b.with_skip_signature(true),
        }
        let store = b.build().map_err(|e| s3_error(bucket, e))?;
        Ok(Self {
            bucket: bucket.to_string(),
            store,
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.bucket
    }

    /// Every object under `prefix`, by key. A prefix that names one object lists it.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let trimmed = prefix.trim_end_matches('/');
        let path = (!trimmed.is_empty()).then(|| ObjectPath::from(trimmed));
        let mut out: Vec<ObjectInfo> = self
            .store
            .list(path.as_ref())
            .map_ok(|m| ObjectInfo {
                key: m.location.to_string(),
                size: m.size,
                etag: m.e_tag,
            })
            .try_collect()
            .await
            .map_err(|e| s3_error(&self.bucket, e))?;
        if out.is_empty() && !trimmed.is_empty() && !prefix.ends_with('/') {
            // `list` works on `/`-separated prefixes: a key is not its own prefix.
            match self.store.head(&ObjectPath::from(trimmed)).await {
                Ok(m) => out.push(ObjectInfo {
                    key: m.location.to_string(),
                    size: m.size,
                    etag: m.e_tag,
                }),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error(&self.bucket, e)),
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The object at `key`; when `if_none_match` is its current ETag, nothing is
    /// downloaded.
    pub async fn fetch(&self, key: &str, if_none_match: Option<&str>) -> Result<Fetched> {
        let opts = GetOptions {
            if_none_match: if_none_match.map(str::to_string),
            ..GetOptions::default()
        };
        match self.store.get_opts(&ObjectPath::from(key), opts).await {
            Ok(got) => {
                let etag = got.meta.e_tag.clone();
                let bytes = got.bytes().await.map_err(|e| s3_error(&self.bucket, e))?;
                Ok(Fetched::Body {
                    bytes: bytes.to_vec(),
                    etag,
                })
            }
            Err(object_store::Error::NotModified { .. }) => Ok(Fetched::NotModified),
            Err(object_store::Error::NotFound { .. }) => Ok(Fetched::Missing),
            Err(e) => Err(s3_error(&self.bucket, e)),
        }
    }
}

/// One line for the user: what failed, with the store's own reason last, and nothing of
/// the credentials (object_store's messages hold none).
fn s3_error(bucket: &str, e: object_store::Error) -> ResourceError {
    let chain = error_chain(&e);
    // List requests report S3's answer only as text: its error code says what it was.
    let code = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "NoSuchBucket",
    ]
    .into_iter()
    .find(|c| chain.contains(&format!("<Code>{c}</Code>")));
    let why = match (&e, code) {
        (_, Some("NoSuchBucket")) | (object_store::Error::NotFound { .. }, _) => {
            "the bucket does not exist (or this endpoint does not have it)".to_string()
        }
        (_, Some(code)) => {
            format!("the credentials were refused ({code}); check the access key id and secret")
        }
        (
            object_store::Error::Unauthenticated { .. }
            | object_store::Error::PermissionDenied { .. },
            None,
        ) => "the credentials were refused; check the access key id and secret".to_string(),
        _ => first_line(&chain),
    };
    ResourceError::Remote {
        source_name: format!("s3://{bucket}"),
        why,
    }
}

/// The error and its causes on one line: object_store's own Display stops at "Generic S3
/// error", and the reason (a 403, a refused connection) is further down.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_key() {
        assert_eq!(
            S3Url::parse("s3://notes/2024/"),
            Some(S3Url {
                bucket: "notes".into(),
                key: "2024/".into()
            })
        );
        assert_eq!(
            S3Url::parse("s3://notes"),
            Some(S3Url {
                bucket: "notes".into(),
                key: String::new()
            })
        );
        assert_eq!(S3Url::parse("s3:///x"), None);
        assert_eq!(S3Url::parse("https://x"), None);
    }

    /// The HTTPS client is built on ring's provider (no aws-lc): with no provider installed
    /// in the process, building the store fails.
    #[test]
    fn a_store_with_an_https_endpoint_builds_its_tls_client() {
        let config = S3Config {
            endpoint: Some("https://s3.example.invalid".into()),
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        };
        let store = S3Bucket::new("notes", &config);
        assert!(store.is_ok(), "{:?}", store.err().map(|e| e.to_string()));
    }
}
