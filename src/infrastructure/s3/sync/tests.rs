//! Tests of pull and push together, on the in-memory store: two or more
//! caches of one prefix, faults injected by the store.

use super::*;
use crate::domain::lease_clock;
use crate::domain::path_resolver::DATASTORE_DIRS;
use crate::domain::pattern_matcher::ExcludeMatcher;
use crate::domain::sync_index::RemoteIndex;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::s3::memory_store::MemoryStore;
use crate::infrastructure::s3::store::ObjectStore;
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
