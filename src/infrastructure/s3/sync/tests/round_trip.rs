//! Changes made in one cache reach another through the bucket: content that
//! only differs byte for byte, deletions, large files with their part CRCs,
//! and what an unchanged datastore costs.

use super::fixtures::{fence, index, machine, one_machine, write};
use crate::infrastructure::s3::memory_store::MemoryStore;
use crate::infrastructure::s3::sync::SyncError;
use std::sync::Arc;
use std::time::Duration;

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
    let (store, dir, a) = one_machine();
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
