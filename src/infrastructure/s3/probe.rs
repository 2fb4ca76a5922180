//! The conditional-write probe: does this store honour the conditions the
//! lock and the index depend on?
//!
//! Some S3-compatible stores accept `If-None-Match` / `If-Match` and ignore
//! them (Backblaze B2, the GCS XML API, npm's s3rver, several gateways). On
//! such a store two processes both "acquire" the lock. The probe writes a
//! scratch key (a `.swamp-tmp-` temp name, which sync never touches) and checks:
//!
//! 1. create with `If-None-Match: *` succeeds, and a second one is refused;
//! 2. an overwrite with `If-Match` on a wrong ETag is refused;
//! 3. a delete with `If-Match` on a wrong ETag is refused.
//!
//! 1 and 2 are required: without them the lock cannot exclude anyone. 3 is
//! not: release reads the record and compares tokens before its conditional
//! delete, so a store that ignores that condition only widens a window the
//! design doc names. Refusals may be 412 or (for `If-Match`) 404 — stores
//! differ. The scratch key is removed whatever the outcome.

use crate::infrastructure::s3::store::{ETag, ObjectStore, PutMode, StoreError};
use serde::{Deserialize, Serialize};

/// A wrong ETag: no object has it.
const WRONG_ETAG: &str = "\"00000000000000000000000000000000\"";

/// Which conditions the store honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionalSupport {
    /// `If-None-Match: *` on PUT refuses an existing key.
    pub create: bool,
    /// `If-Match` on PUT refuses a wrong ETag.
    pub update: bool,
    /// `If-Match` on DELETE refuses a wrong ETag.
    pub delete: bool,
}

impl ConditionalSupport {
    /// Whether the lock can rely on this store.
    pub fn is_sufficient(&self) -> bool {
        self.create && self.update
    }

    /// What the store ignores, for messages (empty when nothing).
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.create {
            missing.push("If-None-Match: * on PUT (create only if absent)");
        }
        if !self.update {
            missing.push("If-Match on PUT (overwrite only a known version)");
        }
        if !self.delete {
            missing.push("If-Match on DELETE");
        }
        missing
    }
}

/// Whether a conditional request was refused as it should be; other
/// failures are the store's errors.
fn refused<T>(outcome: Result<T, StoreError>) -> Result<bool, StoreError> {
    match outcome {
        Ok(_) => Ok(false),
        Err(StoreError::Precondition(_)) | Err(StoreError::NotFound(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Probes `store` under the key prefix `prefix`, with a fresh scratch key.
pub async fn probe_prefix(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<ConditionalSupport, StoreError> {
    // A temp shape, so a probe object a crash left is never taken for a file.
    let scratch = crate::domain::sync_index::object_key(
        prefix,
        &format!(
            "{}{}",
            crate::infrastructure::atomic_file::TEMP_MARKER,
            uuid::Uuid::new_v4().simple()
        ),
    );
    probe_conditional_writes(store, &scratch).await
}

/// Probes `store` with the scratch key `scratch_key`. Store errors other
/// than refusals are returned.
pub async fn probe_conditional_writes(
    store: &dyn ObjectStore,
    scratch_key: &str,
) -> Result<ConditionalSupport, StoreError> {
    let outcome = run(store, scratch_key).await;
    // Best effort: a store that lost the key already is fine.
    let _ = store.delete(scratch_key, None).await;
    outcome
}

async fn run(store: &dyn ObjectStore, key: &str) -> Result<ConditionalSupport, StoreError> {
    store
        .put_bytes(key, b"probe 1".to_vec(), PutMode::Create)
        .await?;
    let create = refused(
        store
            .put_bytes(key, b"probe 2".to_vec(), PutMode::Create)
            .await,
    )?;
    let wrong = PutMode::Update(ETag::new(WRONG_ETAG));
    let update = refused(store.put_bytes(key, b"probe 3".to_vec(), wrong).await)?;
    // Optional: a store that rejects the condition outright (400, 501) does
    // not honour it either.
    let delete = refused(store.delete(key, Some(&ETag::new(WRONG_ETAG))).await).unwrap_or(false);
    Ok(ConditionalSupport {
        create,
        update,
        delete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infrastructure::s3::memory_store::MemoryStore;

    #[tokio::test]
    async fn a_store_with_conditional_writes_passes_and_the_key_is_removed() {
        let store = MemoryStore::default();
        let got = probe_conditional_writes(&store, "p/.swamp-tmp-probe")
            .await
            .unwrap();
        assert_eq!(
            got,
            ConditionalSupport {
                create: true,
                update: true,
                delete: true
            }
        );
        assert!(got.is_sufficient() && got.missing().is_empty());
        assert!(store.object("p/.swamp-tmp-probe").is_none());
    }

    #[test]
    fn only_create_and_update_are_required() {
        let no_delete = ConditionalSupport {
            create: true,
            update: true,
            delete: false,
        };
        assert!(no_delete.is_sufficient());
        assert_eq!(no_delete.missing(), vec!["If-Match on DELETE"]);
        for (create, update) in [(false, true), (true, false), (false, false)] {
            let s = ConditionalSupport {
                create,
                update,
                delete: true,
            };
            assert!(!s.is_sufficient());
            assert_eq!(
                s.missing().len(),
                usize::from(!create) + usize::from(!update)
            );
        }
    }
}
