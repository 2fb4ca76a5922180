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
    /// What the remote did to the path: "changed", "deleted", or
    /// "directory" (the remote holds files under it).
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

/// The longest file name the filesystems swamp runs on accept, in bytes.
const NAME_MAX: usize = 255;

/// `{name}.{host}.{stamp}`, with anything but letters, digits, `-`, `_`
/// and `.` in the host replaced, so the name stays one path segment; the
/// name is shortened (on a character boundary) so the whole fits NAME_MAX.
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
    let host: String = host.chars().take(64).collect();
    let room = NAME_MAX.saturating_sub(host.len() + stamp.len() + 2);
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}.{host}.{stamp}", &name[..end])
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
    use super::super::tests::{fence, machine, write};
    use super::*;
    use crate::infrastructure::s3::memory_store::MemoryStore;
    use std::sync::Arc;

    fn read(cache: &Path, rel: &str) -> String {
        std::fs::read_to_string(cache.join(rel)).unwrap()
    }

    /// A file replaced by a directory of the same name (and back) on one
    /// machine follows on every other, with no conflict and no failure.
    #[tokio::test]
    async fn a_file_replaced_by_a_directory_elsewhere_follows_here() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (machine(&store, da.path()), machine(&store, db.path()));
        a.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/d", "a file");
        a.push(&fence()).await.unwrap();
        b.pull(&fence()).await.unwrap();
        std::fs::remove_file(da.path().join("outputs/d")).unwrap();
        write(da.path(), "outputs/d/inner", "now a directory");
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        let report = b.pull(&fence()).await.unwrap();
        assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
        assert_eq!(read(db.path(), "outputs/d/inner"), "now a directory");
        // And back to a file.
        std::fs::remove_dir_all(da.path().join("outputs/d")).unwrap();
        write(da.path(), "outputs/d", "a file again");
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        let report = b.pull(&fence()).await.unwrap();
        assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
        assert_eq!(read(db.path(), "outputs/d"), "a file again");
        b.push(&fence()).await.unwrap();
    }

    /// Unpushed local state where the remote puts a directory (or a file) is
    /// moved aside as a conflict copy, and the pull goes on.
    #[tokio::test]
    async fn local_state_in_the_way_of_a_remote_path_is_kept_as_a_conflict_copy() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (machine(&store, da.path()), machine(&store, db.path()));
        a.pull(&fence()).await.unwrap();
        b.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/d/inner", "theirs");
        write(da.path(), "outputs/f", "theirs");
        a.push(&fence()).await.unwrap();
        // b, unpushed: a file where a has a directory, a directory (and a
        // link) where a has files.
        write(db.path(), "outputs/d", "my file");
        write(db.path(), "outputs/f/mine", "my directory");
        let report = b.pull(&fence()).await.unwrap();
        assert_eq!(read(db.path(), "outputs/d/inner"), "theirs");
        assert_eq!(read(db.path(), "outputs/f"), "theirs");
        let mut kept: Vec<(&str, &str)> = report
            .conflicts
            .iter()
            .map(|c| (c.path.as_str(), c.remote))
            .collect();
        kept.sort();
        assert_eq!(kept, [("outputs/d", "directory"), ("outputs/f", "changed")]);
        for c in &report.conflicts {
            let copy = if c.path == "outputs/f" {
                c.copy.join("mine")
            } else {
                c.copy.clone()
            };
            let content = std::fs::read_to_string(&copy).unwrap();
            assert!(content.starts_with("my "), "{}", copy.display());
        }
        // A link where the remote has a file is moved aside; one where it
        // has a directory is named (files behind it may be agreed), and
        // neither is followed.
        write(da.path(), "outputs/g/inner", "theirs");
        write(da.path(), "outputs/h", "theirs");
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), db.path().join("outputs/h")).unwrap();
        std::os::unix::fs::symlink(outside.path(), db.path().join("outputs/g")).unwrap();
        let err = b.pull(&fence()).await.unwrap_err();
        assert!(
            err.to_string().contains(
                "outputs/g: a symlink where the remote has the directory of outputs/g/inner"
            ),
            "{err}"
        );
        std::fs::remove_file(db.path().join("outputs/g")).unwrap();
        let report = b.pull(&fence()).await.unwrap();
        assert_eq!(report.conflicts.len(), 1, "{:?}", report.conflicts);
        assert_eq!(read(db.path(), "outputs/g/inner"), "theirs");
        assert_eq!(read(db.path(), "outputs/h"), "theirs");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }

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
    fn a_conflict_name_fits_even_for_the_longest_names() {
        let long = format!("{}é", "x".repeat(249));
        let rel = SafeRelativePath::parse(&format!("data/{long}")).unwrap();
        let name = conflict_name(&rel, "host", "20261201T000000.000Z");
        assert!(name.len() <= NAME_MAX, "{}", name.len());
        assert!(name.ends_with(".host.20261201T000000.000Z"), "{name}");
        assert!(name.starts_with("xxxx"));
    }

    #[test]
    fn hosts_cannot_add_path_segments() {
        let rel = SafeRelativePath::parse("data/x").unwrap();
        assert_eq!(conflict_name(&rel, "a/b\\c", "T"), "x.a_b_c.T");
    }
}
