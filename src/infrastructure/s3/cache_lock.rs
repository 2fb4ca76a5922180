//! The cache lock: one process at a time changes a machine's S3 cache.
//!
//! Model: the datastore lock keeps writers on different machines apart, but
//! the processes of one machine share its cache, and a reader takes no
//! datastore lock. So whoever changes the cache holds an exclusive `flock` on
//! `{cache}/.swamp-cache.lock` meanwhile: a guarded command for its whole
//! pull → op → push, a reader while it refreshes the cache and reads from it
//! (a reader that finds it held for long reads into a private directory).
//! The kernel drops the lock with its process (kill -9 included), so it never
//! goes stale. Nobody waits for the datastore lock while holding it: a guarded
//! command takes it after the datastore lock, and a reader lets it go before
//! it falls back to the datastore lock, so the two can never wait on each
//! other in a cycle.

use crate::domain::lock::LockError;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file in the cache root (outside every datastore directory, so
/// it is never synced).
pub(crate) const CACHE_LOCK_FILE: &str = ".swamp-cache.lock";

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// A held cache lock; dropping it releases it.
pub(crate) struct CacheLock {
    _held: Flock<File>,
}

impl CacheLock {
    /// The lock file of `cache`, opened (created if need be).
    fn open(cache: &Path) -> Result<(std::path::PathBuf, File), LockError> {
        let path = cache.join(CACHE_LOCK_FILE);
        let store_error = |e: std::io::Error| LockError::Backend {
            location: path.display().to_string(),
            source: Box::new(e),
        };
        std::fs::create_dir_all(cache).map_err(store_error)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(store_error)?;
        Ok((path, file))
    }

    /// Waits up to `timeout` until this process holds the lock of `cache`.
    pub(crate) async fn acquire(cache: &Path, timeout: Duration) -> Result<Self, LockError> {
        let (path, mut file) = Self::open(cache)?;
        let store_error = |e: std::io::Error| LockError::Backend {
            location: path.display().to_string(),
            source: Box::new(e),
        };
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            // A refused attempt hands the file back: one open for all attempts.
            file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(held) => return Ok(Self { _held: held }),
                Err((file, nix::errno::Errno::EWOULDBLOCK)) => file,
                Err((_, e)) => return Err(store_error(e.into())),
            };
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(LockError::Timeout {
                    location: path.display().to_string(),
                    waited,
                    holder: "another swamp process on this machine (it updates the cache)".into(),
                });
            }
            tokio::time::sleep(pause.min(timeout - waited)).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = CacheLock::acquire(dir.path(), Duration::from_secs(5))
            .await
            .unwrap();
        let busy = CacheLock::acquire(dir.path(), Duration::from_millis(50)).await;
        assert!(
            matches!(busy, Err(LockError::Timeout { .. })),
            "{:?}",
            busy.err()
        );
        drop(held);
        CacheLock::acquire(dir.path(), Duration::from_millis(50))
            .await
            .expect("free again once dropped");
    }
}
