//! When this cache last pulled and pushed successfully
//! (`{cache}/.swamp-sync-times.json`), for `datastore status`.
//!
//! Model: a note, not state — nothing decides anything from it. It is
//! written after each successful pull or push by temp file and rename but
//! without an fsync (a crash may lose the last time; it then reads as an
//! older one), and two processes that record at once may lose one of the
//! two times; a read that fails reads as "never".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The note's file in the cache root (outside every datastore directory).
pub(crate) const SYNC_TIMES_FILE: &str = ".swamp-sync-times.json";

/// The last successful pull and push of one cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncTimes {
    /// The last pull that finished without error.
    pub last_pull: Option<DateTime<Utc>>,
    /// The last push that finished without error.
    pub last_push: Option<DateTime<Utc>>,
}

/// Which direction finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Synced {
    Pull,
    Push,
}

impl SyncTimes {
    /// The note of `cache` ("never" for both when there is none).
    pub fn load(cache: &Path) -> Self {
        std::fs::read(cache.join(SYNC_TIMES_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Notes that `what` finished now in `cache`; failing to is only a cost.
    pub(crate) fn record(cache: &Path, what: Synced) {
        let mut times = Self::load(cache);
        let now = Some(Utc::now());
        match what {
            Synced::Pull => times.last_pull = now,
            Synced::Push => times.last_push = now,
        }
        let target = cache.join(SYNC_TIMES_FILE);
        let temp = cache.join(format!(".swamp-sync-times.{}.tmp", std::process::id()));
        let written = serde_json::to_vec(&times)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&temp, bytes))
            .and_then(|()| std::fs::rename(&temp, &target));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            tracing::debug!(error = %e, "could not note the sync time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_direction_keeps_its_own_time() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SyncTimes::load(dir.path()), SyncTimes::default());
        SyncTimes::record(dir.path(), Synced::Pull);
        let pulled = SyncTimes::load(dir.path());
        assert!(pulled.last_pull.is_some() && pulled.last_push.is_none());
        SyncTimes::record(dir.path(), Synced::Push);
        let both = SyncTimes::load(dir.path());
        assert_eq!(both.last_pull, pulled.last_pull);
        assert!(both.last_push.is_some());
        std::fs::write(dir.path().join(SYNC_TIMES_FILE), b"{torn").unwrap();
        assert_eq!(SyncTimes::load(dir.path()), SyncTimes::default());
    }
}
