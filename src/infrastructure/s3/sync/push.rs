//! The push: local changes to the bucket, then the index, then deletions.
//!
//! One stat walk finds the suspects (new files, or size/mtime moved) and the
//! agreed files that are gone (`plan`). Suspects are read and sent many at a
//! time (`send.rs`); a suspect whose content is what was agreed (only
//! touched) is not sent. Nothing is sent until the cache is known to have
//! seen the remote's latest index, and every send checks the lease first.
//! The index is written last with `If-Match` on the ETag we pulled and lists
//! only what reached the bucket (`index_write.rs`); only then are the
//! objects of deleted files removed.

use super::send::{Pushed, SendGate, Suspect};
use super::{compare_with_state, CacheSync, SyncError, SyncReport, Unsyncable};
use crate::domain::lock_scope::LockScope;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::s3::cache::{SyncState, SyncedFile};
use crate::infrastructure::s3::store::StoreError;
use crate::infrastructure::s3::sync_times::{SyncTimes, Synced};
use futures::stream::{self, StreamExt};

/// What a push has to do, from one stat walk against the agreed state.
struct Plan {
    /// Files that may have changed: read, and sent if they did.
    suspects: Vec<Suspect>,
    /// Agreed files gone from the cache: unlisted, then their objects deleted.
    deleted: Vec<String>,
    /// Cache entries the push cannot sync, reported.
    unsyncable: Vec<Unsyncable>,
}

impl CacheSync {
    /// Sends local changes to the bucket.
    pub async fn push(&self, fence: &LeaseFence) -> Result<SyncReport, SyncError> {
        self.push_with(fence, None).await
    }

    /// Sends local changes inside `scope` only, and merges them into the
    /// index (`scoped.rs`); the caller holds `scope`'s lock and pulled it
    /// with `pull_scope`.
    pub(crate) async fn push_scope(
        &self,
        fence: &LeaseFence,
        scope: &LockScope,
    ) -> Result<SyncReport, SyncError> {
        self.push_with(fence, Some(scope)).await
    }

    /// `push_inner`, noting its success for `datastore status`.
    async fn push_with(
        &self,
        fence: &LeaseFence,
        scope: Option<&LockScope>,
    ) -> Result<SyncReport, SyncError> {
        let pushed = self.push_inner(fence, scope).await;
        if pushed.is_ok() {
            SyncTimes::record(self.cache(), Synced::Push);
        }
        pushed
    }

    async fn push_inner(
        &self,
        fence: &LeaseFence,
        scope: Option<&LockScope>,
    ) -> Result<SyncReport, SyncError> {
        let mut state = self.take_state().await?;
        let Plan {
            suspects,
            deleted,
            unsyncable,
        } = self.plan(&state, scope)?;
        tracing::debug!(
            suspects = suspects.len(),
            deleted = deleted.len(),
            "push planned"
        );
        if suspects.is_empty() && deleted.is_empty() {
            self.keep_state(state);
            return Ok(SyncReport {
                unsyncable,
                ..SyncReport::default()
            });
        }
        let gate = match scope {
            // The scoped pull, under the scope's lock, made the scope current.
            Some(_) => SendGate::current(self.scoped_generation(&state) + 1),
            None => SendGate::new(state.index_etag.clone(), state.generation + 1),
        };
        let _bar = self.start_progress("push", (suspects.len() + deleted.len()) as u64);
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
            match scope {
                Some(_) => self.merge_index(&mut state, undo, fence).await?,
                None => self.write_index(&mut state, undo, fence).await?,
            }
        } else if state_dirty {
            self.save(&mut state).await?;
        }
        let deletions = self.delete_objects(deleted, fence).await;
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

    /// Walks the cache (only `scope`, when given) and compares it with the
    /// agreed state.
    fn plan(&self, state: &SyncState, scope: Option<&LockScope>) -> Result<Plan, SyncError> {
        let mut scan = match scope {
            Some(scope) => self.scan_within(scope)?,
            None => self.scan()?,
        };
        let (local, unsyncable) = (
            std::mem::take(&mut scan.files),
            std::mem::take(&mut scan.unsyncable),
        );
        let (suspects, mut deleted) = compare_with_state(&local, &state.files);
        // A file this machine no longer scans (its settings narrowed) is not
        // gone, nor is one that became a symlink: its entry stays agreed and
        // is carried into the index.
        // A scoped push walked its scope only: nothing outside it is gone.
        deleted.retain(|rel| {
            self.owns(rel) && !scan.blocks(rel) && scope.is_none_or(|s| s.contains(rel))
        });
        let suspects: Vec<Suspect> = suspects
            .into_iter()
            .map(|(rel, stat)| Suspect {
                rel: rel.clone(),
                mtime_ns: stat.mtime_ns,
                agreed_sha256: state.files.get(rel).map(|f| f.sha256),
            })
            .collect();
        Ok(Plan {
            suspects,
            deleted,
            unsyncable,
        })
    }

    /// Deletes the objects of `deleted` (already unlisted by the index
    /// written), each only while the lease holds; an object already gone
    /// counts as deleted.
    async fn delete_objects(
        &self,
        deleted: Vec<String>,
        fence: &LeaseFence,
    ) -> Vec<(String, Result<(), StoreError>)> {
        stream::iter(deleted)
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
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fence, index, machine, one_machine, requests, write};
    use super::*;

    #[tokio::test]
    async fn a_push_checks_the_index_once_however_many_files_it_sends() {
        let (store, dir, a) = one_machine();
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
        // The index checked once; then the one shard (11 files) and the root.
        assert_eq!(requests(&store) - before, 1 + 10 + 1 + 1);
        assert_eq!(index(&store).files.len(), 11);
        assert_eq!(store.object("p/outputs/d/f7").unwrap(), b"content 7");
    }

    #[tokio::test]
    async fn touched_files_are_not_sent_and_their_new_mtimes_are_kept() {
        let (store, dir, a) = one_machine();
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
}
