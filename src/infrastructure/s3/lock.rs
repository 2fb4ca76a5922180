//! `S3Lock`: the lock of an S3 datastore, the object `{prefix}/.datastore.lock`.
//!
//! Every write is conditional: acquire with `If-None-Match: *`; renew with
//! `If-Match: <our ETag>`; take over a record whose LastModified + ttlMs has
//! passed (by the server's clock: the `Date` of the response that returned the
//! record) by overwriting it with `If-Match: <the stale ETag>` — never
//! delete-then-create, so two takers cannot both win and no taker can remove a
//! record it did not judge. Release reads the record first and deletes only if
//! the token is ours, with `If-Match` on top: stores that ignore conditional
//! deletes (some S3-compatibles) are still protected except for the window
//! between that read and the delete. Where the probe found `If-Match` on
//! DELETE honoured (`probe_record.rs`), release deletes `If-Match` our last
//! ETag at once and reads only when that is refused.
//!
//! A refused write (412, or 404 on a missing key) is not taken at its word:
//! the request may have landed and only its reply been lost, so the SDK's
//! retry met our own write. The record is read back; if it is exactly what we
//! sent (tokens are unique per acquisition, `renewedAt` per renewal), the
//! write landed and is adopted. 409 `ConditionalRequestConflict` (AWS, for
//! racing conditional writes) means nothing was written: retried.

use crate::domain::lock::{
    is_stale, Attempt, DistributedLock, Lease, LockError, LockInfo, LockObservation, LockVersion,
};
use crate::infrastructure::s3::store::{ETag, Fetched, ObjectStore, PutMode, StoreError};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// 409 conflicts a lock write retries before it reports the store error.
const CONFLICT_RETRIES: u32 = 5;

/// Runs `request` again, with jittered exponential backoff, while the store
/// answers `Conflict` (nothing was written), at most `CONFLICT_RETRIES` times.
async fn retrying_conflicts<T, Fut>(mut request: impl FnMut() -> Fut) -> Result<T, StoreError>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(20);
    let mut conflicts = 0;
    loop {
        match request().await {
            Err(StoreError::Conflict(_)) if conflicts < CONFLICT_RETRIES => {
                conflicts += 1;
                tokio::time::sleep(backoff.mul_f64(rand::random::<f64>() + 0.5)).await;
                backoff *= 2;
            }
            other => return other,
        }
    }
}

/// Whether the record is exactly `sent`: a write of ours that landed.
/// Tokens are unique per acquisition and `renewedAt` per renewal, so no other
/// writer can produce it.
fn is_exactly(obs: &LockObservation, sent: &LockInfo) -> bool {
    obs.info.as_ref() == Some(sent)
}

/// Whether the record belongs to the acquisition with `token`.
fn holds_token(obs: &LockObservation, token: &str) -> bool {
    obs.info.as_ref().map(|i| i.token.as_str()) == Some(token)
}

fn acquired(info: LockInfo, version: LockVersion) -> Attempt {
    Attempt::Acquired(Lease { info, version })
}

/// The record's ETag as the lock contract's version.
fn version_of(etag: ETag) -> LockVersion {
    LockVersion(etag.as_str().to_string())
}

/// The ETag a lock version stands for.
fn etag_of(version: &LockVersion) -> ETag {
    ETag::new(version.0.clone())
}

/// The lock of an S3 datastore.
pub struct S3Lock {
    store: Arc<dyn ObjectStore>,
    key: String,
    default_ttl: Duration,
    /// The store is known to honour `If-Match` on DELETE (`probe_record.rs`).
    conditional_delete: bool,
    /// What fresh records say they hold (`LockInfo::scope`, `priority`).
    scope: Option<(Vec<String>, u64)>,
}

impl S3Lock {
    /// The lock at `key` in `store`; `default_ttl` judges unreadable records.
    pub fn new(store: Arc<dyn ObjectStore>, key: String, default_ttl: Duration) -> Self {
        Self {
            store,
            key,
            default_ttl,
            conditional_delete: false,
            scope: None,
        }
    }

    /// The same lock, its records naming `scope` with `priority` (a scoped
    /// lock's record, `scoped_records.rs`).
    pub fn recording(mut self, scope: Vec<String>, priority: u64) -> Self {
        self.scope = Some((scope, priority));
        self
    }

    /// A fresh record for this process, naming this lock's scope.
    fn fresh_info(&self, ttl: Duration) -> LockInfo {
        LockInfo::for_this_process_holding(ttl, self.scope.as_ref())
    }

    /// The same lock on a store the probe found to honour `If-Match` on
    /// DELETE: release deletes at once, reading only when refused.
    pub fn trusting_conditional_delete(mut self, honoured: bool) -> Self {
        self.conditional_delete = honoured;
        self
    }

    fn err(&self, e: StoreError) -> LockError {
        LockError::Backend {
            location: self.store.url(&self.key),
            source: Box::new(e),
        }
    }

    /// A conditional put of `info`, retried while the store reports a
    /// concurrent conditional write (409 `ConditionalRequestConflict`).
    async fn put(&self, info: &LockInfo, mode: PutMode) -> Result<ETag, StoreError> {
        retrying_conflicts(|| {
            self.store
                .put_bytes(&self.key, info.to_json(), mode.clone())
        })
        .await
    }

    /// A delete conditional on `etag`, retried on 409 conflicts.
    async fn delete(&self, etag: &ETag) -> Result<(), StoreError> {
        retrying_conflicts(|| self.store.delete(&self.key, Some(etag))).await
    }

    async fn read(&self) -> Result<Option<LockObservation>, LockError> {
        match self.store.get_bytes(&self.key, None).await {
            Ok(Fetched::Object(bytes, meta)) => {
                // One clock for everyone: the server's (see `ObjectMeta::age`).
                let age = meta.age();
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
                    version: version_of(meta.etag),
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
            let info = self.fresh_info(ttl);
            match self.put(&info, PutMode::Create).await {
                Ok(etag) => return Ok(acquired(info, version_of(etag))),
                Err(StoreError::Precondition(_)) => {}
                Err(e) => return Err(self.err(e)),
            }
            let current = match self.read().await? {
                // Our create landed, its reply was lost, the retry was refused.
                Some(obs) if is_exactly(&obs, &info) => return Ok(acquired(info, obs.version)),
                Some(obs) => obs,
                None => continue,
            };
            if !current.stale {
                return Ok(Attempt::Busy(current));
            }
            tracing::info!(holder = %current.describe(), "taking over a stale S3 lock");
            match self
                .put(&info, PutMode::Update(etag_of(&current.version)))
                .await
            {
                Ok(etag) => return Ok(acquired(info, version_of(etag))),
                // Someone renewed, released or took it first — or our
                // takeover landed and only its reply was lost: look again.
                Err(StoreError::Precondition(_)) | Err(StoreError::NotFound(_)) => {
                    if let Some(obs) = self.read().await? {
                        if is_exactly(&obs, &info) {
                            return Ok(acquired(info, obs.version));
                        }
                    }
                }
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
            .put(&info, PutMode::Update(etag_of(&lease.version)))
            .await
        {
            Ok(etag) => Ok(Lease {
                info,
                version: version_of(etag),
            }),
            Err(StoreError::Precondition(_)) | Err(StoreError::NotFound(_)) => {
                match self.read().await? {
                    // This very renewal landed; only its reply was lost.
                    Some(obs) if is_exactly(&obs, &info) => Ok(Lease {
                        info,
                        version: obs.version,
                    }),
                    // Still our record, but an earlier write of ours (a
                    // renewal that timed out here yet landed there): renew on
                    // top of it. The new write lands after this attempt
                    // began, so the fence's assumption holds; never adopt
                    // the older record itself.
                    Some(obs) if holds_token(&obs, &info.token) => {
                        match self
                            .put(&info, PutMode::Update(etag_of(&obs.version)))
                            .await
                        {
                            Ok(etag) => Ok(Lease {
                                info,
                                version: version_of(etag),
                            }),
                            Err(e) => Err(LockError::Store {
                                location: self.location(),
                                message: format!(
                                    "renewing on top of our own record failed ({e}); retrying"
                                ),
                            }),
                        }
                    }
                    _ => Err(LockError::Lost(
                        "the lock object changed (taken over after the TTL, or force-released)"
                            .into(),
                    )),
                }
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        if self.conditional_delete {
            // Only our record, unchanged since our last write, has this ETag,
            // and the store refuses any other: no read needed. A refusal
            // (a successor's record, a renewal whose reply was lost, a store
            // answering 412 for a missing key) is judged below by reading.
            match self.delete(&etag_of(&lease.version)).await {
                Ok(()) | Err(StoreError::NotFound(_)) => return Ok(()),
                Err(StoreError::Precondition(_)) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        // A few rounds: a refused delete (a lost reply whose retry met the
        // deletion; a store answering 412 for a missing key) is judged by
        // reading again, never by deleting blind.
        for _ in 0..3 {
            let Some(current) = self.read().await? else {
                return Ok(());
            };
            if !holds_token(&current, &lease.info.token) {
                return Ok(());
            }
            match self.delete(&etag_of(&current.version)).await {
                Ok(()) | Err(StoreError::NotFound(_)) => return Ok(()),
                Err(StoreError::Precondition(_)) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(LockError::Store {
            location: self.location(),
            message: "the lock record kept changing while it was being released; it expires after its TTL".into(),
        })
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

    const KEY: &str = "p/.datastore.lock";
    const TTL: Duration = Duration::from_secs(30);

    /// A lock record whose holder died a minute ago: its lease, and the lock.
    async fn a_dead_holder(store: &Arc<MemoryStore>) -> (S3Lock, Lease) {
        let dead = lock(store);
        let Attempt::Acquired(lease) = dead.try_acquire(TTL).await.unwrap() else {
            panic!("first acquire")
        };
        store.age(KEY, Duration::from_secs(60));
        (dead, lease)
    }

    /// One round: `takers` race for a stale lock, interleaved as `seed` picks.
    /// Asserts that exactly one won, that its record is the one stored, and
    /// that the dead holder is fenced; returns whether any two overlapped.
    async fn race_for_a_stale_lock(takers: usize, seed: u64) -> bool {
        let store = Arc::new(MemoryStore::default());
        let (dead, old) = a_dead_holder(&store).await;
        store.interleave(seed);
        let racers: Vec<S3Lock> = (0..takers).map(|_| lock(&store)).collect();
        let before = *store.requests.lock().unwrap();
        let attempts = futures::future::join_all(racers.iter().map(|l| l.try_acquire(TTL))).await;
        let requests = *store.requests.lock().unwrap() - before;
        let winners: Vec<Lease> = attempts
            .into_iter()
            .filter_map(|a| match a.unwrap() {
                Attempt::Acquired(lease) => Some(lease),
                Attempt::Busy(_) => None,
            })
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "seed {seed}: {} of {takers} takers won",
            winners.len()
        );
        let stored = dead.inspect().await.unwrap().unwrap().info.unwrap();
        assert_eq!(
            stored, winners[0].info,
            "seed {seed}: the winner's record is not the one stored"
        );
        assert!(matches!(dead.renew(&old).await, Err(LockError::Lost(_))));
        dead.release(&old).await.unwrap();
        assert_eq!(dead.inspect().await.unwrap().unwrap().info.unwrap(), stored);
        // Run one after another, the winner makes 3 requests (create, read,
        // takeover) and each loser 2 (create, read a live record): any more
        // means a loser acted on the stale record too, overlapping the winner.
        requests > 3 + 2 * (takers as u64 - 1)
    }

    #[tokio::test]
    async fn two_takers_of_a_stale_lock_exactly_one_wins_and_the_old_holder_is_fenced() {
        let mut overlapped = 0;
        for seed in 0..100 {
            overlapped += u32::from(race_for_a_stale_lock(2, seed).await);
        }
        // The race is real: in many rounds both takers judged the stale record.
        assert!(
            overlapped >= 20,
            "only {overlapped} of 100 rounds overlapped"
        );
    }

    #[tokio::test]
    async fn eight_takers_of_a_stale_lock_exactly_one_wins_in_every_interleaving() {
        let mut overlapped = 0;
        for seed in 0..200 {
            overlapped += u32::from(race_for_a_stale_lock(8, seed).await);
        }
        assert!(
            overlapped >= 100,
            "only {overlapped} of 200 rounds overlapped"
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

#[cfg(test)]
mod conditional_delete_tests {
    use super::*;
    use crate::infrastructure::s3::memory_store::MemoryStore;

    const KEY: &str = "p/.datastore.lock";
    const TTL: Duration = Duration::from_secs(30);

    fn lock(store: &Arc<MemoryStore>, trusted: bool) -> S3Lock {
        S3Lock::new(store.clone(), KEY.into(), TTL).trusting_conditional_delete(trusted)
    }

    async fn acquire(l: &S3Lock) -> Lease {
        match l.try_acquire(TTL).await.unwrap() {
            Attempt::Acquired(lease) => lease,
            Attempt::Busy(obs) => panic!("busy: {}", obs.describe()),
        }
    }

    /// Where the store honours `If-Match` on DELETE, release is one request;
    /// elsewhere it reads first (two).
    #[tokio::test]
    async fn a_trusted_release_is_one_request() {
        for (trusted, requests) in [(true, 1), (false, 2)] {
            let store = Arc::new(MemoryStore::default());
            let l = lock(&store, trusted);
            let lease = acquire(&l).await;
            let before = *store.requests.lock().unwrap();
            l.release(&lease).await.unwrap();
            let sent = *store.requests.lock().unwrap() - before;
            assert_eq!(sent, requests, "trusted: {trusted}");
            assert!(store.object(KEY).is_none(), "released (trusted: {trusted})");
        }
    }

    /// A release whose lease was lost (a successor took the stale record
    /// over) leaves the successor's lock, trusted or not.
    #[tokio::test]
    async fn a_release_never_removes_a_successors_lock() {
        for trusted in [true, false] {
            let store = Arc::new(MemoryStore::default());
            let ours = lock(&store, trusted);
            let lease = acquire(&ours).await;
            store.age(KEY, Duration::from_secs(60));
            let successor = acquire(&lock(&store, trusted)).await;
            ours.release(&lease).await.unwrap();
            let left = ours
                .inspect()
                .await
                .unwrap()
                .expect("the successor's lock stays");
            assert_eq!(
                left.info.unwrap().token,
                successor.info.token,
                "trusted: {trusted}"
            );
        }
    }

    /// A renewal whose reply was lost left our record with an ETag the
    /// lease does not know: the trusted delete is refused, the read finds
    /// our token, and the record is released all the same.
    #[tokio::test]
    async fn a_trusted_release_after_an_unknown_renewal_still_releases() {
        let store = Arc::new(MemoryStore::default());
        let l = lock(&store, true);
        let lease = acquire(&l).await;
        let renewed = l.renew(&lease).await.unwrap();
        assert_ne!(renewed.version, lease.version);
        l.release(&lease).await.unwrap();
        assert!(store.object(KEY).is_none());
    }
}

#[cfg(test)]
mod lost_reply_tests {
    use super::*;
    use crate::infrastructure::s3::memory_store::MemoryStore;

    const TTL: Duration = Duration::from_secs(30);

    fn lock(store: &Arc<MemoryStore>) -> S3Lock {
        S3Lock::new(store.clone(), "p/.datastore.lock".into(), TTL)
    }

    fn lose_next_reply(store: &MemoryStore) {
        *store.lost_put_replies.lock().unwrap() = 1;
    }

    async fn acquire(l: &S3Lock) -> Lease {
        match l.try_acquire(TTL).await.unwrap() {
            Attempt::Acquired(lease) => lease,
            Attempt::Busy(obs) => panic!("busy: {}", obs.describe()),
        }
    }

    #[tokio::test]
    async fn a_create_whose_reply_was_lost_is_adopted_not_waited_for() {
        let store = Arc::new(MemoryStore::default());
        let l = lock(&store);
        lose_next_reply(&store);
        let lease = acquire(&l).await;
        // The lease is the record in the store, so it renews and releases.
        let renewed = l.renew(&lease).await.unwrap();
        l.release(&renewed).await.unwrap();
        assert!(l.inspect().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_renewal_whose_reply_was_lost_keeps_the_lease() {
        let store = Arc::new(MemoryStore::default());
        let l = lock(&store);
        let lease = acquire(&l).await;
        lose_next_reply(&store);
        let renewed = l.renew(&lease).await.expect("not lost");
        assert_ne!(renewed.version, lease.version);
        let again = l.renew(&renewed).await.unwrap();
        l.release(&again).await.unwrap();
        assert!(l.inspect().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_takeover_whose_reply_was_lost_is_adopted() {
        let store = Arc::new(MemoryStore::default());
        let (dead, taker) = (lock(&store), lock(&store));
        let _ghost = acquire(&dead).await;
        store.age("p/.datastore.lock", Duration::from_secs(60));
        // The create is refused (busy); the takeover lands, its reply is lost.
        *store.lost_put_replies.lock().unwrap() = 2;
        let lease = acquire(&taker).await;
        assert_eq!(
            taker.inspect().await.unwrap().unwrap().info.unwrap(),
            lease.info
        );
    }

    #[tokio::test]
    async fn a_renewal_refused_for_a_successor_is_still_lost() {
        let store = Arc::new(MemoryStore::default());
        let (old, new) = (lock(&store), lock(&store));
        let lease = acquire(&old).await;
        store.age("p/.datastore.lock", Duration::from_secs(60));
        let successor = acquire(&new).await;
        assert!(matches!(old.renew(&lease).await, Err(LockError::Lost(_))));
        old.release(&lease).await.unwrap();
        let now = new.inspect().await.unwrap().unwrap().info.unwrap();
        assert_eq!(now.token, successor.info.token);
    }

    #[tokio::test]
    async fn conflicts_are_retried() {
        let store = Arc::new(MemoryStore::default());
        let l = lock(&store);
        *store.put_conflicts.lock().unwrap() = 3;
        let lease = acquire(&l).await;
        *store.put_conflicts.lock().unwrap() = 2;
        l.renew(&lease).await.unwrap();
    }

    #[tokio::test]
    async fn a_renewal_after_one_that_timed_out_but_landed_succeeds() {
        let store = Arc::new(MemoryStore::default());
        let l = lock(&store);
        let lease = acquire(&l).await;
        // The heartbeat never heard back: the renewal landed anyway.
        let _landed_unseen = l.renew(&lease).await.unwrap();
        // The next renewal still names the old version.
        let renewed = l.renew(&lease).await.expect("still ours");
        let again = l.renew(&renewed).await.unwrap();
        l.release(&again).await.unwrap();
        assert!(l.inspect().await.unwrap().is_none());
    }
}
