//! The private, writable copy of the datastore an `exec --scope` child
//! works on.
//!
//! Model: like a read-only view (`read_only_view.rs`), a working copy is the
//! datastore directories copied under `{swamp_home}/views/{pid}-{random}`,
//! remembered entry by entry; unlike one, the child may change it freely.
//! Afterwards `changes()` names every path it added, removed or changed;
//! the caller splits them by scope (`LockScope::contains`, `on_the_way`),
//! and `apply` writes the changes inside the scope into the datastore (or
//! the S3 cache): directories created, files copied in by temp file and
//! rename, removed entries removed — the lease checked before each write.
//! Nothing outside the scope ever leaves the copy, and the copy is removed
//! afterwards (or by the next view made on this machine, after a kill -9).
//!
//! Why a copy: on a shared filesystem datastore other scoped writers change
//! other paths while the child runs, so only a private copy tells the
//! child's changes apart from theirs; on S3 it keeps a refused child's
//! changes out of the cache, so no later push can send them.

use crate::domain::lock::LockError;
use crate::domain::relative_path::SafeRelativePath;
use crate::infrastructure::atomic_file::temp_path_for;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::read_only_view::{changes_since, snapshot, ScratchDir, Seen, ViewError};
use crate::infrastructure::s3::cache::safe_cache_path;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// Why the changes of a working copy could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Reading the copy or writing the datastore failed.
    #[error(transparent)]
    View(#[from] ViewError),
    /// The lease was lost before a write.
    #[error(transparent)]
    Lock(#[from] LockError),
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> ViewError + '_ {
    move |source| ViewError {
        path: path.to_path_buf(),
        source,
    }
}

/// A writable copy of the datastore directories.
#[derive(Debug)]
pub struct WorkingCopy {
    dir: ScratchDir,
    seen: BTreeMap<String, Seen>,
}

impl WorkingCopy {
    /// Copies `directories` of `source` into a new working copy under
    /// `swamp_home`.
    pub fn create(
        source: &Path,
        directories: &[String],
        swamp_home: &Path,
    ) -> Result<Self, ViewError> {
        let dir = ScratchDir::copy_of(source, directories, swamp_home)?;
        let seen = snapshot(dir.path())?;
        Ok(Self { dir, seen })
    }

    /// Its root: what the child gets as its datastore directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The paths the child added, removed or changed, sorted.
    pub fn changes(&self) -> Result<Vec<String>, ViewError> {
        Ok(changes_since(&self.seen, &snapshot(self.root())?))
    }

    /// Of `paths`, those that are now neither a regular file, a directory
    /// nor gone (a link, a fifo): swamp stores regular files only.
    pub fn unsupported(&self, paths: &[String]) -> Vec<String> {
        paths
            .iter()
            .filter(|rel| {
                std::fs::symlink_metadata(self.root().join(rel))
                    .is_ok_and(|m| !m.is_file() && !m.is_dir())
            })
            .cloned()
            .collect()
    }

    /// Writes the copy's state of each of `paths` into `target`: a
    /// directory is created, a file copied in (temp file, then rename), a
    /// removed entry removed. Parents come before their children (`paths`
    /// sorted), and no write happens once the lease is lost.
    pub fn apply(
        &self,
        paths: &[String],
        target: &Path,
        fence: &LeaseFence,
    ) -> Result<(), ApplyError> {
        let mut sorted = paths.to_vec();
        sorted.sort();
        for rel in &sorted {
            let safe = SafeRelativePath::parse(rel).map_err(|e| ViewError {
                path: self.root().join(rel),
                source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            })?;
            let from = self.root().join(rel);
            fence.check()?;
            let to = safe_cache_path(target, &safe).map_err(at(&target.join(rel)))?;
            match std::fs::symlink_metadata(&from) {
                Ok(meta) if meta.is_dir() => {
                    if std::fs::symlink_metadata(&to).is_ok_and(|m| !m.is_dir()) {
                        std::fs::remove_file(&to).map_err(at(&to))?;
                    }
                    std::fs::create_dir_all(&to).map_err(at(&to))?;
                }
                Ok(_) => {
                    if std::fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
                        std::fs::remove_dir_all(&to).map_err(at(&to))?;
                    }
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent).map_err(at(parent))?;
                    }
                    let temp = temp_path_for(&to);
                    std::fs::copy(&from, &temp).map_err(at(&from))?;
                    std::fs::rename(&temp, &to).map_err(|e| {
                        let _ = std::fs::remove_file(&temp);
                        at(&to)(e)
                    })?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let removed = match std::fs::symlink_metadata(&to) {
                        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&to),
                        Ok(_) => std::fs::remove_file(&to),
                        Err(e) => Err(e),
                    };
                    match removed {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(at(&to)(e).into()),
                    }
                }
                Err(e) => return Err(at(&from)(e).into()),
            }
        }
        Ok(())
    }

    /// Removes the copy, whatever the child did to it.
    pub fn remove(self) -> Result<(), ViewError> {
        self.dir.remove()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lease_clock;
    use std::time::Duration;

    fn fence() -> LeaseFence {
        LeaseFence::new(Duration::from_secs(3600), lease_clock::now())
    }

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn changes_are_named_and_applied_path_by_path() {
        let (source, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(source.path(), "outputs/a/kept", "kept");
        write(source.path(), "outputs/a/changed", "before");
        write(source.path(), "outputs/a/gone", "doomed");
        write(source.path(), "outputs/b/other", "untouched");
        let copy = WorkingCopy::create(source.path(), &["outputs".into()], home.path()).unwrap();
        assert!(copy.changes().unwrap().is_empty());
        let root = copy.root().to_path_buf();
        write(&root, "outputs/a/changed", "after, longer");
        std::fs::remove_file(root.join("outputs/a/gone")).unwrap();
        write(&root, "outputs/a/new/deep", "new");
        let changed = copy.changes().unwrap();
        assert_eq!(
            changed,
            [
                "outputs/a",
                "outputs/a/changed",
                "outputs/a/gone",
                "outputs/a/new",
                "outputs/a/new/deep"
            ]
        );
        copy.apply(&changed, source.path(), &fence()).unwrap();
        let read = |rel: &str| std::fs::read_to_string(source.path().join(rel)).ok();
        assert_eq!(read("outputs/a/changed").as_deref(), Some("after, longer"));
        assert_eq!(read("outputs/a/gone"), None);
        assert_eq!(read("outputs/a/new/deep").as_deref(), Some("new"));
        assert_eq!(read("outputs/a/kept").as_deref(), Some("kept"));
        assert_eq!(read("outputs/b/other").as_deref(), Some("untouched"));
        copy.remove().unwrap();
    }

    #[test]
    fn nothing_is_applied_once_the_lease_is_lost() {
        let (source, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir_all(source.path().join("outputs")).unwrap();
        let copy = WorkingCopy::create(source.path(), &["outputs".into()], home.path()).unwrap();
        write(copy.root(), "outputs/late", "x");
        let lost = LeaseFence::new(Duration::ZERO, lease_clock::now());
        let err = copy
            .apply(&copy.changes().unwrap(), source.path(), &lost)
            .unwrap_err();
        assert!(matches!(err, ApplyError::Lock(_)), "{err}");
        assert!(!source.path().join("outputs/late").exists());
    }

    #[test]
    fn links_and_fifos_are_unsupported() {
        let (source, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir_all(source.path().join("outputs")).unwrap();
        let copy = WorkingCopy::create(source.path(), &["outputs".into()], home.path()).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", copy.root().join("outputs/link")).unwrap();
        write(copy.root(), "outputs/file", "x");
        let changed = copy.changes().unwrap();
        assert_eq!(copy.unsupported(&changed), ["outputs/link"]);
    }
}
