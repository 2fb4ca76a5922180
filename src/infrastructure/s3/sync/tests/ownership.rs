//! Whose files, cache and prefix a sync may touch: a cache of another prefix,
//! paths outside this machine's settings, a prefix owned by another repo.

use super::fixtures::{fence, index, machine, write};
use crate::domain::path_resolver::{DatastorePathResolver, DATASTORE_DIRS};
use crate::domain::pattern_matcher::ExcludeMatcher;
use crate::infrastructure::s3::memory_store::MemoryStore;
use crate::infrastructure::s3::sync::{CacheSync, SyncError};
use std::path::Path;
use std::sync::Arc;

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
    // Such an index is a format-1 one: every file in one object.
    unowned.format = crate::domain::sync_index::INDEX_FORMAT;
    store.plant("p/.datastore-index.json", &unowned.to_json());
    let c = tempfile::tempdir().unwrap();
    let third = machine(&store, c.path()).owned_by(theirs.into());
    third.pull(&fence()).await.unwrap();
    write(c.path(), "outputs/h", "adopted");
    third.push(&fence()).await.unwrap();
    assert_eq!(index(&store).repo_id.as_deref(), Some(theirs));
}
