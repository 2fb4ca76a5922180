//! Conflict copies: a local change is never overwritten or deleted in silence.
//!
//! Model (as Syncthing does it): a pull compares three versions of a path —
//! the one this cache and the bucket last agreed on, the local file, and the
//! remote index entry. Where only the remote changed, the pull applies it.
//! Where the local file changed too (its content is not the agreed one, or no
//! index ever knew it) and the remote changed or deleted the path, the remote
//! version takes the path and the local file is first moved to
//! `{cache}/.swamp-conflicts/{path}.{host}.{UTC time}` — outside every
//! datastore directory, so it is never synced, and kept until the user
//! removes it. The pull reports each copy; the CLI warns and `datastore status`
//! lists them.

use crate::domain::relative_path::SafeRelativePath;
use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};

/// The directory under the cache root that holds conflict copies.
pub const CONFLICTS_DIR: &str = ".swamp-conflicts";

/// A local version moved aside so the remote one could take its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictCopy {
    /// The datastore path both sides changed.
    pub path: String,
    /// Where the local version now is.
    pub copy: PathBuf,
    /// What the remote did to the path: "changed" or "deleted".
    pub remote: &'static str,
}

/// Moves the local file at `local` (the datastore path `rel`) aside as a
/// conflict copy; returns where it went.
pub fn keep_as_conflict(cache: &Path, rel: &SafeRelativePath, local: &Path) -> io::Result<PathBuf> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let copy = rel
        .under(&cache.join(CONFLICTS_DIR))
        .with_file_name(conflict_name(rel, &host, &stamp.to_string()));
    if let Some(parent) = copy.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(local, &copy)?;
    Ok(copy)
}

/// `{name}.{host}.{stamp}`, with anything but letters, digits, `-`, `_`
/// and `.` in the host replaced, so the name stays one path segment.
fn conflict_name(rel: &SafeRelativePath, host: &str, stamp: &str) -> String {
    let name = rel.as_str().rsplit('/').next().unwrap_or(rel.as_str());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}.{host}.{stamp}")
}

/// Every conflict copy under `cache`, relative to its conflicts directory.
pub fn list_conflicts(cache: &Path) -> Vec<String> {
    let root = cache.join(CONFLICTS_DIR);
    walkdir::WalkDir::new(&root)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            e.path()
                .strip_prefix(&root)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_copy_keeps_the_content_outside_the_synced_tree() {
        let cache = tempfile::tempdir().unwrap();
        let rel = SafeRelativePath::parse("outputs/run/result.txt").unwrap();
        let local = rel.under(cache.path());
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, b"mine").unwrap();
        let copy = keep_as_conflict(cache.path(), &rel, &local).unwrap();
        assert!(!local.exists());
        assert_eq!(std::fs::read(&copy).unwrap(), b"mine");
        assert!(copy.starts_with(cache.path().join(CONFLICTS_DIR).join("outputs/run")));
        let listed = list_conflicts(cache.path());
        assert_eq!(listed.len(), 1);
        assert!(
            listed[0].starts_with("outputs/run/result.txt."),
            "{listed:?}"
        );
    }

    #[test]
    fn hosts_cannot_add_path_segments() {
        let rel = SafeRelativePath::parse("data/x").unwrap();
        assert_eq!(conflict_name(&rel, "a/b\\c", "T"), "x.a_b_c.T");
    }
}
