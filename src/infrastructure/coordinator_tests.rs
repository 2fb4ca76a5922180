//! The guard's timing, in virtual time: tokio's paused clock drives the
//! heartbeat, backoff, graces and release bound, and `lease_clock` follows it
//! (`follow_tokio_clock`), so the fence judges the same virtual time. The
//! lock is a scripted fake that records when it was called; every assertion
//! is on exact virtual instants, so no test depends on the machine's speed.

use super::*;
use crate::domain::lock::{LockInfo, LockObservation, LockVersion};
use crate::infrastructure::stop::libc_sig;
use async_trait::async_trait;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(30);
const TIMING: LockTiming = LockTiming {
    ttl: TTL,
    timeout: Duration::from_secs(5),
};

/// Whole milliseconds, as tokio's timers count: virtual instants compare exactly.
fn secs(s: f64) -> Duration {
    Duration::from_millis((s * 1000.0).round() as u64)
}

fn all_secs(list: &[f64]) -> Vec<Duration> {
    list.iter().copied().map(secs).collect()
}

/// What one scripted call of the fake lock does.
#[derive(Debug, Clone, Copy)]
enum Step {
    Succeed,
    /// A store error that is not a verdict on the lock (a 503, a timeout).
    FailTransiently,
    /// Another token holds the record.
    FindLost,
    /// Never answers.
    Hang,
    /// Succeeds after this long.
    Slow(Duration),
}

/// A `DistributedLock` whose answers follow a script and whose calls are
/// recorded as virtual times since the lock was made.
struct FakeLock {
    name: &'static str,
    origin: Instant,
    /// `try_acquire` answers Busy until this long after `origin`.
    busy_for: Duration,
    /// What the n-th renewal (from 0) does.
    renewal: Box<dyn Fn(usize) -> Step + Send + Sync>,
    release_step: Step,
    attempts: Mutex<Vec<Duration>>,
    renewals: Mutex<Vec<Duration>>,
    releases: Mutex<Vec<Duration>>,
}

impl FakeLock {
    fn free(name: &'static str) -> Self {
        Self {
            name,
            origin: Instant::now(),
            busy_for: Duration::ZERO,
            renewal: Box::new(|_| Step::Succeed),
            release_step: Step::Succeed,
            attempts: Mutex::default(),
            renewals: Mutex::default(),
            releases: Mutex::default(),
        }
    }

    fn busy_for(self, busy_for: Duration) -> Self {
        Self { busy_for, ..self }
    }

    fn busy_forever(self) -> Self {
        self.busy_for(Duration::MAX)
    }

    fn renewing(self, renewal: impl Fn(usize) -> Step + Send + Sync + 'static) -> Self {
        Self {
            renewal: Box::new(renewal),
            ..self
        }
    }

    fn releasing(self, release_step: Step) -> Self {
        Self {
            release_step,
            ..self
        }
    }

    fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }

    fn since_origin(&self) -> Duration {
        self.origin.elapsed()
    }

    fn attempts(&self) -> Vec<Duration> {
        self.attempts.lock().unwrap().clone()
    }

    fn renewals(&self) -> Vec<Duration> {
        self.renewals.lock().unwrap().clone()
    }

    fn releases(&self) -> Vec<Duration> {
        self.releases.lock().unwrap().clone()
    }

    async fn perform(&self, step: Step) -> Result<(), LockError> {
        match step {
            Step::Succeed => Ok(()),
            Step::FailTransiently => Err(LockError::Store {
                location: self.location(),
                message: "injected 503".into(),
            }),
            Step::FindLost => Err(LockError::Lost("taken over by a rival".into())),
            Step::Hang => std::future::pending().await,
            Step::Slow(took) => {
                tokio::time::sleep(took).await;
                Ok(())
            }
        }
    }

    fn rival() -> LockObservation {
        let mut info = LockInfo::for_this_process(TTL);
        info.holder = "rival@elsewhere".into();
        info.pid = 4242;
        LockObservation {
            info: Some(info),
            corrupt: None,
            age: Duration::from_secs(1),
            stale: false,
            version: LockVersion("rival".into()),
        }
    }
}

#[async_trait]
impl DistributedLock for FakeLock {
    fn location(&self) -> String {
        format!("fake://{}", self.name)
    }

    async fn try_acquire(&self, ttl: Duration) -> Result<Attempt, LockError> {
        let at = self.since_origin();
        self.attempts.lock().unwrap().push(at);
        if at < self.busy_for {
            return Ok(Attempt::Busy(Self::rival()));
        }
        Ok(Attempt::Acquired(Lease {
            info: LockInfo::for_this_process(ttl),
            version: LockVersion("v0".into()),
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, LockError> {
        let n = {
            let mut renewals = self.renewals.lock().unwrap();
            renewals.push(self.since_origin());
            renewals.len() - 1
        };
        self.perform((self.renewal)(n)).await?;
        Ok(Lease {
            info: lease.info.clone(),
            version: LockVersion(format!("v{}", n + 1)),
        })
    }

    async fn release(&self, _lease: &Lease) -> Result<(), LockError> {
        self.releases.lock().unwrap().push(self.since_origin());
        self.perform(self.release_step).await
    }

    async fn inspect(&self) -> Result<Option<LockObservation>, LockError> {
        Ok(None)
    }

    async fn force_release(&self) -> Result<Option<LockObservation>, LockError> {
        Ok(None)
    }
}

fn stop_controller() -> StopController {
    StopController::install(Arc::new(|_| {})).unwrap()
}

/// `run_guarded`, failing the test if it does not end within 600 s of
/// virtual time (so a broken bound fails instead of hanging).
async fn guarded<T>(
    guard: LockGuard,
    stop: &StopController,
    op: impl Future<Output = Result<T, LockError>>,
) -> Result<T, LockError> {
    within(
        Duration::from_secs(600),
        run_guarded(guard, stop.signal(), op, |_| {}),
    )
    .await
}

async fn within<F: Future>(limit: Duration, f: F) -> F::Output {
    tokio::time::timeout(limit, f)
        .await
        .expect("did not finish within the virtual time limit")
}

async fn acquire(lock: &Arc<FakeLock>, stop: &StopController) -> LockGuard {
    let lock: Arc<dyn DistributedLock> = lock.clone();
    within(TIMING.timeout * 2, LockGuard::acquire(lock, TIMING, stop))
        .await
        .unwrap()
}

async fn acquire_err(
    locks: Vec<Arc<FakeLock>>,
    timing: LockTiming,
    stop: &StopController,
) -> LockError {
    let locks = locks
        .into_iter()
        .map(|l| l as Arc<dyn DistributedLock>)
        .collect();
    match within(
        timing.timeout * 2,
        LockGuard::acquire_all(locks, timing, stop),
    )
    .await
    {
        Ok(_) => panic!("acquired"),
        Err(e) => e,
    }
}

/// An op that never finishes on its own, and the last time (since `origin`)
/// it made progress, every 400 ms: it shows how long it was let run.
fn endless_op(
    origin: Instant,
) -> (
    Arc<Mutex<Duration>>,
    impl Future<Output = Result<u32, LockError>>,
) {
    async fn endless(origin: Instant, progress: Arc<Mutex<Duration>>) -> Result<u32, LockError> {
        loop {
            tokio::time::sleep(Duration::from_millis(400)).await;
            *progress.lock().unwrap() = origin.elapsed();
        }
    }
    let progress = Arc::new(Mutex::new(Duration::ZERO));
    (progress.clone(), endless(origin, progress))
}

/// The last progress an `endless_op` records before `at`.
fn last_tick_before(at: Duration) -> Duration {
    let tick = Duration::from_millis(400);
    tick * ((at - Duration::from_millis(1)).as_millis() / tick.as_millis()) as u32
}

async fn sleep_until(origin: Instant, at: f64) {
    tokio::time::sleep_until(origin + secs(at)).await;
}

#[tokio::test(start_paused = true)]
async fn the_heartbeat_renews_every_third_of_the_ttl_until_released() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a").shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    sleep_until(lock.origin, 95.0).await;
    assert_eq!(
        lock.renewals(),
        all_secs(&[10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0])
    );
    guard.fence().check().expect("renewed all along");
    let fence = guard.fence();
    within(secs(1.0), guard.release()).await.unwrap();
    assert_eq!(lock.releases(), all_secs(&[95.0]));
    sleep_until(lock.origin, 200.0).await;
    assert_eq!(lock.renewals().len(), 9, "renewed after the release");
    assert!(matches!(fence.check(), Err(LockError::Lost(_))));
}

/// The cadence counts from each attempt's start: a renewal that took 4 s
/// does not push the next one 4 s toward the fence.
#[tokio::test(start_paused = true)]
async fn a_slow_renewal_does_not_delay_the_next_one() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a")
        .renewing(|n| match n {
            0 => Step::Slow(secs(4.0)),
            _ => Step::Succeed,
        })
        .shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    sleep_until(lock.origin, 35.0).await;
    assert_eq!(lock.renewals(), all_secs(&[10.0, 20.0, 30.0]));
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_transient_renewal_failure_is_retried_at_a_tenth_of_the_ttl_and_the_lease_stays_valid() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a")
        .renewing(|n| match n {
            0 | 1 => Step::FailTransiently,
            _ => Step::Succeed,
        })
        .shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    // Just before the fence of the acquisition (27 s) and after it.
    sleep_until(lock.origin, 26.5).await;
    guard.fence().check().expect("renewed at 16 s");
    sleep_until(lock.origin, 40.5).await;
    assert_eq!(lock.renewals(), all_secs(&[10.0, 13.0, 16.0, 26.0, 36.0]));
    guard.fence().check().expect("still valid");
    assert_eq!(stop.signal().current(), None);
    guard.release().await.unwrap();
}

/// The fence alone: valid until 90 % of the TTL since the last renewal.
#[tokio::test(start_paused = true)]
async fn the_fence_fails_at_ninety_percent_of_the_ttl() {
    let _clock = lease_clock::follow_tokio_clock();
    let origin = Instant::now();
    let fence = LeaseFence::new(TTL, lease_clock::now());
    sleep_until(origin, 26.999).await;
    fence.check().expect("valid before 27 s");
    sleep_until(origin, 27.0).await;
    let Err(LockError::Lost(why)) = fence.check() else {
        panic!("valid at 27 s")
    };
    assert!(why.contains("not renewed for 27.0s"), "{why}");
}

/// Renewals fail from the start; the one the heartbeat would make at 28 s
/// would succeed, but by then the lease may be a taker's: the heartbeat must
/// not make it, and the op is stopped with `Lost` after `LOST_GRACE`.
#[tokio::test(start_paused = true)]
async fn failures_past_ninety_percent_of_the_ttl_stop_the_op_with_lost_after_its_grace() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a")
        .renewing(|n| match n {
            0..=5 => Step::FailTransiently,
            _ => Step::Succeed,
        })
        .shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    let (progress, op) = endless_op(lock.origin);
    let result = guarded(guard, &stop, op).await;
    let ended = lock.since_origin();
    let Err(LockError::Lost(why)) = result else {
        panic!("{result:?}")
    };
    assert!(why.contains("not renewed for 28.0s"), "{why}");
    assert_eq!(
        lock.renewals(),
        all_secs(&[10.0, 13.0, 16.0, 19.0, 22.0, 25.0]),
        "renewed a lease past its fence"
    );
    // Noticed at 28 s, then the op had LOST_GRACE and was stopped.
    assert_eq!(ended, secs(28.0) + LOST_GRACE);
    assert_eq!(
        *progress.lock().unwrap(),
        last_tick_before(ended),
        "the op ran through its grace"
    );
    assert_eq!(lock.releases(), vec![ended]);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_finds_the_lock_lost_stops_the_op() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a").renewing(|_| Step::FindLost).shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    let fence = guard.fence();
    let watcher = tokio::spawn(async move {
        sleep_until(Instant::now(), 10.5).await;
        fence.check()
    });
    let (_, op) = endless_op(lock.origin);
    let result = guarded(guard, &stop, op).await;
    assert!(
        matches!(&result, Err(LockError::Lost(why)) if why == "taken over by a rival"),
        "{result:?}"
    );
    assert!(
        matches!(watcher.await.unwrap(), Err(LockError::Lost(_))),
        "writes were not fenced at once"
    );
    assert_eq!(lock.renewals(), all_secs(&[10.0]));
    assert_eq!(lock.since_origin(), secs(10.0) + LOST_GRACE);
    assert_eq!(lock.releases().len(), 1);
}

/// A renewal that never answers (a hung mount, a stalled connection) is
/// given up when the lease may lapse: writes are fenced at 90 % of the TTL,
/// and the heartbeat is free again, so the release does not wait for it.
#[tokio::test(start_paused = true)]
async fn a_hanging_renewal_still_fences_writes_and_the_release_is_not_held_up() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a").renewing(|_| Step::Hang).shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    let fence = guard.fence();
    let origin = lock.origin;
    let refused_at = Arc::new(Mutex::new(None));
    let refused = refused_at.clone();
    // Writes once a second, checking the fence before each, as writers do.
    let op = async move {
        loop {
            if let Err(lost) = fence.check() {
                *refused.lock().unwrap() = Some(origin.elapsed());
                return Err::<u32, _>(lost);
            }
            tokio::time::sleep(secs(1.0)).await;
        }
    };
    let result = guarded(guard, &stop, op).await;
    assert!(matches!(result, Err(LockError::Lost(_))), "{result:?}");
    assert_eq!(*refused_at.lock().unwrap(), Some(secs(27.0)));
    assert_eq!(lock.renewals(), all_secs(&[10.0]));
    assert_eq!(lock.since_origin(), secs(27.0));
}

/// An op that never writes (an `exec` child) is stopped too when a renewal
/// hangs: the heartbeat gives it up at the fence and reports the lease lost.
#[tokio::test(start_paused = true)]
async fn a_hanging_renewal_stops_an_op_that_never_writes() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a").renewing(|_| Step::Hang).shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    let (progress, op) = endless_op(lock.origin);
    let result = guarded(guard, &stop, op).await;
    assert!(matches!(result, Err(LockError::Lost(_))), "{result:?}");
    assert_eq!(lock.renewals(), all_secs(&[10.0]));
    // Given up at 27 s (90 % of the TTL), then the op had LOST_GRACE.
    assert_eq!(lock.since_origin(), secs(27.0) + LOST_GRACE);
    // It ran until then (its 400 ms ticks may land on the stop instant).
    let ran = *progress.lock().unwrap();
    assert!(ran >= last_tick_before(secs(27.0) + LOST_GRACE), "{ran:?}");
}

/// Each lease has its own renewal time; one lapsing fails the whole fence.
#[tokio::test(start_paused = true)]
async fn one_lease_failing_to_renew_stops_an_op_holding_two() {
    let _clock = lease_clock::follow_tokio_clock();
    let a = FakeLock::free("a").shared();
    let b = FakeLock::free("b")
        .renewing(|_| Step::FailTransiently)
        .shared();
    let stop = stop_controller();
    let locks: Vec<Arc<dyn DistributedLock>> = vec![a.clone(), b.clone()];
    let guard = within(secs(1.0), LockGuard::acquire_all(locks, TIMING, &stop))
        .await
        .unwrap();
    let (_, op) = endless_op(a.origin);
    let result = guarded(guard, &stop, op).await;
    assert!(matches!(result, Err(LockError::Lost(_))), "{result:?}");
    assert_eq!(a.renewals(), all_secs(&[10.0, 20.0]));
    assert_eq!(a.since_origin(), secs(28.0) + LOST_GRACE);
    assert_eq!((a.releases().len(), b.releases().len()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_signal_gives_the_op_signal_grace_then_stops_it() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a").shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    let sender = stop.sender();
    tokio::spawn(async move {
        tokio::time::sleep(secs(5.0)).await;
        request_stop(&sender, StopReason::Signal(libc_sig::SIGTERM));
    });
    let (progress, op) = endless_op(lock.origin);
    let result = guarded(guard, &stop, op).await;
    assert!(
        matches!(result, Err(LockError::Interrupted { signal }) if signal == libc_sig::SIGTERM),
        "{result:?}"
    );
    assert_eq!(lock.since_origin(), secs(5.0) + SIGNAL_GRACE);
    assert_eq!(
        *progress.lock().unwrap(),
        secs(7.2),
        "the op ran through its grace"
    );
    assert_eq!(lock.releases(), vec![secs(7.5)]);
}

/// The grace is an upper bound: an op that winds down sooner ends sooner,
/// and still as interrupted (its work was cut short).
#[tokio::test(start_paused = true)]
async fn an_op_that_winds_down_within_its_grace_ends_as_soon_as_it_is_done() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a").shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    let mut told = stop.signal();
    let op = async move {
        told.wait().await;
        tokio::time::sleep(secs(1.0)).await;
        Ok(7)
    };
    let sender = stop.sender();
    tokio::spawn(async move {
        tokio::time::sleep(secs(5.0)).await;
        request_stop(&sender, StopReason::Signal(libc_sig::SIGINT));
    });
    let result = guarded(guard, &stop, op).await;
    assert!(
        matches!(result, Err(LockError::Interrupted { .. })),
        "{result:?}"
    );
    assert_eq!(lock.since_origin(), secs(6.0));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_release_is_cut_off_at_release_timeout() {
    let _clock = lease_clock::follow_tokio_clock();
    let hangs = FakeLock::free("a").releasing(Step::Hang).shared();
    let answers = FakeLock::free("b").shared();
    let stop = stop_controller();
    let locks: Vec<Arc<dyn DistributedLock>> = vec![hangs.clone(), answers.clone()];
    let guard = within(secs(1.0), LockGuard::acquire_all(locks, TIMING, &stop))
        .await
        .unwrap();
    let fence = guard.fence();
    let released = within(secs(60.0), guard.release()).await;
    let Err(LockError::Store { location, message }) = released else {
        panic!("{released:?}")
    };
    assert_eq!(hangs.since_origin(), RELEASE_TIMEOUT);
    assert!(
        message.contains("did not finish within 1500ms"),
        "{message}"
    );
    assert_eq!(location, "fake://a, fake://b");
    // Both released at once, not one after the other.
    assert_eq!(answers.releases(), vec![Duration::ZERO]);
    assert!(
        fence.check().is_err(),
        "a write could land after the release"
    );
}

/// The op's result stands when only the release failed.
#[tokio::test(start_paused = true)]
async fn a_hanging_release_keeps_the_ops_result_and_bounds_the_exit() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a").releasing(Step::Hang).shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    let result = guarded(guard, &stop, async {
        tokio::time::sleep(secs(2.0)).await;
        Ok(7)
    })
    .await;
    assert_eq!(result.unwrap(), 7);
    assert_eq!(lock.since_origin(), secs(2.0) + RELEASE_TIMEOUT);
}

/// The n-th pause of the backoff: 25 ms growing by half, at most 500 ms,
/// jittered by ×0.5–1.5; deadlines land on whole milliseconds.
fn assert_backed_off(attempts: &[Duration]) {
    let mut nominal = Duration::from_millis(25);
    for (n, pair) in attempts.windows(2).enumerate() {
        let pause = pair[1] - pair[0];
        let (low, high) = (
            nominal.mul_f64(0.5),
            nominal.mul_f64(1.5) + Duration::from_millis(1),
        );
        assert!(
            low <= pause && pause <= high,
            "pause {n} was {pause:?}, not within {low:?}..{high:?} (attempts {attempts:?})"
        );
        nominal = (nominal * 3 / 2).min(Duration::from_millis(500));
    }
}

#[tokio::test(start_paused = true)]
async fn acquisition_waits_with_jittered_backoff_until_the_lock_is_free() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a")
        .busy_for(secs(2.0))
        .renewing(|_| Step::FailTransiently)
        .shared();
    let stop = stop_controller();
    let guard = acquire(&lock, &stop).await;
    let attempts = lock.attempts();
    let won = *attempts.last().unwrap();
    assert!(attempts.len() > 5, "{attempts:?}");
    assert_backed_off(&attempts);
    assert!(
        won >= secs(2.0) && won <= secs(2.0) + Duration::from_millis(751),
        "{won:?}"
    );
    // Never renewed: the lease counts from the winning attempt, not the first.
    sleep_until(lock.origin, won.as_secs_f64() + 26.9).await;
    guard
        .fence()
        .check()
        .expect("valid for 90 % of the TTL since it was won");
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn acquisition_times_out_naming_the_holder() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a").busy_forever().shared();
    let stop = stop_controller();
    let err = acquire_err(vec![lock.clone()], TIMING, &stop).await;
    let text = err.to_string();
    let LockError::Timeout {
        location,
        waited,
        holder,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(location, "fake://a");
    assert_eq!(waited, TIMING.timeout);
    assert!(holder.starts_with("rival@elsewhere (pid 4242)"), "{holder}");
    assert!(
        text.contains("held by rival@elsewhere (pid 4242)"),
        "{text}"
    );
    // The last pause is cut to the deadline, and one last attempt made then.
    let attempts = lock.attempts();
    assert_eq!(attempts.last(), Some(&TIMING.timeout));
    assert_backed_off(&attempts[..attempts.len() - 1]);
    assert_eq!(lock.since_origin(), TIMING.timeout);
}

#[tokio::test(start_paused = true)]
async fn a_signal_while_waiting_ends_the_wait_at_once() {
    let _clock = lease_clock::follow_tokio_clock();
    let lock = FakeLock::free("a").busy_forever().shared();
    let stop = stop_controller();
    let sender = stop.sender();
    tokio::spawn(async move {
        tokio::time::sleep(secs(1.0)).await;
        request_stop(&sender, StopReason::Signal(libc_sig::SIGINT));
    });
    let timing = LockTiming {
        ttl: TTL,
        timeout: Duration::from_secs(60),
    };
    let err = acquire_err(vec![lock.clone()], timing, &stop).await;
    assert!(
        matches!(err, LockError::Interrupted { signal } if signal == libc_sig::SIGINT),
        "{err:?}"
    );
    assert_eq!(lock.since_origin(), secs(1.0));
}

/// Locks are taken in the order of their locations, within one deadline
/// for all of them, and those already held are released on failure.
#[tokio::test(start_paused = true)]
async fn acquire_all_takes_locks_in_order_within_one_deadline_and_releases_on_failure() {
    let _clock = lease_clock::follow_tokio_clock();
    let a = FakeLock::free("a").busy_for(secs(2.0)).shared();
    let b = FakeLock::free("b").busy_forever().shared();
    let stop = stop_controller();
    let err = acquire_err(vec![b.clone(), a.clone()], TIMING, &stop).await;
    let LockError::Timeout { location, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(location, "fake://b");
    let won_a = *a.attempts().last().unwrap();
    assert!(b.attempts()[0] >= won_a, "b was tried before a was held");
    assert_eq!(
        b.since_origin(),
        TIMING.timeout,
        "the deadline is one for all"
    );
    assert_eq!(a.releases(), vec![TIMING.timeout]);
    assert!(b.releases().is_empty());
}

/// Waiting for a second lock for longer than a TTL must not let the
/// first lease lapse: each lease is renewed from the moment it is held.
#[tokio::test(start_paused = true)]
async fn a_lease_held_while_waiting_for_the_next_lock_stays_valid() {
    let _clock = lease_clock::follow_tokio_clock();
    let a = FakeLock::free("a").shared();
    let b = FakeLock::free("b").busy_for(secs(100.0)).shared();
    let stop = stop_controller();
    let timing = LockTiming {
        ttl: TTL,
        timeout: Duration::from_secs(200),
    };
    let locks: Vec<Arc<dyn DistributedLock>> = vec![a.clone(), b.clone()];
    let both = within(secs(300.0), LockGuard::acquire_all(locks, timing, &stop))
        .await
        .unwrap();
    let held_b = *b.attempts().last().unwrap();
    assert!(held_b >= secs(100.0), "{held_b:?}");
    both.fence()
        .check()
        .expect("the first lease was renewed meanwhile");
    let renewed_a = a.renewals();
    assert!(renewed_a.len() >= 9, "{renewed_a:?}");
    let every_ten: Vec<f64> = (1..=renewed_a.len()).map(|k| 10.0 * k as f64).collect();
    assert_eq!(renewed_a, all_secs(&every_ten));
    // b's lease counts from when it was won: valid a TTL's fence later.
    sleep_until(b.origin, held_b.as_secs_f64() + 26.9).await;
    both.fence().check().expect("both renewed");
    assert!(b.renewals()[0] >= held_b + TTL / 3);
    both.release().await.unwrap();
}
