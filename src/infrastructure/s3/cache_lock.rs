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
    ///
    /// A busy lock is waited for in the kernel's queue (a blocking `flock` on
    /// a thread of its own), so the next process gets it the moment the
    /// holder lets go — polling lost up to its pause at every handoff. A
    /// waiter that gives up leaves the thread behind; if it gets the lock
    /// later, it lets go at once (nobody is there to take it).
    pub(crate) async fn acquire(cache: &Path, timeout: Duration) -> Result<Self, LockError> {
        let (path, file) = Self::open(cache)?;
        let store_error = |e: std::io::Error| LockError::Backend {
            location: path.display().to_string(),
            source: Box::new(e),
        };
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(Self { _held: held }),
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => file,
            Err((_, e)) => return Err(store_error(e.into())),
        };
        let started = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A plain thread, not the runtime's blocking pool: the runtime
        // waits for those when it shuts down, and this one may block until
        // the holder exits.
        let waiter = std::thread::Builder::new()
            .name("swamp-cache-lock".into())
            .spawn(move || {
                let mut file = file;
                let outcome = loop {
                    match Flock::lock(file, FlockArg::LockExclusive) {
                        Ok(held) => break Ok(held),
                        Err((again, nix::errno::Errno::EINTR)) => file = again,
                        Err((_, e)) => break Err(std::io::Error::from(e)),
                    }
                };
                // A waiter that gave up drops the lock with the message.
                let _ = tx.send(outcome);
            });
        if let Err(e) = waiter {
            return Err(store_error(e));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(held))) => Ok(Self { _held: held }),
            Ok(Ok(Err(e))) => Err(store_error(e)),
            Ok(Err(_)) => Err(store_error(std::io::Error::other(
                "the thread waiting for the cache lock ended",
            ))),
            Err(_) => Err(LockError::Timeout {
                location: path.display().to_string(),
                waited: started.elapsed(),
                holder: "another swamp process on this machine (it updates the cache)".into(),
            }),
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
        CacheLock::acquire(dir.path(), Duration::from_millis(500))
            .await
            .expect("free again once dropped (the waiter that gave up let go)");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_lock_as_soon_as_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let held = CacheLock::acquire(dir.path(), Duration::from_secs(5))
            .await
            .unwrap();
        let cache = dir.path().to_path_buf();
        let waiter =
            tokio::spawn(async move { CacheLock::acquire(&cache, Duration::from_secs(60)).await });
        // The waiter is queued in the kernel, not sleeping between polls.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        let released = Instant::now();
        drop(held);
        waiter.await.unwrap().expect("the lock");
        // No timed assertion here (the bench measures handoffs); shown for
        // whoever runs it with --nocapture.
        eprintln!("handed over in {:?}", released.elapsed());
    }
}
