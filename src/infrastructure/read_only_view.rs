//! The private, read-only copy of the datastore an `exec --read-only` child
//! works on.
//!
//! Model: a view is a copy of the datastore directories (regular files and
//! directories; swamp's temp files and anything that is neither are left
//! out) made from one consistent state — the caller holds the cache lock
//! after a pull to one committed index, or the filesystem datastore's lock —
//! under `{swamp_home}/views/{pid}-{random}`. Once copied, every file is made
//! 0444 and every directory 0555, so an ordinary user's child cannot change
//! it; a child running as root can, so the view also remembers what each
//! entry looked like (kind, mode, size, mtime, ctime, inode) and `changes()`
//! names every path that differs after the child ended. (A same-size
//! rewrite within the filesystem's timestamp tick of the copy looks
//! unchanged; it is discarded all the same.) The view is
//! never synced anywhere: whatever the child did to it is discarded with it
//! (`remove`, or `Drop` as a fallback). Views left by a process that was
//! killed are removed by the next view made on this machine: the pid in the
//! name is no longer alive.
//!
//! A copy rather than hard links: a hard link shares the inode, so a child
//! of a concurrent writer appending to a cache file in place would change
//! the view, and making the view read-only would make the cache read-only.

use crate::infrastructure::atomic_file::is_temp_name;
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where views live under swamp's home directory.
const VIEWS_DIR: &str = "views";

/// A failure making, checking or removing a view.
#[derive(Debug, thiserror::Error)]
#[error("read-only view at {}: {source}", path.display())]
pub struct ViewError {
    /// The path being copied, checked or removed.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> ViewError + '_ {
    move |source| ViewError {
        path: path.to_path_buf(),
        source,
    }
}

/// What an entry of a view looked like when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    is_dir: bool,
    mode: u32,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
}

impl Seen {
    fn of(meta: &std::fs::Metadata) -> Self {
        Seen {
            is_dir: meta.is_dir(),
            mode: meta.mode(),
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            inode: meta.ino(),
        }
    }
}

/// A private directory under `{swamp_home}/views`, removed (whatever its
/// modes) with `remove` or when dropped; abandoned ones are swept by the
/// next one made.
#[derive(Debug)]
pub struct ScratchDir {
    root: PathBuf,
    removed: bool,
}

impl ScratchDir {
    /// A new, empty private directory under `swamp_home`.
    pub fn create(swamp_home: &Path) -> Result<Self, ViewError> {
        let views = swamp_home.join(VIEWS_DIR);
        std::fs::create_dir_all(&views).map_err(at(&views))?;
        remove_abandoned(&views);
        let root = views.join(format!(
            "{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir(&root).map_err(at(&root))?;
        Ok(Self {
            root,
            removed: false,
        })
    }

    /// A new private directory under `swamp_home` holding a copy of the
    /// directories `directories` of `source` (see `copy_directories`).
    pub fn copy_of(
        source: &Path,
        directories: &[String],
        swamp_home: &Path,
    ) -> Result<Self, ViewError> {
        let dir = Self::create(swamp_home)?;
        copy_directories(source, directories, dir.path())?;
        Ok(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Removes it and everything in it.
    pub fn remove(mut self) -> Result<(), ViewError> {
        self.removed = true;
        remove_tree(&self.root)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_tree(&self.root);
        }
    }
}

/// A read-only copy of the datastore directories.
#[derive(Debug)]
pub struct ReadOnlyView {
    dir: ScratchDir,
    seen: BTreeMap<String, Seen>,
}

impl ReadOnlyView {
    /// Copies `directories` of `source` into a new view under `swamp_home`.
    /// The caller holds whatever keeps `source` consistent meanwhile.
    pub fn create(
        source: &Path,
        directories: &[String],
        swamp_home: &Path,
    ) -> Result<Self, ViewError> {
        let dir = ScratchDir::copy_of(source, directories, swamp_home)?;
        let mut view = ReadOnlyView {
            dir,
            seen: BTreeMap::new(),
        };
        view.seal()?;
        Ok(view)
    }

    /// The view's root: what the child gets as its datastore directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Makes every entry read-only (files first, directories after their
    /// contents) and remembers what each looks like.
    fn seal(&mut self) -> Result<(), ViewError> {
        let walk = walkdir::WalkDir::new(self.root())
            .follow_links(false)
            .contents_first(true);
        for entry in walk {
            let entry = entry.map_err(|e| ViewError {
                path: self.root().to_path_buf(),
                source: e.into(),
            })?;
            let mode = if entry.file_type().is_dir() {
                0o555
            } else {
                0o444
            };
            let path = entry.path();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(at(path))?;
        }
        self.seen = snapshot(self.root())?;
        Ok(())
    }

    /// The paths the child added, removed or changed (directories whose
    /// entries changed included), sorted; empty when it changed nothing.
    pub fn changes(&self) -> Result<Vec<String>, ViewError> {
        Ok(changes_since(&self.seen, &snapshot(self.root())?))
    }

    /// Removes the view, whatever the child did to it.
    pub fn remove(self) -> Result<(), ViewError> {
        self.dir.remove()
    }
}

/// Copies the directories `directories` of `source` into `dest` (regular
/// files and directories; swamp's temp files and anything else left out).
fn copy_directories(source: &Path, directories: &[String], dest: &Path) -> Result<(), ViewError> {
    for dir in directories {
        let top = source.join(dir);
        match std::fs::symlink_metadata(&top) {
            Ok(meta) if meta.is_dir() => copy_tree(&top, &dest.join(dir))?,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(at(&top)(e)),
        }
    }
    Ok(())
}

fn copy_tree(top: &Path, dest: &Path) -> Result<(), ViewError> {
    for entry in walkdir::WalkDir::new(top).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(top).to_path_buf();
            ViewError {
                path,
                source: e.into(),
            }
        })?;
        if is_temp_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let rel = entry.path().strip_prefix(top).unwrap_or(entry.path());
        let target = dest.join(rel);
        let file_type = entry.file_type();
        if file_type.is_dir() {
            std::fs::create_dir_all(&target).map_err(at(&target))?;
        } else if file_type.is_file() {
            match std::fs::copy(entry.path(), &target) {
                Ok(_) => {}
                // Gone since the walk saw it (a filesystem data item's
                // temp file renamed away): it is not part of the state.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(at(entry.path())(e)),
            }
        }
    }
    Ok(())
}

/// Every entry under `root` by relative path ("" is the root).
pub(crate) fn snapshot(root: &Path) -> Result<BTreeMap<String, Seen>, ViewError> {
    let mut seen = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(|e| ViewError {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        let meta = entry.metadata().map_err(|e| ViewError {
            path: entry.path().to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .into_owned();
        seen.insert(rel, Seen::of(&meta));
    }
    Ok(seen)
}

/// The paths added, removed or changed between two snapshots, sorted ("."
/// for the root).
pub(crate) fn changes_since(
    before: &BTreeMap<String, Seen>,
    now: &BTreeMap<String, Seen>,
) -> Vec<String> {
    let mut changed: Vec<String> = before
        .iter()
        .filter(|(path, was)| now.get(*path) != Some(was))
        .map(|(path, _)| path.clone())
        .chain(
            now.keys()
                .filter(|path| !before.contains_key(*path))
                .cloned(),
        )
        .map(|path| if path.is_empty() { ".".into() } else { path })
        .collect();
    changed.sort();
    changed
}

/// Makes every directory under `root` writable again, then removes it all.
fn remove_tree(root: &Path) -> Result<(), ViewError> {
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        // An entry the child made unreadable is dealt with by the removal.
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
    match std::fs::remove_dir_all(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(at(root)(e)),
    }
}

/// Removes the views under `views` whose process is gone (best effort: a
/// view that cannot be removed now is tried again by the next one).
fn remove_abandoned(views: &Path) {
    let Ok(entries) = std::fs::read_dir(views) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 != std::process::id() && !process_alive(pid) {
            let _ = remove_tree(&entry.path());
        }
    }
}

/// Whether a process with `pid` exists (EPERM: it does, under another user).
fn process_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datastore() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("data/app/@versions")).unwrap();
        std::fs::write(root.join("data/app/@versions/1.bin"), b"one").unwrap();
        std::fs::create_dir_all(root.join("outputs/empty")).unwrap();
        std::fs::write(root.join("outputs/report.txt"), b"report").unwrap();
        let temp = crate::infrastructure::atomic_file::temp_path_for(&root.join("outputs/x"));
        std::fs::write(temp, b"partial").unwrap();
        std::fs::write(root.join("not-a-datastore-dir.txt"), b"lock").unwrap();
        dir
    }

    fn dirs() -> Vec<String> {
        vec!["data".into(), "outputs".into(), "missing".into()]
    }

    #[test]
    fn a_view_copies_the_datastore_directories_and_nothing_else() {
        let source = datastore();
        let home = tempfile::tempdir().unwrap();
        let view = ReadOnlyView::create(source.path(), &dirs(), home.path()).unwrap();
        let mut files: Vec<String> = walkdir::WalkDir::new(view.root())
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e.path().strip_prefix(view.root()).unwrap();
                rel.to_string_lossy().into_owned()
            })
            .collect();
        files.sort();
        assert_eq!(files, ["data/app/@versions/1.bin", "outputs/report.txt"]);
        assert!(view.root().join("outputs/empty").is_dir());
        let read = std::fs::read(view.root().join("data/app/@versions/1.bin")).unwrap();
        assert_eq!(read, b"one");
        assert_eq!(view.changes().unwrap(), Vec::<String>::new());
        let root = view.root().to_path_buf();
        view.remove().unwrap();
        assert!(!root.exists());
    }

    #[test]
    fn a_view_is_read_only_and_its_source_is_untouched() {
        let source = datastore();
        let home = tempfile::tempdir().unwrap();
        let view = ReadOnlyView::create(source.path(), &dirs(), home.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&view.root().join("outputs/report.txt")), 0o444);
        assert_eq!(mode(&view.root().join("outputs")), 0o555);
        assert_eq!(mode(view.root()), 0o555);
        let source_file = source.path().join("outputs/report.txt");
        assert_ne!(mode(&source_file) & 0o200, 0, "the source stays writable");
    }

    /// Table: each change a root child could make is named.
    #[test]
    fn every_change_to_a_view_is_named() {
        type Change = fn(&Path);
        let cases: [(&str, Change, &[&str]); 5] = [
            (
                "rewrite",
                |r| std::fs::write(r.join("outputs/report.txt"), b"a longer report").unwrap(),
                &["outputs/report.txt"],
            ),
            (
                "new file",
                |r| std::fs::write(r.join("outputs/new.txt"), b"x").unwrap(),
                &["outputs", "outputs/new.txt"],
            ),
            (
                "removed file",
                |r| std::fs::remove_file(r.join("data/app/@versions/1.bin")).unwrap(),
                &["data/app/@versions", "data/app/@versions/1.bin"],
            ),
            (
                "chmod only",
                |r| {
                    let p = r.join("outputs/report.txt");
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap()
                },
                &["outputs/report.txt"],
            ),
            (
                "new top-level directory",
                |r| std::fs::create_dir(r.join("extra")).unwrap(),
                &[".", "extra"],
            ),
        ];
        for (what, change, expected) in cases {
            let source = datastore();
            let home = tempfile::tempdir().unwrap();
            let view = ReadOnlyView::create(source.path(), &dirs(), home.path()).unwrap();
            // Tests may not run as root, who ignores the modes: make the
            // touched entries writable the way a root child could write.
            let mut view = view;
            for (entry, mode) in [
                ("", 0o755),
                ("outputs", 0o755),
                ("data/app/@versions", 0o755),
                ("outputs/report.txt", 0o600),
            ] {
                let p = view.root().join(entry);
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            view.seen = snapshot(view.root()).unwrap();
            change(view.root());
            assert_eq!(view.changes().unwrap(), expected, "{what}");
            view.remove().unwrap();
        }
    }

    #[test]
    fn views_of_dead_processes_are_removed_by_the_next_view() {
        let source = datastore();
        let home = tempfile::tempdir().unwrap();
        // A pid beyond pid_max is never alive.
        let abandoned = home.path().join(VIEWS_DIR).join("2147483646-00");
        std::fs::create_dir_all(abandoned.join("data")).unwrap();
        std::fs::set_permissions(&abandoned, std::fs::Permissions::from_mode(0o555)).unwrap();
        let live = home.path().join(VIEWS_DIR).join("1-00");
        std::fs::create_dir_all(&live).unwrap();
        let view = ReadOnlyView::create(source.path(), &dirs(), home.path()).unwrap();
        assert!(!abandoned.exists(), "the abandoned view is removed");
        assert!(live.exists(), "pid 1 is alive: its view stays");
        drop(view);
    }
}
