//! Blocking work off the async runtime. swamp's runtime is single-threaded
//! and also drives the lock's heartbeat, so anything that may block for long
//! (hashing, disk writes, `syncfs`, a migration's copies) runs on tokio's
//! blocking pool through `run`. A panic there is a bug, not an I/O failure:
//! it is re-raised on the awaiting task instead of being turned into an error.

use std::future::Future;

/// Starts `work` on a blocking thread at once; the returned future yields
/// its result, or re-raises its panic.
pub fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = T> {
    let handle = tokio::task::spawn_blocking(work);
    async move {
        match handle.await {
            Ok(value) => value,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Blocking tasks are only cancelled when the runtime shuts down,
            // and that drops this future first.
            Err(e) => unreachable!("blocking task cancelled: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_at_once_and_its_result_comes_back() {
        let (tx, rx) = std::sync::mpsc::channel();
        let pending = run(move || {
            tx.send(()).unwrap();
            7
        });
        // Started before it is awaited (a writer fed by the caller relies on it).
        rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
        assert_eq!(pending.await, 7);
    }

    #[tokio::test]
    #[should_panic(expected = "a bug in blocking work")]
    async fn a_panic_is_re_raised_not_turned_into_an_error() {
        run(|| panic!("a bug in blocking work")).await
    }
}
