//! What every sync test starts from: an in-memory bucket, caches of its
//! prefix `p` with the default settings, a lease that holds, and helpers to
//! write cache files and read back the index.

use crate::domain::lease_clock;
use crate::domain::path_resolver::{DatastorePathResolver, DATASTORE_DIRS};
use crate::domain::pattern_matcher::ExcludeMatcher;
use crate::domain::sync_index::RemoteIndex;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::s3::memory_store::MemoryStore;
use crate::infrastructure::s3::sync::CacheSync;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A lease that holds for an hour.
pub(in crate::infrastructure::s3::sync) fn fence() -> LeaseFence {
    LeaseFence::new(Duration::from_secs(3600), lease_clock::now())
}

/// A cache at `cache` of prefix `p` in `store`, syncing every datastore directory.
pub(in crate::infrastructure::s3::sync) fn machine(
    store: &Arc<MemoryStore>,
    cache: &Path,
) -> CacheSync {
    let resolver = DatastorePathResolver::new(
        cache.to_path_buf(),
        cache.join("local"),
        DATASTORE_DIRS.iter().map(|d| d.to_string()).collect(),
        ExcludeMatcher::empty(),
    );
    CacheSync::new(store.clone(), "p".into(), resolver, 4)
}

/// A new bucket and one machine's cache of it in a fresh temp dir (kept
/// while the returned guard lives).
pub(in crate::infrastructure::s3::sync) fn one_machine(
) -> (Arc<MemoryStore>, tempfile::TempDir, CacheSync) {
    let store = Arc::new(MemoryStore::default());
    let dir = tempfile::tempdir().unwrap();
    let sync = machine(&store, dir.path());
    (store, dir, sync)
}

/// Writes `content` to the cache file `rel`, creating its directories.
pub(in crate::infrastructure::s3::sync) fn write(cache: &Path, rel: &str, content: &str) {
    let path = cache.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// The index `store` holds for prefix `p`.
pub(in crate::infrastructure::s3::sync) fn index(store: &MemoryStore) -> RemoteIndex {
    store.index("p")
}

/// Requests `store` has served so far.
pub(in crate::infrastructure::s3::sync) fn requests(store: &MemoryStore) -> u64 {
    *store.requests.lock().unwrap()
}
