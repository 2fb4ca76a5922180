//! One storage trait with conditional writes as data, in the shape of arrow-rs
//! `object_store`: `PutMode::Create` (If-None-Match: *) and
//! `PutMode::Update(etag)` (If-Match). The lock and the index are written only
//! through these modes; a failed condition is `StoreError::Precondition`.
//!
//! The trait speaks keys, bytes, files streamed to and from disk, and object
//! metadata (`ETag`, `ObjectMeta`, `Head`, `Recorded`). Uploads and downloads
//! also say what to verify while the bytes stream (`FileDigest`, `CheckKind`):
//! the store checks content in the same pass that moves it, so nothing is read
//! twice.

use crate::domain::sha256::Sha256;
use crate::infrastructure::hashing::{CheckKind, Checked, FileDigest};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::SystemTime;
use thiserror::Error;

/// An object version's entity tag, exactly as the store sent it (quotes
/// included): conditions compare it, nothing parses it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ETag(String);

impl ETag {
    /// The tag `raw`.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The tag as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the store sent none (some S3-compatible servers do not).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a put treats an existing object. There is no unconditional mode:
/// every small object (the lock, the index, the probe) is written under a
/// condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Write only if no object exists.
    Create,
    /// Write only if the object's ETag is this one.
    Update(ETag),
    /// Write whatever is there (an object whose key names its content).
    Overwrite,
}

/// Storage failures.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A conditional request's condition did not hold (HTTP 412).
    #[error("precondition failed for {0}")]
    Precondition(String),
    /// No such object.
    #[error("{0} does not exist")]
    NotFound(String),
    /// Another conditional write on the same key was in flight (HTTP 409
    /// `ConditionalRequestConflict` on AWS): nothing was written; retry.
    #[error("a concurrent conditional write to {0} was in progress")]
    Conflict(String),
    /// Anything else, with a message that names the fix.
    #[error("{op} {target}: {message}")]
    Failed {
        /// The operation.
        op: &'static str,
        /// `s3://bucket/key`.
        target: String,
        /// What went wrong and how to fix it.
        message: String,
    },
}

/// An object's metadata.
#[derive(Debug, Clone)]
pub struct ObjectMeta {
    /// Entity tag (the version used in conditions).
    pub etag: ETag,
    /// Server time of the last write.
    pub last_modified: Option<SystemTime>,
    /// Server time of the response that returned this (its `Date` header).
    pub server_time: Option<SystemTime>,
}

/// `Date` and `Last-Modified` carry whole seconds: their difference may
/// exceed the real age by up to this much.
const HEADER_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(1);

impl ObjectMeta {
    /// Time since the last write, judged by the server's clock alone when it
    /// sent one; else by ours (skew then shifts the result). Never more than
    /// the real age: both stamps are whole seconds, so one second of their
    /// difference is given back, and an object is judged at most a second
    /// later than it could be — never sooner.
    pub fn age(&self) -> std::time::Duration {
        let now = self.server_time.unwrap_or_else(SystemTime::now);
        self.last_modified
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default()
            .saturating_sub(HEADER_RESOLUTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn age_never_exceeds_the_real_age_at_one_second_resolution() {
        let written = SystemTime::UNIX_EPOCH + Duration::from_millis(10_999);
        let truncated = |t: SystemTime| {
            let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
        };
        for real_ms in [0u64, 1, 400, 999, 1_000, 1_500, 30_000] {
            let now = written + Duration::from_millis(real_ms);
            let meta = ObjectMeta {
                etag: ETag::default(),
                last_modified: Some(truncated(written)),
                server_time: Some(truncated(now)),
            };
            assert!(
                meta.age() <= Duration::from_millis(real_ms),
                "{real_ms} ms: {:?}",
                meta.age()
            );
        }
    }
}

/// A conditional read's result.
#[derive(Debug)]
pub enum Fetched {
    /// The object still has the ETag we named.
    NotModified,
    /// The object and its metadata.
    Object(Vec<u8>, ObjectMeta),
}

/// What swamp's upload recorded in an object's metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The content's SHA-256 (absent, or unreadable, on objects swamp did not upload).
    pub sha256: Option<Sha256>,
    /// The index generation the uploading push was to write.
    pub generation: Option<u64>,
}

/// An object's size and recorded metadata, from a HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Size in bytes.
    pub size: u64,
    /// What the upload recorded.
    pub recorded: Recorded,
}

impl Head {
    /// Whether the object is `size` bytes recorded with this SHA-256.
    pub fn holds(&self, size: u64, sha256: &Sha256) -> bool {
        self.size == size && self.recorded.sha256.as_ref() == Some(sha256)
    }
}

/// Objects up to this size are downloaded and verified whole on the
/// runtime's thread: their writes take microseconds, less than a handoff to
/// a blocking thread, which would dominate a pull of many small files.
const SMALL_OBJECT: u64 = 256 * 1024;

/// Whether an object of `size` bytes is small (`SMALL_OBJECT`).
pub(crate) fn is_small(size: u64) -> bool {
    size <= SMALL_OBJECT
}

/// What a streamed download produced.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// Bytes written.
    pub size: u64,
    /// What the download computed over what it wrote.
    pub checked: Checked,
    /// What the upload recorded.
    pub recorded: Recorded,
}

impl Downloaded {
    /// Whether it was small: received whole, and checked where it arrived.
    pub(crate) fn is_small(&self) -> bool {
        is_small(self.size)
    }
}

/// A listed object.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Full key.
    pub key: String,
    /// Its entity tag, as the listing gave it (`None` if it gave none).
    pub etag: Option<ETag>,
}

/// The relative paths of the datastore objects under `prefix` (one listing):
/// every object but the locks, the index and temp objects.
pub async fn datastore_objects(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Vec<String>, StoreError> {
    use crate::domain::sync_index::{object_key, INDEX_KEY, LOCK_KEY};
    let list_prefix = object_key(prefix, "");
    Ok(store
        .list(&list_prefix)
        .await?
        .into_iter()
        .filter_map(|listed| listed.key.strip_prefix(&list_prefix).map(str::to_string))
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap_or_default();
            rel != LOCK_KEY
                && rel != INDEX_KEY
                && !crate::domain::index_shards::is_shard_key(rel)
                && !crate::domain::sync_index::is_scoped_lock_key(rel)
                && !crate::infrastructure::atomic_file::is_temp_name(name)
        })
        .collect())
}

/// A bucket (or compatible store) holding a datastore.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// `s3://bucket/key` for messages.
    fn url(&self, key: &str) -> String;
    /// Checks that the bucket answers.
    async fn head_bucket(&self) -> Result<(), StoreError>;
    /// Writes a small object; returns its ETag.
    async fn put_bytes(&self, key: &str, bytes: Vec<u8>, mode: PutMode)
        -> Result<ETag, StoreError>;
    /// Uploads a file (streamed; multipart when large), tagging it with its
    /// SHA-256 and the index `generation` its push will write, and having the
    /// server check it against `digest`. `content`, when given, is the file's
    /// bytes as they were hashed: they are sent instead of reading the file
    /// again.
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        digest: &FileDigest,
        generation: u64,
        content: Option<bytes::Bytes>,
    ) -> Result<ETag, StoreError>;
    /// Reads a small object, or `NotModified` if its ETag is `if_none_match`.
    async fn get_bytes(
        &self,
        key: &str,
        if_none_match: Option<&ETag>,
    ) -> Result<Fetched, StoreError>;
    /// Streams an object into `dest` (a new file), computing `check` over it.
    async fn get_to_file(
        &self,
        key: &str,
        dest: &Path,
        check: CheckKind,
    ) -> Result<Downloaded, StoreError>;
    /// Size and recorded metadata of an object, if it exists.
    async fn head(&self, key: &str) -> Result<Option<Head>, StoreError>;
    /// Deletes an object, only if its ETag is `if_match` when given.
    async fn delete(&self, key: &str, if_match: Option<&ETag>) -> Result<(), StoreError>;
    /// Deletes these objects unconditionally, in as few requests as the
    /// store allows (S3 DeleteObjects: up to 1 000 a request). Keys already
    /// gone are not errors.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            match self.delete(key, None).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    /// Every object under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError>;
    /// Every object under `prefix` whose key sorts after `start_after`
    /// (a store that ignores the bound costs only a longer listing).
    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<Listed>, StoreError> {
        let mut listed = self.list(prefix).await?;
        listed.retain(|l| l.key.as_str() > start_after);
        Ok(listed)
    }
}
