//! Moving a datastore's files to a filesystem target.
//!
//! Model: plan, copy, verify, then (after the caller has switched
//! `.swamp.yaml`) clean up. Planning hashes every source file and compares it
//! with what the target already has: an identical file is reused (so a rerun
//! after a crash resumes), a different one is a conflict and stops the migration
//! before anything changes. Copies are atomic (temp + rename) and verified by
//! re-reading size and SHA-256. The source is removed only after the config
//! points at the verified target, so at every instant one complete copy is the
//! one the config names.

use crate::domain::path_resolver::DatastorePathResolver;
use crate::domain::relative_path::SafeRelativePath;
use crate::infrastructure::atomic_file::{is_temp_name, write_atomic_from};
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::data_store::prune_empty_parents;
use crate::infrastructure::file_lock::LOCK_FILE;
use crate::infrastructure::hashing::{digest_file, sha256_file, FileDigest, HashingReader};
use serde::Serialize;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Migration failures.
#[derive(Debug, Error)]
pub enum MigrationError {
    /// The target exists and is not a directory.
    #[error("target {} is not usable: it exists and is not a directory", .0.display())]
    TargetNotADirectory(PathBuf),
    /// The target cannot be created or written.
    #[error("target {} is not usable: {what}: {source}", path.display())]
    Target {
        /// The target.
        path: PathBuf,
        /// What failed ("cannot create it", "not writable").
        what: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// The target holds different files at the same paths.
    #[error("migration stopped before changing anything: the target already holds different files at {}{}", .0.iter().take(10).cloned().collect::<Vec<_>>().join(", "), if .0.len() > 10 { format!(" and {} more", .0.len() - 10) } else { String::new() })]
    Conflicts(Vec<String>),
    /// The target already holds files of another datastore.
    #[error("{target} already holds another datastore ({} files this one does not have, e.g. {}); rerun with --merge to combine them (files at the same path must be identical), or choose an empty target", .foreign.len(), .foreign.iter().take(3).cloned().collect::<Vec<_>>().join(", "))]
    Occupied {
        /// The target.
        target: String,
        /// Its files that are not among the migrating ones.
        foreign: Vec<String>,
    },
    /// This machine's settings leave out files the source datastore holds.
    #[error("this machine's datastore settings (directories/exclude in .swamp.yaml) leave out {count} files of the datastore (e.g. {example}), which a migration from here would leave behind; run it on a machine whose settings include them, or widen directories/exclude first")]
    PartialSource {
        /// How many files are left out.
        count: usize,
        /// One of them.
        example: String,
    },
    /// A copied file did not verify.
    #[error("verification failed for {path}: {reason}")]
    Verify {
        /// The target file.
        path: PathBuf,
        /// What differed.
        reason: String,
    },
    /// A source file cannot be migrated.
    #[error("cannot migrate {path}: {reason}")]
    Source {
        /// The source file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The bucket failed.
    #[error(transparent)]
    Store(#[from] crate::infrastructure::s3::store::StoreError),
    /// The bucket's index is unusable.
    #[error(transparent)]
    Index(#[from] crate::domain::sync_index::IndexError),
    /// The target prefix belongs to another repo.
    #[error(transparent)]
    ForeignRepo(#[from] crate::domain::sync_index::ForeignRepo),
    /// The lock was lost mid-migration.
    #[error(transparent)]
    Lock(#[from] crate::domain::lock::LockError),
}

impl From<crate::infrastructure::s3::index_store::IndexIoError> for MigrationError {
    fn from(e: crate::infrastructure::s3::index_store::IndexIoError) -> Self {
        use crate::infrastructure::s3::index_store::IndexIoError;
        match e {
            IndexIoError::Store(e) => MigrationError::Store(e),
            IndexIoError::Index(e) => MigrationError::Index(e),
            IndexIoError::Lock(e) => e.into(),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MigrationError + '_ {
    move |source| MigrationError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file to migrate.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the datastore root.
    pub rel: SafeRelativePath,
    /// Absolute source path.
    pub path: PathBuf,
    /// Size, SHA-256 and part checksums, from one read.
    pub digest: FileDigest,
}

/// What a migration did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationReport {
    /// Files copied (or found identical) and verified.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Files that were already identical in the target.
    pub already_present: u64,
    /// Datastore directories that held files.
    pub directories: Vec<String>,
    /// The source files, for cleanup.
    #[serde(skip)]
    pub migrated: Vec<SourceFile>,
}

/// Every file a datastore holds under `resolver` (excluded files, the lock and
/// temp files are not part of it).
pub fn datastore_files(
    resolver: &DatastorePathResolver,
) -> Result<Vec<SourceFile>, MigrationError> {
    let root = resolver.datastore_root();
    let mut files = Vec::new();
    for_each_datastore_entry(root, resolver.directories(), |entry| {
        let path = entry.path().to_path_buf();
        if entry.path_is_symlink() || !entry.file_type().is_file() {
            return Err(MigrationError::Source {
                path,
                reason: "not a regular file (symlinks are not migrated); move it away and retry"
                    .into(),
            });
        }
        let rel = SafeRelativePath::between(root, &path).ok_or_else(|| MigrationError::Source {
            path: path.clone(),
            reason: "its name cannot be stored as a datastore path".into(),
        })?;
        if resolver.is_datastore_path(&rel) {
            let digest = digest_file(&path).map_err(io_err(&path))?;
            files.push(SourceFile { rel, path, digest });
        }
        Ok(())
    })?;
    Ok(files)
}

/// Calls `visit` on every entry under `root`'s datastore `directories` that
/// could be a datastore file: not a directory, a temp file or the lock.
/// Entries come sorted by name; symlinks are not followed.
fn for_each_datastore_entry(
    root: &Path,
    directories: &[String],
    mut visit: impl FnMut(&walkdir::DirEntry) -> Result<(), MigrationError>,
) -> Result<(), MigrationError> {
    for dir in directories {
        let top = root.join(dir);
        if !top.exists() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&top)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| MigrationError::Io {
                path: top.clone(),
                source: e.into(),
            })?;
            let name = entry.file_name().to_string_lossy();
            if entry.file_type().is_dir() || is_temp_name(&name) || name == LOCK_FILE {
                continue;
            }
            visit(&entry)?;
        }
    }
    Ok(())
}

/// The paths of `files` and of every directory above them: a target file at
/// one of these is the migration's conflict to report, not a foreign file.
pub fn paths_and_parents(files: &[SourceFile]) -> std::collections::HashSet<String> {
    let mut set = std::collections::HashSet::new();
    for file in files {
        let mut path = file.rel.as_str();
        set.insert(path.to_string());
        while let Some((parent, _)) = path.rsplit_once('/') {
            if !set.insert(parent.to_string()) {
                break;
            }
            path = parent;
        }
    }
    set
}

/// The files under `target`'s datastore `directories` that are not among
/// `files` (temp files and the lock are not files of a datastore).
pub fn foreign_files(
    target: &Path,
    directories: &[String],
    files: &[SourceFile],
) -> Result<Vec<String>, MigrationError> {
    let ours = paths_and_parents(files);
    let mut foreign = Vec::new();
    for_each_datastore_entry(target, directories, |entry| {
        let rel = entry
            .path()
            .strip_prefix(target)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .into_owned();
        if !ours.contains(rel.as_str()) {
            foreign.push(rel);
        }
        Ok(())
    })?;
    Ok(foreign)
}

/// Checks that `target` exists or can be created, is a directory, and is writable.
pub fn prepare_target(target: &Path) -> Result<(), MigrationError> {
    let fail = |what| {
        move |source| MigrationError::Target {
            path: target.to_path_buf(),
            what,
            source,
        }
    };
    if target.exists() && !target.is_dir() {
        return Err(MigrationError::TargetNotADirectory(target.to_path_buf()));
    }
    fs::create_dir_all(target).map_err(fail("cannot create it"))?;
    let probe = crate::infrastructure::atomic_file::temp_path_for(&target.join("probe"));
    fs::write(&probe, b"probe").map_err(fail("not writable"))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Copies `files` under `target`, verifying each; stops before any copy when
/// the target holds a different file at any of their paths.
pub fn copy_verified(
    files: Vec<SourceFile>,
    target: &Path,
    fence: &LeaseFence,
) -> Result<MigrationReport, MigrationError> {
    let mut conflicts = Vec::new();
    let mut to_copy = Vec::new();
    let mut report = MigrationReport::default();
    for file in files {
        let dest = file.rel.under(target);
        if blocked_by_non_directory(target, &dest) {
            conflicts.push(file.rel.to_string());
            continue;
        }
        match fs::symlink_metadata(&dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => to_copy.push(file),
            Err(e) => return Err(io_err(&dest)(e)),
            Ok(meta) if meta.is_file() => {
                let (sha, size) = sha256_file(&dest).map_err(io_err(&dest))?;
                if sha == file.digest.sha256 && size == file.digest.size {
                    report.already_present += 1;
                    report.record(file);
                } else {
                    conflicts.push(file.rel.to_string());
                }
            }
            Ok(_) => conflicts.push(file.rel.to_string()),
        }
    }
    if !conflicts.is_empty() {
        return Err(MigrationError::Conflicts(conflicts));
    }
    for file in to_copy {
        fence.check()?;
        let dest = file.rel.under(target);
        let mut source = File::open(&file.path).map_err(io_err(&file.path))?;
        let mtime = source.metadata().and_then(|m| m.modified()).ok();
        let mut reader = HashingReader::new(&mut source);
        write_atomic_from(&dest, &mut reader).map_err(io_err(&dest))?;
        let (read_sha, _) = reader.finish();
        if read_sha != file.digest.sha256 {
            return Err(MigrationError::Source {
                path: file.path.clone(),
                reason: "changed while it was being copied".into(),
            });
        }
        if let Some(mtime) = mtime {
            // Keep mtimes so change detection does not see every file as new.
            let _ = File::options()
                .write(true)
                .open(&dest)
                .and_then(|f| f.set_modified(mtime));
        }
        let (sha, size) = sha256_file(&dest).map_err(io_err(&dest))?;
        if sha != file.digest.sha256 || size != file.digest.size {
            return Err(MigrationError::Verify {
                path: dest,
                reason: format!(
                    "expected {} bytes sha256 {}, found {size} bytes sha256 {sha}",
                    file.digest.size, file.digest.sha256
                ),
            });
        }
        report.record(file);
    }
    Ok(report)
}

/// Whether something that is not a directory sits where a parent directory
/// of `dest` (below `target`) must go.
fn blocked_by_non_directory(target: &Path, dest: &Path) -> bool {
    let mut dir = dest.parent();
    while let Some(d) = dir {
        if d == target || !d.starts_with(target) {
            return false;
        }
        if let Ok(meta) = fs::symlink_metadata(d) {
            if !meta.is_dir() {
                return true;
            }
        }
        dir = d.parent();
    }
    false
}

impl MigrationReport {
    /// Counts `file` as migrated.
    pub fn record(&mut self, file: SourceFile) {
        self.files += 1;
        self.bytes += file.digest.size;
        let dir = file.rel.top_dir().to_string();
        if !self.directories.contains(&dir) {
            self.directories.push(dir);
            self.directories.sort();
        }
        self.migrated.push(file);
    }
}

/// Removes the migrated source files (unchanged since they were hashed) and
/// the directories they leave empty.
pub fn remove_sources(report: &MigrationReport, source_root: &Path) -> Result<(), MigrationError> {
    let tops: Vec<PathBuf> = report
        .directories
        .iter()
        .map(|d| source_root.join(d))
        .collect();
    for file in &report.migrated {
        match fs::remove_file(&file.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&file.path)(e)),
        }
        prune_empty_parents(&file.path, &tops);
    }
    for top in &tops {
        let _ = fs::remove_dir(top);
    }
    Ok(())
}
