//! The cache lock: who may change a machine's S3 cache, and when.
//!
//! Model: the datastore lock keeps writers on different machines apart, but
//! the processes of one machine share its cache, and a reader takes no
//! datastore lock. So whoever changes the cache holds a `flock` on
//! `{cache}/.swamp-cache.lock` meanwhile:
//!
//! - exclusively: a whole-datastore command for its whole pull → op → push,
//!   a reader while it refreshes the cache and reads from it (a reader that
//!   finds it held for long reads into a private directory);
//! - shared: a scoped writer for its whole command. Scoped writers hold
//!   disjoint scoped locks, so each changes only its own scope's files, and
//!   several run at once; what they all change — the sync state file — they
//!   change only holding the state lock (`{cache}/.swamp-cache-state.lock`,
//!   exclusive, for the milliseconds of a read-merge-write, never across a
//!   request), merging their own changes into the state as it is on disk;
//!   and they commit to the index one at a time (the commit lock,
//!   `{cache}/.swamp-cache-commit.lock`, held across the commit's requests),
//!   since concurrent commits from one machine would only refuse each other.
//!
//! The kernel drops a lock with its process (kill -9 included), so it never
//! goes stale. Nobody waits for the datastore lock while holding the cache
//! lock: a guarded command takes it after the datastore lock, and a reader
//! lets it go before it falls back to the datastore lock, so the two can
//! never wait on each other in a cycle. A whole-datastore command waits for
//! no shared holder for long: its datastore lock drains every scoped lock
//! first, and a scoped writer holds the shared lock only while it holds one.

use crate::domain::lock::LockError;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file in the cache root (outside every datastore directory, so
/// it is never synced).
pub(crate) const CACHE_LOCK_FILE: &str = ".swamp-cache.lock";
/// Who a timeout on the cache lock names.
const CACHE_HOLDER: &str = "another swamp process on this machine (it updates the cache)";
/// The state lock file, beside it.
pub(crate) const STATE_LOCK_FILE: &str = ".swamp-cache-state.lock";
/// The commit lock file, beside them.
pub(crate) const COMMIT_LOCK_FILE: &str = ".swamp-cache-commit.lock";

/// How a cache lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheLockMode {
    /// Alone: the whole cache may change.
    Exclusive,
    /// Beside other scoped writers: each changes its own scope only.
    Shared,
}

impl CacheLockMode {
    fn blocking(self) -> FlockArg {
        match self {
            CacheLockMode::Exclusive => FlockArg::LockExclusive,
            CacheLockMode::Shared => FlockArg::LockShared,
        }
    }

    fn nonblocking(self) -> FlockArg {
        match self {
            CacheLockMode::Exclusive => FlockArg::LockExclusiveNonblock,
            CacheLockMode::Shared => FlockArg::LockSharedNonblock,
        }
    }
}

/// A held cache lock; dropping it releases it.
pub(crate) struct CacheLock {
    _held: Flock<File>,
    /// Whether another holder kept it first (so whatever it guards may
    /// have changed meanwhile).
    waited: bool,
}

impl CacheLock {
    /// The lock file of `cache`, opened (created if need be).
    fn open(cache: &Path, name: &str) -> Result<(std::path::PathBuf, File), LockError> {
        let path = cache.join(name);
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
        Self::acquire_as(cache, CacheLockMode::Exclusive, timeout).await
    }

    /// Waits up to `timeout` until this process holds the lock of `cache`
    /// in `mode`.
    pub(crate) async fn acquire_as(
        cache: &Path,
        mode: CacheLockMode,
        timeout: Duration,
    ) -> Result<Self, LockError> {
        Self::acquire_file(cache, CACHE_LOCK_FILE, mode, timeout, CACHE_HOLDER).await
    }

    /// Whether this lock had to be waited for: another process held it.
    pub(crate) fn waited(&self) -> bool {
        self.waited
    }

    /// Waits up to `timeout` until this process alone may commit to the
    /// index among this machine's scoped writers: they would only refuse
    /// each other's conditional writes, so they queue here instead, and
    /// the bucket sees one committer per machine.
    pub(crate) async fn acquire_commit(cache: &Path, timeout: Duration) -> Result<Self, LockError> {
        let holder = "another swamp process on this machine (it commits to the index)";
        Self::acquire_file(
            cache,
            COMMIT_LOCK_FILE,
            CacheLockMode::Exclusive,
            timeout,
            holder,
        )
        .await
    }

    /// Waits up to `timeout` for the lock file `name` of `cache`; a timeout
    /// names `holder` as the one that kept it.
    async fn acquire_file(
        cache: &Path,
        name: &str,
        mode: CacheLockMode,
        timeout: Duration,
        holder: &str,
    ) -> Result<Self, LockError> {
        let (path, file) = Self::open(cache, name)?;
        let store_error = |e: std::io::Error| LockError::Backend {
            location: path.display().to_string(),
            source: Box::new(e),
        };
        let file = match Flock::lock(file, mode.nonblocking()) {
            Ok(held) => {
                return Ok(Self {
                    _held: held,
                    waited: false,
                })
            }
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
                    match Flock::lock(file, mode.blocking()) {
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
            Ok(Ok(Ok(held))) => Ok(Self {
                _held: held,
                waited: true,
            }),
            Ok(Ok(Err(e))) => Err(store_error(e)),
            Ok(Err(_)) => Err(store_error(std::io::Error::other(
                "the thread waiting for the cache lock ended",
            ))),
            Err(_) => Err(LockError::Timeout {
                location: path.display().to_string(),
                waited: started.elapsed(),
                holder: holder.into(),
            }),
        }
    }
}

/// The state lock of a cache, held for one read-merge-write of its sync
/// state (see the module doc); dropping it releases it.
pub(crate) struct StateLock {
    _held: CacheLock,
}

impl StateLock {
    /// Holds the state lock of `cache`, waiting for up to `timeout`: every
    /// holder lets go within milliseconds (a holder stopped meanwhile makes
    /// the others give up at `timeout`). The wait is the kernel's, as for
    /// the cache lock, so the lease's heartbeat runs meanwhile.
    pub(crate) async fn acquire(cache: &Path, timeout: Duration) -> Result<Self, LockError> {
        let holder = "another swamp process on this machine (it records what it synced)";
        let held = CacheLock::acquire_file(
            cache,
            STATE_LOCK_FILE,
            CacheLockMode::Exclusive,
            timeout,
            holder,
        )
        .await?;
        Ok(Self { _held: held })
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
        assert!(!held.waited(), "the first holder found it free");
        let released = Instant::now();
        drop(held);
        let got = waiter.await.unwrap().expect("the lock");
        assert!(got.waited(), "the second one had to wait for it");
        // No timed assertion here (the bench measures handoffs); shown for
        // whoever runs it with --nocapture.
        eprintln!("handed over in {:?}", released.elapsed());
    }

    #[tokio::test]
    async fn shared_holders_run_together_and_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let wait = Duration::from_millis(50);
        let one = CacheLock::acquire_as(dir.path(), CacheLockMode::Shared, wait)
            .await
            .unwrap();
        let two = CacheLock::acquire_as(dir.path(), CacheLockMode::Shared, wait)
            .await
            .expect("a second shared holder beside the first");
        let alone = CacheLock::acquire(dir.path(), wait).await;
        assert!(matches!(alone, Err(LockError::Timeout { .. })));
        drop((one, two));
        let alone = CacheLock::acquire(dir.path(), Duration::from_secs(5))
            .await
            .unwrap();
        let beside = CacheLock::acquire_as(dir.path(), CacheLockMode::Shared, wait).await;
        assert!(matches!(beside, Err(LockError::Timeout { .. })));
        drop(alone);
    }

    #[tokio::test]
    async fn the_state_lock_is_exclusive_and_gives_up_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let held = StateLock::acquire(dir.path(), Duration::from_secs(5))
            .await
            .unwrap();
        let busy = StateLock::acquire(dir.path(), Duration::from_millis(30)).await;
        assert!(matches!(busy, Err(LockError::Timeout { .. })));
        drop(held);
        StateLock::acquire(dir.path(), Duration::from_millis(500))
            .await
            .expect("free once dropped");
    }
}
