//! `read_only(op)`: runs an op on a private read-only copy of one
//! consistent state of the datastore (`read_only_view.rs`), and pushes
//! nothing. `in_working_copy(scope, op)`: runs an op on a private writable
//! copy while holding `scope`'s lock, and applies (and on S3 pushes) only
//! its changes inside the scope (`working_copy.rs`).
//!
//! On S3 the copy is made like any read: without the datastore lock, from a
//! cache pulled to one committed index — this machine's under the cache
//! lock, or a private one while another process holds it (falling back to
//! the lock when writers keep changing it, see `guard.rs`). A filesystem
//! datastore has no committed index for arbitrary files, so there the copy
//! is made under the datastore lock, held only while copying. Either way
//! the op runs with no lock at all: nothing it does reaches the datastore.

use super::{Datastore, Place};
use crate::domain::lock::LockError;
use crate::domain::lock_scope::LockScope;
use crate::domain::path_resolver::DatastorePathResolver;
use crate::infrastructure::coordinator::{stop_error, LeaseFence, StopSignal};
use crate::infrastructure::read_only_view::{ReadOnlyView, ViewError};
use crate::infrastructure::s3::sync::SyncError;
use crate::infrastructure::working_copy::{ApplyError, WorkingCopy};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a read-only op returned, and what it changed in its view.
#[derive(Debug)]
pub struct ReadOnlyRun<T> {
    /// The op's own result.
    pub value: T,
    /// The view's paths the op added, removed or changed (all discarded).
    pub changed: Vec<String>,
}

impl Datastore {
    /// Runs `op` with the root of a read-only view of the datastore; the
    /// view is removed afterwards, whatever `op` did to it.
    pub async fn read_only<T, E, F, Fut>(&self, op: F) -> Result<ReadOnlyRun<T>, E>
    where
        E: From<LockError> + From<SyncError> + From<ViewError>,
        F: FnOnce(PathBuf, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let stop = self.stop_controller()?;
        let view = if matches!(self.place, Place::S3 { .. }) {
            let copy = |resolver: DatastorePathResolver| async move {
                Ok::<_, E>(self.copy_view(resolver.datastore_root())?)
            };
            self.reader(None, copy).await?
        } else {
            self.locked(|_, _| async { Ok::<_, E>(self.copy_view(self.root())?) })
                .await?
        };
        if let Some(reason) = stop.signal().current() {
            return Err(stop_error(&reason).into());
        }
        let value = op(view.root().to_path_buf(), stop.signal()).await?;
        let changed = view.changes()?;
        view.remove()?;
        Ok(ReadOnlyRun { value, changed })
    }

    fn copy_view(&self, source: &Path) -> Result<ReadOnlyView, ViewError> {
        ReadOnlyView::create(
            source,
            self.resolver.directories(),
            &self.settings.swamp_home,
        )
    }
}

/// What a scoped op returned, and what it changed in its working copy.
#[derive(Debug)]
pub struct ScopedRun<T> {
    /// The op's own result.
    pub value: T,
    /// Changed paths inside the scope, written to the datastore (none
    /// when anything below refused them).
    pub applied: Vec<String>,
    /// Changed paths outside the scope: nothing was applied.
    pub outside: Vec<String>,
    /// Paths in the scope left as neither file nor directory: nothing was applied.
    pub unsupported: Vec<String>,
}

impl Datastore {
    /// Runs `op`, which may change only what `scope` holds, on a private
    /// writable copy of the datastore (`working_copy.rs`), holding the
    /// scope's lock: on S3 after pulling the scope (the rest of the copy is
    /// what this cache last held), with the scope pushed after. The copy's
    /// changes inside the scope are applied to the datastore (or cache) —
    /// unless it changed anything outside, or left something that is not a
    /// file in it: then nothing is, and the result says what.
    pub async fn in_working_copy<T, E, F, Fut>(
        &self,
        scope: &LockScope,
        op: F,
    ) -> Result<ScopedRun<T>, E>
    where
        E: From<LockError> + From<SyncError> + From<ViewError>,
        F: FnOnce(PathBuf, StopSignal) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let work = |fence: Arc<LeaseFence>, stop: StopSignal| async move {
            let target = self.root();
            let copy = WorkingCopy::create(
                target,
                self.resolver.directories(),
                &self.settings.swamp_home,
            )?;
            let value = op(copy.root().to_path_buf(), stop).await?;
            let changed = copy.changes()?;
            let outside = scope.outside(&changed);
            let inside: Vec<String> = changed
                .into_iter()
                .filter(|path| scope.contains(path))
                .collect();
            let unsupported = copy.unsupported(&inside);
            let applied = if outside.is_empty() && unsupported.is_empty() {
                match copy.apply(&inside, target, &fence) {
                    Ok(()) => inside,
                    Err(ApplyError::View(e)) => return Err(e.into()),
                    Err(ApplyError::Lock(e)) => return Err(e.into()),
                }
            } else {
                Vec::new()
            };
            copy.remove()?;
            Ok(ScopedRun {
                value,
                applied,
                outside,
                unsupported,
            })
        };
        let lock = self.lock_for(scope);
        match self.place {
            Place::S3 { .. } => self.synced(lock, Some(scope.clone()), work).await,
            Place::Filesystem(_) => self.locked_by(vec![lock], work).await,
        }
    }
}
