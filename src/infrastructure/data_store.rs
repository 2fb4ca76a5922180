//! Versioned data items in the datastore's `data/` directory.
//!
//! Layout: item `app/config` keeps version N as
//! `data/app/config/@versions/N.bin` (content) and `N.json` (metadata: size,
//! sha256, time). `@` cannot occur in item names, so an item's versions never
//! collide with a child item. The metadata file is written last and is the
//! commit point: a version without it does not exist. Every version is
//! immutable once written, so readers need no lock.

use crate::domain::data_read::VERSIONS_DIR;
use crate::domain::item_name::ItemName;
use crate::domain::path_resolver::DatastorePathResolver;
use crate::domain::relative_path::SafeRelativePath;
use crate::domain::sha256::Sha256;
use crate::infrastructure::atomic_file::{is_temp_name, temp_path_for, write_atomic, TEMP_MARKER};
use crate::infrastructure::audit::{self, AuditEntry, AuditFile};
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::hashing::HashingReader;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Data-item failures.
#[derive(Debug, Error)]
pub enum DataError {
    /// No such item.
    #[error("data item '{0}' not found")]
    NotFound(String),
    /// No such version of an item.
    #[error("data item '{name}' has no version {version}")]
    VersionNotFound {
        /// The item.
        name: String,
        /// The missing version.
        version: u64,
    },
    /// A metadata file cannot be parsed.
    #[error("corrupt data record {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The lock was lost before a write.
    #[error(transparent)]
    Lock(#[from] crate::domain::lock::LockError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Metadata of one stored version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VersionMeta {
    /// The item name.
    pub name: String,
    /// Version number, from 1.
    pub version: u64,
    /// Content size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: Sha256,
    /// When the version was written.
    pub created_at: DateTime<Utc>,
}

/// One line of `data list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemSummary {
    /// The item name.
    pub name: String,
    /// Its newest version.
    pub latest_version: u64,
    /// Size of the newest version.
    pub size: u64,
    /// When the newest version was written.
    pub updated_at: DateTime<Utc>,
}

/// Data items stored under a path resolver.
pub struct DataStore<'a> {
    resolver: &'a DatastorePathResolver,
    audit_file: AuditFile,
}

impl<'a> DataStore<'a> {
    /// Items stored where `resolver` says.
    pub fn new(resolver: &'a DatastorePathResolver) -> Self {
        Self {
            resolver,
            audit_file: AuditFile::Daily,
        }
    }

    /// The same items, their changes audited to `file`.
    pub fn auditing_to(mut self, file: AuditFile) -> Self {
        self.audit_file = file;
        self
    }

    fn versions_dir(&self, name: &ItemName) -> PathBuf {
        // An item name is a safe relative path, so this one is too.
        let rel = SafeRelativePath::parse(&format!("data/{}/{VERSIONS_DIR}", name.as_str()))
            .unwrap_or_else(|_| name.as_path().clone());
        self.resolver.resolve(&rel)
    }

    /// Stores `content` as the next version of `name`.
    pub fn put(
        &self,
        name: &ItemName,
        content: &mut dyn Read,
        fence: &LeaseFence,
        actor: &str,
    ) -> Result<VersionMeta, DataError> {
        let dir = self.versions_dir(name);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // Stream the content into a temp file first: nothing is visible until
        // the metadata file lands.
        let staged = temp_path_for(&dir.join("content"));
        let (sha256, size) = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staged)?;
            let mut reader = HashingReader::new(content);
            io::copy(&mut reader, &mut file)?;
            file.flush()?;
            file.sync_all()?;
            Ok(reader.finish())
        })()
        .map_err(|e| {
            let _ = fs::remove_file(&staged);
            DataError::Io {
                path: staged.clone(),
                source: e,
            }
        })?;
        let version = self.version_numbers(&dir)?.last().copied().unwrap_or(0) + 1;
        let meta = VersionMeta {
            name: name.to_string(),
            version,
            size,
            sha256,
            created_at: Utc::now(),
        };
        if let Err(lost) = fence.check() {
            let _ = fs::remove_file(&staged);
            return Err(lost.into());
        }
        let content_path = dir.join(format!("{version}.bin"));
        fs::rename(&staged, &content_path).map_err(io_err(&content_path))?;
        let meta_path = dir.join(format!("{version}.json"));
        let meta_bytes = serde_json::to_vec_pretty(&meta).map_err(|e| DataError::Corrupt {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&meta_path, &meta_bytes).map_err(io_err(&meta_path))?;
        self.audit("put", name, Some(version), actor)?;
        Ok(meta)
    }

    /// The metadata and content path of a version (the newest by default).
    pub fn get(
        &self,
        name: &ItemName,
        version: Option<u64>,
    ) -> Result<(VersionMeta, PathBuf), DataError> {
        let dir = self.versions_dir(name);
        let numbers = self.version_numbers(&dir)?;
        let chosen = match version {
            Some(v) if numbers.contains(&v) => v,
            Some(v) => {
                if numbers.is_empty() {
                    return Err(DataError::NotFound(name.to_string()));
                }
                return Err(DataError::VersionNotFound {
                    name: name.to_string(),
                    version: v,
                });
            }
            None => *numbers
                .last()
                .ok_or_else(|| DataError::NotFound(name.to_string()))?,
        };
        let meta = read_meta(&dir.join(format!("{chosen}.json"))).map_err(|e| removed(e, name))?;
        Ok((meta, dir.join(format!("{chosen}.bin"))))
    }

    /// Every version of `name`, oldest first.
    pub fn versions(&self, name: &ItemName) -> Result<Vec<VersionMeta>, DataError> {
        let dir = self.versions_dir(name);
        let numbers = self.version_numbers(&dir)?;
        if numbers.is_empty() {
            return Err(DataError::NotFound(name.to_string()));
        }
        numbers
            .iter()
            .map(|n| read_meta(&dir.join(format!("{n}.json"))).map_err(|e| removed(e, name)))
            .collect()
    }

    /// Every item with its newest version, sorted by name.
    pub fn list(&self) -> Result<Vec<ItemSummary>, DataError> {
        let mut items = Vec::new();
        for root in self.resolver.roots_for("data") {
            if !root.is_dir() {
                continue;
            }
            for entry in walkdir::WalkDir::new(&root).follow_links(false) {
                let entry = match entry {
                    Ok(entry) => entry,
                    // Removed by a concurrent `rm` while the walk passed.
                    Err(e)
                        if e.io_error()
                            .is_some_and(|io| io.kind() == io::ErrorKind::NotFound) =>
                    {
                        continue
                    }
                    Err(e) => {
                        return Err(DataError::Io {
                            path: root.clone(),
                            source: e.into(),
                        })
                    }
                };
                if !entry.file_type().is_dir() || entry.file_name() != VERSIONS_DIR {
                    continue;
                }
                let Some(item_dir) = entry.path().parent() else {
                    continue;
                };
                let Some(rel) = SafeRelativePath::between(&root, item_dir) else {
                    continue;
                };
                let name = rel.to_string();
                // Only count items that really live here: a root that is not
                // where the resolver puts this item holds a stale leftover.
                let Ok(item) = ItemName::parse(&name) else {
                    continue;
                };
                if self.versions_dir(&item) != entry.path() {
                    continue;
                }
                let Some(latest) = self.version_numbers(entry.path())?.last().copied() else {
                    continue;
                };
                let meta = match read_meta(&entry.path().join(format!("{latest}.json"))) {
                    Ok(meta) => meta,
                    // Readers take no lock: an item removed meanwhile is not listed.
                    Err(DataError::Io { source, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                };
                items.push(ItemSummary {
                    name,
                    latest_version: meta.version,
                    size: meta.size,
                    updated_at: meta.created_at,
                });
            }
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
        items.dedup_by(|a, b| a.name == b.name);
        Ok(items)
    }

    /// Removes every version of `name`; returns how many there were.
    pub fn remove(
        &self,
        name: &ItemName,
        fence: &LeaseFence,
        actor: &str,
    ) -> Result<u64, DataError> {
        let dir = self.versions_dir(name);
        let count = self.version_numbers(&dir)?.len() as u64;
        if count == 0 {
            return Err(DataError::NotFound(name.to_string()));
        }
        fence.check()?;
        // Rename first so the item disappears at once, then delete at leisure.
        let doomed = dir.with_file_name(format!("{VERSIONS_DIR}{TEMP_MARKER}rm"));
        let _ = fs::remove_dir_all(&doomed);
        fs::rename(&dir, &doomed).map_err(io_err(&dir))?;
        fs::remove_dir_all(&doomed).map_err(io_err(&doomed))?;
        prune_empty_parents(&dir, &self.resolver.roots_for("data"));
        self.audit("rm", name, None, actor)?;
        Ok(count)
    }

    fn audit(
        &self,
        action: &str,
        name: &ItemName,
        version: Option<u64>,
        actor: &str,
    ) -> Result<(), DataError> {
        let entry = AuditEntry {
            time: Utc::now().to_rfc3339(),
            action,
            name: name.as_str(),
            version,
            actor,
        };
        audit::append(self.resolver, &self.audit_file, &entry).map_err(|source| DataError::Io {
            path: self.resolver.datastore_root().join("audit"),
            source,
        })
    }

    /// Committed version numbers in `dir`, ascending.
    fn version_numbers(&self, dir: &Path) -> Result<Vec<u64>, DataError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(dir)(e)),
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp_name(&name) {
                continue;
            }
            if let Some(n) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }
}

/// A metadata file that vanished while it was being read: the item was
/// removed meanwhile (readers take no lock), so it is not found.
fn removed(e: DataError, name: &ItemName) -> DataError {
    match e {
        DataError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            DataError::NotFound(name.to_string())
        }
        other => other,
    }
}

fn read_meta(path: &Path) -> Result<VersionMeta, DataError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| DataError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Removes now-empty directories from `start` up to (not including) a root.
pub fn prune_empty_parents(start: &Path, roots: &[PathBuf]) {
    let mut current = start.parent().map(Path::to_path_buf);
    while let Some(dir) = current {
        if roots.iter().any(|r| r == &dir) || fs::remove_dir(&dir).is_err() {
            break;
        }
        current = dir.parent().map(Path::to_path_buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::path_resolver::DATASTORE_DIRS;
    use crate::domain::pattern_matcher::ExcludeMatcher;

    /// Readers take no lock on a filesystem datastore: a list racing puts and
    /// removals never fails, it only lists or omits the items being changed.
    #[test]
    fn a_list_racing_removals_never_fails() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = DatastorePathResolver::new(
            dir.path().join("store"),
            dir.path().join("local"),
            DATASTORE_DIRS.iter().map(|d| d.to_string()).collect(),
            ExcludeMatcher::empty(),
        );
        let store = DataStore::new(&resolver);
        let fence = LeaseFence::new(
            std::time::Duration::from_secs(3600),
            crate::domain::lease_clock::now(),
        );
        let keep = ItemName::parse("keep").unwrap();
        store.put(&keep, &mut &b"k"[..], &fence, "t").unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // One writer, as the lock allows; deep names, so `rm` prunes the
            // parents the walk may be entering. `done` is set even if it panics.
            s.spawn(|| {
                struct Done<'a>(&'a std::sync::atomic::AtomicBool);
                impl Drop for Done<'_> {
                    fn drop(&mut self) {
                        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                let _done = Done(&done);
                for round in 0..600 {
                    let name = format!("churn/{}/a/b", round % 5);
                    let name = ItemName::parse(&name).unwrap();
                    store.put(&name, &mut &b"x"[..], &fence, "t").unwrap();
                    store.remove(&name, &fence, "t").unwrap();
                }
            });
            let mut lists = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || lists == 0 {
                let items = store.list().expect("a list never fails on a concurrent rm");
                assert!(items.iter().any(|i| i.name == "keep"));
                for name in (0..5).map(|i| format!("churn/{i}/a/b")) {
                    let item = ItemName::parse(&name).unwrap();
                    match store.get(&item, None) {
                        Ok(_) | Err(DataError::NotFound(_)) => {}
                        Err(e) => panic!("get {name} racing rm: {e}"),
                    }
                }
                lists += 1;
            }
        });
    }
}
