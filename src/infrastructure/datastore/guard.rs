//! The guard every command that touches runtime data runs inside, read top
//! to bottom: acquire the lock → pull (S3) → run → push (S3) → release — on
//! success, on error, on signals and when the lock is lost
//! (`coordinator::run_guarded` owns the stop and release half).
//!
//! The push also runs after a failed op (its partial writes are real files in
//! the cache), but never once the lease is lost: nothing may write then.

use super::{Datastore, Notice, Place};
use crate::domain::lock::{DistributedLock, LockError};
use crate::infrastructure::coordinator::{
    run_guarded, stop_error, LeaseFence, LockGuard, StopController, StopSignal,
};
use crate::infrastructure::s3::sync::SyncError;
use std::future::Future;
use std::sync::Arc;

impl Datastore {
    /// Runs `op` inside the guard: acquire → pull → `op` → push → release.
    pub async fn guard<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        E: From<LockError> + From<SyncError>,
        F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let sync = self.cache_sync();
        self.locked(|fence, signal| async move {
            if let Some(sync) = &sync {
                let pulled = sync.pull(&fence).await?;
                self.report_all(pulled.conflicts.into_iter().map(Notice::Conflict));
            }
            let result = op(fence.clone(), signal).await;
            let Some(sync) = &sync else {
                return result;
            };
            if fence.check().is_err() {
                return result;
            }
            match (result, sync.push(&fence).await) {
                (result, Ok(pushed)) => {
                    self.report_all(pushed.unsyncable.into_iter().map(Notice::Unsyncable));
                    result
                }
                (Ok(_), Err(e)) => Err(e.into()),
                (Err(failed), Err(e)) => {
                    self.reporter.notice(Notice::PushAfterFailure(e));
                    Err(failed)
                }
            }
        })
        .await
    }

    /// Runs a read-only `op`. On a filesystem datastore it runs without the
    /// lock (versions are immutable and committed atomically); on S3 it runs
    /// inside the guard, because refreshing the shared cache is a write.
    pub async fn reader<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        E: From<LockError> + From<SyncError>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.place {
            Place::S3 { .. } => self.guard(|_, _| op()).await,
            Place::Filesystem(_) => op().await,
        }
    }

    /// Runs `op` under the lock only (no automatic pull or push): acquire,
    /// run, release — on success, on error, on signals and when the lock is lost.
    pub async fn locked<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        E: From<LockError>,
        F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.locked_with(Vec::new(), op).await
    }

    /// `locked` holding `also` as well (e.g. a migration target's lock): all
    /// are acquired in a fixed order, and one fence covers every lease.
    pub(super) async fn locked_with<T, E, F, Fut>(
        &self,
        also: Vec<Arc<dyn DistributedLock>>,
        op: F,
    ) -> Result<T, E>
    where
        E: From<LockError>,
        F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let reporter = self.reporter.clone();
        let stop = StopController::install(Arc::new(move |signal| reporter.second_signal(signal)))
            .map_err(|e| LockError::Store {
                location: "signal handlers".into(),
                message: format!("installing signal handlers: {e}"),
            })?;
        let mut locks = vec![self.lock()];
        locks.extend(also);
        let guard = LockGuard::acquire_all(locks, self.settings.timing, &stop).await?;
        // A signal during the last attempt: do not start the command at all.
        if let Some(reason) = stop.signal().current() {
            if let Err(e) = guard.release().await {
                self.reporter.notice(Notice::Release(e));
            }
            return Err(stop_error(&reason).into());
        }
        let fence = guard.fence();
        let reporter = self.reporter.clone();
        run_guarded(guard, stop.signal(), op(fence, stop.signal()), move |e| {
            reporter.notice(Notice::Release(e))
        })
        .await
    }

    fn report_all(&self, notices: impl IntoIterator<Item = Notice>) {
        for notice in notices {
            self.reporter.notice(notice);
        }
    }
}
