//! The push: local changes to the bucket, then the index.
//!
//! One stat walk finds the suspects (new files, or size/mtime moved). Each is
//! read once on a blocking thread, many at a time; a small file's bytes are
//! kept from that read and sent as they are, so what is uploaded is what was
//! hashed. A suspect whose content is what was agreed (only touched) is not
//! sent. Nothing is sent until the cache is known to have seen the remote's
//! latest index: the first file that must go checks that once (`SendGate`),
//! so a push with nothing to send costs no request. Every send checks the
//! lease first. The index is written last with `If-Match` on the ETag we
//! pulled and lists only what reached the bucket.

use super::{compare_with_state, CacheSync, SyncError, SyncReport};
use crate::domain::sync_index::{IndexEntry, RemoteIndex, INDEX_KEY};
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::hashing::{hash_file, FileDigest};
use crate::infrastructure::s3::cache::SyncedFile;
use crate::infrastructure::s3::store::{Fetched, PutMode, StoreError};
use futures::stream::{self, StreamExt};
use std::sync::Mutex;
use tokio::sync::OnceCell;

/// A cache file the stat walk says may have changed.
struct Suspect {
    rel: String,
    mtime_ns: i128,
    /// The SHA-256 last agreed with the remote, if the file was synced.
    agreed_sha256: Option<String>,
}

/// How one suspect ended.
enum Pushed {
    /// Same content as agreed: only its mtime (or nothing) moved.
    Touched {
        rel: String,
        mtime_ns: i128,
        size: u64,
    },
    /// Sent to the bucket, or tried.
    Sent {
        rel: String,
        mtime_ns: i128,
        digest: FileDigest,
        outcome: Result<String, StoreError>,
    },
    /// The file could not be read.
    Unreadable { rel: String, message: String },
    /// Not sent: the push was refused (see `SendGate`).
    Held,
}

/// Lets sends through once the cache is known to be current and while the
/// lease holds; keeps the first refusal.
struct SendGate {
    index_etag: Option<String>,
    /// The generation of the index this push writes, recorded on uploads.
    generation: u64,
    current: OnceCell<bool>,
    refusal: Mutex<Option<SyncError>>,
}

impl SendGate {
    fn new(index_etag: Option<String>, generation: u64) -> Self {
        Self {
            index_etag,
            generation,
            current: OnceCell::new(),
            refusal: Mutex::new(None),
        }
    }

    fn refuse(&self, why: SyncError) {
        if let Ok(mut refusal) = self.refusal.lock() {
            refusal.get_or_insert(why);
        }
    }

    fn refused(&self) -> bool {
        self.refusal.lock().map(|r| r.is_some()).unwrap_or(true)
    }

    fn take_refusal(&self) -> Option<SyncError> {
        self.refusal.lock().ok().and_then(|mut r| r.take())
    }
}

impl CacheSync {
    /// Sends local changes to the bucket.
    pub async fn push(&self, fence: &LeaseFence) -> Result<SyncReport, SyncError> {
        let mut state = self.take_state();
        let mut scan = self.scan()?;
        let (local, unsyncable) = (
            std::mem::take(&mut scan.files),
            std::mem::take(&mut scan.unsyncable),
        );
        let (suspects, mut deleted) = compare_with_state(&local, &state.files);
        // A file this machine no longer scans (its settings narrowed) is not
        // gone, nor is one that became a symlink: its entry stays agreed and
        // is carried into the index.
        deleted.retain(|rel| self.owns(rel) && !scan.blocks(rel));
        let suspects: Vec<Suspect> = suspects
            .into_iter()
            .map(|(rel, stat)| Suspect {
                rel: rel.clone(),
                mtime_ns: stat.mtime_ns,
                agreed_sha256: state.files.get(rel).map(|f| f.sha256.clone()),
            })
            .collect();
        drop(local);
        if suspects.is_empty() && deleted.is_empty() {
            self.keep_state(state);
            return Ok(SyncReport {
                unsyncable,
                ..SyncReport::default()
            });
        }
        let gate = SendGate::new(state.index_etag.clone(), state.generation + 1);
        self.start_progress("push", (suspects.len() + deleted.len()) as u64);
        let pushed: Vec<Pushed> = stream::iter(suspects)
            .map(|suspect| self.push_one(suspect, fence, &gate))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        // Deletions are recorded in the index before any object goes: an
        // orphan object is harmless, an index naming a missing object is not.
        if !deleted.is_empty() {
            self.may_send(&gate, fence).await;
        }
        if let Some(refusal) = gate.take_refusal() {
            // Refused before the first send (behind, or the index could not be
            // checked), or the lease was lost: the index is not written.
            return Err(refusal);
        }
        let mut report = SyncReport {
            unsyncable,
            ..SyncReport::default()
        };
        let mut failures = Vec::new();
        let mut sent_any = !deleted.is_empty();
        let mut state_dirty = false;
        // What this push changed in the agreed state, to undo if its index
        // cannot be written: then nothing it sent counts as agreed.
        let mut undo: Vec<(String, Option<SyncedFile>)> = Vec::new();
        for outcome in pushed {
            match outcome {
                Pushed::Touched {
                    rel,
                    mtime_ns,
                    size,
                } => {
                    if let Some(agreed) = state.files.get_mut(&rel) {
                        agreed.mtime_ns = mtime_ns;
                        agreed.size = size;
                        state_dirty = true;
                    }
                }
                Pushed::Sent {
                    rel,
                    mtime_ns,
                    digest,
                    outcome,
                } => {
                    sent_any = true;
                    match outcome {
                        Ok(_) => {
                            report.uploaded += 1;
                            report.uploaded_bytes += digest.size;
                            let previous = state.files.insert(
                                rel.clone(),
                                SyncedFile {
                                    size: digest.size,
                                    mtime_ns,
                                    sha256: digest.sha256,
                                    parts: digest.parts,
                                },
                            );
                            undo.push((rel, previous));
                        }
                        Err(e) => failures.push(format!("{rel}: {e}")),
                    }
                }
                Pushed::Unreadable { rel, message } => failures.push(format!("{rel}: {message}")),
                Pushed::Held => {}
            }
        }
        for rel in &deleted {
            let previous = state.files.remove(rel);
            undo.push((rel.clone(), previous));
        }
        if sent_any {
            self.write_index(&mut state, undo, fence).await?;
        } else if state_dirty {
            self.save(&state)?;
        }
        let deletions: Vec<(String, Result<(), StoreError>)> = stream::iter(deleted)
            .map(|rel| async move {
                let outcome = match fence.check() {
                    Err(lost) => Err(StoreError::Failed {
                        op: "delete",
                        target: self.key(&rel),
                        message: lost.to_string(),
                    }),
                    Ok(()) => match self.store.delete(&self.key(&rel), None).await {
                        Err(StoreError::NotFound(_)) => Ok(()),
                        other => other,
                    },
                };
                self.tick();
                (rel, outcome)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for (rel, outcome) in deletions {
            match outcome {
                Ok(()) => report.deleted_remote += 1,
                Err(e) => failures.push(format!(
                    "{rel}: the index no longer lists it, but its object could not be deleted (an orphan, harmless): {e}"
                )),
            }
        }
        self.keep_state(state);
        if !failures.is_empty() {
            return Err(SyncError::Incomplete(failures));
        }
        Ok(report)
    }

    /// Reads one suspect (off the runtime) and sends it if its content changed.
    async fn push_one(&self, suspect: Suspect, fence: &LeaseFence, gate: &SendGate) -> Pushed {
        if gate.refused() {
            // The push is refused: reading more files would only delay saying so.
            return Pushed::Held;
        }
        let path = self.cache().join(&suspect.rel);
        let read = {
            let path = path.clone();
            crate::infrastructure::blocking::run(move || hash_file(&path)).await
        };
        let hashed = match read {
            Ok(hashed) => hashed,
            Err(e) => {
                self.tick();
                return Pushed::Unreadable {
                    rel: suspect.rel,
                    message: format!("{}: {e}", path.display()),
                };
            }
        };
        if suspect.agreed_sha256.as_deref() == Some(hashed.digest.sha256.as_str()) {
            self.tick();
            return Pushed::Touched {
                rel: suspect.rel,
                mtime_ns: suspect.mtime_ns,
                size: hashed.digest.size,
            };
        }
        if !self.may_send(gate, fence).await {
            return Pushed::Held;
        }
        let outcome = self
            .store
            .put_file(
                &self.key(&suspect.rel),
                &path,
                &hashed.digest,
                gate.generation,
                hashed.content,
            )
            .await;
        self.tick();
        Pushed::Sent {
            rel: suspect.rel,
            mtime_ns: suspect.mtime_ns,
            digest: hashed.digest,
            outcome,
        }
    }

    /// Whether a send may go: the cache is current (checked once, by the
    /// first sender) and the lease holds. A refusal is kept in `gate`.
    async fn may_send(&self, gate: &SendGate, fence: &LeaseFence) -> bool {
        // A lost lease stops the push before any request, even the index check.
        if let Err(lost) = fence.check() {
            gate.refuse(lost.into());
            return false;
        }
        let current = *gate
            .current
            .get_or_init(|| async {
                match self.ensure_current(gate.index_etag.as_deref()).await {
                    Ok(()) => true,
                    Err(e) => {
                        gate.refuse(e);
                        false
                    }
                }
            })
            .await;
        if !current {
            return false;
        }
        if let Err(lost) = fence.check() {
            gate.refuse(lost.into());
            return false;
        }
        true
    }

    /// Refuses to push from a cache that has not seen the remote's latest
    /// index: its uploads could overwrite newer objects before the index
    /// write notices. Free when a pull in this process already checked.
    async fn ensure_current(&self, index_etag: Option<&str>) -> Result<(), SyncError> {
        if self.current.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let index_key = self.key(INDEX_KEY);
        let current = match (
            self.store.get_bytes(&index_key, index_etag).await,
            index_etag,
        ) {
            (Ok(Fetched::NotModified), _) => true,
            (Err(StoreError::NotFound(_)), None) => {
                self.refuse_unindexed_objects().await?;
                true
            }
            (Ok(Fetched::Object(..)), _) | (Err(StoreError::NotFound(_)), Some(_)) => false,
            (Err(e), _) => return Err(e.into()),
        };
        if !current {
            return Err(SyncError::Behind(self.remote_name()));
        }
        self.mark_current();
        Ok(())
    }

    /// Writes the index of what the bucket now holds: agreed files plus what
    /// just succeeded (failed uploads keep their previous entry), with
    /// `If-Match` on the ETag we pulled.
    ///
    /// A refusal (412) is read back first: the write may have landed with
    /// its reply lost, and the SDK's retry met it. If the index there is the
    /// one we sent, we are done. Otherwise another writer's index stands, and
    /// `undo` restores the agreed state from before this push, so everything
    /// it sent stays dirty (pushed again, never taken for agreed and then
    /// deleted by the next pull).
    async fn write_index(
        &self,
        state: &mut crate::infrastructure::s3::cache::SyncState,
        undo: Vec<(String, Option<SyncedFile>)>,
        fence: &LeaseFence,
    ) -> Result<(), SyncError> {
        let mut files: std::collections::BTreeMap<String, IndexEntry> = state
            .files
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    IndexEntry {
                        size: f.size,
                        sha256: f.sha256.clone(),
                        // The state file is local and may be damaged:
                        // checksums that cannot fit would make the index
                        // unreadable for everyone.
                        parts: f.parts.clone().filter(|p| p.fits(f.size)),
                    },
                )
            })
            .collect();
        // Other machines' paths, exactly as the remote listed them.
        for (rel, entry) in &state.foreign {
            files.entry(rel.clone()).or_insert_with(|| entry.clone());
        }
        let conflict = crate::domain::sync_index::path_conflict(&files);
        let index = RemoteIndex {
            format: crate::domain::sync_index::INDEX_FORMAT,
            repo_id: self.owner.clone(),
            generation: state.generation + 1,
            files,
        };
        fence.check()?;
        if let Some((file, nested)) = conflict {
            // Only possible beside another machine's paths (a local disk
            // cannot hold both): nothing this push sent counts as agreed.
            Self::undo(state, undo);
            self.save(state)?;
            return Err(SyncError::PathConflict { file, nested });
        }
        let mode = match &state.index_etag {
            Some(etag) => PutMode::Update(etag.clone()),
            None => PutMode::Create,
        };
        let index_key = self.key(INDEX_KEY);
        match self
            .store
            .put_bytes(&index_key, index.to_json(), mode)
            .await
        {
            Ok(etag) => {
                state.index_etag = Some(etag);
                state.generation = index.generation;
            }
            Err(StoreError::Precondition(target)) => {
                if let Some(etag) = self.landed(&index_key, &index).await {
                    state.index_etag = Some(etag);
                    state.generation = index.generation;
                } else {
                    Self::undo(state, undo);
                    // The next pull reads the index from scratch.
                    state.index_etag = None;
                    self.save(state)?;
                    return Err(SyncError::IndexConflict(target));
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.save(state)?;
        Ok(())
    }
}

impl CacheSync {
    /// Restores the agreed entries a push changed, newest change first.
    fn undo(
        state: &mut crate::infrastructure::s3::cache::SyncState,
        undo: Vec<(String, Option<SyncedFile>)>,
    ) {
        for (rel, previous) in undo.into_iter().rev() {
            match previous {
                Some(entry) => state.files.insert(rel, entry),
                None => state.files.remove(&rel),
            };
        }
    }

    /// The ETag of the index at `key` if it is exactly `sent` (our write
    /// landed); `None` if it is another or cannot be read.
    pub(super) async fn landed(&self, key: &str, sent: &RemoteIndex) -> Option<String> {
        match self.store.get_bytes(key, None).await {
            Ok(Fetched::Object(bytes, meta)) => {
                let there = RemoteIndex::parse(&bytes).ok()?;
                (there == *sent).then_some(meta.etag)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fence, index, machine, write};
    use super::*;
    use crate::infrastructure::s3::cache::SyncState;
    use crate::infrastructure::s3::memory_store::MemoryStore;
    use std::sync::Arc;

    fn requests(store: &MemoryStore) -> u64 {
        *store.requests.lock().unwrap()
    }

    #[tokio::test]
    async fn a_push_checks_the_index_once_however_many_files_it_sends() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        a.pull(&fence()).await.unwrap();
        write(dir.path(), "outputs/first", "1");
        a.push(&fence()).await.unwrap();
        for i in 0..10 {
            write(
                dir.path(),
                &format!("outputs/d/f{i}"),
                &format!("content {i}"),
            );
        }
        // A new process: nothing pulled, so the push must check the index.
        let a = machine(&store, dir.path());
        let before = requests(&store);
        let report = a.push(&fence()).await.unwrap();
        assert_eq!(report.uploaded, 10);
        assert_eq!(requests(&store) - before, 1 + 10 + 1);
        assert_eq!(index(&store).files.len(), 11);
        assert_eq!(store.object("p/outputs/d/f7").unwrap(), b"content 7");
    }

    #[tokio::test]
    async fn touched_files_are_not_sent_and_their_new_mtimes_are_kept() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        a.pull(&fence()).await.unwrap();
        write(dir.path(), "outputs/f", "same");
        a.push(&fence()).await.unwrap();
        let path = dir.path().join("outputs/f");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let a = machine(&store, dir.path());
        let before = requests(&store);
        let report = a.push(&fence()).await.unwrap();
        assert_eq!(report.uploaded, 0);
        assert_eq!(
            requests(&store) - before,
            0,
            "a touched file costs no request"
        );
        let state = SyncState::load(dir.path(), &a.remote_name());
        let kept = state.files.get("outputs/f").unwrap().mtime_ns;
        assert_eq!(
            kept,
            crate::infrastructure::s3::cache::mtime_ns(&std::fs::metadata(&path).unwrap())
        );
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_read_fails_alone_and_sends_nothing() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        let gate = SendGate::new(None, 1);
        let gone = Suspect {
            rel: "outputs/vanished".into(),
            mtime_ns: 1,
            agreed_sha256: None,
        };
        let pushed = a.push_one(gone, &fence(), &gate).await;
        assert!(
            matches!(&pushed, Pushed::Unreadable { rel, .. } if rel == "outputs/vanished"),
            "not reported as unreadable"
        );
        assert_eq!(requests(&store), 0);
        assert!(gate.take_refusal().is_none());
    }

    #[tokio::test]
    async fn a_refused_gate_holds_every_send() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "outputs/f", "x");
        let a = machine(&store, dir.path());
        // The cache believes it pulled an index the remote does not have.
        let gate = SendGate::new(Some("\"etag-gone\"".into()), 1);
        let suspect = Suspect {
            rel: "outputs/f".into(),
            mtime_ns: 1,
            agreed_sha256: None,
        };
        assert!(matches!(
            a.push_one(suspect, &fence(), &gate).await,
            Pushed::Held
        ));
        assert!(gate.refused());
        // Later suspects are not even read once the push is refused.
        let before = requests(&store);
        let missing = Suspect {
            rel: "outputs/missing".into(),
            mtime_ns: 1,
            agreed_sha256: None,
        };
        assert!(matches!(
            a.push_one(missing, &fence(), &gate).await,
            Pushed::Held
        ));
        assert_eq!(requests(&store), before);
        assert!(matches!(gate.take_refusal(), Some(SyncError::Behind(_))));
        assert!(store.object("p/outputs/f").is_none());
    }

    #[tokio::test]
    async fn an_index_write_whose_reply_was_lost_is_adopted() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        a.pull(&fence()).await.unwrap();
        write(dir.path(), "outputs/first", "1");
        *store.lost_put_replies.lock().unwrap() = 1;
        a.push(&fence())
            .await
            .expect("our own index is not another writer's");
        assert!(index(&store).files.contains_key("outputs/first"));
        // The adopted ETag is the real one: the next conditional write works.
        write(dir.path(), "outputs/second", "2");
        a.push(&fence()).await.unwrap();
        assert_eq!(index(&store).files.len(), 2);
    }

    #[tokio::test]
    async fn a_refused_index_write_leaves_everything_it_sent_dirty() {
        let store = Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let a = machine(&store, dir.path());
        a.pull(&fence()).await.unwrap();
        write(dir.path(), "outputs/kept", "agreed");
        a.push(&fence()).await.unwrap();
        write(dir.path(), "outputs/new", "never indexed");
        *store.put_refusals.lock().unwrap() = 1;
        let err = a.push(&fence()).await.unwrap_err();
        assert!(matches!(err, SyncError::IndexConflict(_)), "{err}");
        assert!(!index(&store).files.contains_key("outputs/new"));
        // The next command pulls (the index did not list the file, so it is
        // not taken for deleted) and pushes it again.
        let a = machine(&store, dir.path());
        a.pull(&fence()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("outputs/new")).unwrap(),
            "never indexed"
        );
        let report = a.push(&fence()).await.unwrap();
        assert_eq!(report.uploaded, 1);
        assert!(index(&store).files.contains_key("outputs/new"));
        assert!(index(&store).files.contains_key("outputs/kept"));
    }
}
