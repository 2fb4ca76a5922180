//! `swamp datastore repair`: a prefix's index rebuilt from what the bucket
//! really holds, and what this cache can put back.
//!
//! Model: the *expected* files are the index's entries when it is readable,
//! else this cache's agreed state (its last view of the index); when the
//! root is readable but some of its shards are gone or damaged, the good
//! shards' entries stand and this cache's state fills only the lost shards'
//! slots (elsewhere it may be older than the index). Every
//! expected file is checked against its object (HEAD: size and the SHA-256
//! its uploader recorded; an object without one is downloaded and hashed).
//! A file whose object is missing or holds other content is re-uploaded from
//! this cache when the cache holds the expected content. What no copy here
//! can fix is *unresolved*: left as the index has it (another machine's cache
//! may hold the content — relisting would make that machine overwrite or
//! delete its good copy) and reported, unless `accept_bucket` says to index
//! what the bucket holds instead (its content, or no entry when there is no
//! object). Objects nothing expected are added where the index tells
//! nothing — it was missing or unreadable, or they are in a lost shard's
//! slot (they are all that is left of it) — and reported as orphans, left
//! alone, where it was readable (a push unlists a deletion
//! before deleting the object, so an orphan is usually one). Repair runs
//! under the lock, never deletes an object, and writes the index
//! conditionally like a push.

use super::{CacheSync, SyncError};
use crate::domain::index_shards::slot_of;
use crate::domain::path_resolver::DATASTORE_DIRS;
use crate::domain::relative_path::SafeRelativePath;
use crate::domain::sha256::Sha256;
use crate::domain::sync_index::{path_conflict, IndexEntry, INDEX_KEY};
use crate::infrastructure::atomic_file::temp_path_for;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::hashing::{digest_file_off_runtime, CheckKind};
use crate::infrastructure::s3::index_store::{IndexIoError, IndexStore, IndexWrite};
use crate::infrastructure::s3::store::{
    datastore_objects, Fetched, Head, PutMode, Recorded, StoreError,
};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What a repair found and did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepairReport {
    /// The index before: "valid", "missing", or why it was unreadable.
    pub index_was: String,
    /// Files the new index lists.
    pub indexed: usize,
    /// Re-uploaded from this cache (their object was missing or wrong).
    pub restored: Vec<String>,
    /// Now listed with the content the bucket holds (`accept_bucket`).
    pub relisted: Vec<String>,
    /// Objects the index lacked, added to it.
    pub added: Vec<String>,
    /// Expected files with no object and no copy here, unlisted (`accept_bucket`).
    pub lost: Vec<String>,
    /// Expected files whose object is missing or differs and that no copy
    /// here can restore, left as listed.
    pub unresolved: Vec<String>,
    /// Objects a readable index does not list: left as they are.
    pub orphans: Vec<String>,
    /// Objects that cannot be datastore files (unsafe or out-of-tree keys,
    /// a path under another file), with why.
    pub skipped: Vec<String>,
}

/// What an object holds: its size, SHA-256 and the index generation its
/// upload recorded (none for another tool's upload).
#[derive(Clone)]
struct Content {
    size: u64,
    sha256: Sha256,
    generation: Option<u64>,
}

impl Content {
    /// The index entry for it.
    fn entry(&self) -> IndexEntry {
        IndexEntry {
            size: self.size,
            sha256: self.sha256,
            parts: None,
        }
    }
}

/// An object's content, if it exists.
type ObjectContent = Option<Content>;

impl CacheSync {
    /// Rebuilds the index of this prefix (see the module doc).
    pub async fn repair(
        &self,
        fence: &LeaseFence,
        accept_bucket: bool,
    ) -> Result<RepairReport, SyncError> {
        fence.check()?;
        std::fs::create_dir_all(self.cache()).map_err(super::io_err(self.cache()))?;
        let mut report = RepairReport::default();
        let index_key = self.key(INDEX_KEY);
        let mut state = self.take_state().await?;
        let mut readable_root = None;
        // A root whose shards are not all good: its bits and lost slots.
        let mut lost_slots: Option<(u8, Vec<bool>)> = None;
        let (readable, etag) = match self.store.get_bytes(&index_key, None).await {
            Ok(Fetched::Object(bytes, meta)) => {
                // From the bucket alone: a good copy in this cache's shard
                // cache must not hide a damaged shard there.
                let bucket_only = IndexStore::new(self.store.as_ref(), &self.prefix);
                match bucket_only.complete(&bytes, meta.etag.clone()).await {
                    Ok(loaded) => {
                        if let Some(ours) = &self.owner {
                            loaded.index.check_owner(&self.remote_name(), ours)?;
                        }
                        report.index_was = "valid".into();
                        readable_root = loaded.root;
                        (Some(loaded.index), Some(meta.etag))
                    }
                    Err(IndexIoError::Index(e)) => match bucket_only.salvage(&bytes).await? {
                        Some(salvaged) => {
                            if let Some(ours) = &self.owner {
                                salvaged.index.check_owner(&self.remote_name(), ours)?;
                            }
                            let lost = salvaged.lost.iter().filter(|l| **l).count();
                            report.index_was = match lost {
                                // Every shard is good: they disagree (a path
                                // conflict), which the rebuild resolves.
                                0 => format!("unreadable ({e})"),
                                lost => format!(
                                    "damaged ({lost} of {} shards gone or corrupt)",
                                    salvaged.lost.len()
                                ),
                            };
                            lost_slots = Some((salvaged.shard_bits, salvaged.lost));
                            (Some(salvaged.index), Some(meta.etag))
                        }
                        None => {
                            report.index_was = format!("unreadable ({e})");
                            (None, Some(meta.etag))
                        }
                    },
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(Fetched::NotModified) | Err(StoreError::NotFound(_)) => {
                report.index_was = "missing".into();
                (None, None)
            }
            Err(e) => return Err(e.into()),
        };
        let index_was_readable = readable.is_some();
        // Where the index tells nothing: everywhere when it is missing or
        // unreadable, else in the slots of the shards it lost.
        let untold = |rel: &str| match &lost_slots {
            _ if !index_was_readable => true,
            Some((bits, lost)) => lost[slot_of(rel, *bits)],
            None => false,
        };
        // A readable index that repair would rewrite unchanged is left as it
        // is (its generation too, so an interrupted push still heals).
        let unchanged_if = readable
            .as_ref()
            .filter(|_| lost_slots.is_none())
            .filter(|i| i.repo_id == self.owner || self.owner.is_none())
            .map(|i| i.files.clone());
        // One more than any generation seen: restored uploads are as new as
        // the index that lists them.
        let generation = readable
            .as_ref()
            .map_or(state.generation, |i| i.generation.max(state.generation))
            + 1;
        // What this cache last agreed on stands in where the index tells
        // nothing; the good shards of a damaged index still stand elsewhere
        // (this cache's view there may be older than theirs).
        let agreed = super::index_write::index_files(&state)
            .into_iter()
            .filter(|(rel, _)| untold(rel));
        let expected: BTreeMap<String, IndexEntry> = match readable {
            Some(mut index) => {
                index.files.extend(agreed);
                index.files
            }
            None => agreed.collect(),
        };
        let listed: BTreeSet<String> = datastore_objects(self.store.as_ref(), &self.prefix)
            .await?
            .into_iter()
            .collect();
        let mut unexpected = Vec::new();
        for rel in listed.iter().filter(|rel| !expected.contains_key(*rel)) {
            let top_is_ours = rel
                .split_once('/')
                .is_some_and(|(top, _)| DATASTORE_DIRS.contains(&top));
            match SafeRelativePath::parse(rel) {
                Ok(_) if top_is_ours => unexpected.push(rel.clone()),
                Ok(_) => report
                    .skipped
                    .push(format!("{rel}: not under a datastore directory")),
                Err(e) => report.skipped.push(format!("{rel}: {e}")),
            }
        }
        // What each object holds, many at a time.
        let wanted: Vec<String> = expected
            .keys()
            .filter(|rel| listed.contains(*rel))
            .chain(unexpected.iter().filter(|rel| untold(rel)))
            .cloned()
            .collect();
        let contents: BTreeMap<String, Result<ObjectContent, SyncError>> = stream::iter(wanted)
            .map(|rel| async move {
                let content = self.object_content(&rel).await;
                (rel, content)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut contents_ok = BTreeMap::new();
        for (rel, content) in contents {
            contents_ok.insert(rel, content?);
        }
        let mut files = BTreeMap::new();
        for (rel, entry) in &expected {
            let there = contents_ok.get(rel).cloned().flatten();
            if there
                .as_ref()
                .is_some_and(|c| c.size == entry.size && c.sha256 == entry.sha256)
            {
                files.insert(rel.clone(), entry.clone());
                continue;
            }
            // Where only this cache's view stands in, an object uploaded
            // for a newer index than that view is newer than our copy:
            // taken as it is, never overwritten with ours.
            let newer = there
                .as_ref()
                .filter(|c| untold(rel) && c.generation.is_some_and(|g| g > state.generation));
            if let Some(content) = newer {
                report.relisted.push(rel.clone());
                files.insert(rel.clone(), content.entry());
                continue;
            }
            fence.check()?;
            if self.restore_from_cache(rel, entry, generation).await? {
                report.restored.push(rel.clone());
                files.insert(rel.clone(), entry.clone());
            } else if !accept_bucket {
                report.unresolved.push(rel.clone());
                files.insert(rel.clone(), entry.clone());
            } else if let Some(content) = there {
                report.relisted.push(rel.clone());
                files.insert(rel.clone(), content.entry());
            } else {
                report.lost.push(rel.clone());
            }
        }
        for rel in unexpected {
            if untold(&rel) {
                if let Some(content) = contents_ok.get(&rel).cloned().flatten() {
                    report.added.push(rel.clone());
                    files.insert(rel, content.entry());
                }
            } else {
                report.orphans.push(rel);
            }
        }
        while let Some((file, nested)) = path_conflict(&files) {
            report
                .skipped
                .push(format!("{nested}: under '{file}', which is a file"));
            files.remove(&nested);
        }
        report.indexed = files.len();
        if unchanged_if.as_ref() == Some(&files) {
            // The index stands; still sweep the shards it does not name
            // (left by crashed or refused writes).
            if let Some(root) = &readable_root {
                self.index_store().drop_orphans(root, fence).await?;
            }
            return Ok(report);
        }
        fence.check()?;
        let mode = match etag {
            Some(etag) => PutMode::Update(etag),
            None => PutMode::Create,
        };
        // No base: every shard is uploaded again, so one damaged in the
        // bucket under its own name is replaced too.
        let written = self
            .index_store()
            .write_once(
                IndexWrite::whole(&files, self.owner.clone(), generation, None),
                mode,
                fence,
            )
            .await;
        match written {
            Ok((_, root)) => self.index_store().drop_orphans(&root, fence).await?,
            Err(IndexIoError::Store(StoreError::Precondition(target))) => {
                return Err(SyncError::IndexConflict(target))
            }
            Err(e) => return Err(e.into()),
        }
        // The next pull reads the new index and reconciles three ways.
        state.index_etag = None;
        state.index_root = None;
        self.save(&mut state).await?;
        self.keep_state(state);
        Ok(report)
    }

    /// The size and SHA-256 of the object at `rel`: the recorded hash, or
    /// the hash of a download when none was recorded.
    async fn object_content(&self, rel: &str) -> Result<ObjectContent, SyncError> {
        let key = self.key(rel);
        match self.store.head(&key).await? {
            None => Ok(None),
            Some(Head {
                size,
                recorded:
                    Recorded {
                        sha256: Some(sha256),
                        generation,
                    },
            }) => Ok(Some(Content {
                size,
                sha256,
                generation,
            })),
            Some(_) => {
                let temp = temp_path_for(&self.cache().join("repair"));
                let got = self.store.get_to_file(&key, &temp, CheckKind::Sha256).await;
                let digest = match got {
                    Ok(_) => digest_file_off_runtime(temp.clone()).await,
                    Err(StoreError::NotFound(_)) => {
                        let _ = std::fs::remove_file(&temp);
                        return Ok(None);
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&temp);
                        return Err(e.into());
                    }
                };
                let _ = std::fs::remove_file(&temp);
                let digest = digest.map_err(super::io_err(&temp))?;
                Ok(Some(Content {
                    size: digest.size,
                    sha256: digest.sha256,
                    generation: None,
                }))
            }
        }
    }

    /// Uploads this cache's copy of `rel` if it holds exactly `entry`'s content.
    async fn restore_from_cache(
        &self,
        rel: &str,
        entry: &IndexEntry,
        generation: u64,
    ) -> Result<bool, SyncError> {
        let Ok(safe) = SafeRelativePath::parse(rel) else {
            return Ok(false);
        };
        let Some((path, _, digest)) = self.cached_copy(&safe, entry).await else {
            return Ok(false);
        };
        self.store
            .put_file(&self.key(rel), &path, &digest, generation, None)
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fence, index, machine, write};
    use crate::infrastructure::s3::memory_store::MemoryStore;
    use crate::infrastructure::s3::store::ObjectStore;
    use std::sync::Arc;

    /// Two files pushed by `a`; returns its cache.
    async fn pushed(store: &Arc<MemoryStore>) -> tempfile::TempDir {
        let da = tempfile::tempdir().unwrap();
        let a = machine(store, da.path());
        a.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/x", "x content");
        write(da.path(), "outputs/y", "y content");
        a.push(&fence()).await.unwrap();
        da
    }

    /// A lost or corrupt index is rebuilt from the objects (by recorded hash,
    /// or by hashing objects another tool uploaded), and pulls work again.
    #[tokio::test]
    async fn a_lost_or_corrupt_index_is_rebuilt_from_the_objects() {
        let store = Arc::new(MemoryStore::default());
        let _da = pushed(&store).await;
        let before = index(&store);
        store.plant("p/outputs/z", b"uploaded by aws s3 cp");
        for damage in [None, Some(&b"{\"format\":1,\"files\":{\"a\":"[..])] {
            match damage {
                None => store.delete("p/.datastore-index.json", None).await.unwrap(),
                Some(bytes) => store.plant("p/.datastore-index.json", bytes),
            }
            let dc = tempfile::tempdir().unwrap();
            let c = machine(&store, dc.path());
            assert!(c.pull(&fence()).await.is_err(), "refused before repair");
            let report = c.repair(&fence(), false).await.unwrap();
            assert_eq!(
                report.added,
                ["outputs/x", "outputs/y", "outputs/z"],
                "{report:?}"
            );
            assert!(report.index_was != "valid", "{report:?}");
            let rebuilt = index(&store);
            assert_eq!(
                rebuilt.files["outputs/x"].sha256,
                before.files["outputs/x"].sha256
            );
            assert_eq!(
                rebuilt.files["outputs/z"].sha256,
                crate::infrastructure::hashing::sha256_bytes(b"uploaded by aws s3 cp")
            );
            c.pull(&fence()).await.unwrap();
            assert_eq!(
                std::fs::read_to_string(dc.path().join("outputs/z")).unwrap(),
                "uploaded by aws s3 cp"
            );
        }
    }

    /// A listed object the bucket lost is put back from a cache that holds
    /// it; a cache without it leaves the entry listed (so the machine that
    /// has it is not told to delete it) unless told to accept the bucket.
    #[tokio::test]
    async fn a_lost_object_is_put_back_from_a_cache_that_holds_it_and_never_unlisted_elsewhere() {
        let store = Arc::new(MemoryStore::default());
        let da = pushed(&store).await;
        store.delete("p/outputs/x", None).await.unwrap();
        store.plant("p/outputs/y", b"damaged");
        let dc = tempfile::tempdir().unwrap();
        let c = machine(&store, dc.path());
        let report = c.repair(&fence(), false).await.unwrap();
        assert_eq!(report.unresolved, ["outputs/x", "outputs/y"], "{report:?}");
        assert!(index(&store).files.contains_key("outputs/x"));
        let report = machine(&store, da.path())
            .repair(&fence(), false)
            .await
            .unwrap();
        assert_eq!(report.restored, ["outputs/x", "outputs/y"], "{report:?}");
        assert_eq!(store.object("p/outputs/x").unwrap(), b"x content");
        assert_eq!(store.object("p/outputs/y").unwrap(), b"y content");
        // With nothing left anywhere, --accept-bucket indexes what is there.
        store.delete("p/outputs/x", None).await.unwrap();
        store.plant("p/outputs/y", b"damaged");
        let report = c.repair(&fence(), true).await.unwrap();
        assert_eq!(
            (report.lost.as_slice(), report.relisted.as_slice()),
            (
                &["outputs/x".to_string()][..],
                &["outputs/y".to_string()][..]
            )
        );
        let idx = index(&store);
        assert!(!idx.files.contains_key("outputs/x"));
        assert_eq!(idx.files["outputs/y"].size, 7);
    }

    /// With a readable index, objects it does not list are orphans of
    /// deletions: reported, never re-added, never deleted.
    #[tokio::test]
    async fn orphans_of_a_valid_index_are_reported_and_left_alone() {
        let store = Arc::new(MemoryStore::default());
        let _da = pushed(&store).await;
        store.plant("p/outputs/orphan", b"deleted, object left");
        store.plant("p/stray-top-level", b"not a datastore path");
        let dc = tempfile::tempdir().unwrap();
        let report = machine(&store, dc.path())
            .repair(&fence(), false)
            .await
            .unwrap();
        assert_eq!(report.index_was, "valid");
        assert_eq!(report.orphans, ["outputs/orphan"]);
        assert_eq!(report.skipped.len(), 1, "{report:?}");
        assert_eq!(report.indexed, 2);
        assert!(store.object("p/outputs/orphan").is_some());
    }
}
