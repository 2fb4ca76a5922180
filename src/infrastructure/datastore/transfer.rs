//! Explicit transfers of an S3 datastore, each under the lock without the
//! guard's automatic pull and push: `sync` (pull and/or push now) and
//! `repair` (rebuild the index from the bucket). A filesystem datastore has
//! no cache and no index: both return `None`.

use super::{Datastore, Notice};
use crate::infrastructure::s3::sync::{RepairReport, SyncError, SyncReport};
use indicatif::ProgressBar;

/// Which directions to sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Pull then push.
    Both,
    /// Pull only.
    Pull,
    /// Push only.
    Push,
}

/// What an explicit sync did (a direction not run has an empty report).
#[derive(Debug, Clone, Default)]
pub struct Transfer {
    /// The pull.
    pub pulled: SyncReport,
    /// The push.
    pub pushed: SyncReport,
}

impl Datastore {
    /// Pulls and/or pushes the S3 cache now, ticking `progress`.
    pub async fn sync(
        &self,
        direction: Direction,
        progress: ProgressBar,
    ) -> Result<Option<Transfer>, SyncError> {
        let Some(sync) = self.cache_sync() else {
            return Ok(None);
        };
        let sync = sync.with_progress(progress);
        let transfer = self
            .locked(|fence, _stop| async move {
                let mut transfer = Transfer::default();
                if direction != Direction::Push {
                    transfer.pulled = sync.pull(&fence).await?;
                    for c in &transfer.pulled.conflicts {
                        self.reporter.notice(Notice::Conflict(c.clone()));
                    }
                }
                if direction != Direction::Pull {
                    transfer.pushed = sync.push(&fence).await?;
                    for u in &transfer.pushed.unsyncable {
                        self.reporter.notice(Notice::Unsyncable(u.clone()));
                    }
                }
                Ok::<_, SyncError>(transfer)
            })
            .await?;
        Ok(Some(transfer))
    }

    /// Rebuilds an S3 datastore's index from the bucket and re-uploads what
    /// this cache holds of missing or damaged files (never deletes an object).
    pub async fn repair(&self, accept_bucket: bool) -> Result<Option<RepairReport>, SyncError> {
        let Some(sync) = self.cache_sync() else {
            return Ok(None);
        };
        let report = self
            .locked(|fence, _stop| async move { sync.repair(&fence, accept_bucket).await })
            .await?;
        Ok(Some(report))
    }
}
