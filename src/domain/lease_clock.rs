//! The clock a lock holder uses to judge its own lease. It must keep counting
//! while the process is stopped (SIGSTOP) and while the machine sleeps, so a
//! holder that wakes up late knows its lease may be gone: CLOCK_BOOTTIME.

use std::time::Duration;

/// Time since boot, including suspend; never goes backwards.
pub fn now() -> Duration {
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
