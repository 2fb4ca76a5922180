//! Sending one suspect: read it once, skip it when only touched, else upload
//! it through the `SendGate`.
//!
//! Each suspect is read once on a blocking thread; a small file's bytes are
//! kept from that read and sent as they are, so what is uploaded is what was
//! hashed. The gate lets sends go only once the cache is known to have seen
//! the remote's latest index (checked once, by the first file that must go,
//! so a push with nothing to send costs no request) and while the lease
//! holds; its first refusal holds every later send.

use super::{CacheSync, SyncError};
use crate::domain::sha256::Sha256;
use crate::domain::sync_index::INDEX_KEY;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::hashing::{hash_file, FileDigest};
use crate::infrastructure::s3::store::{ETag, Fetched, StoreError};
use std::sync::Mutex;
use tokio::sync::OnceCell;

/// A cache file the stat walk says may have changed.
pub(super) struct Suspect {
    pub(super) rel: String,
    pub(super) mtime_ns: i128,
    /// The SHA-256 last agreed with the remote, if the file was synced.
    pub(super) agreed_sha256: Option<Sha256>,
}

/// How one suspect ended.
pub(super) enum Pushed {
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
        outcome: Result<ETag, StoreError>,
    },
    /// The file could not be read.
    Unreadable { rel: String, message: String },
    /// Not sent: the push was refused (see `SendGate`).
    Held,
}

/// Lets sends through once the cache is known to be current and while the
/// lease holds; keeps the first refusal.
pub(super) struct SendGate {
    index_etag: Option<ETag>,
    /// The generation of the index this push writes, recorded on uploads.
    generation: u64,
    current: OnceCell<bool>,
    refusal: Mutex<Option<SyncError>>,
}

impl SendGate {
    /// A gate for a push from the index `index_etag` that writes `generation`.
    pub(super) fn new(index_etag: Option<ETag>, generation: u64) -> Self {
        Self {
            index_etag,
            generation,
            current: OnceCell::new(),
            refusal: Mutex::new(None),
        }
    }

    /// A gate for a push already known to be current (a scoped push, whose
    /// pull under the scope's lock made its scope current).
    pub(super) fn current(generation: u64) -> Self {
        let gate = Self::new(None, generation);
        let _ = gate.current.set(true);
        gate
    }

    fn refuse(&self, why: SyncError) {
        if let Ok(mut refusal) = self.refusal.lock() {
            refusal.get_or_insert(why);
        }
    }

    fn refused(&self) -> bool {
        self.refusal.lock().map(|r| r.is_some()).unwrap_or(true)
    }

    /// The first refusal, if any (taken: the push returns it).
    pub(super) fn take_refusal(&self) -> Option<SyncError> {
        self.refusal.lock().ok().and_then(|mut r| r.take())
    }
}

impl CacheSync {
    /// Reads one suspect (off the runtime) and sends it if its content changed.
    pub(super) async fn push_one(
        &self,
        suspect: Suspect,
        fence: &LeaseFence,
        gate: &SendGate,
    ) -> Pushed {
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
        if suspect.agreed_sha256 == Some(hashed.digest.sha256) {
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
    pub(super) async fn may_send(&self, gate: &SendGate, fence: &LeaseFence) -> bool {
        // A lost lease stops the push before any request, even the index check.
        if let Err(lost) = fence.check() {
            gate.refuse(lost.into());
            return false;
        }
        let current = *gate
            .current
            .get_or_init(|| async {
                match self.ensure_current(gate.index_etag.as_ref()).await {
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
    async fn ensure_current(&self, index_etag: Option<&ETag>) -> Result<(), SyncError> {
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fence, machine, one_machine, requests, write};
    use super::*;
    use crate::infrastructure::s3::memory_store::MemoryStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_file_that_cannot_be_read_fails_alone_and_sends_nothing() {
        let (store, _dir, a) = one_machine();
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
        let gate = SendGate::new(Some(ETag::new("\"etag-gone\"")), 1);
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
}
