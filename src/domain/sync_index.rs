//! The remote index of an S3 datastore (`.datastore-index.json` under the
//! prefix): every file the bucket holds for the datastore, with its size and
//! SHA-256. It is written last in a push and lists only objects that really
//! reached the bucket. Every key in it is validated as a `SafeRelativePath`
//! before anything touches the disk, so a malicious index cannot name a file
//! outside the cache.

use crate::domain::relative_path::SafeRelativePath;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// The index object's name under the prefix.
pub const INDEX_KEY: &str = ".datastore-index.json";
/// The lock object's name under the prefix.
pub const LOCK_KEY: &str = ".datastore.lock";
/// The index format version this build writes and reads.
pub const INDEX_FORMAT: u32 = 1;

/// A remote index that cannot be used.
#[derive(Debug, Error)]
pub enum IndexError {
    /// Not valid JSON of the expected shape.
    #[error("remote index is corrupt: {0}")]
    Corrupt(String),
    /// A key that would escape the cache.
    #[error("remote index lists an unsafe path: {0}")]
    UnsafeKey(String),
    /// Written by a newer swamp.
    #[error("remote index has format {0}, this swamp reads format {INDEX_FORMAT}; upgrade swamp")]
    Format(u32),
}

/// One file in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// The whole index.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteIndex {
    /// Format version.
    pub format: u32,
    /// Files by relative path.
    #[serde(deserialize_with = "crate::domain::sorted_map::deserialize")]
    pub files: BTreeMap<String, IndexEntry>,
}

impl RemoteIndex {
    /// An empty index.
    pub fn empty() -> Self {
        Self {
            format: INDEX_FORMAT,
            files: BTreeMap::new(),
        }
    }

    /// Parses and validates index bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        let index: RemoteIndex =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Corrupt(e.to_string()))?;
        if index.format != INDEX_FORMAT {
            return Err(IndexError::Format(index.format));
        }
        for (key, entry) in &index.files {
            SafeRelativePath::parse(key).map_err(|e| IndexError::UnsafeKey(e.to_string()))?;
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(IndexError::Corrupt(format!("bad sha256 for '{key}'")));
            }
        }
        Ok(index)
    }

    /// Serializes the index.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The object key of a relative path under `prefix`.
pub fn object_key(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> IndexEntry {
        IndexEntry {
            size: 1,
            sha256: "a".repeat(64),
        }
    }

    #[test]
    fn round_trips() {
        let mut index = RemoteIndex::empty();
        index.files.insert("data/a".into(), entry());
        assert_eq!(RemoteIndex::parse(&index.to_json()).unwrap(), index);
    }

    #[test]
    fn rejects_escaping_keys_and_garbage() {
        for bad in ["../escape", "/abs", "a/../../b", "a\\b", ""] {
            let mut index = RemoteIndex::empty();
            index.files.insert(bad.into(), entry());
            assert!(
                matches!(
                    RemoteIndex::parse(&index.to_json()),
                    Err(IndexError::UnsafeKey(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            RemoteIndex::parse(b"{"),
            Err(IndexError::Corrupt(_))
        ));
        assert!(matches!(
            RemoteIndex::parse(br#"{"format":9,"files":{}}"#),
            Err(IndexError::Format(9))
        ));
    }

    #[test]
    fn keys_join_the_prefix() {
        assert_eq!(object_key("", "data/a"), "data/a");
        assert_eq!(object_key("p/q", "data/a"), "p/q/data/a");
    }
}
