//! `S3Lock`: the lock of an S3 datastore, the object `{prefix}/.datastore.lock`.
//!
//! Every write is conditional: acquire with `If-None-Match: *`; renew with
//! `If-Match: <our ETag>` (412 = lost); take over a record whose
//! LastModified + ttlMs has passed by overwriting it with `If-Match: <the stale
//! ETag>` — never delete-then-create, so two takers cannot both win and no
//! taker can remove a record it did not judge. Release reads the record first
//! and deletes only if the token is ours, with `If-Match` on top: stores that
//! ignore conditional deletes (some S3-compatibles) are still protected except
//! for the window between that read and the delete.

use crate::domain::lock::{
    is_stale, Attempt, DistributedLock, Lease, LockError, LockInfo, LockObservation, LockVersion,
};
use crate::infrastructure::s3::store::{Fetched, ObjectStore, PutMode, StoreError};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The lock of an S3 datastore.
pub struct S3Lock {
    store: Arc<dyn ObjectStore>,
    key: String,
    default_ttl: Duration,
}

impl S3Lock {
    /// The lock at `key` in `store`; `default_ttl` judges unreadable records.
    pub fn new(store: Arc<dyn ObjectStore>, key: String, default_ttl: Duration) -> Self {
        Self {
            store,
            key,
            default_ttl,
        }
    }

    fn err(&self, e: StoreError) -> LockError {
        LockError::Store {
            location: self.store.url(&self.key),
            message: e.to_string(),
        }
    }

    async fn read(&self) -> Result<Option<LockObservation>, LockError> {
        match self.store.get_bytes(&self.key, None).await {
            Ok(Fetched::Object(bytes, meta)) => {
                let age = meta
                    .last_modified
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or(Duration::ZERO);
                let (info, corrupt) = match LockInfo::from_json(&bytes) {
                    Ok(i) => (Some(i), None),
                    Err(why) => (None, Some(why)),
                };
                let ttl = info.as_ref().map(|i| i.ttl()).unwrap_or(self.default_ttl);
                Ok(Some(LockObservation {
                    info,
                    corrupt,
                    age,
                    stale: is_stale(age, ttl),
                    version: LockVersion(meta.etag),
                }))
            }
            Ok(Fetched::NotModified) => Ok(None),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }
}

#[async_trait]
impl DistributedLock for S3Lock {
    fn location(&self) -> String {
        self.store.url(&self.key)
    }

    async fn try_acquire(&self, ttl: Duration) -> Result<Attempt, LockError> {
        for _ in 0..4 {
            let info = LockInfo::for_this_process(ttl);
            match self
                .store
                .put_bytes(&self.key, info.to_json(), PutMode::Create)
                .await
            {
                Ok(etag) => {
                    return Ok(Attempt::Acquired(Lease {
                        info,
                        version: LockVersion(etag),
                    }))
                }
                Err(StoreError::Precondition(_)) => {}
                Err(e) => return Err(self.err(e)),
            }
            let Some(current) = self.read().await? else {
                continue;
            };
            if !current.stale {
                return Ok(Attempt::Busy(current));
            }
            tracing::info!(holder = %current.describe(), "taking over a stale S3 lock");
            let stale_etag = current.version.0.clone();
            match self
                .store
                .put_bytes(&self.key, info.to_json(), PutMode::Update(stale_etag))
                .await
            {
                Ok(etag) => {
                    return Ok(Attempt::Acquired(Lease {
                        info,
                        version: LockVersion(etag),
                    }))
                }
                // Someone renewed, released or took it first: look again.
                Err(StoreError::Precondition(_)) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        match self.read().await? {
            Some(obs) => Ok(Attempt::Busy(obs)),
            None => Ok(Attempt::Busy(LockObservation {
                info: None,
                corrupt: Some("contended".into()),
                age: Duration::ZERO,
                stale: false,
                version: LockVersion(String::new()),
            })),
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, LockError> {
        let mut info = lease.info.clone();
        info.renewed_at = Some(chrono::Utc::now());
        match self
            .store
            .put_bytes(
                &self.key,
                info.to_json(),
                PutMode::Update(lease.version.0.clone()),
            )
            .await
        {
            Ok(etag) => Ok(Lease {
                info,
                version: LockVersion(etag),
            }),
            Err(StoreError::Precondition(_)) | Err(StoreError::NotFound(_)) => {
                Err(LockError::Lost(
                    "the lock object changed (taken over after the TTL, or force-released)".into(),
                ))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        let Some(current) = self.read().await? else {
            return Ok(());
        };
        let ours = current.info.as_ref().map(|i| &i.token) == Some(&lease.info.token);
        if !ours {
            return Ok(());
        }
        match self.store.delete(&self.key, Some(&current.version.0)).await {
            Ok(()) | Err(StoreError::Precondition(_)) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn inspect(&self) -> Result<Option<LockObservation>, LockError> {
        self.read().await
    }

    async fn force_release(&self) -> Result<Option<LockObservation>, LockError> {
        let current = self.read().await?;
        if current.is_some() {
            match self.store.delete(&self.key, None).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infrastructure::s3::memory_store::MemoryStore;

    fn lock(store: &Arc<MemoryStore>) -> S3Lock {
        S3Lock::new(
            store.clone(),
            "p/.datastore.lock".into(),
            Duration::from_secs(30),
        )
    }

    #[tokio::test]
    async fn a_stale_lock_is_taken_over_by_exactly_one_and_the_old_holder_is_fenced() {
        let store = Arc::new(MemoryStore::default());
        let (l1, l2, l3) = (lock(&store), lock(&store), lock(&store));
        let Attempt::Acquired(old) = l1.try_acquire(Duration::from_secs(30)).await.unwrap() else {
            panic!("first acquire")
        };
        assert!(matches!(
            l2.try_acquire(Duration::from_secs(30)).await.unwrap(),
            Attempt::Busy(_)
        ));
        store.age("p/.datastore.lock", Duration::from_secs(60));
        let (r2, r3) = tokio::join!(
            l2.try_acquire(Duration::from_secs(30)),
            l3.try_acquire(Duration::from_secs(30))
        );
        let winners = [r2.unwrap(), r3.unwrap()]
            .into_iter()
            .filter(|a| matches!(a, Attempt::Acquired(_)))
            .count();
        assert_eq!(winners, 1);
        assert!(matches!(l1.renew(&old).await, Err(LockError::Lost(_))));
        let successor = l1.inspect().await.unwrap().unwrap().info.unwrap().token;
        l1.release(&old).await.unwrap();
        assert_eq!(
            l1.inspect().await.unwrap().unwrap().info.unwrap().token,
            successor
        );
    }

    #[tokio::test]
    async fn release_and_force_release() {
        let store = Arc::new(MemoryStore::default());
        let l = lock(&store);
        let Attempt::Acquired(lease) = l.try_acquire(Duration::from_secs(30)).await.unwrap() else {
            panic!()
        };
        let renewed = l.renew(&lease).await.unwrap();
        assert_ne!(renewed.version, lease.version);
        l.release(&renewed).await.unwrap();
        assert!(l.inspect().await.unwrap().is_none());
        let Attempt::Acquired(other) = l.try_acquire(Duration::from_secs(30)).await.unwrap() else {
            panic!()
        };
        let removed = l.force_release().await.unwrap().unwrap();
        assert_eq!(removed.info.unwrap().token, other.info.token);
        assert!(l.inspect().await.unwrap().is_none());
    }
}
