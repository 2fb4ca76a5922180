//! Command implementations: plain functions that take a context and typed
//! options and return typed results; rendering lives beside each result type.

pub mod data;
pub mod exec;
pub mod lock;
pub mod repo;
pub mod setup;
pub mod status;

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::infrastructure::coordinator::{
    run_guarded, LeaseFence, LockGuard, StopController, StopSignal,
};
use std::future::Future;
use std::sync::Arc;

/// Runs `op` inside the datastore guard: acquire the lock, run, release — on
/// success, on error, on signals and when the lock is lost.
pub async fn with_guard<T, F, Fut>(ctx: &RepoContext, op: F) -> Result<T, CliError>
where
    F: FnOnce(Arc<LeaseFence>, StopSignal) -> Fut,
    Fut: Future<Output = Result<T, CliError>>,
{
    let stop = StopController::install().map_err(|source| CliError::Io {
        context: "installing signal handlers".into(),
        source,
    })?;
    let lock = ctx.lock()?;
    let guard = LockGuard::acquire(lock, ctx.timing, &stop).await?;
    let fence = guard.fence();
    run_guarded(guard, stop.signal(), op(fence, stop.signal())).await
}
