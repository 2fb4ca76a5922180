//! The scoped lock records of an S3 datastore (design/datastores.md, Scoped
//! locks): `{prefix}/.locks/{id}.lock`, each an `S3Lock` whose record also
//! names its scope and priority, written and renewed with the same
//! conditional rules as the whole-datastore lock.
//!
//! A record's key also names its scope (`.locks/{paths}~{id}.lock`, the
//! paths escaped into one flat name), so an acquirer reads only the records
//! that may conflict with it: writers of different items never read each
//! other's records. The name is flat because stores that keep objects as
//! files (SeaweedFS, MinIO, s3s-fs) leave the directories of a deleted key
//! behind: with the paths as directories, every item ever locked left one,
//! and the listing every command makes walked them all (on SeaweedFS it
//! took 150–230 ms with 16 writers at once after ~150 items). Records in the earlier form
//! (`.locks/{paths}/{id}.lock`, from older swamps) are still understood. `list` is one LIST of
//! the prefix's top-level dot objects (`{prefix}/.`: the lock, the index,
//! `.locks/…`) and a GET of each record that matters. That listing
//! also shows the index's ETag; it is kept in an `IndexSeen` so the pull that
//! follows under the lock can skip its conditional GET when the ETag is the
//! one the cache last agreed on. A whole-datastore writer must list the
//! records anyway (the drain), so its no-op stays at three requests: lock
//! PUT, LIST, lock DELETE.

use crate::domain::index_shards::SHARDS_DIR;
use crate::domain::lock::{DistributedLock, LockError, LockObservation};
use crate::domain::lock_scope::LockScope;
use crate::domain::sync_index::{is_scoped_lock_key, object_key, INDEX_KEY, SCOPED_LOCKS_DIR};
use crate::infrastructure::s3::lock::S3Lock;
use crate::infrastructure::s3::store::{ETag, ObjectStore};
use crate::infrastructure::scoped_lock::ScopedRecords;
use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records read at once while listing.
const READS_AT_ONCE: usize = 16;
/// The longest record key (under the prefix) that names its scope; S3 keys
/// stop at 1024 bytes, and the prefix needs room too.
const MAX_NAMED_KEY: usize = 512;

/// The index ETag a lock acquisition's listing showed, for the pull right
/// after it (taken once: a later pull asks the store).
#[derive(Debug, Default)]
pub(crate) struct IndexSeen(Mutex<Option<ETag>>);

impl IndexSeen {
    /// The last listing showed the index with `etag` (`None`: no index, or
    /// no usable ETag — then the pull asks).
    fn saw(&self, etag: Option<ETag>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = etag;
    }

    /// The index ETag the last listing showed, once.
    pub(crate) fn take(&self) -> Option<ETag> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The scoped lock records under one S3 prefix.
pub(crate) struct S3ScopedRecords {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    default_ttl: Duration,
    conditional_delete: bool,
    index_seen: Arc<IndexSeen>,
}

impl S3ScopedRecords {
    /// The records under `prefix`; listings report the index ETag to `index_seen`.
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        prefix: String,
        default_ttl: Duration,
        conditional_delete: bool,
        index_seen: Arc<IndexSeen>,
    ) -> Self {
        Self {
            store,
            prefix,
            default_ttl,
            conditional_delete,
            index_seen,
        }
    }

    fn lock_at(&self, key: String) -> S3Lock {
        S3Lock::new(self.store.clone(), key, self.default_ttl)
            .trusting_conditional_delete(self.conditional_delete)
    }
}

/// The key of `id`'s record: `.locks/{scope}~{id}.lock`, the scope's paths
/// joined by `,` (`%`, `,`, `/` and `~` escaped, so the name is one flat
/// segment), so a listing tells which records can conflict without reading
/// them; `.locks/{id}.lock` when that would not fit in a key.
fn record_rel(id: &str, scope: &[String]) -> String {
    let encoded: Vec<String> = scope
        .iter()
        .map(|p| {
            p.replace('%', "%25")
                .replace(',', "%2C")
                .replace('/', "%2F")
                .replace('~', "%7E")
        })
        .collect();
    let named = format!("{SCOPED_LOCKS_DIR}/{}~{id}.lock", encoded.join(","));
    match scope.is_empty() || named.len() > MAX_NAMED_KEY {
        true => format!("{SCOPED_LOCKS_DIR}/{id}.lock"),
        false => named,
    }
}

/// The scope a record's key names (`None`: the key does not say).
fn scope_named(rel: &str) -> Option<LockScope> {
    let inner = rel.strip_prefix(SCOPED_LOCKS_DIR)?.strip_prefix('/')?;
    let paths = match inner.rsplit_once('/') {
        // The earlier form: the paths as directories, only `%` and `,` escaped.
        Some((encoded, _)) => encoded
            .split(',')
            .map(|p| p.replace("%2C", ",").replace("%25", "%"))
            .collect(),
        None => {
            let (encoded, id) = inner.strip_suffix(".lock")?.rsplit_once('~')?;
            // swamp's ids are hex: anything else was not named by swamp,
            // so its key says nothing (the record is read instead).
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return None;
            }
            encoded
                .split(',')
                .map(|p| {
                    p.replace("%7E", "~")
                        .replace("%2F", "/")
                        .replace("%2C", ",")
                        .replace("%25", "%")
                })
                .collect()
        }
    };
    Some(LockScope::Paths(paths))
}

#[async_trait]
impl ScopedRecords for S3ScopedRecords {
    fn record(&self, id: &str, scope: &[String], priority: u64) -> Arc<dyn DistributedLock> {
        let key = object_key(&self.prefix, &record_rel(id, scope));
        Arc::new(self.lock_at(key).recording(scope.to_vec(), priority))
    }

    async fn list(&self) -> Result<Vec<(Arc<dyn DistributedLock>, LockObservation)>, LockError> {
        self.read_records(None).await
    }

    async fn list_conflicting(
        &self,
        scope: &LockScope,
        ours: &str,
    ) -> Result<Vec<(Arc<dyn DistributedLock>, LockObservation)>, LockError> {
        let mut read = self.read_records(Some((scope, ours))).await?;
        read.retain(|(_, obs)| LockScope::held_by(obs).conflicts(scope));
        Ok(read)
    }
}

impl S3ScopedRecords {
    /// Lists the records and reads them — when `wanted` gives a scope and
    /// the caller's own location, only those whose key does not rule out a
    /// conflict with that scope, and never the caller's own.
    async fn read_records(
        &self,
        wanted: Option<(&LockScope, &str)>,
    ) -> Result<Vec<(Arc<dyn DistributedLock>, LockObservation)>, LockError> {
        let top = object_key(&self.prefix, ".");
        // The index's shards sort first under `.`: skip them.
        let after_shards = object_key(&self.prefix, &format!("{SHARDS_DIR}/~"));
        let listed = self
            .store
            .list_after(&top, &after_shards)
            .await
            .map_err(|e| LockError::Backend {
                location: self.store.url(&top),
                source: Box::new(e),
            })?;
        let base = object_key(&self.prefix, "");
        let index_key = object_key(&self.prefix, INDEX_KEY);
        let mut index_etag = None;
        let mut locks = Vec::new();
        for object in listed {
            if object.key == index_key {
                index_etag = object.etag.filter(|e| !e.is_empty());
                continue;
            }
            let Some(rel) = object.key.strip_prefix(&base) else {
                continue;
            };
            if !is_scoped_lock_key(rel) || !rel.ends_with(".lock") {
                continue;
            }
            if let Some((scope, ours)) = wanted {
                let theirs = scope_named(rel);
                if self.store.url(&object.key) == ours
                    || theirs.is_some_and(|theirs| !scope.conflicts(&theirs))
                {
                    continue;
                }
            }
            locks.push(self.lock_at(object.key.clone()));
        }
        // The records are read at once: one round trip, not one per holder.
        let read: Vec<_> = stream::iter(locks)
            .map(|lock| async move { (lock.inspect().await, lock) })
            .buffer_unordered(READS_AT_ONCE)
            .collect()
            .await;
        let mut records = Vec::new();
        for (observed, lock) in read {
            // Released between the listing and the read: not a holder.
            if let Some(obs) = observed? {
                records.push((Arc::new(lock) as Arc<dyn DistributedLock>, obs));
            }
        }
        self.index_seen.saw(index_etag);
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lock::Attempt;
    use crate::infrastructure::s3::memory_store::MemoryStore;
    use crate::infrastructure::scoped_lock::{DrainingLock, ScopedLock};

    const TTL: Duration = Duration::from_secs(30);

    struct Bucket {
        store: Arc<MemoryStore>,
        seen: Arc<IndexSeen>,
    }

    impl Bucket {
        fn new() -> Self {
            Self {
                store: Arc::new(MemoryStore::default()),
                seen: Arc::default(),
            }
        }

        fn records(&self) -> Arc<dyn ScopedRecords> {
            Arc::new(S3ScopedRecords::new(
                self.store.clone(),
                "p".into(),
                TTL,
                true,
                self.seen.clone(),
            ))
        }

        fn whole(&self) -> Arc<dyn DistributedLock> {
            Arc::new(S3Lock::new(
                self.store.clone(),
                "p/.datastore.lock".into(),
                TTL,
            ))
        }

        fn scoped(&self, path: &str, priority: u64) -> ScopedLock {
            let paths = vec![path.to_string()];
            ScopedLock::with_priority(self.whole(), self.records(), paths, priority)
        }

        fn requests(&self) -> u64 {
            *self.store.requests.lock().unwrap()
        }

        fn record_keys(&self) -> usize {
            let keys = self.store.keys();
            keys.iter().filter(|k| k.starts_with("p/.locks/")).count()
        }
    }

    async fn held_lease(lock: &dyn DistributedLock) -> crate::domain::lock::Lease {
        held(lock).await
    }

    async fn held(lock: &dyn DistributedLock) -> crate::domain::lock::Lease {
        match lock.try_acquire(TTL).await.unwrap() {
            Attempt::Acquired(lease) => lease,
            Attempt::Busy(obs) => panic!("busy: {}", obs.describe()),
        }
    }

    #[tokio::test]
    async fn scoped_records_on_s3_exclude_conflicts_and_leave_nothing_behind() {
        let bucket = Bucket::new();
        let a = bucket.scoped("data/a/@versions", 1);
        let lease = held(&a).await;
        assert_eq!(bucket.record_keys(), 1);
        // A writer of another item proceeds; one of the same item does not.
        let other = bucket.scoped("data/b/@versions", 2);
        let other_lease = held(&other).await;
        let same = bucket.scoped("data/a/@versions", 0);
        assert!(matches!(
            same.try_acquire(TTL).await.unwrap(),
            Attempt::Busy(_)
        ));
        // The whole lock is announced but waits for both.
        let whole = DrainingLock::new(bucket.whole(), bucket.records());
        assert!(matches!(
            whole.try_acquire(TTL).await.unwrap(),
            Attempt::Busy(_)
        ));
        a.release(&lease).await.unwrap();
        other.release(&other_lease).await.unwrap();
        assert_eq!(
            bucket.record_keys(),
            0,
            "only the yielded writer's own record went"
        );
        let whole_lease = held(&whole).await;
        whole.release(&whole_lease).await.unwrap();
        assert!(bucket.store.keys().is_empty());
    }

    #[tokio::test]
    async fn a_writer_that_yielded_watches_its_blocker_with_one_read_per_attempt() {
        let bucket = Bucket::new();
        let holder = bucket.scoped("data/a/@versions", u64::MAX);
        let lease = held(&holder).await;
        let waiter = bucket.scoped("data/a/@versions", 0);
        assert!(matches!(
            waiter.try_acquire(TTL).await.unwrap(),
            Attempt::Busy(_)
        ));
        for _ in 0..3 {
            let before = bucket.requests();
            assert!(matches!(
                waiter.try_acquire(TTL).await.unwrap(),
                Attempt::Busy(_)
            ));
            assert_eq!(bucket.requests() - before, 1, "one read, no record written");
            assert_eq!(bucket.record_keys(), 1);
        }
        holder.release(&lease).await.unwrap();
        let taken = held(&waiter).await;
        waiter.release(&taken).await.unwrap();
    }

    #[test]
    fn a_record_key_names_its_scope_unless_too_long() {
        // An id as swamp makes them (a v4 UUID, simple form).
        const ID: &str = "084c96c067174781b67541b80ce3fdf1";
        let rows: [(&[&str], Option<&[&str]>); 5] = [
            (&["data/a,b%/@versions"], Some(&["data/a,b%/@versions"])),
            (&["data/x", "outputs/y"], Some(&["data/x", "outputs/y"])),
            (&["data/~a/%2F~b"], Some(&["data/~a/%2F~b"])),
            (&["a~b,c"], Some(&["a~b,c"])),
            (&[], None),
        ];
        for (paths, named) in rows {
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            let rel = record_rel(ID, &paths);
            let want = named.map(|n| LockScope::Paths(n.iter().map(|p| p.to_string()).collect()));
            assert_eq!(scope_named(&rel), want, "{rel}");
            assert!(is_scoped_lock_key(&rel) && rel.ends_with(&format!("{ID}.lock")));
            // Flat: deleting it leaves no directory behind on a store that
            // keeps objects as files.
            assert!(!rel[".locks/".len()..].contains('/'), "{rel}");
        }
        let long = vec!["d".repeat(600)];
        assert_eq!(record_rel(ID, &long), format!(".locks/{ID}.lock"));
        assert_eq!(scope_named(".locks/id.lock"), None);
        // A key swamp did not name says nothing: its record is read.
        assert_eq!(scope_named(".locks/data%2Fa~.lock"), None);
        assert_eq!(scope_named(".locks/data%2Fa~not-an-id!.lock"), None);
        // An older swamp's record names its scope as directories.
        assert_eq!(
            scope_named(".locks/data/a%2Cb/@versions,outputs/y/id.lock"),
            Some(LockScope::Paths(vec![
                "data/a,b/@versions".into(),
                "outputs/y".into()
            ]))
        );
    }

    #[tokio::test]
    async fn writers_of_different_items_never_read_each_others_records() {
        let bucket = Bucket::new();
        let mut held = Vec::new();
        for i in 0..5 {
            let lock = bucket.scoped(&format!("data/i{i}/@versions"), i);
            let lease = held_lease(&lock).await;
            held.push((lock, lease));
        }
        let before = bucket.requests();
        let next = bucket.scoped("data/other/@versions", 9);

        let lease = held_lease(&next).await;
        // Create, whole-lock GET, LIST: none of the five records read.
        assert_eq!(bucket.requests() - before, 3);
        next.release(&lease).await.unwrap();
        for (lock, lease) in held {
            lock.release(&lease).await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_listing_reports_the_index_etag_once() {
        let bucket = Bucket::new();
        bucket.records().list().await.unwrap();
        assert_eq!(bucket.seen.take(), None, "no index yet");
        bucket.store.plant("p/.datastore-index.json", b"{}");
        bucket.records().list().await.unwrap();
        let etag = bucket.seen.take().expect("the index's ETag");
        assert!(!etag.is_empty());
        assert_eq!(bucket.seen.take(), None, "taken once");
    }
}
