//! A scoped writer's sync: pull its scope, push its scope, and merge its
//! changes into the index (design/datastores.md, Scoped locks: index commits
//! merge).
//!
//! Model: the writer holds a scoped lock, so no one else changes the index
//! entries inside its scope, while writers of other scopes commit at will.
//! `pull_scope` fetches the index and only the scope's files (like a
//! reader's partial pull, the cache is not made current) and keeps the index
//! it read as the base of the commit. `merge_index` applies only this
//! writer's own changes — the entries of the files it uploaded or deleted —
//! to that base and writes it `If-Match` the base's ETag; on 412 it pauses
//! (jittered backoff), reads the index again and re-applies, a bounded
//! number of times. Changes to disjoint scopes commute, so no writer drops
//! another's entries. The root is read after the pause, never before it: a
//! pause inside the window between reading the base and writing onto it
//! only lets more commits land there, and a writer that kept losing would
//! back off ever longer and lose ever more (its machine's other writers
//! queued behind it). For the same reason a writer that waited for its
//! machine's commit lock checks its base first (a conditional GET): the
//! writer before it has most likely committed onto it. A commit over other
//! writers' commits leaves the cache's index ETag as it was: the next full
//! pull fetches what they changed.

use super::index_write::{index_entry, index_files};
use super::{CacheSync, SyncError};
use crate::domain::index_shards::{IndexRoot, SHARDED_FORMAT};
use crate::domain::lock_scope::groups_holding;
use crate::domain::sync_index::{path_conflict, RemoteIndex, INDEX_KEY};
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::s3::cache::{SyncState, SyncedFile};
use crate::infrastructure::s3::cache_lock::CacheLock;
use crate::infrastructure::s3::index_store::{
    IndexIoError, IndexRead, IndexWrite, LoadedIndex, PendingShards,
};
use crate::infrastructure::s3::store::{ETag, PutMode, StoreError};
use std::time::Duration;

/// Index writes a merging commit tries before it gives up.
const MERGE_ATTEMPTS: u32 = 12;
/// The pause after a refused commit (times the attempt, jittered).
const MERGE_PAUSE: Duration = Duration::from_millis(15);

/// The index a merging commit starts from.
struct Base {
    /// Its files: all, or those of the `covered` slots.
    index: RemoteIndex,
    /// Its root, when sharded.
    root: Option<IndexRoot>,
    /// The slots `index` holds, when not all.
    covered: Option<Vec<bool>>,
    /// `None`: there is no index yet (the commit creates it).
    etag: Option<ETag>,
    /// Whether `index` is exactly what the agreed state stands for, so a
    /// commit on it leaves the cache current.
    agreed: bool,
}

impl Base {
    fn read(loaded: LoadedIndex) -> Self {
        Base {
            covered: loaded.covered().map(<[bool]>::to_vec),
            index: loaded.index,
            root: loaded.root,
            etag: Some(loaded.etag),
            agreed: false,
        }
    }
}

/// The index groups a commit of `changes` must read: those of the changed
/// paths and of every directory above them (one listed as a file would make
/// the index unreadable), when they all lie in items' versions directories
/// (or are the command's own audit file); `None` (the whole index)
/// otherwise, since a new file may also conflict with files below it, which
/// can be in any shard.
fn groups_of(changes: &[(String, Option<SyncedFile>)]) -> Option<Vec<String>> {
    let mut groups = std::collections::BTreeSet::new();
    for (rel, _) in changes {
        groups.extend(groups_holding(rel)?);
    }
    Some(groups.into_iter().collect())
}

impl CacheSync {
    /// The generation a scoped push's uploads record (that of the index it
    /// commits onto).
    pub(super) fn scoped_generation(&self, state: &SyncState) -> u64 {
        self.scoped_base
            .lock()
            .ok()
            .and_then(|base| base.as_ref().map(|loaded| loaded.index.generation))
            .unwrap_or(state.generation)
    }

    /// Merges this push's changes — the paths in `undo`, now as `state`
    /// holds them — into the index. On failure `undo` is applied, so
    /// everything the push sent stays dirty.
    pub(super) async fn merge_index(
        &self,
        state: &mut SyncState,
        undo: Vec<(String, Option<SyncedFile>)>,
        fence: &LeaseFence,
    ) -> Result<(), SyncError> {
        let changes: Vec<(String, Option<SyncedFile>)> = undo
            .iter()
            .map(|(rel, _)| (rel.clone(), state.files.get(rel).cloned()))
            .collect();
        let scoped_base = self.scoped_base.lock().ok().and_then(|mut b| b.take());
        let mut base = match scoped_base {
            Some(loaded) if changes.iter().all(|(rel, _)| loaded.covers(rel)) => Base::read(loaded),
            Some(_) => self.read_base(&changes, None).await?,
            // The scoped pull found the index unchanged (or none): the agreed
            // state is the index.
            None => Base {
                index: RemoteIndex {
                    format: SHARDED_FORMAT,
                    repo_id: self.owner.clone(),
                    generation: state.generation,
                    // As agreed before this push changed it.
                    files: {
                        let mut files = index_files(state);
                        for (rel, before) in &undo {
                            match before {
                                Some(file) => files.insert(rel.clone(), index_entry(file)),
                                None => files.remove(rel),
                            };
                        }
                        files
                    },
                },
                root: state.index_root.clone(),
                covered: None,
                etag: state.index_etag.clone(),
                agreed: true,
            },
        };
        let mut pending = PendingShards::default();
        // This machine's other scoped writers wait here rather than race us.
        let _commit = match &self.shared {
            Some(shared) => Some(CacheLock::acquire_commit(self.cache(), shared.timeout()).await?),
            None => None,
        };
        let waited = _commit.as_ref().is_some_and(CacheLock::waited);
        let outcome = async {
            if waited {
                base = self.refresh_base(&changes, base).await?;
            }
            for attempt in 1..=MERGE_ATTEMPTS {
                // A retry whose base already holds every change: an earlier
                // attempt landed with its reply lost, and another writer
                // committed on top of it before the read-back.
                let landed = attempt > 1
                    && changes.iter().all(|(rel, now)| {
                        base.index.files.get(rel).map(|e| e.sha256)
                            == now.as_ref().map(|f| f.sha256)
                    });
                if let (true, Some(etag), Some(root)) = (landed, &base.etag, &base.root) {
                    tracing::debug!("an earlier attempt of this commit landed");
                    return Ok((etag.clone(), base.index.generation, root.clone(), false));
                }
                // Inside our scope the index must still be what we pulled:
                // anything else means a writer outside our lock changed it,
                // and merging would silently drop its entry.
                if let Some((rel, _)) = undo.iter().find(|(rel, before)| {
                    base.index.files.get(rel).map(|e| e.sha256) != before.as_ref().map(|b| b.sha256)
                }) {
                    return Err(SyncError::ScopeChanged(rel.clone()));
                }
                let mut files = base.index.files.clone();
                for (rel, now) in &changes {
                    match now {
                        Some(file) => files.insert(rel.clone(), index_entry(file)),
                        None => files.remove(rel),
                    };
                }
                if let Some((file, nested)) = path_conflict(&files) {
                    return Err(SyncError::PathConflict { file, nested });
                }
                let generation = base.index.generation + 1;
                fence.check()?;
                let mode = match &base.etag {
                    Some(etag) => PutMode::Update(etag.clone()),
                    None => PutMode::Create,
                };
                let written = self
                    .index_store()
                    .write(
                        IndexWrite {
                            files: &files,
                            repo_id: self.owner.clone(),
                            generation,
                            base: base.root.as_ref(),
                            covered: base.covered.as_deref(),
                            may_reshard: false,
                        },
                        mode,
                        fence,
                        &mut pending,
                    )
                    .await;
                match written {
                    Ok((etag, root)) => return Ok((etag, generation, root, base.agreed)),
                    // 409: a store's answer to two conditional writes at
                    // once (AWS ConditionalRequestConflict): also a retry.
                    Err(IndexIoError::Store(
                        StoreError::Precondition(_) | StoreError::Conflict(_),
                    )) => {}
                    Err(e) => return Err(e.into()),
                }
                tracing::debug!(attempt, "another writer committed first; merging again");
                let pause = MERGE_PAUSE.mul_f64(rand::random::<f64>() + 0.5) * attempt;
                tokio::time::sleep(pause).await;
                base = self.read_base(&changes, pending.found().cloned()).await?;
            }
            Err(SyncError::IndexConflict(format!(
                "{} ({MERGE_ATTEMPTS} merging commits refused: too many writers at once)",
                self.store.url(&self.key(INDEX_KEY))
            )))
        }
        .await;
        match outcome {
            Ok((etag, generation, root, agreed)) => {
                if agreed {
                    // Nobody committed since the index this cache agreed on.
                    state.index_etag = Some(etag);
                    state.generation = generation;
                    state.index_root = Some(root);
                }
                self.save(state).await
            }
            Err(e) => {
                self.index_store().abandon(pending, fence).await;
                Self::undo(state, undo);
                self.save(state).await?;
                Err(e)
            }
        }
    }

    /// `base`, or the index that replaced it (the shards `changes` touch):
    /// one conditional GET of the root, 304 while it stands (a plain GET,
    /// 404 while there is none, when the base is that no index exists).
    async fn refresh_base(
        &self,
        changes: &[(String, Option<SyncedFile>)],
        base: Base,
    ) -> Result<Base, SyncError> {
        let etag = base.etag.clone();
        let groups = groups_of(changes);
        match self
            .index_store()
            .read(etag.as_ref(), groups.as_deref())
            .await?
        {
            IndexRead::NotModified => Ok(base),
            // Still no index: the commit creates it (conditionally).
            IndexRead::Absent if etag.is_none() => Ok(base),
            read => self.base_of(read),
        }
    }

    /// The index as it stands now (the shards `changes` touch), for the
    /// next merging attempt.
    /// `known` is the root a refused write read back: a conditional GET
    /// checks that it still stands (it was read before the pause), and then
    /// only its shards are fetched.
    async fn read_base(
        &self,
        changes: &[(String, Option<SyncedFile>)],
        known: Option<(IndexRoot, ETag)>,
    ) -> Result<Base, SyncError> {
        let groups = groups_of(changes);
        let store = self.index_store();
        let read = match known {
            Some((root, etag)) => match store.read(Some(&etag), groups.as_deref()).await? {
                IndexRead::NotModified => store.read_known(root, etag, groups.as_deref()).await?,
                newer => newer,
            },
            None => store.read(None, groups.as_deref()).await?,
        };
        self.base_of(read)
    }

    /// The base a read found.
    fn base_of(&self, read: IndexRead) -> Result<Base, SyncError> {
        match read {
            IndexRead::Found(loaded) => {
                if let Some(ours) = &self.owner {
                    loaded.index.check_owner(&self.remote_name(), ours)?;
                }
                Ok(Base::read(*loaded))
            }
            // Gone since the pull, or (never for an unconditional GET) 304.
            IndexRead::Absent | IndexRead::NotModified => {
                Err(SyncError::IndexConflict(self.remote_name()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fence, index, machine, one_machine, write};
    use super::*;
    use crate::domain::lock_scope::LockScope;
    use crate::infrastructure::s3::memory_store::MemoryStore;
    use std::sync::Arc;

    fn scope(path: &str) -> LockScope {
        LockScope::Paths(vec![path.to_string()])
    }

    /// A bucket holding `outputs/kept`, and a new process of the cache that
    /// pushed it, which has pulled the scope `data/a`.
    async fn scoped_writer_over_one_agreed_file() -> (Arc<MemoryStore>, tempfile::TempDir, CacheSync)
    {
        let (store, dir, a) = one_machine();
        a.pull(&fence()).await.unwrap();
        write(dir.path(), "outputs/kept", "agreed");
        a.push(&fence()).await.unwrap();
        let a = machine(&store, dir.path());
        a.pull_scope(&fence(), &scope("data/a")).await.unwrap();
        (store, dir, a)
    }

    #[tokio::test]
    async fn commits_of_two_scopes_merge_and_neither_drops_the_others_entries() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let seed = machine(&store, da.path());
        seed.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/shared", "everyone's");
        seed.push(&fence()).await.unwrap();

        // Both pull their scope from the same index, then both commit.
        let (a, b) = (machine(&store, da.path()), machine(&store, db.path()));
        a.pull_scope(&fence(), &scope("data/a")).await.unwrap();
        b.pull_scope(&fence(), &scope("data/b")).await.unwrap();
        write(da.path(), "data/a/1", "from a");
        write(db.path(), "data/b/1", "from b");
        a.push_scope(&fence(), &scope("data/a")).await.unwrap();
        // b's base is stale now: its commit is refused once, then merges.
        b.push_scope(&fence(), &scope("data/b")).await.unwrap();
        let files = index(&store).files;
        let listed: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(listed, ["data/a/1", "data/b/1", "outputs/shared"]);
        assert_eq!(index(&store).generation, 3);
        // b never downloaded outputs/shared, and its scoped pull did not make
        // it current: a full pull fetches what others wrote, deletes nothing.
        assert!(!db.path().join("outputs/shared").exists());
        let b = machine(&store, db.path());
        b.pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(db.path().join("outputs/shared")).unwrap(),
            "everyone's"
        );
        assert_eq!(
            std::fs::read_to_string(db.path().join("data/b/1")).unwrap(),
            "from b"
        );
        assert!(db.path().join("data/a/1").is_file());
    }

    #[tokio::test]
    async fn a_scoped_push_sends_and_deletes_nothing_outside_its_scope() {
        let (store, dir, a) = scoped_writer_over_one_agreed_file().await;
        write(dir.path(), "data/a/1", "in scope");
        write(dir.path(), "outputs/stray", "outside the scope");
        std::fs::remove_file(dir.path().join("outputs/kept")).unwrap();
        let report = a.push_scope(&fence(), &scope("data/a")).await.unwrap();
        assert_eq!((report.uploaded, report.deleted_remote), (1, 0));
        let files = index(&store).files;
        assert!(files.contains_key("data/a/1") && files.contains_key("outputs/kept"));
        assert!(!files.contains_key("outputs/stray"));
        assert!(store.object("p/outputs/stray").is_none());
    }

    #[tokio::test]
    async fn a_commit_refused_every_time_leaves_what_it_sent_dirty() {
        let (store, dir, a) = scoped_writer_over_one_agreed_file().await;
        write(dir.path(), "data/a/1", "never committed");
        *store.put_refusals.lock().unwrap() = MERGE_ATTEMPTS;
        let err = a.push_scope(&fence(), &scope("data/a")).await.unwrap_err();
        assert!(matches!(err, SyncError::IndexConflict(_)), "{err}");
        assert!(!index(&store).files.contains_key("data/a/1"));
        // Still dirty: the next push sends it again.
        let a = machine(&store, dir.path());
        a.pull(&fence()).await.unwrap();
        let report = a.push(&fence()).await.unwrap();
        assert_eq!(report.uploaded, 1);
        assert!(index(&store).files.contains_key("data/a/1"));
    }

    fn shared(store: &Arc<MemoryStore>, cache: &std::path::Path) -> CacheSync {
        machine(store, cache).sharing_cache(Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_shared_scoped_pull_deletes_nothing_outside_its_scope() {
        let store = Arc::new(MemoryStore::default());
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        write(da.path(), "outputs/kept", "agreed");
        a.push(&fence()).await.unwrap();
        // Another machine deletes it.
        let b = machine(&store, db.path());
        b.pull(&fence()).await.unwrap();
        std::fs::remove_file(db.path().join("outputs/kept")).unwrap();
        b.push(&fence()).await.unwrap();
        // A scoped writer sharing this cache with others leaves it: another
        // writer of this machine may be changing that path right now.
        let a = shared(&store, da.path());
        a.pull_scope(&fence(), &scope("data/a")).await.unwrap();
        assert!(da.path().join("outputs/kept").is_file());
        write(da.path(), "data/a/1", "mine");
        a.push_scope(&fence(), &scope("data/a")).await.unwrap();
        // A whole pull then mirrors the deletion.
        let a = machine(&store, da.path());
        a.pull(&fence()).await.unwrap();
        assert!(!da.path().join("outputs/kept").exists());
        assert!(da.path().join("data/a/1").is_file());
    }

    /// Whether a process blocks in `flock` on the file `path`: /proc/locks
    /// lists a waiter as a `->` line naming the file's inode.
    fn someone_waits_for(path: &std::path::Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(path).unwrap().ino().to_string();
        std::fs::read_to_string("/proc/locks")
            .expect("this test needs /proc/locks (Linux) to see a process wait in flock")
            .lines()
            .filter(|line| line.contains("->"))
            .any(|line| {
                line.split_whitespace().any(|field| {
                    field.matches(':').count() == 2 && field.ends_with(&format!(":{inode}"))
                })
            })
    }

    #[tokio::test]
    async fn a_writer_that_waited_for_the_commit_lock_checks_its_base_before_writing_onto_it() {
        use crate::infrastructure::s3::cache_lock::COMMIT_LOCK_FILE;
        let (store, dir, _) = scoped_writer_over_one_agreed_file().await;
        // A commit-lock timeout as generous as the wait below (a busy machine).
        let b = machine(&store, dir.path()).sharing_cache(Duration::from_secs(60));
        b.pull_scope(&fence(), &scope("data/b")).await.unwrap();
        write(dir.path(), "data/b/1", "from b");
        // This machine's previous committer holds the commit lock while b
        // comes to commit...
        let held = CacheLock::acquire_commit(dir.path(), Duration::from_secs(5))
            .await
            .unwrap();
        let lock_file = dir.path().join(COMMIT_LOCK_FILE);
        let other = tempfile::tempdir().unwrap();
        // ...and meanwhile another machine commits onto the index b pulled.
        let meanwhile = async {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !someone_waits_for(&lock_file) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "b never queued for the commit lock"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let c = machine(&store, other.path());
            c.pull_scope(&fence(), &scope("data/c")).await.unwrap();
            write(other.path(), "data/c/1", "from c");
            c.push_scope(&fence(), &scope("data/c")).await.unwrap();
            let refused = *store.stale_writes.lock().unwrap();
            drop(held);
            refused
        };
        let (b_fence, b_scope) = (fence(), scope("data/b"));
        let (pushed, refused) = tokio::join!(b.push_scope(&b_fence, &b_scope), meanwhile);
        pushed.unwrap();
        assert_eq!(
            *store.stale_writes.lock().unwrap(),
            refused,
            "b read the index as it stands before its first write, so nothing of it was refused"
        );
        let files = index(&store).files;
        assert!(files.contains_key("data/b/1") && files.contains_key("data/c/1"));
        assert!(files.contains_key("outputs/kept"));
    }

    #[tokio::test]
    async fn after_a_refusal_the_root_read_back_is_checked_before_it_is_written_onto() {
        let (store, dir, a) = scoped_writer_over_one_agreed_file().await;
        write(dir.path(), "data/a/1", "from a");
        // The first write is refused, and its read-back sees a root that no
        // longer stands by the time the pause is over (ETag "stale").
        let root_key = crate::domain::sync_index::object_key("p", INDEX_KEY);
        let standing = store.object(&root_key).unwrap();
        *store.put_refusals.lock().unwrap() = 1;
        store.serve_once(&root_key, standing);
        a.push_scope(&fence(), &scope("data/a")).await.unwrap();
        assert_eq!(
            *store.stale_writes.lock().unwrap(),
            0,
            "the retry wrote onto the root that stands, not onto the one read back"
        );
        assert!(index(&store).files.contains_key("data/a/1"));
    }

    #[tokio::test]
    async fn shared_writers_of_one_cache_keep_each_others_state() {
        let (store, dir, _) = scoped_writer_over_one_agreed_file().await;
        let (a, b) = (shared(&store, dir.path()), shared(&store, dir.path()));
        a.pull_scope(&fence(), &scope("data/a")).await.unwrap();
        b.pull_scope(&fence(), &scope("data/b")).await.unwrap();
        write(dir.path(), "data/a/1", "from a");
        write(dir.path(), "data/b/1", "from b");
        // Both pulled before either pushed: each saves over the other's file.
        b.push_scope(&fence(), &scope("data/b")).await.unwrap();
        a.push_scope(&fence(), &scope("data/a")).await.unwrap();
        let files = index(&store).files;
        assert!(files.contains_key("data/a/1") && files.contains_key("data/b/1"));
        // The state agrees on both (a whole pull would otherwise hash b's
        // file again to find it agreed), and a whole push has nothing to send.
        let state = SyncState::load_raw(dir.path()).unwrap();
        assert_eq!(state.files["data/a/1"].sha256, files["data/a/1"].sha256);
        assert_eq!(state.files["data/b/1"].sha256, files["data/b/1"].sha256);
        let whole = machine(&store, dir.path());
        whole.pull(&fence()).await.unwrap();
        let report = whole.push(&fence()).await.unwrap();
        assert_eq!(report.uploaded, 0, "{report:?}");
    }
}
