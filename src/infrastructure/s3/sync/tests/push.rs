//! What a push refuses or leaves for later: a failed upload, a concurrently
//! rewritten index, a lost lease, a cache behind the remote, an index write
//! that is refused.

use super::fixtures::{fence, index, machine, one_machine, write};
use crate::domain::lease_clock;
use crate::domain::sync_index::RemoteIndex;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::s3::memory_store::MemoryStore;
use crate::infrastructure::s3::sync::SyncError;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn a_failed_upload_is_not_indexed_and_is_retried() {
    let (store, dir, a) = one_machine();
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
async fn a_concurrently_rewritten_index_is_never_overwritten() {
    let (store, dir, a) = one_machine();
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
async fn a_lost_lease_stops_the_push_before_any_request() {
    let (store, dir, a) = one_machine();
    write(dir.path(), "outputs/f", "x");
    // Last renewed a whole TTL ago: past its fence (90 % of the TTL) already.
    let ttl = Duration::from_secs(30);
    let expired = LeaseFence::new(ttl, lease_clock::now().saturating_sub(ttl));
    assert!(expired.check().is_err());
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
