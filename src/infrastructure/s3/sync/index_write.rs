//! The push's last write: the index of what the bucket now holds.
//!
//! Written with `If-Match` on the ETag the cache pulled (`If-None-Match: *`
//! for a first index), after every upload and before any deletion, so it
//! lists only what reached the bucket and never names an object already
//! gone. It is sharded (`index_store.rs`): only the shards that changed are
//! uploaded, then the root. When it cannot be written, the push's changes to the agreed state
//! are undone, so everything it sent stays dirty.

use super::{CacheSync, SyncError};
use crate::domain::sync_index::IndexEntry;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::s3::cache::{SyncState, SyncedFile};
use crate::infrastructure::s3::index_store::{IndexIoError, IndexWrite};
use crate::infrastructure::s3::store::{PutMode, StoreError};
use std::collections::BTreeMap;

impl CacheSync {
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
    pub(super) async fn write_index(
        &self,
        state: &mut SyncState,
        undo: Vec<(String, Option<SyncedFile>)>,
        fence: &LeaseFence,
    ) -> Result<(), SyncError> {
        let files = index_files(state);
        let conflict = crate::domain::sync_index::path_conflict(&files);
        fence.check()?;
        if let Some((file, nested)) = conflict {
            // Only possible beside another machine's paths (a local disk
            // cannot hold both): nothing this push sent counts as agreed.
            Self::undo(state, undo);
            self.save(state).await?;
            return Err(SyncError::PathConflict { file, nested });
        }
        let mode = match &state.index_etag {
            Some(etag) => PutMode::Update(etag.clone()),
            None => PutMode::Create,
        };
        let generation = state.generation + 1;
        let base = state.index_root.clone();
        let written = self
            .index_store()
            .write_once(
                // A push writes the whole index under the whole lock.
                IndexWrite::whole(&files, self.owner.clone(), generation, base.as_ref()),
                mode,
                fence,
            )
            .await;
        match written {
            Ok((etag, root)) => {
                state.index_etag = Some(etag);
                state.generation = generation;
                state.index_root = Some(root);
                self.save(state).await?;
                Ok(())
            }
            Err(IndexIoError::Store(StoreError::Precondition(target))) => {
                Self::undo(state, undo);
                // The next pull reads the index from scratch.
                state.index_etag = None;
                state.index_root = None;
                self.save(state).await?;
                Err(SyncError::IndexConflict(target))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Restores the agreed entries a push changed, newest change first.
    pub(super) fn undo(state: &mut SyncState, undo: Vec<(String, Option<SyncedFile>)>) {
        for (rel, previous) in undo.into_iter().rev() {
            match previous {
                Some(entry) => state.files.insert(rel, entry),
                None => state.files.remove(&rel),
            };
        }
    }
}

/// The index entry of an agreed file.
pub(super) fn index_entry(file: &SyncedFile) -> IndexEntry {
    IndexEntry {
        size: file.size,
        sha256: file.sha256,
        // The state file is local and may be damaged: checksums that cannot
        // fit would make the index unreadable for everyone.
        parts: file.parts.clone().filter(|p| p.fits(file.size)),
    }
}

/// The index `state` stands for: the agreed files, and other machines'
/// paths exactly as the remote listed them.
pub(super) fn index_files(state: &SyncState) -> BTreeMap<String, IndexEntry> {
    let mut files: BTreeMap<String, IndexEntry> = state
        .files
        .iter()
        .map(|(k, f)| (k.clone(), index_entry(f)))
        .collect();
    for (rel, entry) in &state.foreign {
        files.entry(rel.clone()).or_insert_with(|| entry.clone());
    }
    files
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fence, index, machine, one_machine, write};
    use super::*;

    #[tokio::test]
    async fn an_index_write_whose_reply_was_lost_is_adopted() {
        let (store, dir, a) = one_machine();
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
        let (store, dir, a) = one_machine();
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
