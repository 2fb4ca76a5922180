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
//!
//! Where things live: this module holds the shared types (`CacheSync`,
//! `SyncError`, `SyncReport`); `scan` the stat walk, `pull` and `push` the
//! two directions (the push's gated sends in `send`, its index write in
//! `index_write`), `verify` the download check, `conflicts` the conflict
//! copies, `repair` the index rebuild.

use crate::domain::path_resolver::DatastorePathResolver;
use crate::domain::relative_path::SafeRelativePath;
use crate::domain::sha256::Sha256;
use crate::domain::sync_index::{object_key, IndexError};
use crate::infrastructure::s3::cache::SyncState;
use crate::infrastructure::s3::index_store::{IndexIoError, IndexStore, LoadedIndex};
use crate::infrastructure::s3::scoped_records::IndexSeen;
use crate::infrastructure::s3::shared_state::{SharedState, SharedStateError};
use crate::infrastructure::s3::store::{datastore_objects, ObjectStore, StoreError};
use indicatif::ProgressBar;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

mod conflicts;
mod index_write;
mod pull;
mod push;
mod repair;
mod scan;
mod scoped;
mod send;
mod verify;

pub use conflicts::{list_conflicts, ConflictCopy, CONFLICTS_DIR};
pub use repair::RepairReport;
use scan::compare_with_state;
pub use scan::Unsyncable;

/// Makes the bar of one transfer phase (`"pull"` or `"push"`, its file
/// count); the caller decides whether and when it is drawn.
pub type TransferBars = Arc<dyn Fn(&'static str, u64) -> ProgressBar + Send + Sync>;

/// Default number of concurrent transfers: 64 pulled 2 000 small files
/// faster than 32 on SeaweedFS and s3s-fs, and 128 no faster (design doc).
pub const DEFAULT_CONCURRENCY: usize = 64;

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
        expected: Sha256,
        /// Hash of what arrived.
        actual: Sha256,
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
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A symlink in the cache stands where the remote has a directory.
    #[error("{}: a symlink where the remote has the directory of {rel}; swamp never writes through a symlink: move it out of the datastore and rerun", link.display())]
    SymlinkInTheWay {
        /// The symlink.
        link: PathBuf,
        /// The remote file below it.
        rel: String,
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
    /// A path inside a scoped writer's lock changed in the index meanwhile.
    #[error("{0} changed in the remote index while this command held the lock on it (a writer that ignored the lock, or a store whose LIST lags its writes); nothing of this command was committed and its files stay unpushed here: run 'swamp datastore sync' (it keeps this machine's version as a conflict copy; if it reports an object that does not match the index, 'swamp datastore repair' restores it), then rerun the command")]
    ScopeChanged(String),
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
    /// A read without the lock met a writer's changes in progress.
    #[error("{0} (read without the lock while another machine was writing)")]
    ChangedWhileReading(#[source] Box<SyncError>),
    /// The lock was lost.
    #[error(transparent)]
    Lock(#[from] crate::domain::lock::LockError),
    /// Another process of this machine syncs the cache with another remote.
    #[error(transparent)]
    CacheInUse(SharedStateError),
}

impl From<SharedStateError> for SyncError {
    fn from(e: SharedStateError) -> Self {
        match e {
            SharedStateError::Lock(e) => SyncError::Lock(e),
            SharedStateError::Io { path, source } => SyncError::Io { path, source },
            other @ SharedStateError::OtherRemote { .. } => SyncError::CacheInUse(other),
        }
    }
}

impl From<IndexIoError> for SyncError {
    fn from(e: IndexIoError) -> Self {
        match e {
            IndexIoError::Store(e) => SyncError::Store(e),
            IndexIoError::Index(e) => SyncError::Index(e),
            IndexIoError::Lock(e) => SyncError::Lock(e),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
    move |source| SyncError::Io {
        path: path.to_path_buf(),
        source,
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

/// Local changes a push would look at (`CacheSync::pending`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// Files new or changed by size or mtime (a push hashes them first).
    pub changed: usize,
    /// Agreed files no longer in the cache.
    pub deleted: usize,
    /// Entries that cannot sync (links, odd names).
    pub unsyncable: usize,
}

/// Syncs one cache directory with one bucket prefix.
pub struct CacheSync {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    resolver: DatastorePathResolver,
    concurrency: usize,
    progress: Option<ProgressBar>,
    /// Makes a bar per transfer phase (the guard's own pull and push).
    bars: Option<TransferBars>,
    /// The bar of the phase under way, finished when the phase ends.
    phase: std::sync::Mutex<Option<ProgressBar>>,
    /// Set once a pull in this process brought the cache up to the remote index.
    current: std::sync::atomic::AtomicBool,
    /// The sync state as last loaded or saved, so one command reads the file
    /// once (it lists every file: 15 MB for 100 000 files).
    state: std::sync::Mutex<Option<SyncState>>,
    /// This repo's repoId: recorded in every index written, and an index
    /// that records another is refused.
    owner: Option<String>,
    /// The index ETag the lock's acquisition listed (`scoped_records.rs`):
    /// a locked pull that finds it equal to the agreed one skips its GET.
    index_seen: Option<Arc<IndexSeen>>,
    /// The index a scoped pull read, with its ETag: the base of the scoped
    /// push's merging commit (`scoped.rs`).
    scoped_base: std::sync::Mutex<Option<LoadedIndex>>,
    /// Set when other scoped writers of this machine use the cache at the
    /// same time (`cache_lock.rs`, shared mode): the state is then loaded and
    /// saved merging with theirs, and nothing outside the scope is touched.
    shared: Option<SharedState>,
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
            bars: None,
            phase: std::sync::Mutex::new(None),
            current: std::sync::atomic::AtomicBool::new(false),
            state: std::sync::Mutex::new(None),
            owner: None,
            index_seen: None,
            scoped_base: std::sync::Mutex::new(None),
            shared: None,
        }
    }

    /// Makes this a scoped writer's sync of a cache it shares with other
    /// scoped writers of this machine; a save waits up to `timeout` for the
    /// state lock.
    pub(crate) fn sharing_cache(mut self, timeout: std::time::Duration) -> Self {
        self.shared = Some(SharedState::new(self.cache(), timeout));
        self
    }

    /// Lets a locked pull trust the index ETag the lock's listing saw.
    pub(crate) fn seeing_index(mut self, seen: Arc<IndexSeen>) -> Self {
        self.index_seen = Some(seen);
        self
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

    /// Shows each transfer phase on a bar `bars` makes (unless a fixed
    /// bar is set).
    pub(crate) fn with_transfer_bars(mut self, bars: Option<TransferBars>) -> Self {
        self.bars = bars;
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

    /// This prefix's index, with the shard cache in this cache.
    fn index_store(&self) -> IndexStore<'_> {
        IndexStore::new(self.store.as_ref(), &self.prefix).with_shard_cache(self.cache())
    }

    /// Saves `state`; in a shared cache merged with what the others saved
    /// meanwhile, which `state` then holds too.
    async fn save(&self, state: &mut SyncState) -> Result<(), SyncError> {
        match &self.shared {
            Some(shared) => Ok(shared.save(state).await?),
            None => state.save(self.cache()).map_err(io_err(self.cache())),
        }
    }

    /// The current sync state: the one this process holds, else the file.
    async fn take_state(&self) -> Result<SyncState, SyncError> {
        if let Some(held) = self.state.lock().ok().and_then(|mut held| held.take()) {
            return Ok(held);
        }
        let state = match &self.shared {
            Some(shared) => shared.load(&self.remote_name()).await?,
            None => SyncState::load(self.cache(), &self.remote_name()),
        };
        tracing::debug!(files = state.files.len(), "sync state loaded");
        Ok(state)
    }

    /// Keeps `state` (already saved, or unchanged) for the next step.
    fn keep_state(&self, state: SyncState) {
        if let Ok(mut held) = self.state.lock() {
            *held = Some(state);
        }
    }

    /// Starts a transfer phase of `total` files; its bar (if any) is
    /// finished when the returned guard drops.
    fn start_progress(&self, what: &'static str, total: u64) -> PhaseBar<'_> {
        if let Some(bar) = &self.progress {
            bar.set_length(total);
            bar.set_position(0);
            bar.set_message(what.to_string());
        } else if let (Some(make), true) = (&self.bars, total > 0) {
            let bar = make(what, total);
            if let Ok(mut phase) = self.phase.lock() {
                *phase = Some(bar);
            }
        }
        PhaseBar(self)
    }

    fn tick(&self) {
        if let Some(bar) = &self.progress {
            bar.inc(1);
        } else if let Some(bar) = self.phase.lock().ok().as_ref().and_then(|p| p.as_ref()) {
            bar.inc(1);
        }
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

    /// What a push would look at now, without hashing: files added or
    /// changed (by size or mtime) since they were last agreed, and agreed
    /// files gone from the cache. Reads only; takes no lock.
    pub fn pending(&self) -> Result<Pending, SyncError> {
        let state = SyncState::load(self.cache(), &self.remote_name());
        let scan = self.scan_readonly()?;
        let (changed, mut deleted) = compare_with_state(&scan.files, &state.files);
        deleted.retain(|rel| self.owns(rel) && !scan.blocks(rel));
        Ok(Pending {
            changed: changed.len(),
            deleted: deleted.len(),
            unsyncable: scan.unsyncable.len(),
        })
    }

    /// Loads the state of a shared cache (`sharing_cache`) for this command:
    /// `false` when it belongs to another remote, which only an exclusive
    /// holder of the cache lock may replace. One read of the state file
    /// serves the check and the pull.
    pub(crate) async fn load_shared_state(&self) -> Result<bool, SyncError> {
        let Some(shared) = &self.shared else {
            return Ok(false);
        };
        match shared.load(&self.remote_name()).await {
            Ok(state) => {
                self.keep_state(state);
                Ok(true)
            }
            Err(SharedStateError::OtherRemote { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes this a sync that uses the cache alone again.
    pub(crate) fn not_sharing(mut self) -> Self {
        self.shared = None;
        self
    }

    fn mark_current(&self) {
        self.current
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The running transfer phase: finishes its bar when dropped.
struct PhaseBar<'a>(&'a CacheSync);

impl Drop for PhaseBar<'_> {
    fn drop(&mut self) {
        if let Some(bar) = self.0.phase.lock().ok().and_then(|mut p| p.take()) {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
