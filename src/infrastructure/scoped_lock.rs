//! Scoped locks beside the whole-datastore lock (design/datastores.md,
//! Scoped locks), over any backend's lock records.
//!
//! Model: the whole-datastore lock is one record; each scoped holder writes a
//! record of its own (`ScopedRecords::record`, e.g. `.locks/{id}.lock`) that
//! names its paths and a priority drawn once per command. Every acquirer
//! writes its own record first and reads the others' after, and proceeds
//! only if that read shows nothing live in its way:
//!
//! - `ScopedLock` (a scope S): create S's record; a live whole-lock record
//!   means yield (delete ours, report busy); a live conflicting scoped
//!   record means yield if its priority is higher, and otherwise keep our
//!   record and look again next attempt (it yields to us);
//! - `DrainingLock` (the whole datastore W): take the whole lock as always —
//!   which announces W, so scoped acquirers yield to it — then report busy,
//!   keeping the record, until no live scoped record is left.
//!
//! Two conflicting acquirers cannot both proceed: whichever read second sees
//! the other's record (given a store whose reads see every write completed
//! before they began). A record kept across attempts is renewed at the start
//! of each attempt, so the lease an attempt returns was written after the
//! attempt began (the fence counts from there), and a record left by an
//! attempt that gave up is removed by `abandon`. Stale records (their holder
//! paused or killed past the TTL) are ignored: their holders fence
//! themselves.

use crate::domain::lock::{Attempt, DistributedLock, Lease, LockError, LockObservation};
use crate::domain::lock_scope::LockScope;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a backend keeps scoped lock records.
#[async_trait]
pub trait ScopedRecords: Send + Sync {
    /// The lock whose record is `id`'s, naming `scope` and `priority`.
    fn record(&self, id: &str, scope: &[String], priority: u64) -> Arc<dyn DistributedLock>;
    /// Every scoped record there is now, with its lock (for its location
    /// and a forced release).
    async fn list(&self) -> Result<Vec<(Arc<dyn DistributedLock>, LockObservation)>, LockError>;

    /// The records whose scope conflicts with `scope`, but for the one at
    /// location `ours` (the caller's own). A backend that can tell a
    /// record's scope from its name skips reading the others.
    async fn list_conflicting(
        &self,
        scope: &LockScope,
        ours: &str,
    ) -> Result<Vec<(Arc<dyn DistributedLock>, LockObservation)>, LockError> {
        let mut all = self.list().await?;
        all.retain(|(lock, obs)| {
            lock.location() != ours && LockScope::held_by(obs).conflicts(scope)
        });
        Ok(all)
    }
}

/// A lease kept across attempts, renewed before it is used again.
#[derive(Default)]
struct Pending(Mutex<Option<Lease>>);

impl Pending {
    fn take(&self) -> Option<Lease> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn keep(&self, lease: Lease) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(lease);
    }

    /// The kept lease renewed now, or a new attempt at `lock` when there is
    /// none or it was lost meanwhile (its record went stale and was taken).
    async fn renewed_or_new(
        &self,
        lock: &dyn DistributedLock,
        ttl: Duration,
    ) -> Result<Attempt, LockError> {
        if let Some(lease) = self.take() {
            match lock.renew(&lease).await {
                Ok(renewed) => return Ok(Attempt::Acquired(renewed)),
                Err(LockError::Lost(why)) => {
                    tracing::debug!(%why, "a kept lock record was lost while waiting");
                }
                Err(e) => return Err(e),
            }
        }
        lock.try_acquire(ttl).await
    }

    async fn abandon(&self, lock: &dyn DistributedLock) {
        if let Some(lease) = self.take() {
            if let Err(e) = lock.release(&lease).await {
                tracing::warn!(error = %e, "removing a lock record after giving up");
            }
        }
    }
}

/// A lock on some paths of the datastore.
pub struct ScopedLock {
    whole: Arc<dyn DistributedLock>,
    records: Arc<dyn ScopedRecords>,
    own: Arc<dyn DistributedLock>,
    scope: LockScope,
    priority: u64,
    pending: Pending,
    /// The holder the last attempt yielded to, with what it held then.
    blocker: Mutex<Option<(Arc<dyn DistributedLock>, LockObservation)>>,
}

/// Whether two observations of one record show the same acquisition (a
/// renewal keeps the token; an unreadable record is judged by its version).
fn same_holder(now: &LockObservation, then: &LockObservation) -> bool {
    match (&now.info, &then.info) {
        (Some(a), Some(b)) => a.token == b.token,
        _ => now.version == then.version,
    }
}

impl ScopedLock {
    /// A lock on `paths`, beside the whole-datastore lock `whole`.
    pub fn new(
        whole: Arc<dyn DistributedLock>,
        records: Arc<dyn ScopedRecords>,
        paths: Vec<String>,
    ) -> Self {
        Self::with_priority(whole, records, paths, rand::random::<u64>())
    }

    pub(crate) fn with_priority(
        whole: Arc<dyn DistributedLock>,
        records: Arc<dyn ScopedRecords>,
        paths: Vec<String>,
        priority: u64,
    ) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let own = records.record(&id, &paths, priority);
        Self {
            whole,
            records,
            own,
            scope: LockScope::Paths(paths),
            priority,
            pending: Pending::default(),
            blocker: Mutex::new(None),
        }
    }

    /// While the holder we last yielded to is still there, live and
    /// unchanged, what it holds: the next attempt then writes nothing and
    /// costs one read, so many waiters do not flood the store with records
    /// written only to be removed.
    async fn still_blocked(&self) -> Result<Option<LockObservation>, LockError> {
        let Some((lock, seen)) = self
            .blocker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(None);
        };
        match lock.inspect().await? {
            Some(now) if !now.stale && same_holder(&now, &seen) => {
                *self.blocker.lock().unwrap_or_else(|e| e.into_inner()) = Some((lock, now.clone()));
                Ok(Some(now))
            }
            _ => Ok(None),
        }
    }

    /// With our record written: may we proceed, or must we wait or yield?
    async fn judge(&self) -> Result<Verdict, LockError> {
        if let Some(whole) = self.whole.inspect().await? {
            if !whole.stale {
                return Ok(Verdict::Yield(whole, self.whole.clone()));
            }
            clear_stale(self.whole.as_ref(), &whole).await;
        }
        let ours = self.own.location();
        let mut verdict = Verdict::Proceed;
        for (lock, obs) in self.records.list_conflicting(&self.scope, &ours).await? {
            let location = lock.location();
            if location == ours || obs.stale || !LockScope::held_by(&obs).conflicts(&self.scope) {
                continue;
            }
            // An unreadable record has no priority we can trust: yield to it
            // (it goes stale after the default TTL).
            let theirs = obs.info.as_ref().and_then(|i| i.priority);
            match theirs {
                Some(p) if (p, location.as_str()) < (self.priority, ours.as_str()) => {
                    verdict = Verdict::Wait(obs)
                }
                _ => return Ok(Verdict::Yield(obs, lock)),
            }
        }
        Ok(verdict)
    }
}

/// Removes the stale record `obs` of `lock`, best effort, only if it is
/// still exactly that record (a conditional release of its lease: a taker's
/// new record is left alone). Its holder fences itself; this only keeps
/// `lock status` from showing it forever.
async fn clear_stale(lock: &dyn DistributedLock, obs: &LockObservation) {
    let Some(info) = obs.info.clone() else {
        return;
    };
    let lease = Lease {
        info,
        version: obs.version.clone(),
    };
    if let Err(e) = lock.release(&lease).await {
        tracing::debug!(error = %e, "removing a stale lock record");
    }
}

/// What a scoped acquirer found after writing its record.
enum Verdict {
    /// Nothing live in the way.
    Proceed,
    /// A conflicting holder of lower priority: keep our record, look again.
    Wait(LockObservation),
    /// The whole lock, or a conflicting record of higher priority (with its
    /// lock, to watch): remove ours.
    Yield(LockObservation, Arc<dyn DistributedLock>),
}

#[async_trait]
impl DistributedLock for ScopedLock {
    fn location(&self) -> String {
        format!(
            "{} (scope {})",
            self.whole.location(),
            self.scope.paths().join(", ")
        )
    }

    async fn try_acquire(&self, ttl: Duration) -> Result<Attempt, LockError> {
        if let Some(holder) = self.still_blocked().await? {
            return Ok(Attempt::Busy(holder));
        }
        let lease = match self.pending.renewed_or_new(self.own.as_ref(), ttl).await? {
            Attempt::Acquired(lease) => lease,
            // Our record's name is ours alone: only a store error gets here.
            busy => return Ok(busy),
        };
        match self.judge().await {
            Ok(Verdict::Proceed) => Ok(Attempt::Acquired(lease)),
            Ok(Verdict::Wait(obs)) => {
                self.pending.keep(lease);
                Ok(Attempt::Busy(obs))
            }
            Ok(Verdict::Yield(obs, holder)) => match self.own.release(&lease).await {
                Ok(()) => {
                    *self.blocker.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((holder, obs.clone()));
                    Ok(Attempt::Busy(obs))
                }
                Err(e) => {
                    self.pending.keep(lease);
                    Err(e)
                }
            },
            // Our record stands: kept, so giving up (`abandon`) removes it
            // instead of leaving it to block everyone for a TTL.
            Err(e) => {
                self.pending.keep(lease);
                Err(e)
            }
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, LockError> {
        self.own.renew(lease).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        self.own.release(lease).await
    }

    async fn inspect(&self) -> Result<Option<LockObservation>, LockError> {
        self.own.inspect().await
    }

    async fn force_release(&self) -> Result<Option<LockObservation>, LockError> {
        self.own.force_release().await
    }

    async fn abandon(&self) {
        self.pending.abandon(self.own.as_ref()).await;
    }
}

/// The whole-datastore lock, which waits for scoped holders to finish.
pub struct DrainingLock {
    whole: Arc<dyn DistributedLock>,
    records: Arc<dyn ScopedRecords>,
    pending: Pending,
}

impl DrainingLock {
    /// `whole`, draining the scoped records of `records` before it is held.
    pub fn new(whole: Arc<dyn DistributedLock>, records: Arc<dyn ScopedRecords>) -> Self {
        Self {
            whole,
            records,
            pending: Pending::default(),
        }
    }
}

#[async_trait]
impl DistributedLock for DrainingLock {
    fn location(&self) -> String {
        self.whole.location()
    }

    async fn try_acquire(&self, ttl: Duration) -> Result<Attempt, LockError> {
        let lease = match self
            .pending
            .renewed_or_new(self.whole.as_ref(), ttl)
            .await?
        {
            Attempt::Acquired(lease) => lease,
            busy => return Ok(busy),
        };
        let live = match self.records.list_conflicting(&LockScope::Whole, "").await {
            Ok(records) => records.into_iter().find(|(_, o)| !o.stale),
            Err(e) => {
                // Kept, so giving up removes the announcement.
                self.pending.keep(lease);
                return Err(e);
            }
        };
        match live {
            Some((_, obs)) => {
                self.pending.keep(lease);
                Ok(Attempt::Busy(obs))
            }
            None => Ok(Attempt::Acquired(lease)),
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, LockError> {
        self.whole.renew(lease).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        self.whole.release(lease).await
    }

    async fn inspect(&self) -> Result<Option<LockObservation>, LockError> {
        self.whole.inspect().await
    }

    async fn force_release(&self) -> Result<Option<LockObservation>, LockError> {
        self.whole.force_release().await
    }

    async fn abandon(&self) {
        self.pending.abandon(self.whole.as_ref()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infrastructure::file_lock::{FileLock, FileScopedRecords};
    use std::path::Path;

    const TTL: Duration = Duration::from_secs(30);

    fn whole(dir: &Path) -> Arc<dyn DistributedLock> {
        Arc::new(FileLock::new(dir, TTL))
    }

    fn records(dir: &Path) -> Arc<dyn ScopedRecords> {
        Arc::new(FileScopedRecords::new(dir, TTL))
    }

    fn scoped(dir: &Path, paths: &[&str]) -> ScopedLock {
        let paths = paths.iter().map(|p| p.to_string()).collect();
        ScopedLock::new(whole(dir), records(dir), paths)
    }

    fn draining(dir: &Path) -> DrainingLock {
        DrainingLock::new(whole(dir), records(dir))
    }

    async fn held(lock: &dyn DistributedLock) -> Lease {
        match lock.try_acquire(TTL).await.unwrap() {
            Attempt::Acquired(lease) => lease,
            Attempt::Busy(obs) => panic!("busy: {}", obs.describe()),
        }
    }

    async fn is_busy(lock: &dyn DistributedLock) -> bool {
        matches!(lock.try_acquire(TTL).await.unwrap(), Attempt::Busy(_))
    }

    async fn live_records(dir: &Path) -> usize {
        let all = records(dir).list().await.unwrap();
        all.iter().filter(|(_, o)| !o.stale).count()
    }

    #[tokio::test]
    async fn writers_of_disjoint_scopes_hold_at_once_and_conflicting_ones_wait() {
        let dir = tempfile::tempdir().unwrap();
        let a = scoped(dir.path(), &["data/a/@versions"]);
        let b = scoped(dir.path(), &["data/b/@versions"]);
        let (la, _lb) = (held(&a).await, held(&b).await);
        let a_again = scoped(dir.path(), &["data/a"]);
        assert!(is_busy(&a_again).await, "data/a covers data/a/@versions");
        a.release(&la).await.unwrap();
        held(&a_again).await;
    }

    #[tokio::test]
    async fn a_scope_yields_to_the_whole_lock_and_leaves_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let w = draining(dir.path());
        let lw = held(&w).await;
        let s = scoped(dir.path(), &["data/a/@versions"]);
        assert!(is_busy(&s).await);
        assert_eq!(
            live_records(dir.path()).await,
            0,
            "the scope took its record back"
        );
        w.release(&lw).await.unwrap();
        held(&s).await;
    }

    /// The whole lock announces itself, then drains: scopes that arrive
    /// after it yield, so a stream of them cannot starve it.
    #[tokio::test]
    async fn the_whole_lock_drains_running_scopes_and_is_never_starved() {
        let dir = tempfile::tempdir().unwrap();
        let first = scoped(dir.path(), &["data/a/@versions"]);
        let l1 = held(&first).await;
        let w = draining(dir.path());
        assert!(is_busy(&w).await, "a scope is running");
        let later = scoped(dir.path(), &["data/b/@versions"]);
        assert!(
            is_busy(&later).await,
            "a scope arriving after the announcement yields"
        );
        assert!(is_busy(&w).await);
        first.release(&l1).await.unwrap();
        let lw = held(&w).await;
        assert!(is_busy(&later).await);
        w.release(&lw).await.unwrap();
        held(&later).await;
    }

    #[tokio::test]
    async fn of_two_conflicting_waiters_the_lower_priority_yields() {
        let dir = tempfile::tempdir().unwrap();
        let with = |priority| {
            let paths = vec!["data/a/@versions".to_string()];
            ScopedLock::with_priority(whole(dir.path()), records(dir.path()), paths, priority)
        };
        let (holder, high, low) = (with(0), with(100), with(50));
        let lh = held(&holder).await;
        // A holder has proceeded, whatever its priority: both wait; the
        // higher one keeps its record, the lower one yields to it.
        assert!(is_busy(&high).await);
        assert!(is_busy(&low).await);
        assert_eq!(
            live_records(dir.path()).await,
            2,
            "the holder's and the higher waiter's"
        );
        holder.release(&lh).await.unwrap();
        assert!(
            is_busy(&low).await,
            "the lower priority yields to the higher"
        );
        held(&high).await;
        assert!(is_busy(&low).await);
    }

    #[tokio::test]
    async fn abandoning_removes_a_kept_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = scoped(dir.path(), &["data/a/@versions"]);
        let ls = held(&s).await;
        let w = draining(dir.path());
        assert!(is_busy(&w).await);
        w.abandon().await;
        assert!(
            whole(dir.path()).inspect().await.unwrap().is_none(),
            "the announcement is withdrawn"
        );
        s.release(&ls).await.unwrap();
        assert_eq!(live_records(dir.path()).await, 0);
    }

    /// Records whose listing fails once.
    struct FailingOnce {
        inner: Arc<dyn ScopedRecords>,
        failed: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl ScopedRecords for FailingOnce {
        fn record(&self, id: &str, scope: &[String], priority: u64) -> Arc<dyn DistributedLock> {
            self.inner.record(id, scope, priority)
        }

        async fn list(
            &self,
        ) -> Result<Vec<(Arc<dyn DistributedLock>, LockObservation)>, LockError> {
            if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return Err(LockError::Store {
                    location: "test".into(),
                    message: "listing failed".into(),
                });
            }
            self.inner.list().await
        }
    }

    /// A store error after an attempt wrote its record leaves the record
    /// kept, and giving up removes it: nobody waits a TTL for it.
    #[tokio::test]
    async fn a_failed_attempt_leaves_no_record_once_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let failing = || {
            Arc::new(FailingOnce {
                inner: records(dir.path()),
                failed: false.into(),
            })
        };
        let s = ScopedLock::new(whole(dir.path()), failing(), vec!["data/a".into()]);
        assert!(s.try_acquire(TTL).await.is_err());
        s.abandon().await;
        assert_eq!(
            live_records(dir.path()).await,
            0,
            "the scoped record is gone"
        );
        let w = DrainingLock::new(whole(dir.path()), failing());
        assert!(w.try_acquire(TTL).await.is_err());
        w.abandon().await;
        assert!(
            whole(dir.path()).inspect().await.unwrap().is_none(),
            "the announcement is gone"
        );
    }

    #[tokio::test]
    async fn stale_records_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(1);
        let dead = ScopedLock::new(
            Arc::new(FileLock::new(dir.path(), ttl)),
            Arc::new(FileScopedRecords::new(dir.path(), ttl)),
            vec!["data/a/@versions".into()],
        );
        let Attempt::Acquired(_) = dead.try_acquire(ttl).await.unwrap() else {
            panic!("first")
        };
        std::thread::sleep(Duration::from_millis(20));
        let alive = scoped(dir.path(), &["data/a/@versions"]);
        let lease = held(&alive).await;
        alive.release(&lease).await.unwrap();
        held(&draining(dir.path())).await;
    }

    /// A record kept while waiting is written again at the start of each
    /// attempt, so the lease an attempt returns is no older than the attempt.
    #[tokio::test]
    async fn a_kept_record_is_renewed_by_every_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let s = scoped(dir.path(), &["data/a/@versions"]);
        let ls = held(&s).await;
        let w = draining(dir.path());
        assert!(is_busy(&w).await);
        let before = whole(dir.path()).inspect().await.unwrap().unwrap().version;
        std::thread::sleep(Duration::from_millis(5));
        assert!(is_busy(&w).await);
        let after = whole(dir.path()).inspect().await.unwrap().unwrap().version;
        assert_ne!(before, after);
        s.release(&ls).await.unwrap();
        let lw = held(&w).await;
        let now = whole(dir.path()).inspect().await.unwrap().unwrap().version;
        assert_eq!(lw.version, now);
    }
}
