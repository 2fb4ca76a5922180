//! The sharded index seen through pull and push: what each step fetches
//! and writes, the migration from a single-object index, and damage.

use super::fixtures::{fence, index, machine, one_machine, requests, write};
use crate::domain::data_read::DataRead;
use crate::domain::index_shards::{shard_rel, slot_of, IndexRoot, SHARDS_DIR};
use crate::domain::lock_scope::LockScope;
use crate::domain::sync_index::{IndexDocument, IndexError, RemoteIndex, INDEX_FORMAT};
use crate::infrastructure::s3::memory_store::MemoryStore;
use crate::infrastructure::s3::store::ObjectStore;
use crate::infrastructure::s3::sync::SyncError;
use std::sync::Arc;

/// `items` data items of one version each (2 files) plus `outputs/kept`,
/// pushed from the cache in `dir`: enough files for several shards.
async fn datastore(items: usize) -> (Arc<MemoryStore>, tempfile::TempDir) {
    let (store, dir, seed) = one_machine();
    seed.pull(&fence()).await.unwrap();
    for i in 0..items {
        write(
            dir.path(),
            &format!("data/item{i}/@versions/1.bin"),
            &format!("content {i}"),
        );
        write(
            dir.path(),
            &format!("data/item{i}/@versions/1.json"),
            &format!("{{\"v\":{i}}}"),
        );
    }
    write(dir.path(), "outputs/kept", "kept");
    seed.push(&fence()).await.unwrap();
    (store, dir)
}

fn root(store: &MemoryStore) -> IndexRoot {
    match IndexDocument::parse(&store.object("p/.datastore-index.json").unwrap()).unwrap() {
        IndexDocument::Root(root) => root,
        IndexDocument::Whole(_) => panic!("a format-1 index"),
    }
}

fn shard_keys(store: &MemoryStore) -> Vec<String> {
    store
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("p/{SHARDS_DIR}/")))
        .collect()
}

/// Every shard in the bucket is named by the root or listed as its garbage.
fn assert_no_orphans(store: &MemoryStore) {
    let r = root(store);
    let accounted: Vec<String> = r
        .named()
        .into_iter()
        .map(str::to_string)
        .chain(r.garbage.iter().cloned())
        .map(|n| format!("p/{}", shard_rel(&n)))
        .collect();
    for key in shard_keys(store) {
        assert!(accounted.contains(&key), "orphan {key}");
    }
}

fn get(item: &str) -> DataRead {
    DataRead::Get {
        item: item.into(),
        version: None,
    }
}

#[tokio::test]
async fn a_push_writes_a_sharded_index_and_a_change_rewrites_one_shard() {
    let (store, dir) = datastore(300).await;
    let first = root(&store);
    assert_eq!(first.shard_bits, 2, "601 files: 4 slots");
    assert_eq!(shard_keys(&store).len(), 4);
    assert_eq!(index(&store).files.len(), 601);
    let a = machine(&store, dir.path());
    a.pull(&fence()).await.unwrap();
    write(dir.path(), "data/item7/@versions/1.json", "changed");
    let before = requests(&store);
    a.push(&fence()).await.unwrap();
    // The file, its shard, the root.
    assert_eq!(requests(&store) - before, 3);
    let second = root(&store);
    let slot = slot_of("data/item7/@versions/1.json", 2);
    for s in 0..4 {
        assert_eq!(first.shards[s] == second.shards[s], s != slot, "slot {s}");
    }
    assert_eq!(second.garbage, vec![first.shards[slot].clone()]);
    assert_eq!(index(&store).files["data/item7/@versions/1.json"].size, 7);
}

#[tokio::test]
async fn a_cold_read_of_one_item_fetches_the_root_and_one_shard() {
    let (store, _seed) = datastore(300).await;
    let cold = tempfile::tempdir().unwrap();
    let b = machine(&store, cold.path());
    let before = requests(&store);
    let report = b.pull_for_reading(Some(&get("item42"))).await.unwrap();
    assert_eq!(report.downloaded, 2);
    assert_eq!(requests(&store) - before, 4, "root, one shard, two files");
    assert_eq!(
        std::fs::read_to_string(cold.path().join("data/item42/@versions/1.bin")).unwrap(),
        "content 42"
    );
    // Nothing else was fetched, and nothing is taken for deleted: a full
    // pull afterwards fetches the rest.
    assert!(!cold.path().join("outputs/kept").exists());
    let b = machine(&store, cold.path());
    b.pull(&fence()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(cold.path().join("outputs/kept")).unwrap(),
        "kept"
    );
    assert!(cold.path().join("data/item42/@versions/1.bin").is_file());
}

#[tokio::test]
async fn a_warm_pull_fetches_only_the_shards_that_changed() {
    let (store, da) = datastore(300).await;
    let db = tempfile::tempdir().unwrap();
    machine(&store, db.path()).pull(&fence()).await.unwrap();
    let a = machine(&store, da.path());
    a.pull(&fence()).await.unwrap();
    write(da.path(), "data/item9/@versions/2.bin", "v2");
    a.push(&fence()).await.unwrap();
    let b = machine(&store, db.path());
    let before = requests(&store);
    let report = b.pull(&fence()).await.unwrap();
    assert_eq!(report.downloaded, 1);
    assert_eq!(requests(&store) - before, 3, "root, one shard, the file");
}

#[tokio::test]
async fn scoped_commits_onto_a_partial_index_keep_every_other_shard() {
    let (store, _seed) = datastore(300).await;
    let first = root(&store);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let item = |n: &str| LockScope::Paths(vec![format!("data/{n}/@versions")]);
    let (a, b) = (machine(&store, da.path()), machine(&store, db.path()));
    // Cold caches: each reads only the shards of its item.
    a.pull_scope(&fence(), &item("item1")).await.unwrap();
    b.pull_scope(&fence(), &item("item2")).await.unwrap();
    write(da.path(), "data/item1/@versions/2.bin", "a2");
    write(db.path(), "data/item2/@versions/2.bin", "b2");
    a.push_scope(&fence(), &item("item1")).await.unwrap();
    b.push_scope(&fence(), &item("item2")).await.unwrap();
    let files = index(&store).files;
    assert_eq!(files.len(), 603, "nothing dropped");
    assert!(files.contains_key("data/item1/@versions/2.bin"));
    assert!(files.contains_key("data/item2/@versions/2.bin"));
    let last = root(&store);
    let touched = [
        slot_of("data/item1/@versions/2.bin", 2),
        slot_of("data/item2/@versions/2.bin", 2),
    ];
    for s in (0..4).filter(|s| !touched.contains(s)) {
        assert_eq!(last.shards[s], first.shards[s], "slot {s} untouched");
    }
    // Every shard the root names is in the bucket, and every shard in the
    // bucket is named or garbage: b's refused attempt left nothing behind.
    for name in last.named() {
        assert!(
            store.object(&format!("p/{}", shard_rel(name))).is_some(),
            "{name}"
        );
    }
    assert_no_orphans(&store);
}

#[tokio::test]
async fn a_refused_root_write_deletes_the_shards_it_uploaded() {
    let (store, dir) = datastore(10).await;
    let a = machine(&store, dir.path());
    a.pull(&fence()).await.unwrap();
    let shards = shard_keys(&store);
    write(dir.path(), "outputs/new", "never indexed");
    *store.put_refusals.lock().unwrap() = 1;
    let err = a.push(&fence()).await.unwrap_err();
    assert!(matches!(err, SyncError::IndexConflict(_)), "{err}");
    assert_eq!(shard_keys(&store), shards, "the new shard is gone again");
}

#[tokio::test]
async fn a_single_object_index_is_migrated_under_the_whole_lock() {
    let (store, dir) = datastore(5).await;
    let mut old: RemoteIndex = index(&store);
    old.format = INDEX_FORMAT;
    store.plant("p/.datastore-index.json", &old.to_json());
    for key in shard_keys(&store) {
        store.delete(&key, None).await.unwrap();
    }
    // A reader reads it and writes nothing.
    let reader = tempfile::tempdir().unwrap();
    machine(&store, reader.path())
        .pull_for_reading(None)
        .await
        .unwrap();
    assert_eq!(index(&store).format, INDEX_FORMAT);
    // A scoped writer's pull neither.
    let scoped = tempfile::tempdir().unwrap();
    machine(&store, scoped.path())
        .pull_scope(
            &fence(),
            &LockScope::Paths(vec!["data/item1/@versions".into()]),
        )
        .await
        .unwrap();
    assert_eq!(index(&store).format, INDEX_FORMAT);
    // The whole lock's pull rewrites it, with the same files.
    machine(&store, dir.path()).pull(&fence()).await.unwrap();
    let migrated = index(&store);
    assert_eq!(migrated.format, 2);
    assert_eq!(migrated.files, old.files);
    assert_eq!(migrated.generation, old.generation + 1);
    // And everyone reads it.
    let c = tempfile::tempdir().unwrap();
    machine(&store, c.path()).pull(&fence()).await.unwrap();
    assert!(c.path().join("data/item3/@versions/1.bin").is_file());
}

#[tokio::test]
async fn a_missing_or_damaged_shard_fails_with_one_line_and_repair_restores_it() {
    let (store, dir) = datastore(300).await;
    let r = root(&store);
    let victim = r.shards.iter().find(|s| !s.is_empty()).unwrap().clone();
    let key = format!("p/{}", shard_rel(&victim));
    let good = store.object(&key).unwrap();
    // Gone: the root is read again (it did not change), then it is damage.
    store.delete(&key, None).await.unwrap();
    let cold = tempfile::tempdir().unwrap();
    let err = machine(&store, cold.path())
        .pull(&fence())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SyncError::Index(IndexError::MissingShard(n)) if *n == victim),
        "{err}"
    );
    assert!(err.to_string().contains("swamp datastore repair"), "{err}");
    // Damaged under its own name.
    let mut bad = good.clone();
    bad[3] ^= 1;
    store.plant(&key, &bad);
    let cold = tempfile::tempdir().unwrap();
    let err = machine(&store, cold.path())
        .pull(&fence())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not match its name"), "{err}");
    // Repair on a machine whose cache holds everything rewrites the index.
    let a = machine(&store, dir.path());
    a.repair(&fence(), false).await.unwrap();
    let cold = tempfile::tempdir().unwrap();
    machine(&store, cold.path()).pull(&fence()).await.unwrap();
    assert!(cold.path().join("data/item5/@versions/1.bin").is_file());
    // Its sweep left only the shards the new root names.
    let named: Vec<String> = root(&store)
        .named()
        .into_iter()
        .map(|n| format!("p/{}", shard_rel(n)))
        .collect();
    let mut there = shard_keys(&store);
    there.sort();
    let mut named = named;
    named.sort();
    assert_eq!(there, named);
}

/// Repair of a root that names one damaged shard keeps what the good
/// shards list: a stale cache does not put its older copy back over what
/// another machine pushed since, and only the lost slot falls back to this
/// cache's state and the bucket's objects (a file only the lost shard
/// listed is added from its object; one uploaded for a newer index than
/// the cache's view is taken as it is, not overwritten with the cache's).
#[tokio::test]
async fn repair_keeps_the_good_shards_of_an_index_with_one_damaged_shard() {
    let (store, stale) = datastore(300).await;
    let newer = tempfile::tempdir().unwrap();
    let b = machine(&store, newer.path());
    b.pull(&fence()).await.unwrap();
    let changed = "data/item0/@versions/1.bin";
    write(newer.path(), changed, "newer, from b");
    let bits = root(&store).shard_bits;
    let victim_slot = (0..1usize << bits)
        .find(|slot| *slot != slot_of(changed, bits))
        .unwrap();
    let added = (0..)
        .map(|i| format!("outputs/new{i}"))
        .find(|p| slot_of(p, bits) == victim_slot)
        .unwrap();
    write(newer.path(), &added, "only b has it");
    // And one the stale cache knows, in the slot that will be lost.
    let changed_in_lost = (0..300)
        .map(|i| format!("data/item{i}/@versions/1.bin"))
        .find(|p| slot_of(p, bits) == victim_slot)
        .unwrap();
    write(newer.path(), &changed_in_lost, "newer, in the lost slot");
    b.push(&fence()).await.unwrap();
    let r = root(&store);
    assert_eq!(r.shard_bits, bits);
    let key = format!("p/{}", shard_rel(&r.shards[victim_slot]));
    let mut bad = store.object(&key).unwrap();
    bad[3] ^= 1;
    store.plant(&key, &bad);

    let report = machine(&store, stale.path())
        .repair(&fence(), false)
        .await
        .unwrap();
    assert!(report.index_was.starts_with("damaged"), "{report:?}");
    assert!(
        report.index_was.contains("1 of 4 shards gone or corrupt"),
        "{report:?}"
    );
    assert!(report.restored.is_empty(), "{report:?}");
    assert_eq!(report.added, std::slice::from_ref(&added), "{report:?}");
    assert!(
        report.unresolved.is_empty() && report.orphans.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        store.object(&format!("p/{changed}")).unwrap(),
        b"newer, from b"
    );
    // In the lost slot the object, uploaded for a newer index than the
    // stale cache's view, is taken as it is.
    assert_eq!(
        report.relisted,
        std::slice::from_ref(&changed_in_lost),
        "{report:?}"
    );
    assert_eq!(
        store.object(&format!("p/{changed_in_lost}")).unwrap(),
        b"newer, in the lost slot"
    );
    let cold = tempfile::tempdir().unwrap();
    machine(&store, cold.path()).pull(&fence()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(cold.path().join(changed)).unwrap(),
        "newer, from b"
    );
    assert_eq!(
        std::fs::read_to_string(cold.path().join(&added)).unwrap(),
        "only b has it"
    );
    assert_eq!(index(&store).files.len(), 300 * 2 + 2);
}

#[tokio::test]
async fn a_shard_replaced_while_reading_is_followed_to_the_new_root() {
    let (store, da) = datastore(300).await;
    // A reader that read the old root meets a shard its writer deleted: the
    // memory store cannot interleave that exactly, so plant the old root
    // back after the change to stand for "read before the commit".
    let old_root = store.object("p/.datastore-index.json").unwrap();
    let a = machine(&store, da.path());
    a.pull(&fence()).await.unwrap();
    write(da.path(), "data/item3/@versions/1.json", "new");
    a.push(&fence()).await.unwrap();
    let new_root = store.object("p/.datastore-index.json").unwrap();
    let changed = root(&store)
        .garbage
        .first()
        .cloned()
        .expect("the replaced shard");
    // The old shard is gone (as its garbage collection would leave it).
    store
        .delete(&format!("p/{}", shard_rel(&changed)), None)
        .await
        .unwrap();
    store.serve_once("p/.datastore-index.json", old_root);
    let cold = tempfile::tempdir().unwrap();
    machine(&store, cold.path()).pull(&fence()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(cold.path().join("data/item3/@versions/1.json")).unwrap(),
        "new"
    );
    assert_eq!(store.object("p/.datastore-index.json").unwrap(), new_root);
}

#[tokio::test]
async fn a_partial_read_on_a_warm_cache_deletes_nothing_outside_its_shards() {
    let (store, da) = datastore(300).await;
    let db = tempfile::tempdir().unwrap();
    machine(&store, db.path()).pull(&fence()).await.unwrap();
    // b loses its shard cache; meanwhile a writer changes one item.
    std::fs::remove_dir_all(db.path().join(".swamp-index-shards")).unwrap();
    let a = machine(&store, da.path());
    a.pull(&fence()).await.unwrap();
    write(da.path(), "data/item4/@versions/2.bin", "v2");
    a.push(&fence()).await.unwrap();
    // b reads one item: only that item's shard is loaded.
    let b = machine(&store, db.path());
    b.pull_for_reading(Some(&get("item4"))).await.unwrap();
    for i in 0..300 {
        assert!(
            db.path()
                .join(format!("data/item{i}/@versions/1.bin"))
                .is_file(),
            "item{i} deleted by a partial read"
        );
    }
    assert!(db.path().join("outputs/kept").is_file());
    // A full pull afterwards is as good as ever.
    let b = machine(&store, db.path());
    let report = b.pull(&fence()).await.unwrap();
    assert_eq!(report.deleted_local, 0);
    assert!(db.path().join("data/item4/@versions/2.bin").is_file());
}

/// Two item writers commit from the same root; the second is refused once.
/// `same_slot` picks items whose shards coincide (the retry's body differs
/// from the refused one's) or differ (the retry reuses the refused upload).
/// Either way every shard in the bucket is named or garbage afterwards.
async fn refused_then_merged(same_slot: bool) -> (Arc<MemoryStore>, usize) {
    let (store, _seed) = datastore(300).await;
    let bits = root(&store).shard_bits;
    let slot = |i: usize| slot_of(&format!("data/item{i}/@versions/2.bin"), bits);
    let other = (2..300)
        .find(|i| (slot(*i) == slot(1)) == same_slot)
        .unwrap();
    let item = |i: usize| LockScope::Paths(vec![format!("data/item{i}/@versions")]);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (machine(&store, da.path()), machine(&store, db.path()));
    a.pull_scope(&fence(), &item(1)).await.unwrap();
    b.pull_scope(&fence(), &item(other)).await.unwrap();
    write(da.path(), "data/item1/@versions/2.bin", "a2");
    write(
        db.path(),
        &format!("data/item{other}/@versions/2.bin"),
        "b2",
    );
    a.push_scope(&fence(), &item(1)).await.unwrap();
    let before = shard_keys(&store).len();
    b.push_scope(&fence(), &item(other)).await.unwrap();
    assert_no_orphans(&store);
    let files = index(&store).files;
    assert!(files.contains_key("data/item1/@versions/2.bin"));
    assert!(files.contains_key(&format!("data/item{other}/@versions/2.bin")));
    let added = shard_keys(&store).len() - before;
    (store, added)
}

#[tokio::test]
async fn a_refused_scoped_commit_leaves_no_orphan_and_reuses_what_it_can() {
    // Same slot: the refused body is superseded and deleted.
    let (_, added) = refused_then_merged(true).await;
    assert_eq!(added, 1, "b's one shard, nothing left of its refused body");
    // Different slots: the refused body is the retry's, uploaded once.
    let (store, added) = refused_then_merged(false).await;
    assert_eq!(added, 1, "b's refused upload was reused");
    let _ = store;
}

#[tokio::test]
async fn the_migration_keeps_what_the_pull_healed() {
    // A format-1 index listing `outputs/new` as "v1", and "v2!" uploaded
    // for the next generation by a push that died before its index write.
    let store = Arc::new(MemoryStore::default());
    let da = tempfile::tempdir().unwrap();
    write(da.path(), "outputs/new", "v1");
    let a = machine(&store, da.path());
    a.pull(&fence()).await.unwrap();
    a.push(&fence()).await.unwrap();
    let mut old = index(&store);
    old.format = INDEX_FORMAT;
    store.plant("p/.datastore-index.json", &old.to_json());
    let newer = da.path().join("outputs/new");
    std::fs::write(&newer, "v2!").unwrap();
    let digest = crate::infrastructure::hashing::digest_file(&newer).unwrap();
    store
        .put_file("p/outputs/new", &newer, &digest, old.generation + 1, None)
        .await
        .unwrap();
    // The whole lock's pull heals it and migrates the index it agrees on.
    let db = tempfile::tempdir().unwrap();
    machine(&store, db.path()).pull(&fence()).await.unwrap();
    assert_eq!(index(&store).format, 2);
    assert_eq!(index(&store).files["outputs/new"].sha256, digest.sha256);
    // Everyone else reads "v2!" as indexed, not as a late upload.
    let dc = tempfile::tempdir().unwrap();
    machine(&store, dc.path()).pull(&fence()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dc.path().join("outputs/new")).unwrap(),
        "v2!"
    );
}
