//! The stat walk of a cache, and what it means against the agreed state.
//!
//! Model: every entry under this machine's datastore directories is one of
//! three things. A regular file with a name S3 and every other machine can
//! hold is *syncable* and listed with its size and mtime. One of swamp's own
//! temp files (left by a killed process; every writer holds the lock, so none
//! is in use) is removed. Anything else — a symlink, a fifo or device, a name
//! that is not UTF-8 or holds a control character or backslash, a key longer
//! than S3 allows — is *unsyncable*: reported on every push with the reason,
//! never uploaded, and never taken for a deletion of what was agreed at that
//! path.

use super::{CacheSync, SyncError};
use crate::domain::lock_scope::LockScope;
use crate::domain::path_resolver::DatastorePathResolver;
use crate::domain::path_resolver::DATASTORE_DIRS;
use crate::domain::relative_path::SafeRelativePath;
use crate::domain::sync_index::object_key_len;
use crate::infrastructure::atomic_file::is_temp_name;
use crate::infrastructure::s3::cache::{mtime_ns, safe_cache_path, SyncedFile};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The longest object key S3 accepts, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Size and mtime of a cache file, as the stat walk saw them.
pub(super) struct FileStat {
    pub(super) size: u64,
    pub(super) mtime_ns: i128,
}

/// A cache entry that cannot be synced, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsyncable {
    /// The path under the cache root (escaped where it is not printable).
    pub path: String,
    /// Why, and what to do.
    pub reason: String,
}

/// What one stat walk found.
#[derive(Default)]
pub(super) struct CacheScan {
    /// Syncable files by datastore path.
    pub(super) files: BTreeMap<String, FileStat>,
    /// Entries that cannot be synced, by path.
    pub(super) unsyncable: Vec<Unsyncable>,
    /// Datastore paths held by an unsyncable entry: what was agreed there is
    /// not deleted because of it.
    pub(super) blocked: BTreeSet<String>,
}

impl CacheScan {
    /// Whether an unsyncable entry holds `rel` or a directory above it.
    pub(super) fn blocks(&self, rel: &str) -> bool {
        let mut path = rel;
        loop {
            if self.blocked.contains(path) {
                return true;
            }
            match path.rsplit_once('/') {
                Some((up, _)) => path = up,
                None => return false,
            }
        }
    }
}

/// Compares the stat walk with the agreed state in one merge pass over both
/// sorted maps (no per-file lookups: a cache may hold 100 000 files). Returns
/// the files to hash — new, or size/mtime differ from their agreed entry — and
/// the agreed paths that are gone from the cache.
pub(super) fn compare_with_state<'a>(
    local: &'a BTreeMap<String, FileStat>,
    agreed: &BTreeMap<String, SyncedFile>,
) -> (Vec<(&'a String, &'a FileStat)>, Vec<String>) {
    let mut suspects = Vec::new();
    let mut deleted = Vec::new();
    let mut agreed = agreed.iter().peekable();
    for (rel, stat) in local {
        while let Some((gone, _)) = agreed.next_if(|(key, _)| key.as_str() < rel.as_str()) {
            deleted.push(gone.clone());
        }
        match agreed.next_if(|(key, _)| *key == rel) {
            Some((_, entry)) if entry.size == stat.size && entry.mtime_ns == stat.mtime_ns => {}
            _ => suspects.push((rel, stat)),
        }
    }
    deleted.extend(agreed.map(|(gone, _)| gone.clone()));
    (suspects, deleted)
}

/// Why an entry that is not a directory cannot be synced, if it cannot.
fn refusal(file_type: std::fs::FileType) -> Option<&'static str> {
    if file_type.is_symlink() {
        Some("a symbolic link; swamp syncs regular files only: replace it with a copy of its target, or move it out of the datastore")
    } else if !file_type.is_file() {
        Some("not a regular file (a fifo, socket or device): move it out of the datastore")
    } else {
        None
    }
}

impl CacheSync {
    /// Walks this machine's datastore directories in the cache.
    pub(super) fn scan(&self) -> Result<CacheScan, SyncError> {
        self.scan_all(true)
    }

    /// `scan`, leaving temp files alone: for a caller without the lock
    /// (`datastore status`), while a command may be writing them.
    pub(super) fn scan_readonly(&self) -> Result<CacheScan, SyncError> {
        self.scan_all(false)
    }

    fn scan_all(&self, clean_temps: bool) -> Result<CacheScan, SyncError> {
        let tops = self.resolver.directories().iter().cloned();
        let mut scan = self.scan_tops(tops.map(|dir| (dir, true)).collect(), clean_temps)?;
        scan.unsyncable.extend(self.outside_the_datastore());
        Ok(scan)
    }

    /// Entries at the top of the cache that are neither a datastore
    /// directory nor swamp's own (`.swamp-*`): a file a command left there
    /// would otherwise never sync, and nobody would be told.
    fn outside_the_datastore(&self) -> Vec<Unsyncable> {
        let Ok(entries) = std::fs::read_dir(self.cache()) else {
            return Vec::new();
        };
        let mut outside: Vec<Unsyncable> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = name.starts_with(".swamp") || is_temp_name(&name);
                let datastore = DATASTORE_DIRS.contains(&name.as_str());
                // The repo's local directory, when it lies in the cache (tests).
                let local = self
                    .resolver
                    .roots_for("")
                    .iter()
                    .any(|r| *r == entry.path());
                (!ours && !datastore && !local).then(|| Unsyncable {
                    path: printable(&name),
                    reason: format!(
                        "outside every datastore directory ({}): move it into one of them",
                        DATASTORE_DIRS.join(", ")
                    ),
                })
            })
            .collect();
        outside.sort_by(|a, b| a.path.cmp(&b.path));
        outside
    }

    /// Walks only what `scope` holds (a scoped writer's push). A link on the
    /// way to a scope path makes it unsyncable, as the full walk would.
    pub(super) fn scan_within(&self, scope: &LockScope) -> Result<CacheScan, SyncError> {
        let mut tops = Vec::new();
        let mut linked = CacheScan::default();
        for path in scope.paths() {
            let Ok(rel) = SafeRelativePath::parse(path) else {
                continue;
            };
            if !self.resolver.is_datastore_path(&rel) {
                continue;
            }
            match safe_cache_path(self.cache(), &rel) {
                Ok(_) => tops.push((path.clone(), false)),
                Err(e) => {
                    linked.unsyncable.push(Unsyncable {
                        path: path.clone(),
                        reason: format!("a symbolic link on its way ({e}); swamp syncs regular files only: replace the link with a directory"),
                    });
                    linked.blocked.insert(path.clone());
                }
            }
        }
        let mut scan = self.scan_tops(tops, true)?;
        scan.unsyncable.extend(linked.unsyncable);
        scan.blocked.extend(linked.blocked);
        Ok(scan)
    }

    /// Walks each of `tops` (datastore paths; `true`: a datastore directory,
    /// which must be a directory where it exists).
    /// `clean_temps`: remove the temp files a killed swamp left (only a
    /// holder of the lock may).
    ///
    /// The walk is split into units — each top's own entries, and each of
    /// its subdirectories — that a few threads take in turn: most of a walk
    /// is the kernel's stat, which runs on every core (a no-op push of
    /// 100 000 files is this walk).
    fn scan_tops(
        &self,
        tops: Vec<(String, bool)>,
        clean_temps: bool,
    ) -> Result<CacheScan, SyncError> {
        let mut scan = CacheScan::default();
        let cache = self.cache();
        let mut units = Vec::new();
        for (dir, must_be_dir) in &tops {
            let top = cache.join(dir);
            match std::fs::symlink_metadata(&top) {
                Ok(meta) if meta.is_dir() => units.extend(WalkUnit::split(top)),
                Ok(_) if !must_be_dir => units.push(WalkUnit::whole(top)),
                Ok(meta) => {
                    scan.unsyncable.push(Unsyncable {
                        path: dir.clone(),
                        reason: refusal(meta.file_type())
                            .unwrap_or("a file where a datastore directory belongs: move it away")
                            .to_string(),
                    });
                    scan.blocked.insert(dir.clone());
                }
                Err(_) => {}
            }
        }
        let walker = Walker {
            cache,
            resolver: &self.resolver,
            prefix: &self.prefix,
            clean_temps,
        };
        let parts = walker
            .walk_all(&units)
            .map_err(|(path, source)| SyncError::Io { path, source })?;
        // Collected in walk order, then sorted once: cheaper than inserting
        // 100 000 keys one by one in the directories' hash order.
        let mut files = Vec::new();
        for part in parts {
            files.extend(part.files);
            scan.unsyncable.extend(part.unsyncable);
            scan.blocked.extend(part.blocked);
        }
        scan.unsyncable.sort_by(|a, b| a.path.cmp(&b.path));
        scan.files = files.into_iter().collect();
        Ok(scan)
    }
}

/// One piece of a stat walk: a directory, and how deep into it.
struct WalkUnit {
    dir: PathBuf,
    max_depth: usize,
}

impl WalkUnit {
    /// All of `dir`.
    fn whole(dir: PathBuf) -> Self {
        Self {
            dir,
            max_depth: usize::MAX,
        }
    }

    /// `dir`'s own entries, then each of its subdirectories whole (a temp
    /// directory is left to the first unit, which removes it); `dir` whole
    /// if it cannot be listed (its walk then reports why).
    fn split(dir: PathBuf) -> Vec<Self> {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return vec![Self::whole(dir)];
        };
        let mut units = Vec::new();
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !is_temp_name(&entry.file_name().to_string_lossy()) {
                units.push(Self::whole(entry.path()));
            }
        }
        units.insert(0, Self { dir, max_depth: 1 });
        units
    }
}

/// What some units of a walk found.
#[derive(Default)]
struct WalkPart {
    files: Vec<(String, FileStat)>,
    unsyncable: Vec<Unsyncable>,
    blocked: Vec<String>,
}

/// A walk failure: where, and why.
type WalkError = (PathBuf, std::io::Error);

/// What the stat walk needs of the sync, shared by its threads.
struct Walker<'a> {
    cache: &'a Path,
    resolver: &'a DatastorePathResolver,
    prefix: &'a str,
    clean_temps: bool,
}

impl Walker<'_> {
    /// Most threads a walk uses.
    const MAX_THREADS: usize = 4;

    /// Walks every unit, on up to `MAX_THREADS` threads (one per core), each
    /// taking the next unit as it finishes one.
    fn walk_all(&self, units: &[WalkUnit]) -> Result<Vec<WalkPart>, WalkError> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(Self::MAX_THREADS)
            .min(units.len());
        let next = AtomicUsize::new(0);
        let work = || {
            let mut part = WalkPart::default();
            while let Some(unit) = units.get(next.fetch_add(1, Ordering::Relaxed)) {
                self.walk(unit, &mut part)?;
            }
            Ok(part)
        };
        if threads <= 1 {
            return work().map(|part| vec![part]);
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            running
                .into_iter()
                .map(|thread| match thread.join() {
                    Ok(part) => part,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }

    /// Walks one unit into `part`: its root, then each directory's entries
    /// (depth allowing), each directory read whole before any below it, so
    /// a thread holds one directory handle at a time. A file's size and
    /// mtime come from `DirEntry::metadata`, a `statx` relative to its
    /// directory's handle; walkdir's, by full path, made the kernel resolve
    /// every component of every path again (a quarter of a 100 000-file
    /// no-op push's samples in perf).
    fn walk(&self, unit: &WalkUnit, part: &mut WalkPart) -> Result<(), WalkError> {
        let root = std::fs::symlink_metadata(&unit.dir).map_err(walk_error(&unit.dir))?;
        let mut below = Vec::new();
        let descend = self.visit(&unit.dir, root.file_type(), || Ok(root.clone()), part)?;
        if descend && unit.max_depth > 0 {
            below.push((unit.dir.clone(), 1));
        }
        while let Some((dir, depth)) = below.pop() {
            for entry in std::fs::read_dir(&dir).map_err(walk_error(&dir))? {
                let entry = entry.map_err(walk_error(&dir))?;
                let path = entry.path();
                let file_type = entry.file_type().map_err(walk_error(&path))?;
                if self.visit(&path, file_type, || entry.metadata(), part)?
                    && depth < unit.max_depth
                {
                    below.push((path, depth + 1));
                }
            }
        }
        Ok(())
    }

    /// Takes in the entry at `path` (`meta` stats it); whether it is a
    /// directory to walk into.
    fn visit(
        &self,
        path: &Path,
        file_type: std::fs::FileType,
        meta: impl FnOnce() -> std::io::Result<std::fs::Metadata>,
        part: &mut WalkPart,
    ) -> Result<bool, WalkError> {
        let cache = self.cache;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if is_temp_name(&name) {
            if self.clean_temps {
                // Left by a killed swamp: under the lock, nothing uses it.
                let removed = if file_type.is_dir() {
                    std::fs::remove_dir_all(path)
                } else {
                    std::fs::remove_file(path)
                };
                tracing::info!(path = %path.display(), ok = removed.is_ok(), "removed a leftover temp file");
            }
            return Ok(false);
        }
        if file_type.is_dir() {
            return Ok(true);
        }
        let shown = || printable(&path.strip_prefix(cache).unwrap_or(path).to_string_lossy());
        let safe = match SafeRelativePath::of_entry(cache, path) {
            Ok(safe) => safe,
            Err(e) => {
                part.unsyncable.push(Unsyncable {
                    path: shown(),
                    reason: format!(
                        "its name cannot be an S3 key on every machine ({}): rename it",
                        e.reason
                    ),
                });
                return Ok(false);
            }
        };
        if !self.resolver.is_datastore_path(&safe) {
            return Ok(false);
        }
        let key_bytes = object_key_len(self.prefix, safe.as_str());
        let why = match refusal(file_type) {
            Some(why) => Some(why.to_string()),
            None if key_bytes > MAX_KEY_BYTES => Some(format!(
                "its object key would be {key_bytes} bytes, over S3's limit of {MAX_KEY_BYTES}: shorten its path"
            )),
            None => None,
        };
        if let Some(reason) = why {
            part.unsyncable.push(Unsyncable {
                path: shown(),
                reason,
            });
            part.blocked.push(safe.into_string());
            return Ok(false);
        }
        let meta = meta().map_err(walk_error(path))?;
        part.files.push((
            safe.into_string(),
            FileStat {
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
            },
        ));
        Ok(false)
    }
}

/// A walk failure at `path`.
fn walk_error(path: &Path) -> impl Fn(std::io::Error) -> (PathBuf, std::io::Error) + '_ {
    move |e| (path.to_path_buf(), e)
}

/// `name` with its control characters escaped, so a report of it stays one
/// line and cannot move the terminal's cursor.
fn printable(name: &str) -> String {
    name.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fence, index, machine, one_machine, write};
    use super::*;

    use crate::infrastructure::s3::memory_store::MemoryStore;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::Arc;

    #[test]
    fn printable_names_escape_control_characters_only() {
        for (name, shown) in [
            ("plain é name", "plain é name"),
            ("two\nlines", "two\\nlines"),
            ("bell\u{7}\u{1b}[2J", "bell\\u{7}\\u{1b}[2J"),
        ] {
            assert_eq!(printable(name), shown, "{name:?}");
        }
    }

    /// Cache entries no machine could hold under their name, or that are
    /// not files: each reported on every push, none blocking the rest.
    #[tokio::test]
    async fn unsyncable_entries_are_reported_on_every_push_and_never_block_the_rest() {
        let (store, dir, a) = one_machine();
        let cache = dir.path();
        a.pull(&fence()).await.unwrap();
        write(cache, "outputs/ok", "fine");
        std::os::unix::fs::symlink("/etc/hostname", cache.join("outputs/link")).unwrap();
        nix::unistd::mkfifo(&cache.join("outputs/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        write(cache, "outputs/bell\x07", "x");
        write(cache, "outputs/back\\slash", "x");
        std::fs::write(
            cache.join("outputs").join(OsStr::from_bytes(b"caf\xe9")),
            "latin-1",
        )
        .unwrap();
        let deep = format!("outputs/{}/f", vec!["d".repeat(200); 6].join("/"));
        write(cache, &deep, "too deep for a key");
        for round in 0..2 {
            let report = a.push(&fence()).await.unwrap();
            let mut seen: Vec<(&str, &str)> = report
                .unsyncable
                .iter()
                .map(|u| {
                    (
                        u.path.as_str(),
                        u.reason.split([';', ' ', '(']).next().unwrap(),
                    )
                })
                .collect();
            seen.sort();
            assert_eq!(seen.len(), 6, "round {round}: {:?}", report.unsyncable);
            for (path, reason) in [
                ("outputs/back\\slash", "its"),
                ("outputs/bell\\u{7}", "its"),
                ("outputs/caf\u{fffd}", "its"),
                ("outputs/fifo", "not"),
                ("outputs/link", "a"),
            ] {
                assert!(seen.contains(&(path, reason)), "{path}: {seen:?}");
            }
            assert_eq!(report.uploaded, if round == 0 { 1 } else { 0 });
        }
        let names: Vec<String> = index(&store).files.into_keys().collect();
        assert_eq!(names, ["outputs/ok"]);
        let reasons: Vec<String> = a
            .push(&fence())
            .await
            .unwrap()
            .unsyncable
            .into_iter()
            .map(|u| u.reason)
            .collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("over S3's limit of 1024")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("not valid UTF-8")),
            "{reasons:?}"
        );
    }

    /// The walk split into units across threads finds what one walk would:
    /// files at the top and in every subdirectory, temp files (a temp
    /// directory right under a datastore directory included) removed, a
    /// linked subdirectory reported and not followed, reports by path.
    #[tokio::test]
    async fn the_split_walk_finds_every_file_once_and_cleans_every_temp() {
        let (_, dir, a) = one_machine();
        let cache = dir.path();
        let mut expected = vec!["outputs/top".to_string()];
        write(cache, "outputs/top", "t");
        for d in 0..12 {
            for f in 0..3 {
                let rel = format!("outputs/d{d:02}/sub/f{f}");
                write(cache, &rel, &rel);
                expected.push(rel);
            }
        }
        let temp = |rel: &str| crate::infrastructure::atomic_file::temp_path_for(&cache.join(rel));
        let nested_temp = temp("outputs/d03/sub/f0");
        std::fs::write(&nested_temp, "half").unwrap();
        let temp_dir = temp("outputs/d99");
        std::fs::create_dir_all(temp_dir.join("inner")).unwrap();
        std::fs::write(temp_dir.join("inner/x"), "x").unwrap();
        std::os::unix::fs::symlink(cache.join("outputs/d00"), cache.join("outputs/zlink")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", cache.join("outputs/d05/alink")).unwrap();
        let scan = a.scan().unwrap();
        expected.sort();
        assert_eq!(scan.files.keys().cloned().collect::<Vec<_>>(), expected);
        assert!(!nested_temp.exists() && !temp_dir.exists());
        let reported: Vec<&str> = scan.unsyncable.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(reported, ["outputs/d05/alink", "outputs/zlink"]);
    }

    /// An agreed file that became a symlink is reported, not deleted for
    /// everyone.
    #[tokio::test]
    async fn an_agreed_file_replaced_by_a_symlink_is_not_a_deletion() {
        let (store, dir, a) = one_machine();
        a.pull(&fence()).await.unwrap();
        write(dir.path(), "outputs/sub/f", "agreed");
        a.push(&fence()).await.unwrap();
        let sub = dir.path().join("outputs/sub");
        let outside = tempfile::tempdir().unwrap();
        std::fs::rename(&sub, outside.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("elsewhere"), &sub).unwrap();
        let report = a.push(&fence()).await.unwrap();
        assert_eq!(report.deleted_remote, 0);
        assert_eq!(report.unsyncable.len(), 1, "{:?}", report.unsyncable);
        assert!(index(&store).files.contains_key("outputs/sub/f"));
        assert_eq!(store.object("p/outputs/sub/f").unwrap(), b"agreed");
    }

    /// `datastore status` runs without the lock: its scan leaves a temp
    /// file alone (a command may be writing it); a push, under the lock,
    /// removes what a killed swamp left.
    #[tokio::test]
    async fn only_a_locked_scan_removes_temp_files() {
        let (_, dir, a) = one_machine();
        a.pull(&fence()).await.unwrap();
        write(dir.path(), "outputs/kept", "synced");
        let temp =
            crate::infrastructure::atomic_file::temp_path_for(&dir.path().join("outputs/new"));
        std::fs::write(&temp, "being written").unwrap();
        let pending = a.pending().unwrap();
        assert_eq!(pending.changed, 1, "{pending:?}");
        assert!(temp.exists(), "status left the temp file alone");
        a.push(&fence()).await.unwrap();
        assert!(!temp.exists(), "the push removed it");
    }

    /// A file left at the top of the cache, outside every datastore
    /// directory, is named on every push; swamp's own files are not.
    #[tokio::test]
    async fn a_file_outside_every_datastore_directory_is_reported() {
        let (store, dir, a) = one_machine();
        a.pull(&fence()).await.unwrap();
        write(dir.path(), "outputs/kept", "synced");
        write(dir.path(), "report.txt", "left at the top");
        let report = a.push(&fence()).await.unwrap();
        let named: Vec<&str> = report.unsyncable.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(named, ["report.txt"], "{:?}", report.unsyncable);
        assert!(report.unsyncable[0]
            .reason
            .contains("outside every datastore directory"));
        assert!(index(&store).files.contains_key("outputs/kept"));
        // The state file and the other .swamp-* files are swamp's own.
        assert!(dir.path().join(".swamp-sync-state.json").exists());
    }

    /// Temp names fit beside any name and only swamp's own shapes count as
    /// temp files: a user's name containing the marker syncs, and what a
    /// killed process left is removed.
    #[tokio::test]
    async fn names_with_the_temp_marker_sync_and_leftover_temp_files_are_removed() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        let long = format!("outputs/{}", "n".repeat(250));
        write(da.path(), &long, "long name");
        write(da.path(), "outputs/my.swamp-tmp-notes", "user's");
        let leftovers = [
            format!("outputs/.swamp-tmp-{}", "a".repeat(32)),
            "outputs/f.swamp-tmp-0123456789ab".to_string(),
            "data/item/versions.swamp-tmp-rm/1.bin".to_string(),
        ];
        for leftover in &leftovers {
            write(da.path(), leftover, "half-written");
        }
        let report = a.push(&fence()).await.unwrap();
        assert_eq!(report.uploaded, 2, "{report:?}");
        assert!(report.unsyncable.is_empty(), "{:?}", report.unsyncable);
        for leftover in &leftovers {
            assert!(!da.path().join(leftover).exists(), "{leftover} left");
        }
        let b = machine(&store, db.path());
        b.pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(db.path().join(&long)).unwrap(),
            "long name"
        );
        assert_eq!(
            std::fs::read_to_string(db.path().join("outputs/my.swamp-tmp-notes")).unwrap(),
            "user's"
        );
    }

    #[test]
    fn compare_with_state_finds_new_touched_and_gone_files_in_one_pass() {
        let stat = |size, mtime_ns| FileStat { size, mtime_ns };
        let entry = |size, mtime_ns| SyncedFile {
            size,
            mtime_ns,
            sha256: crate::infrastructure::hashing::sha256_bytes(b"x"),
            parts: None,
        };
        // Keys that sort around each other: '-' (0x2d) sorts before '/' (0x2f).
        let local: BTreeMap<String, FileStat> = [
            ("data/a-b/f", stat(1, 10)),
            ("data/a/f", stat(1, 10)),
            ("data/b", stat(2, 20)),
            ("data/d", stat(4, 40)),
            ("data/e", stat(5, 50)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let agreed: BTreeMap<String, SyncedFile> = [
            ("data/0-gone", entry(9, 9)),
            ("data/a/f", entry(1, 10)),
            ("data/b", entry(2, 21)),
            ("data/c-gone", entry(3, 30)),
            ("data/d", entry(5, 40)),
            ("data/e", entry(5, 50)),
            ("data/z-gone", entry(7, 70)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let (suspects, deleted) = compare_with_state(&local, &agreed);
        let suspects: Vec<&str> = suspects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(suspects, ["data/a-b/f", "data/b", "data/d"]);
        assert_eq!(deleted, ["data/0-gone", "data/c-gone", "data/z-gone"]);
        let (suspects, deleted) = compare_with_state(&local, &BTreeMap::new());
        assert_eq!(suspects.len(), local.len());
        assert!(deleted.is_empty());
    }
}
