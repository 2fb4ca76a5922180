//! Command implementations: plain functions that take a context and typed
//! options and return typed results; rendering lives beside each result type.

pub mod data;
pub mod exec;
pub mod lock;
pub mod repair;
pub mod repo;
pub mod setup;
pub mod status;
pub mod sync;

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::domain::lock::DistributedLock;
use crate::infrastructure::coordinator::{
    run_guarded, stop_error, LeaseFence, LockGuard, StopController, StopSignal,
};
use crate::infrastructure::s3::sync::{ConflictCopy, Unsyncable};
use std::future::Future;
use std::sync::Arc;

/// Runs `op` inside the datastore guard: acquire the lock → pull (S3) → run →
/// push (S3) → release — on success, on error, on signals and when the lock is
/// lost. The push also runs after a failed `op` (its partial writes are real
/// files in the cache), but never once the lock is lost.
pub async fn with_guard<T, F, Fut>(ctx: &RepoContext, op: F) -> Result<T, CliError>
where
    F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
    Fut: Future<Output = Result<T, CliError>>,
{
    let sync = ctx.sync();
    with_lock(ctx, |fence, signal| async move {
        if let Some(sync) = &sync {
            let pulled = sync.pull(&fence).await?;
            warn_conflicts(&pulled.conflicts);
        }
        let result = op(fence.clone(), signal).await;
        if let Some(sync) = &sync {
            if fence.check().is_ok() {
                match (&result, sync.push(&fence).await) {
                    (_, Ok(pushed)) => warn_unsyncable(&pushed.unsyncable),
                    (Ok(_), Err(e)) => return Err(e.into()),
                    (Err(_), Err(e)) => {
                        eprintln!("warning: the push after the failed command failed too: {e}")
                    }
                }
            }
        }
        result
    })
    .await
}

/// One warning line per local change a pull kept as a conflict copy.
pub fn warn_conflicts(conflicts: &[ConflictCopy]) {
    for c in conflicts {
        let clash = match c.remote {
            "deleted" => "was changed here and deleted remotely; the deletion stands",
            "directory" => {
                "is a file here and a directory remotely; the remote's files took its place"
            }
            _ => "was changed here and remotely; the remote version took its place",
        };
        eprintln!(
            "warning: {} {clash} and yours is kept at {}",
            c.path,
            c.copy.display()
        );
    }
}

/// One warning line per cache entry a push could not sync.
pub fn warn_unsyncable(unsyncable: &[Unsyncable]) {
    for u in unsyncable {
        eprintln!("warning: {} is not synced: {}", u.path, u.reason);
    }
}

/// Runs `op` under the datastore lock only (no automatic pull/push): acquire,
/// run, release — on success, on error, on signals and when the lock is lost.
pub async fn with_lock<T, F, Fut>(ctx: &RepoContext, op: F) -> Result<T, CliError>
where
    F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
    Fut: Future<Output = Result<T, CliError>>,
{
    with_locks(ctx, Vec::new(), op).await
}

/// `with_lock` holding `also` as well (e.g. a migration target's lock): all
/// are acquired in a fixed order, and one fence covers every lease.
pub async fn with_locks<T, F, Fut>(
    ctx: &RepoContext,
    also: Vec<Arc<dyn DistributedLock>>,
    op: F,
) -> Result<T, CliError>
where
    F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
    Fut: Future<Output = Result<T, CliError>>,
{
    let stop = StopController::install().map_err(|source| CliError::Io {
        context: "installing signal handlers".into(),
        source,
    })?;
    let mut locks = vec![ctx.lock()];
    locks.extend(also);
    let guard = LockGuard::acquire_all(locks, ctx.timing, &stop).await?;
    // A signal during the last attempt: do not start the command at all.
    if let Some(reason) = stop.signal().current() {
        if let Err(e) = guard.release().await {
            eprintln!("warning: {e}");
        }
        return Err(stop_error(&reason).into());
    }
    let fence = guard.fence();
    run_guarded(guard, stop.signal(), op(fence, stop.signal())).await
}

/// Runs a read-only `op`. On a filesystem datastore it runs without the lock
/// (versions are immutable and committed atomically); on S3 it runs inside the
/// guard, because refreshing the shared cache is a write.
pub async fn with_reader<T, F, Fut>(ctx: &RepoContext, op: F) -> Result<T, CliError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, CliError>>,
{
    if ctx.sync().is_some() {
        with_guard(ctx, |_, _| op()).await
    } else {
        op().await
    }
}
