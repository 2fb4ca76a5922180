//! What a pull refuses from a bucket it cannot trust: unsafe index keys,
//! objects that match neither the index nor a newer upload, objects the index
//! lists but the bucket lost, objects with no index at all.

use super::fixtures::{fence, index, machine, write};
use crate::infrastructure::s3::memory_store::MemoryStore;
use crate::infrastructure::s3::store::ObjectStore;
use crate::infrastructure::s3::sync::SyncError;
use std::sync::Arc;

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

/// `outputs/new` pushed as "v1", then "v2!" uploaded for the next index
/// generation without that index being written.
async fn upload_ahead_of_the_index(store: &Arc<MemoryStore>) {
    let da = tempfile::tempdir().unwrap();
    write(da.path(), "outputs/new", "v1");
    let a = machine(store, da.path());
    a.pull(&fence()).await.unwrap();
    a.push(&fence()).await.unwrap();
    let newer = da.path().join("outputs/new");
    std::fs::write(&newer, "v2!").unwrap();
    let digest = crate::infrastructure::hashing::digest_file(&newer).unwrap();
    let next = index(store).generation + 1;
    store
        .put_file("p/outputs/new", &newer, &digest, next, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_interrupted_push_heals_on_the_next_pull() {
    let (store, db) = (
        Arc::new(MemoryStore::default()),
        tempfile::tempdir().unwrap(),
    );
    // A push uploaded a newer object, then died before writing the index.
    upload_ahead_of_the_index(&store).await;
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

/// A pull without the lock cannot tell an interrupted push from one still
/// running: it takes nothing newer than its index and reports the change,
/// and it leaves the object for the locked pull to judge.
#[tokio::test]
async fn a_pull_for_reading_never_takes_an_object_newer_than_its_index() {
    let (store, db) = (
        Arc::new(MemoryStore::default()),
        tempfile::tempdir().unwrap(),
    );
    // A push is uploading a newer object; its index write is yet to come.
    upload_ahead_of_the_index(&store).await;
    let b = machine(&store, db.path());
    let err = b.pull_for_reading(None).await.unwrap_err();
    assert!(
        matches!(&err, SyncError::ChangedWhileReading(why) if matches!(**why, SyncError::Integrity { .. })),
        "{err}"
    );
    assert!(
        !db.path().join("outputs/new").exists(),
        "nothing unindexed is read"
    );
    // Gone objects and objects without an index look the same from outside.
    store.delete("p/outputs/new", None).await.unwrap();
    let err = b.pull_for_reading(None).await.unwrap_err();
    assert!(matches!(err, SyncError::ChangedWhileReading(_)), "{err}");
    store.delete("p/.datastore-index.json", None).await.unwrap();
    store.plant("p/outputs/other", b"x");
    let err = b.pull_for_reading(None).await.unwrap_err();
    assert!(matches!(err, SyncError::ChangedWhileReading(_)), "{err}");
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
