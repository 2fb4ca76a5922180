//! The guard every command that touches runtime data runs inside, read top
//! to bottom: acquire the lock → pull (S3) → run → push (S3) → release — on
//! success, on error, on signals and when the lock is lost
//! (`coordinator::run_guarded` owns the stop and release half).
//!
//! The push also runs after a failed op (its partial writes are real files in
//! the cache), but never once the lease is lost: nothing may write then. On
//! S3 every locked op also holds the cache lock (`s3/cache_lock.rs`), taken
//! after the datastore lock, so no other process of this machine changes the
//! cache under it.
//!
//! A writer of one scope (`guard_scope`: a data item) takes a scoped lock
//! (`scoped_lock.rs`), so writers of other scopes run meanwhile; on S3 it
//! pulls and pushes its scope only, and its index commit merges with theirs
//! (`s3/sync/scoped.rs`). Whole-datastore commands take the draining lock.
//!
//! Readers take no datastore lock: on S3 a reader holds the cache lock, pulls
//! the index it finds (never healing, see `sync/pull.rs`) and reads — or,
//! when another process of this machine holds the cache lock, pulls the same
//! way into a private directory and reads there; when a writer elsewhere is
//! mid-push it lets go and retries, and after `READ_ATTEMPTS` it waits for
//! the datastore lock like a writer.

use super::{Datastore, Notice, Place};
use crate::domain::data_read::ReadScope;
use crate::domain::lock::{DistributedLock, LockError};
use crate::domain::lock_scope::LockScope;
use crate::domain::path_resolver::DatastorePathResolver;
use crate::infrastructure::audit::AuditFile;
use crate::infrastructure::coordinator::{
    run_guarded, stop_error, LeaseFence, LockGuard, LockWait, StopController, StopSignal,
};
use crate::infrastructure::read_only_view::{ScratchDir, ViewError};
use crate::infrastructure::s3::cache_lock::{CacheLock, CacheLockMode};
use crate::infrastructure::s3::sync::CacheSync;
use crate::infrastructure::s3::sync::SyncError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Who takes the cache lock of a locked op.
#[derive(Clone, Copy)]
enum CacheUse {
    /// The guard, exclusively, for the whole op.
    Exclusive,
    /// The op itself (a scoped writer, which shares it).
    Caller,
}

/// Reads without the lock before a reader waits for it instead.
const READ_ATTEMPTS: u32 = 3;
/// The pause after a read that met a writer (times the attempt, jittered).
const READ_PAUSE: Duration = Duration::from_millis(100);
/// How long a reader waits for this machine's cache before it reads into a
/// private directory instead.
const CACHE_WAIT: Duration = Duration::from_millis(100);

impl Datastore {
    /// Runs `op` inside the guard: acquire → pull → `op` → push → release.
    pub async fn guard<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        E: From<LockError> + From<SyncError>,
        F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.synced(self.lock(), None, op).await
    }

    /// Runs `op` holding `lock`, with the cache pulled before and pushed
    /// after (S3): all of it, or only `scope` (a scoped writer, whose index
    /// commit merges).
    pub(super) async fn synced<T, E, F, Fut>(
        &self,
        lock: Arc<dyn DistributedLock>,
        scope: Option<LockScope>,
        op: F,
    ) -> Result<T, E>
    where
        E: From<LockError> + From<SyncError>,
        F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let sync = self.cache_sync();
        // A scoped writer takes the cache lock itself (shared, see below).
        let cache = match scope {
            Some(_) => CacheUse::Caller,
            None => CacheUse::Exclusive,
        };
        self.locked_with(vec![lock], cache, |fence, signal| async move {
            let (_cache, sync) = match (&scope, sync) {
                (Some(_), Some(sync)) => {
                    let (held, sync) = self.lock_cache_for_scope(sync).await?;
                    (Some(held), Some(sync))
                }
                (_, sync) => (None, sync),
            };
            if let Some(sync) = &sync {
                let pulled = match &scope {
                    Some(scope) => sync.pull_scope(&fence, scope).await?,
                    None => sync.pull(&fence).await?,
                };
                self.report_all(pulled.conflicts.into_iter().map(Notice::Conflict));
                tracing::debug!("pulled");
            }
            let result = op(fence.clone(), signal).await;
            tracing::debug!(ok = result.is_ok(), "command done");
            let Some(sync) = &sync else {
                return result;
            };
            if fence.check().is_err() {
                return result;
            }
            let pushed = match &scope {
                Some(scope) => sync.push_scope(&fence, scope).await,
                None => sync.push(&fence).await,
            };
            tracing::debug!(ok = pushed.is_ok(), "pushed");
            match (result, pushed) {
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

    /// Runs a read-only `op`, which reads what `scope` names (everything
    /// when `None`) from the directory its resolver roots, without the
    /// datastore lock. On a filesystem datastore it just runs (data-item
    /// versions are immutable and committed atomically); on S3 it reads a
    /// cache holding `scope` as one committed index lists it — this
    /// machine's cache under the cache lock, or, while another process of
    /// this machine holds that lock (a running writer), a private directory
    /// pulled the same way, so a reader never waits for a writer.
    pub async fn reader<T, E, F, Fut>(&self, scope: Option<&dyn ReadScope>, op: F) -> Result<T, E>
    where
        E: From<LockError> + From<SyncError> + From<ViewError>,
        F: FnOnce(DatastorePathResolver) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Place::S3 { config, store, .. } = &self.place else {
            return op(self.resolver.clone()).await;
        };
        for attempt in 1..=READ_ATTEMPTS {
            let (resolver, cache, scratch) = match self.cache_for_reading().await? {
                Some(cache) => (self.resolver.clone(), Some(cache), None),
                None => {
                    let scratch = ScratchDir::create(&self.settings.swamp_home)?;
                    let resolver = self.resolver.rooted_at(scratch.path().to_path_buf());
                    (resolver, None, Some(scratch))
                }
            };
            let sync = self.sync_into(config, store, &resolver);
            match sync.pull_for_reading(scope).await {
                Ok(pulled) => {
                    self.report_all(pulled.conflicts.into_iter().map(Notice::Conflict));
                    let result = op(resolver).await;
                    drop((cache, scratch));
                    return result;
                }
                Err(SyncError::ChangedWhileReading(why)) => {
                    drop((cache, scratch));
                    tracing::debug!(attempt, error = %why, "a writer is mid-push; reading again");
                    let pause = READ_PAUSE.mul_f64(rand::random::<f64>() + 0.5) * attempt;
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        // A writer keeps changing what this reads: wait for its lock.
        self.guard(|_, _| op(self.resolver.clone())).await
    }

    /// Runs `op`, which writes only inside `scope` (and its own audit file),
    /// inside the guard of that scope: a scoped lock, so writers of other
    /// scopes run meanwhile; on S3 the pull and push cover the scope only
    /// and the index commit merges (`s3/sync/scoped.rs`).
    pub async fn guard_scope<T, E, F, Fut>(&self, scope: &LockScope, op: F) -> Result<T, E>
    where
        E: From<LockError> + From<SyncError>,
        F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let LockScope::Paths(paths) = scope else {
            return self.guard(op).await;
        };
        let mut synced = paths.clone();
        if let AuditFile::Own(audit) = self.audit_file() {
            synced.push(audit.to_string());
        }
        self.synced(self.lock_for(scope), Some(LockScope::Paths(synced)), op)
            .await
    }

    /// Runs `op` under the lock only (no automatic pull or push): acquire,
    /// run, release — on success, on error, on signals and when the lock is lost.
    pub async fn locked<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        E: From<LockError>,
        F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.locked_by(vec![self.lock()], op).await
    }

    /// Runs `op` holding `locks` (e.g. a migration's source and target
    /// locks: acquired in a fixed order, one fence over every lease), and on
    /// S3 the cache lock after them.
    pub(super) async fn locked_by<T, E, F, Fut>(
        &self,
        locks: Vec<Arc<dyn DistributedLock>>,
        op: F,
    ) -> Result<T, E>
    where
        E: From<LockError>,
        F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.locked_with(locks, CacheUse::Exclusive, op).await
    }

    /// `locked_by`, with the cache lock taken as `cache` says.
    async fn locked_with<T, E, F, Fut>(
        &self,
        locks: Vec<Arc<dyn DistributedLock>>,
        cache: CacheUse,
        op: F,
    ) -> Result<T, E>
    where
        E: From<LockError>,
        F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let stop = self.stop_controller()?;
        let reporter = self.reporter.clone();
        let on_wait = move |wait: &LockWait| reporter.lock_wait(wait);
        let guard =
            LockGuard::acquire_all_reporting(locks, self.settings.timing, &stop, &on_wait).await?;
        tracing::debug!("datastore lock held");
        // A signal during the last attempt: do not start the command at all.
        if let Some(reason) = stop.signal().current() {
            if let Err(e) = guard.release().await {
                self.reporter.notice(Notice::Release(e));
            }
            return Err(stop_error(&reason).into());
        }
        let fence = guard.fence();
        let reporter = self.reporter.clone();
        let signal = stop.signal();
        let op = async move {
            let _cache = match cache {
                CacheUse::Exclusive => self.lock_cache().await?,
                CacheUse::Caller => None,
            };
            op(fence, signal).await
        };
        run_guarded(guard, stop.signal(), op, move |e| {
            reporter.notice(Notice::Release(e))
        })
        .await
    }

    /// This machine's cache lock for a reader, if it comes free within
    /// `CACHE_WAIT`: other readers hold it for milliseconds, a writer's
    /// command for as long as it runs (then the reader reads elsewhere).
    async fn cache_for_reading(&self) -> Result<Option<CacheLock>, LockError> {
        match CacheLock::acquire(self.root(), CACHE_WAIT.min(self.settings.timing.timeout)).await {
            Ok(cache) => Ok(Some(cache)),
            Err(LockError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Listens for SIGINT/SIGTERM/SIGHUP for one command; a second signal
    /// goes to the reporter.
    pub(super) fn stop_controller(&self) -> Result<StopController, LockError> {
        let reporter = self.reporter.clone();
        StopController::install(Arc::new(move |signal| reporter.second_signal(signal))).map_err(
            |e| LockError::Backend {
                location: "signal handlers (installing them)".into(),
                source: Box::new(e),
            },
        )
    }

    /// The cache lock of an S3 datastore (`None` for a filesystem one),
    /// waited for up to the lock timeout.
    async fn lock_cache(&self) -> Result<Option<CacheLock>, LockError> {
        match self.place {
            Place::S3 { .. } => Ok(Some(
                CacheLock::acquire(self.root(), self.settings.timing.timeout).await?,
            )),
            Place::Filesystem(_) => Ok(None),
        }
    }

    /// This machine's cache lock for a scoped writer: shared with the
    /// other scoped writers (each changes its own scope; `sync` then merges
    /// the sync state with theirs), unless the cache holds another remote's
    /// state, which only an exclusive holder may replace.
    async fn lock_cache_for_scope(
        &self,
        sync: CacheSync,
    ) -> Result<(CacheLock, CacheSync), SyncError> {
        let timeout = self.settings.timing.timeout;
        let shared = CacheLock::acquire_as(self.root(), CacheLockMode::Shared, timeout)
            .await
            .map_err(SyncError::Lock)?;
        // Under the shared lock nobody can replace the state's remote.
        let sync = sync.sharing_cache(timeout);
        if sync.load_shared_state().await? {
            tracing::debug!(shared = true, "cache lock held");
            return Ok((shared, sync));
        }
        drop(shared);
        let exclusive = CacheLock::acquire(self.root(), timeout)
            .await
            .map_err(SyncError::Lock)?;
        tracing::debug!(shared = false, "cache lock held");
        Ok((exclusive, sync.not_sharing()))
    }

    fn report_all(&self, notices: impl IntoIterator<Item = Notice>) {
        for notice in notices {
            self.reporter.notice(notice);
        }
    }
}
