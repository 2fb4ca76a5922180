//! A local change that meets a remote change or deletion of the same path is
//! kept as a conflict copy; an unchanged local file simply follows.

use super::fixtures::{fence, machine, write};
use crate::infrastructure::s3::memory_store::MemoryStore;
use crate::infrastructure::s3::sync::{list_conflicts, CacheSync};
use std::sync::Arc;

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
