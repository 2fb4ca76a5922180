//! Pull and push between the local cache and the bucket, driven by the remote
//! index.
//!
//! Pull: one conditional GET of the index (`If-None-Match` on the ETag last
//! seen); 304 means nothing to do. Otherwise download every file whose remote
//! hash differs from what we last agreed on (content, not size), verify its
//! SHA-256, rename it into place; delete local files the index no longer lists.
//! Push: one stat walk; only files whose size or mtime moved are hashed; upload
//! what changed, delete remote objects of deleted files, then write the index
//! with `If-Match` on the ETag we pulled — listing only what really reached the
//! bucket. A failed upload stays dirty and is retried on the next push.

use crate::domain::path_resolver::DatastorePathResolver;
use crate::domain::relative_path::SafeRelativePath;
use crate::domain::sync_index::{object_key, IndexEntry, IndexError, RemoteIndex, INDEX_KEY};
use crate::infrastructure::atomic_file::temp_path_for;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::hashing::{
    digest_file, digest_file_off_runtime, CheckKind, Checked, FileDigest,
};
use crate::infrastructure::s3::cache::{mtime_ns, safe_cache_path, SyncState, SyncedFile};
use crate::infrastructure::s3::store::{datastore_objects, Fetched, ObjectStore, StoreError};
use futures::stream::{self, StreamExt};
use indicatif::ProgressBar;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

mod conflicts;
mod push;
mod repair;
mod scan;

pub use conflicts::{list_conflicts, ConflictCopy, CONFLICTS_DIR};
pub use repair::RepairReport;
use scan::compare_with_state;
pub use scan::Unsyncable;

/// Default number of concurrent transfers.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Sync failures.
#[derive(Debug, Error)]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The remote index is unusable.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A downloaded object does not match the index.
    #[error("{key}: downloaded content does not match the index (expected sha256 {expected}, got {actual}); the object changed without the lock: retry, and if it persists run 'swamp datastore repair' on a machine whose cache holds the indexed content")]
    Integrity {
        /// Object key.
        key: String,
        /// Hash in the index.
        expected: String,
        /// Hash of what arrived.
        actual: String,
    },
    /// Objects without an index.
    #[error("{remote} holds {count} objects (e.g. {example}) but no index; swamp will not take it for empty, which would overwrite them and make other machines delete their copies: run 'swamp datastore repair' to rebuild the index from the objects (or restore .datastore-index.json from a bucket version or a backup), then rerun")]
    Unindexed {
        /// `s3:bucket/prefix`.
        remote: String,
        /// How many objects.
        count: usize,
        /// One of their paths.
        example: String,
    },
    /// The index lists an object the bucket does not hold.
    #[error("{key} is listed in the remote index but missing from the bucket: the bucket lost it (swamp unlists an object before deleting it), so nothing was deleted here; run 'swamp datastore repair' on a machine whose cache holds it (it re-uploads it), or 'swamp datastore repair --accept-bucket' to unlist it")]
    MissingObject {
        /// Object key.
        key: String,
    },
    /// Local I/O failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Some transfers failed; the rest were recorded.
    #[error("sync incomplete: {} of the transfers failed (they are retried next time): {}", .0.len(), .0.iter().take(3).cloned().collect::<Vec<_>>().join("; "))]
    Incomplete(Vec<String>),
    /// The cache holds unpushed changes of another bucket/prefix.
    #[error("the cache {cache} holds unpushed changes for {other}; push them first (SWAMP_DATASTORE={spec} swamp datastore sync --push) or delete the cache directory")]
    ForeignCache {
        /// The cache directory.
        cache: PathBuf,
        /// The remote the cache belongs to.
        other: String,
        /// That remote as a SWAMP_DATASTORE value.
        spec: String,
    },
    /// The cache has not pulled the remote's latest changes.
    #[error("{0} has changes this cache has not pulled; run 'swamp datastore sync' (pull, then push) instead of a push alone")]
    Behind(String),
    /// The remote index changed under us.
    #[error("the remote index was changed by another writer during this command ({0}); run the command again")]
    IndexConflict(String),
    /// The index would list a path as a file and as a directory.
    #[error("'{file}' would be both a file and a directory ('{nested}') in the remote index, which no machine could pull; rename or remove one of them (one is outside this machine's directories/exclude) and rerun")]
    PathConflict {
        /// The path listed as a file.
        file: String,
        /// A path below it.
        nested: String,
    },
    /// The prefix belongs to another repo.
    #[error(transparent)]
    ForeignRepo(#[from] crate::domain::sync_index::ForeignRepo),
    /// The lock was lost.
    #[error(transparent)]
    Lock(#[from] crate::domain::lock::LockError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
    move |e| SyncError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// What a pull or push did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// Files downloaded.
    pub downloaded: u64,
    /// Bytes downloaded.
    pub downloaded_bytes: u64,
    /// Local files deleted because the remote no longer has them.
    pub deleted_local: u64,
    /// Files uploaded.
    pub uploaded: u64,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
    /// Remote objects deleted.
    pub deleted_remote: u64,
    /// Local changes moved aside because the remote changed the same path.
    pub conflicts: Vec<ConflictCopy>,
    /// Cache entries a push could not sync (symlinks, odd names), with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsyncable: Vec<Unsyncable>,
}

impl SyncReport {
    fn add(&mut self, other: &SyncReport) {
        self.downloaded += other.downloaded;
        self.downloaded_bytes += other.downloaded_bytes;
        self.deleted_local += other.deleted_local;
        self.uploaded += other.uploaded;
        self.uploaded_bytes += other.uploaded_bytes;
        self.deleted_remote += other.deleted_remote;
        self.conflicts.extend(other.conflicts.iter().cloned());
        self.unsyncable.extend(other.unsyncable.iter().cloned());
    }

    /// Merges two reports.
    pub fn merged(mut self, other: &SyncReport) -> Self {
        self.add(other);
        self
    }
}

/// How one download ended.
enum Arrival {
    /// The file is in place.
    Landed(SyncedFile),
}

/// Syncs one cache directory with one bucket prefix.
pub struct CacheSync {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    resolver: DatastorePathResolver,
    concurrency: usize,
    progress: Option<ProgressBar>,
    /// Set once a pull in this process brought the cache up to the remote index.
    current: std::sync::atomic::AtomicBool,
    /// The sync state as last loaded or saved, so one command reads the file
    /// once (it lists every file: 15 MB for 100 000 files).
    state: std::sync::Mutex<Option<SyncState>>,
    /// This repo's repoId: recorded in every index written, and an index
    /// that records another is refused.
    owner: Option<String>,
}

impl CacheSync {
    /// A sync of `resolver`'s datastore root (the cache) with `prefix` in `store`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: String,
        resolver: DatastorePathResolver,
        concurrency: usize,
    ) -> Self {
        Self {
            store,
            prefix,
            resolver,
            concurrency: concurrency.max(1),
            progress: None,
            current: std::sync::atomic::AtomicBool::new(false),
            state: std::sync::Mutex::new(None),
            owner: None,
        }
    }

    /// Makes this sync act for the repo `repo_id` (see `owner`).
    pub fn owned_by(mut self, repo_id: String) -> Self {
        self.owner = Some(repo_id);
        self
    }

    /// Shows transfers on `bar`.
    pub fn with_progress(mut self, bar: ProgressBar) -> Self {
        self.progress = Some(bar);
        self
    }

    fn cache(&self) -> &Path {
        self.resolver.datastore_root()
    }

    fn remote_name(&self) -> String {
        self.store.url(&self.prefix)
    }

    fn key(&self, rel: &str) -> String {
        object_key(&self.prefix, rel)
    }

    fn save(&self, state: &SyncState) -> Result<(), SyncError> {
        state.save(self.cache()).map_err(io_err(self.cache()))
    }

    /// The current sync state: the one this process holds, else the file.
    fn take_state(&self) -> SyncState {
        self.state
            .lock()
            .ok()
            .and_then(|mut held| held.take())
            .unwrap_or_else(|| SyncState::load(self.cache(), &self.remote_name()))
    }

    /// Keeps `state` (already saved, or unchanged) for the next step.
    fn keep_state(&self, state: SyncState) {
        if let Ok(mut held) = self.state.lock() {
            *held = Some(state);
        }
    }

    fn start_progress(&self, what: &str, total: u64) {
        if let Some(bar) = &self.progress {
            bar.set_length(total);
            bar.set_position(0);
            bar.set_message(what.to_string());
        }
    }

    fn tick(&self) {
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
    }

    /// A cache last synced with another remote is cleared before use, unless
    /// it holds changes that never reached that remote.
    fn adopt_cache(&self) -> Result<(), SyncError> {
        let Some(previous) = SyncState::load_raw(self.cache()) else {
            return Ok(());
        };
        if previous.remote == self.remote_name() {
            self.keep_state(previous);
            return Ok(());
        }
        let local = self.scan()?.files;
        let (unpushed, _) = compare_with_state(&local, &previous.files);
        if !unpushed.is_empty() {
            let spec = previous
                .remote
                .strip_prefix("s3://")
                .map(|r| format!("s3:{}", r.trim_end_matches('/')))
                .unwrap_or_else(|| previous.remote.clone());
            return Err(SyncError::ForeignCache {
                cache: self.cache().to_path_buf(),
                other: previous.remote,
                spec,
            });
        }
        for rel in local.keys() {
            let path = self.cache().join(rel);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        let _ = std::fs::remove_file(self.cache().join(super::cache::STATE_FILE));
        Ok(())
    }

    /// Brings the cache up to date with the bucket.
    pub async fn pull(&self, fence: &LeaseFence) -> Result<SyncReport, SyncError> {
        std::fs::create_dir_all(self.cache()).map_err(io_err(self.cache()))?;
        self.adopt_cache()?;
        let mut state = self.take_state();
        let index_key = self.key(INDEX_KEY);
        let (remote, etag) = match self
            .store
            .get_bytes(&index_key, state.index_etag.as_deref())
            .await
        {
            Ok(Fetched::NotModified) => {
                self.mark_current();
                self.keep_state(state);
                return Ok(SyncReport::default());
            }
            Ok(Fetched::Object(bytes, meta)) => {
                let remote = RemoteIndex::parse(&bytes)?;
                if let Some(ours) = &self.owner {
                    remote.check_owner(&self.remote_name(), ours)?;
                }
                (remote, Some(meta.etag))
            }
            Err(StoreError::NotFound(_)) => {
                // No index and no objects: nothing remote. Keep local files;
                // forgetting the agreed state makes the next push upload them
                // again. Objects without an index are refused, not emptied.
                self.refuse_unindexed_objects().await?;
                if state.index_etag.is_some() || !state.files.is_empty() {
                    state.index_etag = None;
                    state.generation = 0;
                    state.files.clear();
                    state.foreign.clear();
                    self.save(&state)?;
                }
                self.mark_current();
                self.keep_state(state);
                return Ok(SyncReport::default());
            }
            Err(e) => return Err(e.into()),
        };
        let mut report = SyncReport::default();
        let mut wanted = Vec::new();
        // What this machine's settings leave out is another machine's:
        // remembered, carried into our index writes, never downloaded.
        state.foreign.clear();
        state.files.retain(|rel, _| self.owns(rel));
        for (rel_text, entry) in &remote.files {
            let rel = SafeRelativePath::parse(rel_text)
                .map_err(|e| SyncError::Index(IndexError::UnsafeKey(e.to_string())))?;
            if !self.resolver.is_datastore_path(&rel) {
                state.foreign.insert(rel_text.clone(), entry.clone());
                continue;
            }
            if let Some(agreed) = state
                .files
                .get_mut(rel_text)
                .filter(|f| f.sha256 == entry.sha256)
            {
                // Same content; keep the index's part checksums (an index
                // written by an older swamp may lack them) for the next push.
                agreed.parts.clone_from(&entry.parts);
                continue;
            }
            // A link on the way is not followed (`clear_the_way` moves it aside).
            let reachable = safe_cache_path(self.cache(), &rel).is_ok();
            let path = rel.under(self.cache());
            // A local copy with the same content (e.g. left by a migration) needs no download.
            if let Some(meta) = std::fs::symlink_metadata(&path).ok().filter(|_| reachable) {
                if meta.is_file() && meta.len() == entry.size {
                    if let Ok(digest) = digest_file_off_runtime(path.clone()).await {
                        if digest.sha256 == entry.sha256 {
                            state.files.insert(
                                rel_text.clone(),
                                SyncedFile {
                                    size: entry.size,
                                    mtime_ns: mtime_ns(&meta),
                                    sha256: digest.sha256,
                                    parts: digest.parts,
                                },
                            );
                            continue;
                        }
                    }
                }
            }
            wanted.push((rel, path, entry.clone()));
        }
        let gone: Vec<String> = state
            .files
            .keys()
            .filter(|k| !remote.files.contains_key(*k))
            .cloned()
            .collect();
        fence.check()?;
        for rel_text in gone {
            if let Ok(rel) = SafeRelativePath::parse(&rel_text) {
                // Replaced here by a directory or a link (or a link on its
                // way): the file the remote deleted is already gone, and
                // what took its place is not ours to remove.
                let path = match safe_cache_path(self.cache(), &rel) {
                    Ok(path) if !std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) => {
                        path
                    }
                    _ => {
                        state.files.remove(&rel_text);
                        continue;
                    }
                };
                if self
                    .changed_locally(&path, state.files.get(&rel_text))
                    .await
                {
                    self.keep_conflict(&rel, &path, "deleted", &mut report)?;
                    state.files.remove(&rel_text);
                    continue;
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => report.deleted_local += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
                crate::infrastructure::data_store::prune_empty_parents(
                    &path,
                    &[self.cache().to_path_buf()],
                );
            }
            state.files.remove(&rel_text);
        }
        let generation = remote.generation;
        for (rel, path, _) in &wanted {
            self.clear_the_way(rel, path, state.files.get(rel.as_str()), &mut report)
                .await?;
        }
        self.start_progress("pull", wanted.len() as u64);
        let results: Vec<_> = stream::iter(wanted)
            .map(|(rel, path, entry)| async move {
                let outcome = self.download(&rel, &path, &entry, generation).await;
                self.tick();
                (rel, entry, outcome)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut failures = Vec::new();
        for (rel, entry, outcome) in results {
            match outcome {
                Ok(Arrival::Landed(file)) => {
                    report.downloaded += 1;
                    report.downloaded_bytes += entry.size;
                    state.files.insert(rel.to_string(), file);
                }
                Err(e) => failures.push(e),
            }
        }
        if report.downloaded > 0 {
            // Make every downloaded file durable before the state claims it:
            // one syncfs instead of an fsync per file.
            self.sync_filesystem().await?;
        }
        if let Some(first) = failures.into_iter().next() {
            // Keep the old index ETag so the next pull fetches the index again.
            self.save(&state)?;
            return Err(first);
        }
        state.index_etag = etag;
        state.generation = generation;
        self.save(&state)?;
        self.mark_current();
        self.keep_state(state);
        Ok(report)
    }

    /// Fails when the prefix holds datastore objects but no index (the index
    /// lost to a lifecycle rule or a stray delete, files copied in by another
    /// tool): taking that for an empty datastore would overwrite the objects
    /// and make every other machine delete its copies. One LIST, only on the
    /// rare path where no index exists.
    pub(super) async fn refuse_unindexed_objects(&self) -> Result<(), SyncError> {
        let unindexed = datastore_objects(self.store.as_ref(), &self.prefix).await?;
        match unindexed.first() {
            None => Ok(()),
            Some(example) => Err(SyncError::Unindexed {
                remote: self.remote_name(),
                count: unindexed.len(),
                example: example.clone(),
            }),
        }
    }

    /// The index paths this machine's settings leave out (other machines'
    /// files), as of the last pull in this process.
    pub fn paths_left_out(&self) -> Vec<String> {
        self.state
            .lock()
            .ok()
            .and_then(|held| held.as_ref().map(|s| s.foreign.keys().cloned().collect()))
            .unwrap_or_default()
    }

    /// Whether the datastore path `rel` is within this machine's settings
    /// (its `directories`, minus its `exclude` patterns).
    fn owns(&self, rel: &str) -> bool {
        SafeRelativePath::parse(rel).is_ok_and(|rel| self.resolver.is_datastore_path(&rel))
    }

    /// Whether the local file at `path` holds a change no index recorded: it
    /// exists and either no agreed version is known or its content is not the
    /// agreed one (hashed only when size or mtime moved).
    async fn changed_locally(&self, path: &Path, agreed: Option<&SyncedFile>) -> bool {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return false;
        };
        if !meta.is_file() {
            return false;
        }
        let Some(agreed) = agreed else {
            return true;
        };
        if meta.len() == agreed.size && mtime_ns(&meta) == agreed.mtime_ns {
            return false;
        }
        match digest_file_off_runtime(path.to_path_buf()).await {
            Ok(digest) => digest.sha256 != agreed.sha256,
            // Unreadable: keep it rather than overwrite what we cannot check.
            Err(_) => true,
        }
    }

    /// Makes room for the download of `rel` at `path`: whatever local state
    /// no index recorded stands in the way — a file where the remote has a
    /// directory, a directory or link where it has a file, or a file changed
    /// since `agreed` — is moved aside as a conflict copy. A link where the
    /// remote has a directory is an error naming it.
    async fn clear_the_way(
        &self,
        rel: &SafeRelativePath,
        path: &Path,
        agreed: Option<&SyncedFile>,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let mut above = String::new();
        let segments: Vec<&str> = rel.as_str().split('/').collect();
        for segment in &segments[..segments.len() - 1] {
            if !above.is_empty() {
                above.push('/');
            }
            above.push_str(segment);
            let Ok(ancestor) = SafeRelativePath::parse(&above) else {
                return Ok(());
            };
            let at = ancestor.under(self.cache());
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.is_dir() => {}
                // Agreed files may sit behind a link: moving it aside would
                // make them look deleted, so the user decides.
                Ok(meta) if meta.is_symlink() => {
                    return Err(SyncError::Io {
                        path: at,
                        message: format!("a symlink where the remote has the directory of {rel}; swamp never writes through a symlink: move it out of the datastore and rerun"),
                    })
                }
                Ok(_) => return self.keep_conflict(&ancestor, &at, "directory", report),
                Err(_) => return Ok(()),
            }
        }
        let in_the_way = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() => self.changed_locally(path, agreed).await,
            Ok(_) => true,
            Err(_) => false,
        };
        if in_the_way {
            self.keep_conflict(rel, path, "changed", report)?;
        }
        Ok(())
    }

    /// Moves the local file at `path` aside as a conflict copy.
    fn keep_conflict(
        &self,
        rel: &SafeRelativePath,
        path: &Path,
        remote_did: &'static str,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let copy = conflicts::keep_as_conflict(self.cache(), rel, path).map_err(io_err(path))?;
        tracing::info!(path = %rel, copy = %copy.display(), "kept a local change as a conflict copy");
        report.conflicts.push(ConflictCopy {
            path: rel.to_string(),
            copy,
            remote: remote_did,
        });
        Ok(())
    }

    /// Flushes the cache's filesystem, on a blocking thread (it may wait on
    /// the disk for a while after a large pull).
    async fn sync_filesystem(&self) -> Result<(), SyncError> {
        let dir = std::fs::File::open(self.cache()).map_err(io_err(self.cache()))?;
        let synced = tokio::task::spawn_blocking(move || {
            use std::os::fd::AsRawFd;
            nix::unistd::syncfs(dir.as_raw_fd()).map_err(|e| format!("syncfs: {e}"))
        })
        .await
        .unwrap_or_else(|e| Err(format!("syncfs: {e}")));
        synced.map_err(|message| SyncError::Io {
            path: self.cache().to_path_buf(),
            message,
        })
    }

    fn mark_current(&self) {
        self.current
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn download(
        &self,
        rel: &SafeRelativePath,
        path: &Path,
        entry: &IndexEntry,
        index_generation: u64,
    ) -> Result<Arrival, SyncError> {
        let parent = path.parent().unwrap_or(self.cache());
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        // Re-check after creating directories: a symlink may not sit in the way.
        safe_cache_path(self.cache(), rel).map_err(io_err(path))?;
        let temp = temp_path_for(path);
        let key = self.key(rel.as_str());
        let check = match &entry.parts {
            Some(parts) => CheckKind::PartCrc32 {
                part_size: parts.part_size,
            },
            None => CheckKind::Sha256,
        };
        let got = match self.store.get_to_file(&key, &temp, check).await {
            Ok(got) => got,
            Err(StoreError::NotFound(_)) => {
                // Listed but gone. A push records deletions in the index
                // before it deletes objects, so this is damage (a stray
                // delete, a lifecycle rule), never a deletion to mirror: the
                // copies other caches hold are what can repair it.
                let _ = std::fs::remove_file(&temp);
                return Err(SyncError::MissingObject { key });
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e.into());
            }
        };
        let verified = {
            let (temp, entry) = (temp.clone(), entry.clone());
            // Off the runtime: a mismatch re-reads the whole file.
            tokio::task::spawn_blocking(move || {
                verify_download(&temp, &entry, got.size, got.checked)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        let digest = match verified {
            Ok(Verified::AsIndexed(digest)) => digest,
            Ok(Verified::Differs(digest)) => {
                // An object whose content matches the hash its uploader
                // recorded, uploaded for an index newer than this one, is a
                // push interrupted before its index write: take it. One
                // uploaded for this index or an older one is a late upload
                // of a push that lost the lock to the index's writer: the
                // index wins. Anything else is corruption or another tool.
                let interrupted_push = got.recorded_sha256.as_deref()
                    == Some(digest.sha256.as_str())
                    && got
                        .recorded_generation
                        .is_some_and(|g| g > index_generation);
                if !interrupted_push {
                    let _ = std::fs::remove_file(&temp);
                    return Err(SyncError::Integrity {
                        key,
                        expected: entry.sha256.clone(),
                        actual: digest.sha256,
                    });
                }
                tracing::warn!(%key, "object is newer than the index (interrupted push); taking the object");
                digest
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(io_err(&temp)(e));
            }
        };
        std::fs::rename(&temp, path).map_err(io_err(path))?;
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        Ok(Arrival::Landed(SyncedFile {
            size: digest.size,
            mtime_ns: mtime_ns(&meta),
            sha256: digest.sha256,
            parts: digest.parts,
        }))
    }
}

/// How a download compares with its index entry.
enum Verified {
    /// It is the content the entry describes.
    AsIndexed(FileDigest),
    /// It is other content, with this digest.
    Differs(FileDigest),
}

/// Compares a download in `temp` with `entry`, by what the download computed
/// (`checked`). Only content that differs is read again, for its SHA-256: the
/// rare path of an interrupted push or a corrupt object.
fn verify_download(
    temp: &Path,
    entry: &IndexEntry,
    size: u64,
    checked: Checked,
) -> std::io::Result<Verified> {
    let agrees = size == entry.size
        && match &checked {
            Checked::Sha256(sha) => *sha == entry.sha256,
            Checked::PartCrc32(parts) => entry.parts.as_ref() == Some(parts),
        };
    if agrees {
        return Ok(Verified::AsIndexed(FileDigest {
            size,
            sha256: entry.sha256.clone(),
            parts: match checked {
                Checked::PartCrc32(parts) => Some(parts),
                Checked::Sha256(_) => entry.parts.clone(),
            },
        }));
    }
    let digest = digest_file(temp)?;
    if digest.size == entry.size && digest.sha256 == entry.sha256 {
        // The content is right and the index's part checksums were not.
        return Ok(Verified::AsIndexed(digest));
    }
    Ok(Verified::Differs(digest))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::lease_clock;
    use crate::domain::path_resolver::DATASTORE_DIRS;
    use crate::domain::pattern_matcher::ExcludeMatcher;
    use crate::infrastructure::s3::memory_store::MemoryStore;
    use std::time::Duration;

    pub(super) fn fence() -> LeaseFence {
        LeaseFence::new(Duration::from_secs(3600), lease_clock::now())
    }

    pub(super) fn machine(store: &Arc<MemoryStore>, cache: &Path) -> CacheSync {
        let resolver = DatastorePathResolver::new(
            cache.to_path_buf(),
            cache.join("local"),
            DATASTORE_DIRS.iter().map(|d| d.to_string()).collect(),
            ExcludeMatcher::empty(),
        );
        CacheSync::new(store.clone(), "p".into(), resolver, 4)
    }

    pub(super) fn write(cache: &Path, rel: &str, content: &str) {
        let path = cache.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub(super) fn index(store: &MemoryStore) -> RemoteIndex {
        RemoteIndex::parse(&store.object("p/.datastore-index.json").unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_cache_of_another_prefix_is_cleared_unless_it_holds_unpushed_files() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let on_prefix = |prefix: &str| {
            let mut sync = machine(&store, dir.path());
            sync.prefix = prefix.into();
            sync
        };
        write(dir.path(), "outputs/f", "pushed");
        on_prefix("p").push(&fence()).await.unwrap();
        // Everything it holds reached "p": switching to "q" clears it.
        on_prefix("q").pull(&fence()).await.unwrap();
        assert!(!dir.path().join("outputs/f").exists());

        write(dir.path(), "outputs/g", "pushed");
        on_prefix("q").push(&fence()).await.unwrap();
        write(dir.path(), "outputs/g", "changed, never pushed");
        let err = on_prefix("p").pull(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::ForeignCache { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("outputs/g")).unwrap(),
            "changed, never pushed"
        );
    }

    #[tokio::test]
    async fn a_failed_upload_is_not_indexed_and_is_retried() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        write(dir.path(), "outputs/ok", "fine");
        write(dir.path(), "outputs/bad", "doomed");
        store
            .fail_uploads
            .lock()
            .unwrap()
            .insert("p/outputs/bad".into());
        let err = a.push(&fence()).await.unwrap_err();
        assert!(
            matches!(err, SyncError::Incomplete(ref f) if f.len() == 1),
            "{err}"
        );
        let idx = index(&store);
        assert!(idx.files.contains_key("outputs/ok"));
        assert!(
            !idx.files.contains_key("outputs/bad"),
            "index names a missing object"
        );
        store.fail_uploads.lock().unwrap().clear();
        let report = a.push(&fence()).await.unwrap();
        assert_eq!(report.uploaded, 1);
        assert!(index(&store).files.contains_key("outputs/bad"));
    }

    #[tokio::test]
    async fn same_size_rewrites_and_deletions_reach_another_cache() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (machine(&store, da.path()), machine(&store, db.path()));
        write(da.path(), "outputs/f", "AAAA");
        write(da.path(), "data/gone", "x");
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        b.pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(db.path().join("outputs/f")).unwrap(),
            "AAAA"
        );
        a.pull(&fence()).await.unwrap();
        // Same size, and force the same mtime: only the content differs.
        let before = std::fs::metadata(da.path().join("outputs/f"))
            .unwrap()
            .modified()
            .unwrap();
        write(da.path(), "outputs/f", "BBBB");
        std::fs::File::options()
            .write(true)
            .open(da.path().join("outputs/f"))
            .unwrap()
            .set_modified(before + Duration::from_secs(1))
            .unwrap();
        std::fs::remove_file(da.path().join("data/gone")).unwrap();
        a.push(&fence()).await.unwrap();
        b.pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(db.path().join("outputs/f")).unwrap(),
            "BBBB"
        );
        assert!(!db.path().join("data/gone").exists());
    }

    #[tokio::test]
    async fn an_unchanged_datastore_costs_one_request_to_pull_and_none_to_push() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        for i in 0..50 {
            write(dir.path(), &format!("outputs/d/f{i}"), "content");
        }
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        a.pull(&fence()).await.unwrap();
        let before = *store.requests.lock().unwrap();
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        assert_eq!(*store.requests.lock().unwrap() - before, 1);
    }

    #[tokio::test]
    async fn a_concurrently_rewritten_index_is_never_overwritten() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        write(dir.path(), "outputs/f", "one");
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        a.pull(&fence()).await.unwrap();
        // Another writer (without the lock) replaces the index.
        let foreign = RemoteIndex::empty();
        store.plant("p/.datastore-index.json", &foreign.to_json());
        write(dir.path(), "outputs/f", "two!");
        let err = a.push(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::IndexConflict(_)), "{err}");
        assert_eq!(index(&store), foreign);
    }

    #[tokio::test]
    async fn unsafe_index_keys_fail_before_touching_the_disk() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let a = machine(&store, &cache);
        store.plant(
            "p/.datastore-index.json",
            format!(
                r#"{{"format":1,"files":{{"../escape":{{"size":1,"sha256":"{}"}}}}}}"#,
                "a".repeat(64)
            )
            .as_bytes(),
        );
        store.plant("p/../escape", b"x");
        let err = a.pull(&fence()).await.unwrap_err();
        assert!(err.to_string().contains("unsafe path"), "{err}");
        assert!(!dir.path().join("escape").exists());
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_push_before_any_request() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        write(dir.path(), "outputs/f", "x");
        let expired = LeaseFence::new(Duration::from_millis(1), lease_clock::now());
        std::thread::sleep(Duration::from_millis(5));
        let before = *store.requests.lock().unwrap();
        assert!(matches!(a.push(&expired).await, Err(SyncError::Lock(_))));
        assert_eq!(*store.requests.lock().unwrap(), before);
        assert!(store.object("p/outputs/f").is_none());
    }

    #[tokio::test]
    async fn a_push_from_a_cache_behind_the_remote_touches_nothing() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(da.path(), "outputs/f", "one");
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        let b = machine(&store, db.path());
        b.pull(&fence()).await.unwrap();
        write(db.path(), "outputs/f", "two");
        b.push(&fence()).await.unwrap();
        // A (a new process: nothing pulled yet) has an unpushed change.
        let a = machine(&store, da.path());
        write(da.path(), "outputs/f", "three");
        let err = a.push(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::Behind(_)), "{err}");
        assert_eq!(store.object("p/outputs/f").unwrap(), b"two");
    }

    #[tokio::test]
    async fn an_interrupted_push_heals_on_the_next_pull() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(da.path(), "outputs/new", "v1");
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        // A push uploaded a newer object, then died before writing the index.
        let newer = da.path().join("outputs/new");
        std::fs::write(&newer, "v2!").unwrap();
        let digest = crate::infrastructure::hashing::digest_file(&newer).unwrap();
        let next = index(&store).generation + 1;
        store
            .put_file("p/outputs/new", &newer, &digest, next, None)
            .await
            .unwrap();
        let b = machine(&store, db.path());
        b.pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(db.path().join("outputs/new")).unwrap(),
            "v2!"
        );
        // Content that matches neither the index nor its uploader is refused.
        store.plant("p/outputs/new", b"evil");
        let c = tempfile::tempdir().unwrap();
        let err = machine(&store, c.path()).pull(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::Integrity { .. }), "{err}");
        assert!(!c.path().join("outputs/new").exists());
    }

    /// Finding 4: a push that lost the lock uploads late, after the taker
    /// wrote the same path and its index. Its object is complete and matches
    /// its recorded hash, but was uploaded for the index generation the
    /// taker wrote, not a newer one: the pull refuses it instead of "healing"
    /// to it, and repair from the taker's cache puts the indexed content back.
    #[tokio::test]
    async fn a_late_upload_of_a_push_that_lost_the_lock_never_wins_over_the_index() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (machine(&store, da.path()), machine(&store, db.path()));
        a.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/seed", "s");
        a.push(&fence()).await.unwrap();
        let pulled = index(&store).generation;
        // A, holding the lock, hashed its file and started uploading for
        // generation pulled+1; then it stalled and lost the lock.
        write(da.path(), "outputs/f", "A's, late");
        let late = da.path().join("outputs/f");
        let digest = crate::infrastructure::hashing::digest_file(&late).unwrap();
        // B took over, pulled the same index, wrote the path and its index.
        b.pull(&fence()).await.unwrap();
        write(db.path(), "outputs/f", "B's");
        b.push(&fence()).await.unwrap();
        assert_eq!(index(&store).generation, pulled + 1);
        // A's upload lands now.
        store
            .put_file("p/outputs/f", &late, &digest, pulled + 1, None)
            .await
            .unwrap();
        let dc = tempfile::tempdir().unwrap();
        let err = machine(&store, dc.path()).pull(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::Integrity { .. }), "{err}");
        assert!(err.to_string().contains("datastore repair"), "{err}");
        assert!(!dc.path().join("outputs/f").exists());
        // The taker's cache holds the indexed content: repair restores it.
        let report = machine(&store, db.path())
            .repair(&fence(), false)
            .await
            .unwrap();
        assert_eq!(report.restored, ["outputs/f"], "{report:?}");
        let c = machine(&store, dc.path());
        c.pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dc.path().join("outputs/f")).unwrap(),
            "B's"
        );
    }

    #[test]
    fn a_download_is_compared_by_what_it_computed() {
        use crate::domain::part_checksums::PartChecksums;
        use crate::infrastructure::hashing::sha256_bytes;
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("t");
        std::fs::write(&temp, b"0123456789").unwrap();
        let crcs = |data: &[u8]| PartChecksums {
            part_size: 4,
            crc32: data.chunks(4).map(crc32fast::hash).collect(),
        };
        let entry = IndexEntry {
            size: 10,
            sha256: sha256_bytes(b"0123456789"),
            parts: Some(crcs(b"0123456789")),
        };
        // Matching part CRCs: taken as the indexed content, without re-reading.
        let verdict =
            verify_download(&temp, &entry, 10, Checked::PartCrc32(crcs(b"0123456789"))).unwrap();
        assert!(
            matches!(verdict, Verified::AsIndexed(d) if d.sha256 == entry.sha256 && d.parts == entry.parts)
        );
        // A changed byte in one part: other content, with its real SHA-256.
        std::fs::write(&temp, b"0123456788").unwrap();
        let verdict =
            verify_download(&temp, &entry, 10, Checked::PartCrc32(crcs(b"0123456788"))).unwrap();
        assert!(matches!(verdict, Verified::Differs(d) if d.sha256 == sha256_bytes(b"0123456788")));
        // Wrong CRCs in the index but content that hashes right: the content wins.
        std::fs::write(&temp, b"0123456789").unwrap();
        let mut wrong = entry.clone();
        wrong.parts = Some(crcs(b"xxxxxxxxxx"));
        let verdict =
            verify_download(&temp, &wrong, 10, Checked::PartCrc32(crcs(b"0123456789"))).unwrap();
        assert!(matches!(verdict, Verified::AsIndexed(d) if d.sha256 == entry.sha256));
        // Entries without part CRCs compare by SHA-256, and the size counts too.
        let old = IndexEntry {
            parts: None,
            ..entry.clone()
        };
        let sha = Checked::Sha256(entry.sha256.clone());
        assert!(matches!(
            verify_download(&temp, &old, 10, sha.clone()).unwrap(),
            Verified::AsIndexed(_)
        ));
        std::fs::write(&temp, b"01234567890").unwrap();
        assert!(matches!(
            verify_download(&temp, &old, 11, sha).unwrap(),
            Verified::Differs(d) if d.size == 11
        ));
    }

    #[tokio::test]
    async fn a_large_file_travels_with_part_crcs_that_catch_a_changed_byte() {
        use crate::domain::part_checksums::PART_SIZE;
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let big: Vec<u8> = (0..PART_SIZE + 100).map(|i| (i % 251) as u8).collect();
        std::fs::create_dir_all(da.path().join("outputs")).unwrap();
        std::fs::write(da.path().join("outputs/big"), &big).unwrap();
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        let parts = index(&store).files["outputs/big"].parts.clone().unwrap();
        assert_eq!(parts.crc32.len(), 2);
        // Another machine pulls it, checked by the part CRCs, and records them
        // so its own pushes keep them in the index.
        let b = machine(&store, db.path());
        b.pull(&fence()).await.unwrap();
        assert!(std::fs::read(db.path().join("outputs/big")).unwrap() == big);
        write(db.path(), "outputs/small", "s");
        b.push(&fence()).await.unwrap();
        assert_eq!(index(&store).files["outputs/big"].parts, Some(parts));
        // One changed byte in the last part, planted without the lock, is refused.
        let mut evil = big.clone();
        evil[PART_SIZE as usize + 7] ^= 1;
        store.plant("p/outputs/big", &evil);
        let c = tempfile::tempdir().unwrap();
        let err = machine(&store, c.path()).pull(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::Integrity { .. }), "{err}");
        assert!(!c.path().join("outputs/big").exists());
    }

    /// Two caches of one bucket where `a` agreed on `outputs/f` = "base".
    async fn two_machines_agreed_on_base(
        store: &Arc<MemoryStore>,
    ) -> (tempfile::TempDir, CacheSync, tempfile::TempDir, CacheSync) {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (machine(store, da.path()), machine(store, db.path()));
        a.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/f", "base");
        a.push(&fence()).await.unwrap();
        b.pull(&fence()).await.unwrap();
        (da, a, db, b)
    }

    #[tokio::test]
    async fn a_local_change_meeting_a_remote_change_is_kept_as_a_conflict_copy() {
        let store = Arc::new(MemoryStore::default());
        let (da, a, db, b) = two_machines_agreed_on_base(&store).await;
        write(da.path(), "outputs/f", "theirs");
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        // b's change never reached the bucket (say its push failed).
        write(db.path(), "outputs/f", "mine, unpushed");
        let report = b.pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(db.path().join("outputs/f")).unwrap(),
            "theirs"
        );
        assert_eq!(report.conflicts.len(), 1);
        let c = &report.conflicts[0];
        assert_eq!((c.path.as_str(), c.remote), ("outputs/f", "changed"));
        assert_eq!(std::fs::read_to_string(&c.copy).unwrap(), "mine, unpushed");
        assert_eq!(list_conflicts(db.path()).len(), 1);
        // The copy is not synced: the next push sends nothing.
        assert_eq!(b.push(&fence()).await.unwrap().uploaded, 0);
    }

    #[tokio::test]
    async fn a_local_change_meeting_a_remote_deletion_is_kept_as_a_conflict_copy() {
        let store = Arc::new(MemoryStore::default());
        let (da, a, db, b) = two_machines_agreed_on_base(&store).await;
        std::fs::remove_file(da.path().join("outputs/f")).unwrap();
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        write(db.path(), "outputs/f", "mine, unpushed");
        let report = b.pull(&fence()).await.unwrap();
        assert!(!db.path().join("outputs/f").exists());
        assert_eq!(report.conflicts.len(), 1);
        assert_eq!(report.conflicts[0].remote, "deleted");
        assert_eq!(
            std::fs::read_to_string(&report.conflicts[0].copy).unwrap(),
            "mine, unpushed"
        );
    }

    #[tokio::test]
    async fn an_unchanged_local_file_simply_follows_the_remote() {
        let store = Arc::new(MemoryStore::default());
        let (da, a, db, b) = two_machines_agreed_on_base(&store).await;
        write(da.path(), "outputs/f", "theirs");
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        let report = b.pull(&fence()).await.unwrap();
        assert!(report.conflicts.is_empty());
        assert_eq!(
            std::fs::read_to_string(db.path().join("outputs/f")).unwrap(),
            "theirs"
        );
        assert!(list_conflicts(db.path()).is_empty());
    }

    /// An object the index lists but the bucket lost is damage, not a
    /// deletion: the pull fails and says so, and nothing is deleted anywhere.
    #[tokio::test]
    async fn a_listed_object_missing_from_the_bucket_is_an_error_not_a_deletion() {
        let store = Arc::new(MemoryStore::default());
        let (da, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/kept", "k");
        write(da.path(), "outputs/lost", "l");
        a.push(&fence()).await.unwrap();
        store.delete("p/outputs/lost", None).await.unwrap();
        let c = machine(&store, dc.path());
        let err = c.pull(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::MissingObject { .. }), "{err}");
        assert!(err.to_string().contains("outputs/lost"), "{err}");
        assert!(index(&store).files.contains_key("outputs/lost"));
        // The machine that holds it keeps it.
        a.pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(da.path().join("outputs/lost")).unwrap(),
            "l"
        );
    }

    /// A push records a deletion in the index before it deletes the object:
    /// when the index write is refused, no object is gone.
    #[tokio::test]
    async fn a_refused_index_write_deletes_no_object() {
        let store = Arc::new(MemoryStore::default());
        let da = tempfile::tempdir().unwrap();
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/f", "data");
        a.push(&fence()).await.unwrap();
        std::fs::remove_file(da.path().join("outputs/f")).unwrap();
        *store.put_refusals.lock().unwrap() = 1;
        let err = a.push(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::IndexConflict(_)), "{err}");
        assert!(index(&store).files.contains_key("outputs/f"));
        assert_eq!(store.object("p/outputs/f").unwrap(), b"data");
        // Once the index can be written, the deletion goes through.
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        a.push(&fence()).await.unwrap();
        assert!(!index(&store).files.contains_key("outputs/f"));
        assert!(store.object("p/outputs/f").is_none());
    }

    /// `machine` whose settings exclude `pattern`.
    fn machine_excluding(store: &Arc<MemoryStore>, cache: &Path, pattern: &str) -> CacheSync {
        let resolver = DatastorePathResolver::new(
            cache.to_path_buf(),
            cache.join("local"),
            DATASTORE_DIRS.iter().map(|d| d.to_string()).collect(),
            ExcludeMatcher::new(&[pattern.to_string()]).unwrap(),
        );
        CacheSync::new(store.clone(), "p".into(), resolver, 4)
    }

    /// A machine that excludes `logs/` (or narrowed its settings after
    /// agreeing on them) neither deletes nor drops other machines' files.
    #[tokio::test]
    async fn paths_outside_a_machines_settings_are_carried_not_deleted() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/x", "1");
        write(da.path(), "logs/y", "log");
        a.push(&fence()).await.unwrap();
        // Another machine that excludes logs/: pulls and pushes a change.
        let b = machine_excluding(&store, db.path(), "logs/");
        b.pull(&fence()).await.unwrap();
        assert!(!db.path().join("logs/y").exists(), "not downloaded");
        write(db.path(), "outputs/x", "2");
        b.push(&fence()).await.unwrap();
        assert!(index(&store).files.contains_key("logs/y"), "carried over");
        // The same machine, current with the remote, narrows its
        // `directories` after agreeing on logs/y: its scan no longer sees the
        // file, and its next pull has nothing new to tell it.
        a.pull(&fence()).await.unwrap();
        let narrowed = CacheSync::new(
            store.clone(),
            "p".into(),
            DatastorePathResolver::new(
                da.path().to_path_buf(),
                da.path().join("local"),
                vec!["outputs".to_string()],
                ExcludeMatcher::empty(),
            ),
            4,
        );
        narrowed.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/z", "3");
        narrowed.push(&fence()).await.unwrap();
        assert!(index(&store).files.contains_key("logs/y"), "not deleted");
        assert_eq!(store.object("p/logs/y").unwrap(), b"log");
        // And a machine with every directory still has it.
        let c = tempfile::tempdir().unwrap();
        machine(&store, c.path()).pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(c.path().join("logs/y")).unwrap(),
            "log"
        );
    }

    /// The first push records the repo; another repo's sync refuses the
    /// prefix and changes nothing, and an unowned index is adopted.
    #[tokio::test]
    async fn a_prefix_owned_by_another_repo_is_refused() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ours = "8d0f5f3e-9c1a-4a53-a0ab-2b1c3d4e5f60";
        let theirs = "1d0f5f3e-9c1a-4a53-a0ab-2b1c3d4e5f61";
        let a = machine(&store, da.path()).owned_by(ours.into());
        a.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/f", "ours");
        a.push(&fence()).await.unwrap();
        assert_eq!(index(&store).repo_id.as_deref(), Some(ours));
        let other = machine(&store, db.path()).owned_by(theirs.into());
        let err = other.pull(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::ForeignRepo(_)), "{err}");
        write(db.path(), "outputs/g", "theirs");
        let err = machine(&store, db.path())
            .owned_by(theirs.into())
            .push(&fence())
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::Behind(_)), "{err}");
        assert!(store.object("p/outputs/g").is_none());
        assert_eq!(index(&store).files.len(), 1);
        // An index from before owners were recorded is adopted by the next push.
        let mut unowned = index(&store);
        unowned.repo_id = None;
        store.plant("p/.datastore-index.json", &unowned.to_json());
        let c = tempfile::tempdir().unwrap();
        let third = machine(&store, c.path()).owned_by(theirs.into());
        third.pull(&fence()).await.unwrap();
        write(c.path(), "outputs/h", "adopted");
        third.push(&fence()).await.unwrap();
        assert_eq!(index(&store).repo_id.as_deref(), Some(theirs));
    }

    /// Objects without an index are not an empty datastore: pull and push
    /// both refuse, and the objects stay as they are.
    #[tokio::test]
    async fn objects_without_an_index_are_refused_not_taken_for_empty() {
        let store = Arc::new(MemoryStore::default());
        store.plant("p/outputs/x", b"someone's data");
        store.plant("p/.datastore.lock", b"{}");
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        let err = a.pull(&fence()).await.unwrap_err();
        assert!(
            matches!(err, SyncError::Unindexed { count: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("outputs/x"), "{err}");
        write(dir.path(), "outputs/x", "mine");
        let err = machine(&store, dir.path())
            .push(&fence())
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::Unindexed { .. }), "{err}");
        assert_eq!(store.object("p/outputs/x").unwrap(), b"someone's data");
        assert!(store.object("p/.datastore-index.json").is_none());
    }
}
