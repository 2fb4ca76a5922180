//! The remote index of an S3 datastore (`.datastore-index.json` under the
//! prefix): every file the bucket holds for the datastore, with its size,
//! SHA-256 and, for a large file, its part CRC32s. It is written last in a push and lists only objects that really
//! reached the bucket. Every key in it is validated as a `SafeRelativePath`
//! before anything touches the disk, so a malicious index cannot name a file
//! outside the cache.

use crate::domain::index_shards::{IndexRoot, SHARDED_FORMAT};
use crate::domain::part_checksums::PartChecksums;
use crate::domain::relative_path::SafeRelativePath;
use crate::domain::sha256::Sha256;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// The index object's name under the prefix.
pub const INDEX_KEY: &str = ".datastore-index.json";
/// The lock object's name under the prefix.
pub const LOCK_KEY: &str = ".datastore.lock";
/// The directory of scoped lock records under the prefix (`{id}.lock` each).
pub const SCOPED_LOCKS_DIR: &str = ".locks";

/// Whether `rel` (a key under the prefix) is a scoped lock record's: never
/// a datastore file, never synced or repaired.
pub fn is_scoped_lock_key(rel: &str) -> bool {
    rel.strip_prefix(SCOPED_LOCKS_DIR)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The single-object index format (every file in one object), still read;
/// every write writes the sharded format (`index_shards.rs`).
pub const INDEX_FORMAT: u32 = 1;

/// A remote index that cannot be used.
#[derive(Debug, Error)]
pub enum IndexError {
    /// Not valid JSON of the expected shape.
    #[error(
        "remote index is corrupt: {0}; run 'swamp datastore repair' to rebuild it from the bucket"
    )]
    Corrupt(String),
    /// A key that would escape the cache.
    #[error("remote index lists an unsafe path: {0}; run 'swamp datastore repair' to rebuild it from the bucket")]
    UnsafeKey(String),
    /// Written by a newer swamp.
    #[error("remote index has format {0}, this swamp reads formats {INDEX_FORMAT} and {SHARDED_FORMAT}; upgrade swamp")]
    Format(u32),
    /// The root names a shard the bucket does not hold.
    #[error("the remote index names shard {0}, which the bucket does not hold; run 'swamp datastore repair' to rebuild the index from the bucket")]
    MissingShard(String),
}

/// A prefix whose index names another repo as its owner.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{remote} holds the datastore of repo {theirs}, and this repo is {ours}: swamp will not read or change another repo's items; give this repo its own prefix (swamp datastore setup s3 --prefix ...), or, if this repo is a copy of that one, set 'repoId: {theirs}' in .swamp.yaml")]
pub struct ForeignRepo {
    /// The prefix, as `s3://bucket/prefix`.
    pub remote: String,
    /// The repoId the index records.
    pub theirs: String,
    /// This repo's repoId.
    pub ours: String,
}

/// One file in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Sha256,
    /// CRC32 of each part, for files uploaded in parts (absent in indexes
    /// written before they were recorded; such files are verified by SHA-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<PartChecksums>,
}

/// The whole index.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteIndex {
    /// Format version.
    pub format: u32,
    /// The repo whose datastore this is: recorded by the first push, so
    /// another repo pointed at the same prefix is refused (absent in indexes
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_id: Option<String>,
    /// Grows by one with every index write. Each upload records the
    /// generation its push was to write, so a pull can tell an interrupted
    /// push's object (newer than the index) from a late upload of a push
    /// that lost the race (not newer). 0 in indexes from before it.
    #[serde(default)]
    pub generation: u64,
    /// Files by relative path.
    #[serde(deserialize_with = "crate::domain::sorted_map::deserialize")]
    pub files: BTreeMap<String, IndexEntry>,
}

impl RemoteIndex {
    /// An empty index.
    pub fn empty() -> Self {
        Self {
            format: INDEX_FORMAT,
            repo_id: None,
            generation: 0,
            files: BTreeMap::new(),
        }
    }

    /// Fails when the index records an owner other than `ours` (an index
    /// without one belongs to whoever writes it next).
    pub fn check_owner(&self, remote: &str, ours: &str) -> Result<(), ForeignRepo> {
        match &self.repo_id {
            Some(theirs) if theirs != ours => Err(ForeignRepo {
                remote: remote.to_string(),
                theirs: theirs.clone(),
                ours: ours.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Parses and validates index bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        let index: RemoteIndex =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Corrupt(e.to_string()))?;
        if index.format != INDEX_FORMAT {
            return Err(IndexError::Format(index.format));
        }
        if let Some(id) = &index.repo_id {
            uuid::Uuid::parse_str(id)
                .map_err(|_| IndexError::Corrupt(format!("repoId '{id}' is not a UUID")))?;
        }
        validate_entries(&index.files)?;
        refuse_path_conflicts(&index.files)?;
        Ok(index)
    }

    /// Serializes the index.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Fails on an entry with an unsafe path or part checksums that cannot fit.
pub fn validate_entries(files: &BTreeMap<String, IndexEntry>) -> Result<(), IndexError> {
    for (key, entry) in files {
        SafeRelativePath::parse(key).map_err(|e| IndexError::UnsafeKey(e.to_string()))?;
        if entry.parts.as_ref().is_some_and(|p| !p.fits(entry.size)) {
            return Err(IndexError::Corrupt(format!(
                "part checksums of '{key}' do not fit its size"
            )));
        }
    }
    Ok(())
}

/// Fails when a path is listed both as a file and as a directory.
pub fn refuse_path_conflicts(files: &BTreeMap<String, IndexEntry>) -> Result<(), IndexError> {
    match path_conflict(files) {
        Some((file, nested)) => Err(IndexError::Corrupt(format!(
            "'{file}' is listed as a file and as a directory (of '{nested}')"
        ))),
        None => Ok(()),
    }
}

/// The object at the index key, in either format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexDocument {
    /// Format 1: every file in one object.
    Whole(RemoteIndex),
    /// Format 2: a root naming shards.
    Root(IndexRoot),
}

impl IndexDocument {
    /// Parses the object at the index key, whichever format it has.
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let format: Format =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Corrupt(e.to_string()))?;
        match format.format {
            INDEX_FORMAT => RemoteIndex::parse(bytes).map(IndexDocument::Whole),
            SHARDED_FORMAT => IndexRoot::parse(bytes).map(IndexDocument::Root),
            other => Err(IndexError::Format(other)),
        }
    }
}

/// A path listed as a file while another path lists it as a directory
/// (`a` and `a/b`), which no filesystem can hold: `(file, nested path)`.
pub fn path_conflict<V>(files: &BTreeMap<String, V>) -> Option<(String, String)> {
    files.keys().find_map(|path| {
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            if files.contains_key(up) {
                return Some((up.to_string(), path.clone()));
            }
            parent = up;
        }
        None
    })
}

/// The object key of a relative path under `prefix`.
pub fn object_key(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

/// The length of `object_key(prefix, rel)` in bytes, without building it.
pub fn object_key_len(prefix: &str, rel: &str) -> usize {
    match prefix.len() {
        0 => rel.len(),
        n => n + 1 + rel.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> IndexEntry {
        IndexEntry {
            size: 1,
            sha256: "a".repeat(64).parse().unwrap(),
            parts: None,
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
    fn part_checksums_round_trip_and_must_fit_the_size() {
        let mut index = RemoteIndex::empty();
        let mut big = entry();
        big.size = 40;
        big.parts = Some(PartChecksums {
            part_size: 16,
            crc32: vec![1, 2, 3],
        });
        index.files.insert("data/big".into(), big.clone());
        assert_eq!(RemoteIndex::parse(&index.to_json()).unwrap(), index);
        // An index from before part checksums still reads.
        let old = format!(
            r#"{{"format":1,"files":{{"data/a":{{"size":1,"sha256":"{}"}}}}}}"#,
            "a".repeat(64)
        );
        assert_eq!(
            RemoteIndex::parse(old.as_bytes()).unwrap().files["data/a"],
            entry()
        );
        for bad in [
            PartChecksums {
                part_size: 16,
                crc32: vec![1, 2],
            },
            PartChecksums {
                part_size: 0,
                crc32: vec![],
            },
        ] {
            big.parts = Some(bad);
            index.files.insert("data/big".into(), big.clone());
            assert!(matches!(
                RemoteIndex::parse(&index.to_json()),
                Err(IndexError::Corrupt(m)) if m.contains("data/big")
            ));
        }
    }

    #[test]
    fn a_path_that_is_both_a_file_and_a_directory_is_corrupt() {
        let mut index = RemoteIndex::empty();
        for key in ["data/a", "data/a-b", "data/a.c", "data/b/c"] {
            index.files.insert(key.into(), entry());
        }
        assert!(RemoteIndex::parse(&index.to_json()).is_ok());
        index.files.insert("data/a/x/y".into(), entry());
        assert!(matches!(
            RemoteIndex::parse(&index.to_json()),
            Err(IndexError::Corrupt(m)) if m.contains("'data/a'") && m.contains("data/a/x/y")
        ));
        assert_eq!(
            path_conflict(&index.files),
            Some(("data/a".into(), "data/a/x/y".into()))
        );
    }

    #[test]
    fn the_owner_is_recorded_and_checked() {
        let ours = "8d0f5f3e-9c1a-4a53-a0ab-2b1c3d4e5f60";
        let theirs = "1d0f5f3e-9c1a-4a53-a0ab-2b1c3d4e5f61";
        let mut index = RemoteIndex::empty();
        assert!(index.check_owner("s3://b/p", ours).is_ok(), "unowned");
        index.repo_id = Some(theirs.into());
        let parsed = RemoteIndex::parse(&index.to_json()).unwrap();
        assert_eq!(parsed, index);
        let err = parsed.check_owner("s3://b/p", ours).unwrap_err();
        assert!(
            err.to_string().contains(&format!("set 'repoId: {theirs}'")),
            "{err}"
        );
        assert!(parsed.check_owner("s3://b/p", theirs).is_ok());
        index.repo_id = Some("not-a-uuid".into());
        assert!(
            matches!(RemoteIndex::parse(&index.to_json()), Err(IndexError::Corrupt(m)) if m.contains("repoId"))
        );
        // An index from before owners still reads.
        assert_eq!(
            RemoteIndex::parse(br#"{"format":1,"files":{}}"#)
                .unwrap()
                .repo_id,
            None
        );
    }

    #[test]
    fn keys_join_the_prefix() {
        assert_eq!(object_key("", "data/a"), "data/a");
        assert_eq!(object_key("p/q", "data/a"), "p/q/data/a");
        for (prefix, rel) in [("", "data/a"), ("p/q", "data/a"), ("p", "é/ü")] {
            assert_eq!(object_key_len(prefix, rel), object_key(prefix, rel).len());
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Arbitrary bytes never panic the parser, and nothing it accepts
            /// names an unsafe path or a path that is both file and directory.
            #[test]
            fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                if let Ok(index) = RemoteIndex::parse(&bytes) {
                    for key in index.files.keys() {
                        prop_assert!(SafeRelativePath::parse(key).is_ok());
                    }
                    prop_assert!(path_conflict(&index.files).is_none());
                }
            }

            /// JSON-shaped input with arbitrary keys and values: parsed only
            /// when every key is safe, and a parsed index round-trips.
            #[test]
            fn indexes_with_arbitrary_keys_round_trip_or_are_refused(
                keys in proptest::collection::vec(
                    proptest::sample::select(vec!["a", "b", "a/b", "a/b/c", "b/a", "a-b", "a/../b", "/a", "a\\\\b", "", "a//b"]).prop_map(str::to_string),
                    0..5,
                ),
                size in any::<u64>(),
                generation in any::<u64>(),
            ) {
                let files: serde_json::Map<String, serde_json::Value> = keys.iter().map(|k| {
                    (k.clone(), serde_json::json!({"size": size, "sha256": "a".repeat(64)}))
                }).collect();
                let doc = serde_json::json!({"format": 1, "generation": generation, "files": files});
                match RemoteIndex::parse(doc.to_string().as_bytes()) {
                    Ok(index) => {
                        prop_assert!(index.files.keys().all(|k| SafeRelativePath::parse(k).is_ok()));
                        prop_assert!(path_conflict(&index.files).is_none());
                        prop_assert_eq!(RemoteIndex::parse(&index.to_json()).unwrap(), index);
                    }
                    Err(_) => prop_assert!(
                        keys.iter().any(|k| SafeRelativePath::parse(k).is_err())
                            || path_conflict(&files.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>()).is_some()
                    ),
                }
            }
        }
    }
}
