//! `read_only(op)`: runs an op on a private read-only copy of one
//! consistent state of the datastore (`read_only_view.rs`), and pushes
//! nothing.
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
use crate::domain::path_resolver::DatastorePathResolver;
use crate::infrastructure::coordinator::{stop_error, StopSignal};
use crate::infrastructure::read_only_view::{ReadOnlyView, ViewError};
use crate::infrastructure::s3::sync::SyncError;
use std::future::Future;
use std::path::{Path, PathBuf};

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
