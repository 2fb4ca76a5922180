//! The clock a lock holder uses to judge its own lease. It must keep counting
//! while the process is stopped (SIGSTOP) and while the machine sleeps, so a
//! holder that wakes up late knows its lease may be gone: CLOCK_BOOTTIME.
//!
//! In unit tests a thread may make it follow tokio's (pausable) clock instead
//! (`follow_tokio_clock`), so TTLs, graces and fences can be driven in virtual
//! time; builds other than `cfg(test)` have no such switch.

use std::time::Duration;

/// Time since boot, including suspend; never goes backwards.
pub fn now() -> Duration {
    #[cfg(test)]
    if let Some(virtual_now) = tokio_clock::now() {
        return virtual_now;
    }
    boot_time()
}

fn boot_time() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32),
        // CLOCK_BOOTTIME exists on every Linux since 2.6.39; fall back to the
        // monotonic clock anywhere it does not.
        Err(_) => {
            let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
            Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32)
        }
    }
}

#[cfg(test)]
pub(crate) use tokio_clock::follow_tokio_clock;

#[cfg(test)]
mod tokio_clock {
    //! Per thread, so parallel tests do not see each other's clocks; a
    //! current-thread runtime runs every task of a test on its thread.

    use std::cell::Cell;
    use std::time::Duration;

    thread_local! {
        /// The tokio instant and the boot time it stands for.
        static ORIGIN: Cell<Option<(tokio::time::Instant, Duration)>> = const { Cell::new(None) };
    }

    pub(super) fn now() -> Option<Duration> {
        ORIGIN
            .with(Cell::get)
            .map(|(since, at)| at + since.elapsed())
    }

    /// While alive, `lease_clock::now()` on this thread moves with
    /// `tokio::time::Instant` (paused, advanced or auto-advanced).
    #[must_use]
    pub(crate) struct FollowingTokio(());

    /// Makes this thread's lease clock follow tokio's clock from now on.
    pub(crate) fn follow_tokio_clock() -> FollowingTokio {
        ORIGIN.with(|o| o.set(Some((tokio::time::Instant::now(), super::boot_time()))));
        FollowingTokio(())
    }

    impl Drop for FollowingTokio {
        fn drop(&mut self) {
            ORIGIN.with(|o| o.set(None));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn follows_the_paused_clock_and_only_on_its_thread() {
        let _clock = follow_tokio_clock();
        let start = super::now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(super::now() - start, Duration::from_secs(3600));
        let elsewhere = std::thread::spawn(super::now).join().unwrap();
        assert!(elsewhere < start + Duration::from_secs(3600));
    }
}
