//! The local cache of an S3 datastore: `{swamp home}/repos/{repoId}/` (the
//! home is `~/.swamp` unless `SWAMP_HOME` moves it), and the sync state kept in it — the
//! remote index ETag last seen and, per file, what local and remote last agreed
//! on (size, mtime, SHA-256). A file whose size and mtime still match needs no
//! hashing; a file that differs from its agreed entry is dirty.

use crate::domain::part_checksums::PartChecksums;
use crate::domain::relative_path::SafeRelativePath;
use crate::domain::sha256::Sha256;
use crate::infrastructure::atomic_file::write_atomic;
use crate::infrastructure::s3::store::ETag;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The sync state file in the cache root (outside every datastore directory).
pub const STATE_FILE: &str = ".swamp-sync-state.json";

/// The cache directory of a repo under `swamp_home`.
pub fn cache_dir(swamp_home: &Path, repo_id: &uuid::Uuid) -> PathBuf {
    swamp_home.join("repos").join(repo_id.to_string())
}

/// What local and remote last agreed on for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncedFile {
    /// Size in bytes.
    pub size: u64,
    /// Local mtime in nanoseconds when agreed.
    pub mtime_ns: i128,
    /// SHA-256 of the content.
    pub sha256: Sha256,
    /// Part CRC32s of a large file, carried into the index the push writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<PartChecksums>,
}

/// The cache's sync state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncState {
    /// Bucket/prefix the state belongs to (a different one starts afresh).
    pub remote: String,
    /// ETag of the remote index last seen.
    pub index_etag: Option<ETag>,
    /// Generation of that index (the next push uploads and writes one more).
    #[serde(default)]
    pub generation: u64,
    /// That index's root when it is sharded: which shards the bucket holds,
    /// so a write uploads only the ones it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_root: Option<crate::domain::index_shards::IndexRoot>,
    /// Agreed files by relative path.
    #[serde(deserialize_with = "crate::domain::sorted_map::deserialize")]
    pub files: BTreeMap<String, SyncedFile>,
    /// Index entries outside this machine's `directories`/`exclude`: not
    /// this machine's to download or delete, carried into every index it
    /// writes exactly as the remote had them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub foreign: BTreeMap<String, crate::domain::sync_index::IndexEntry>,
}

impl SyncState {
    /// Loads the state of `cache` for `remote`; a missing, corrupt or foreign
    /// state starts afresh (which costs hashing, never data).
    pub fn load(cache: &Path, remote: &str) -> Self {
        Self::load_unless_other(cache, remote).unwrap_or_else(|_| Self::fresh(remote))
    }

    /// Loads the state of `cache` for `remote` (a missing or corrupt one
    /// starts afresh), or names the other remote the file belongs to.
    pub fn load_unless_other(cache: &Path, remote: &str) -> Result<Self, String> {
        match std::fs::read(cache.join(STATE_FILE)) {
            Ok(bytes) => match serde_json::from_slice::<SyncState>(&bytes) {
                Ok(state) if state.remote == remote => Ok(state),
                Ok(state) => Err(state.remote),
                Err(e) => {
                    tracing::warn!(error = %e, "sync state unreadable; rebuilding it");
                    Ok(Self::fresh(remote))
                }
            },
            Err(_) => Ok(Self::fresh(remote)),
        }
    }

    /// Whether it agrees on nothing yet (a fresh cache's state).
    pub fn is_empty(&self) -> bool {
        self.index_etag.is_none() && self.files.is_empty() && self.foreign.is_empty()
    }

    fn fresh(remote: &str) -> Self {
        SyncState {
            remote: remote.to_string(),
            ..Default::default()
        }
    }

    /// The state file as stored, whatever remote it belongs to.
    pub fn load_raw(cache: &Path) -> Option<Self> {
        let bytes = std::fs::read(cache.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Saves the state atomically.
    pub fn save(&self, cache: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        write_atomic(&cache.join(STATE_FILE), &bytes)
    }
}

/// Modification time in nanoseconds.
pub fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
}

/// The path of `rel` in the cache, refusing any existing symlink on the way,
/// so a planted link can never redirect a write outside the cache.
pub fn safe_cache_path(root: &Path, rel: &SafeRelativePath) -> io::Result<PathBuf> {
    let mut current = root.to_path_buf();
    for segment in rel.as_str().split('/') {
        current.push(segment);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("refusing to follow symlink {}", current.display()),
                ))
            }
            Ok(_) => {}
            // Not there, or a file where a directory would be: nothing
            // further down exists to follow.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(rel.under(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_in_the_way_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("data")).unwrap();
        let rel = SafeRelativePath::parse("data/x").unwrap();
        assert!(safe_cache_path(dir.path(), &rel).is_err());
        let ok = SafeRelativePath::parse("outputs/x").unwrap();
        assert_eq!(
            safe_cache_path(dir.path(), &ok).unwrap(),
            dir.path().join("outputs/x")
        );
    }

    #[test]
    fn state_round_trips_and_foreign_state_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = SyncState::load(dir.path(), "s3://b/p");
        state.index_etag = Some(ETag::new("e"));
        state.save(dir.path()).unwrap();
        assert_eq!(SyncState::load(dir.path(), "s3://b/p"), state);
        assert_eq!(SyncState::load(dir.path(), "s3://b/other").index_etag, None);
        std::fs::write(dir.path().join(STATE_FILE), b"{garbage").unwrap();
        assert_eq!(SyncState::load(dir.path(), "s3://b/p").index_etag, None);
    }
}
