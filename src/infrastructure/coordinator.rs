//! The guard every command that touches runtime data runs inside:
//! acquire lock → (pull) → run → (push) → release — on success, on error, on
//! SIGINT/SIGTERM/SIGHUP, and when the lock is lost.
//!
//! Model: a `StopSignal` says why a command must stop (a signal arrived, or the
//! lock was lost). The heartbeat renews the lease every TTL/3 and judges it by
//! `lease_clock` (which keeps counting through SIGSTOP and suspend): a lease not
//! renewed within 90 % of its TTL is treated as lost without touching the store,
//! because a taker may already hold it. Writers call `LeaseFence::check` right
//! before each write; the heartbeat holds the lease mutex while it renews, so a
//! release can never race an in-flight renewal.

use crate::domain::lease_clock;
use crate::domain::lock::{Attempt, DistributedLock, Lease, LockError};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

pub(crate) use crate::infrastructure::stop::{
    request_stop, stop_error, StopController, StopReason, StopSignal,
};
use tokio::task::JoinHandle;

/// A fence slot whose lease is not held yet (never the oldest renewal).
const NOT_HELD: u64 = u64::MAX;

/// How long a command may take to wind down after a signal before it is dropped.
const SIGNAL_GRACE: Duration = Duration::from_millis(2500);
/// How long a command may take to stop after its lock was lost.
const LOST_GRACE: Duration = Duration::from_millis(1000);
/// Upper bound on a release, so an unreachable store cannot hold up exit.
const RELEASE_TIMEOUT: Duration = Duration::from_millis(1500);

/// A synchronous check a writer makes right before each write. It covers
/// every lease a command holds (one per lock): each has its own renewal time,
/// and the fence fails once any of them may have expired.
#[derive(Debug)]
pub struct LeaseFence {
    valid_for: Duration,
    renewed_at_nanos: Vec<AtomicU64>,
    lost: Mutex<Option<String>>,
    is_lost: AtomicBool,
}

impl LeaseFence {
    /// A fence for one lease last renewed at `renewed_at` (by `lease_clock`).
    #[cfg(test)]
    pub(crate) fn new(ttl: Duration, renewed_at: Duration) -> Self {
        let fence = Self::for_leases(ttl, 1);
        fence.renewed(0, renewed_at);
        fence
    }

    /// A fence over no lease, for work that needs none (a reader under the
    /// cache lock): it never fails.
    pub(crate) fn without_lease() -> Self {
        Self::for_leases(Duration::from_secs(365 * 24 * 3600), 0)
    }

    /// A fence for `leases` leases, none held yet: a slot counts from the
    /// moment `renewed` first sets it.
    fn for_leases(ttl: Duration, leases: usize) -> Self {
        Self {
            valid_for: ttl.mul_f64(0.9),
            renewed_at_nanos: (0..leases).map(|_| AtomicU64::new(NOT_HELD)).collect(),
            lost: Mutex::new(None),
            is_lost: AtomicBool::new(false),
        }
    }

    fn renewed(&self, lease: usize, at: Duration) {
        if let Some(slot) = self.renewed_at_nanos.get(lease) {
            slot.store(at.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    /// How long the lease in slot `lease` stays valid from now.
    fn remaining(&self, lease: usize) -> Duration {
        let at = self
            .renewed_at_nanos
            .get(lease)
            .map_or(NOT_HELD, |slot| slot.load(Ordering::SeqCst));
        let since = lease_clock::now().saturating_sub(Duration::from_nanos(at));
        self.valid_for.saturating_sub(since)
    }

    fn lose(&self, why: String) {
        if let Ok(mut lost) = self.lost.lock() {
            lost.get_or_insert(why);
        }
        self.is_lost.store(true, Ordering::SeqCst);
    }

    /// Closes the fence for good: the lease is being released, so no write
    /// that outlived its command (a blocking copy past its grace) may land.
    fn close(&self) {
        self.lose("the lock was released".into());
    }

    /// `Err(LockError::Lost)` when the lease is gone or may have expired.
    pub fn check(&self) -> Result<(), LockError> {
        let oldest = self
            .renewed_at_nanos
            .iter()
            .map(|slot| slot.load(Ordering::SeqCst))
            .min()
            .unwrap_or(NOT_HELD);
        let since = lease_clock::now().saturating_sub(Duration::from_nanos(oldest));
        if since >= self.valid_for {
            self.lose(format!(
                "the lease was not renewed for {:.1}s (process paused or store unreachable), so another process may hold it",
                since.as_secs_f64()
            ));
        }
        if self.is_lost.load(Ordering::SeqCst) {
            let why = self
                .lost
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_else(|| "unknown reason".into());
            return Err(LockError::Lost(why));
        }
        Ok(())
    }
}

struct LeaseState {
    lease: Lease,
    released: bool,
}

/// Timing of the lock: TTL and how long to wait for it.
#[derive(Debug, Clone, Copy)]
pub struct LockTiming {
    /// Lease time-to-live.
    pub ttl: Duration,
    /// Longest wait for a busy lock.
    pub timeout: Duration,
}

/// One held lease and its heartbeat.
struct Held {
    lock: Arc<dyn DistributedLock>,
    state: Arc<tokio::sync::Mutex<LeaseState>>,
    heartbeat: JoinHandle<()>,
}

/// One or more held locks, their heartbeats, and the fence over all of them.
pub struct LockGuard {
    held: Vec<Held>,
    fence: Arc<LeaseFence>,
}

impl LockGuard {
    /// Waits (with jittered backoff) until the lock is ours, a deadline passes,
    /// or a stop is requested; then starts the heartbeat.
    #[cfg(test)]
    pub(crate) async fn acquire(
        lock: Arc<dyn DistributedLock>,
        timing: LockTiming,
        stop: &StopController,
    ) -> Result<Self, LockError> {
        Self::acquire_all(vec![lock], timing, stop).await
    }

    /// Acquires every lock, in the order of their locations (so two commands
    /// that need the same two locks can never each hold one and wait for the
    /// other), within one deadline; on failure releases those it holds.
    #[cfg(test)]
    pub async fn acquire_all(
        locks: Vec<Arc<dyn DistributedLock>>,
        timing: LockTiming,
        stop: &StopController,
    ) -> Result<Self, LockError> {
        Self::acquire_all_reporting(locks, timing, stop, &|_| {}).await
    }

    /// `acquire_all`, telling `on_wait` while a lock stays busy (from
    /// `WAIT_NOTICE` on, at every retry) and once the wait is over.
    pub async fn acquire_all_reporting(
        mut locks: Vec<Arc<dyn DistributedLock>>,
        timing: LockTiming,
        stop: &StopController,
        on_wait: &(dyn Fn(&LockWait) + Sync),
    ) -> Result<Self, LockError> {
        locks.sort_by_key(|l| l.location());
        locks.dedup_by_key(|l| l.location());
        let started = lease_clock::now();
        let fence = Arc::new(LeaseFence::for_leases(timing.ttl, locks.len()));
        let mut guard = Self {
            held: Vec::new(),
            fence,
        };
        for (slot, lock) in locks.into_iter().enumerate() {
            let remaining = timing
                .timeout
                .saturating_sub(lease_clock::now().saturating_sub(started));
            let waited = wait_for(&lock, timing.ttl, remaining, stop, on_wait).await;
            on_wait(&LockWait::Over);
            let (lease, at) = match waited {
                Ok(won) => won,
                Err(e) => {
                    lock.abandon().await;
                    if let Err(release) = guard.release().await {
                        tracing::warn!(error = %release, "releasing after a failed acquisition");
                    }
                    return Err(e);
                }
            };
            // Renew each lease from the moment it is held: waiting for the
            // next lock may take longer than a TTL.
            guard.fence.renewed(slot, at);
            let state = Arc::new(tokio::sync::Mutex::new(LeaseState {
                lease,
                released: false,
            }));
            let heartbeat = tokio::spawn(heartbeat(
                lock.clone(),
                state.clone(),
                guard.fence.clone(),
                slot,
                stop.sender(),
                timing.ttl,
            ));
            guard.held.push(Held {
                lock,
                state,
                heartbeat,
            });
        }
        Ok(guard)
    }

    /// The check writers make before each write.
    pub fn fence(&self) -> Arc<LeaseFence> {
        self.fence.clone()
    }

    /// Releases every lock, all at once and within one bound in time; a lock
    /// that is no longer ours is left alone. The first failure is returned.
    pub async fn release(self) -> Result<(), LockError> {
        self.fence.close();
        let locations: Vec<String> = self.held.iter().map(|h| h.lock.location()).collect();
        let releases = self.held.into_iter().map(|held| async move {
            let mut state = held.state.lock().await;
            state.released = true;
            held.heartbeat.abort();
            held.lock.release(&state.lease).await
        });
        match tokio::time::timeout(RELEASE_TIMEOUT, futures::future::join_all(releases)).await {
            Ok(outcomes) => {
                tracing::debug!("released");
                outcomes.into_iter().collect()
            }
            Err(_) => Err(LockError::Store {
                location: locations.join(", "),
                message: format!(
                    "release did not finish within {}ms; the lock expires after its TTL",
                    RELEASE_TIMEOUT.as_millis()
                ),
            }),
        }
    }
}

/// How long a busy lock is waited for before the waiter says so.
pub const WAIT_NOTICE: Duration = Duration::from_secs(1);

/// What a waiter reports while a lock it wants is busy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockWait {
    /// Still busy after `waited`: `holder` (`alice@ci-7 (pid 4242) on
    /// data/app`) holds it, since `held_for` ago by the holder's clock.
    Busy {
        /// Who holds it, with pid and scope.
        holder: String,
        /// How long it has held it.
        held_for: Option<Duration>,
        /// How long this process has waited.
        waited: Duration,
    },
    /// The wait is over (the lock is ours, or waiting gave up).
    Over,
}

/// Waits for one lock until `timeout`; returns the lease and when the
/// winning attempt started (by `lease_clock`).
async fn wait_for(
    lock: &Arc<dyn DistributedLock>,
    ttl: Duration,
    timeout: Duration,
    stop: &StopController,
    on_wait: &(dyn Fn(&LockWait) + Sync),
) -> Result<(Lease, Duration), LockError> {
    let started = lease_clock::now();
    let mut backoff = Duration::from_millis(25);
    let mut signal = stop.signal();
    loop {
        let attempt_at = lease_clock::now();
        match lock.try_acquire(ttl).await? {
            Attempt::Acquired(lease) => return Ok((lease, attempt_at)),
            Attempt::Busy(obs) => {
                let waited = lease_clock::now().saturating_sub(started);
                if waited >= timeout {
                    return Err(LockError::Timeout {
                        location: lock.location(),
                        waited,
                        holder: obs.describe(),
                    });
                }
                tracing::debug!(holder = %obs.describe(), "lock busy, waiting");
                if waited >= WAIT_NOTICE {
                    on_wait(&LockWait::Busy {
                        holder: obs.holder_brief(),
                        held_for: obs.held_for(),
                        waited,
                    });
                }
                let jitter = rand::random::<f64>() + 0.5;
                let pause = backoff.mul_f64(jitter).min(timeout - waited);
                backoff = (backoff * 3 / 2).min(Duration::from_millis(500));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    reason = signal.wait() => return Err(stop_error(&reason)),
                }
            }
        }
    }
}

async fn heartbeat(
    lock: Arc<dyn DistributedLock>,
    state: Arc<tokio::sync::Mutex<LeaseState>>,
    fence: Arc<LeaseFence>,
    slot: usize,
    stop: Arc<watch::Sender<Option<StopReason>>>,
    ttl: Duration,
) {
    let mut interval = ttl / 3;
    loop {
        tokio::time::sleep(interval).await;
        let mut st = state.lock().await;
        if st.released {
            return;
        }
        // Never renew a lease that may already have expired: a taker may own it.
        if let Err(LockError::Lost(why)) = fence.check() {
            request_stop(&stop, StopReason::Lost(why));
            return;
        }
        let attempt_at = lease_clock::now();
        // A renewal that does not answer before the lease may lapse (a hung
        // mount, a stalled connection) is given up: the lease is judged at
        // once, so an op that never writes is stopped too.
        let renewal = tokio::time::timeout(fence.remaining(slot), lock.renew(&st.lease)).await;
        let Ok(renewal) = renewal else {
            tracing::warn!("lock renewal did not answer before the lease could lapse");
            interval = Duration::ZERO;
            continue;
        };
        match renewal {
            Ok(lease) => {
                st.lease = lease;
                fence.renewed(slot, attempt_at);
                // Keep the TTL/3 cadence from the attempt's start: a renewal
                // that took long (an SDK retry after a lost reply waits up to
                // a second) must not push the next one toward the fence.
                interval = (ttl / 3).saturating_sub(lease_clock::now().saturating_sub(attempt_at));
            }
            Err(LockError::Lost(why)) => {
                fence.lose(why.clone());
                request_stop(&stop, StopReason::Lost(why));
                return;
            }
            Err(other) => {
                // Transient store trouble: retry sooner; the fence turns it
                // into "lost" if it lasts too long.
                tracing::warn!(error = %other, "lock renewal failed; retrying");
                interval = ttl / 10;
            }
        }
    }
}

/// Runs `op` while `guard` holds the lock, then releases it.
///
/// A stop request (signal or lost lock) gives `op` a grace period to wind
/// down (it sees the same `StopSignal`), then drops it. The result is `op`'s,
/// unless a stop cut it short or the lease was lost at any point before the
/// release: then it is `LockError::Lost`, whatever `op` returned, because
/// some of its work may have run without the lock. A release that fails
/// does not change the result (the lock expires after its TTL); it goes to
/// `release_failed`.
pub async fn run_guarded<T, E, Fut>(
    guard: LockGuard,
    stop: StopSignal,
    op: Fut,
    release_failed: impl FnOnce(LockError),
) -> Result<T, E>
where
    E: From<LockError>,
    Fut: Future<Output = Result<T, E>>,
{
    let mut op = std::pin::pin!(op);
    let mut watcher = stop.clone();
    let result = tokio::select! {
        biased;
        r = &mut op => r,
        reason = watcher.wait() => {
            let grace = match reason { StopReason::Signal(_) => SIGNAL_GRACE, StopReason::Lost(_) => LOST_GRACE };
            let _ = tokio::time::timeout(grace, &mut op).await;
            Err(stop_error(&reason).into())
        }
    };
    // The heartbeat may not have noticed yet (a paused process resumes with
    // its op already finished): judge the lease once more before releasing.
    let result = match guard.fence.check() {
        Err(lost) => Err(lost.into()),
        Ok(()) => result,
    };
    if let Err(e) = guard.release().await {
        release_failed(e);
    }
    result
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod guard_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infrastructure::file_lock::FileLock;

    fn timing() -> LockTiming {
        LockTiming {
            ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_released_lease_fences_every_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let lock = Arc::new(FileLock::new(dir.path(), Duration::from_secs(30)));
        let stop = StopController::install(Arc::new(|_| {})).unwrap();
        let guard = LockGuard::acquire(lock, timing(), &stop).await.unwrap();
        let fence = guard.fence();
        fence.check().unwrap();
        guard.release().await.unwrap();
        // A blocking copy that outlived its command must not write now.
        assert!(matches!(fence.check(), Err(LockError::Lost(_))));
    }

    #[tokio::test]
    async fn a_lease_lost_while_the_op_ran_turns_its_success_into_lock_lost() {
        let dir = tempfile::tempdir().unwrap();
        let lock = Arc::new(FileLock::new(dir.path(), Duration::from_secs(30)));
        let stop = StopController::install(Arc::new(|_| {})).unwrap();
        let guard = LockGuard::acquire(lock, timing(), &stop).await.unwrap();
        let fence = guard.fence();
        // The op finishes at the moment its lease is found lost, before the
        // heartbeat has said so.
        let result: Result<u32, LockError> = run_guarded(
            guard,
            stop.signal(),
            async move {
                fence.lose("taken over".into());
                Ok(7)
            },
            |e| panic!("release failed: {e}"),
        )
        .await;
        assert!(matches!(result, Err(LockError::Lost(_))), "{result:?}");
    }
}
