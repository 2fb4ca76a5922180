//! Why a running command must stop, and how everything that must react
//! hears it: a `StopSignal` (a watch channel) carries the first reason — a
//! SIGINT/SIGTERM/SIGHUP the `StopController` caught, or the lock being lost
//! (sent by the heartbeat). A second signal does not wait for anyone: it
//! stops the command's process group and calls the caller's `SecondSignal`.

use crate::domain::lock::LockError;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a running command must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The process received this signal.
    Signal(i32),
    /// The lock is no longer ours.
    Lost(String),
}

/// A receiver of the stop reason; clone it into anything that must react.
#[derive(Debug, Clone)]
pub struct StopSignal {
    rx: watch::Receiver<Option<StopReason>>,
}

impl StopSignal {
    /// Waits until a stop is requested.
    pub async fn wait(&mut self) -> StopReason {
        loop {
            if let Some(reason) = self.rx.borrow_and_update().clone() {
                return reason;
            }
            if self.rx.changed().await.is_err() {
                // Sender gone: nothing will ever stop us.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The stop reason, if one was requested.
    pub fn current(&self) -> Option<StopReason> {
        self.rx.borrow().clone()
    }
}

/// What a second signal does, after the command's process group was stopped.
pub type SecondSignal = Arc<dyn Fn(i32) + Send + Sync>;

/// Owns the stop channel and the signal listener of one command.
pub struct StopController {
    tx: Arc<watch::Sender<Option<StopReason>>>,
    listener: JoinHandle<()>,
}

impl StopController {
    /// Starts listening for SIGINT, SIGTERM and SIGHUP. A second signal stops
    /// the command's process group and calls `on_second_signal` (the CLI
    /// edge exits there).
    pub fn install(on_second_signal: SecondSignal) -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, _) = watch::channel(None);
        let tx = Arc::new(tx);
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let sender = tx.clone();
        let listener = tokio::spawn(async move {
            let mut seen = false;
            loop {
                let sig = tokio::select! {
                    _ = int.recv() => libc_sig::SIGINT,
                    _ = term.recv() => libc_sig::SIGTERM,
                    _ = hup.recv() => libc_sig::SIGHUP,
                };
                if seen {
                    // Exiting skips every destructor: stop the command's
                    // group first, so nothing it started outlives the lock.
                    crate::infrastructure::child_group::kill_current_group();
                    on_second_signal(sig);
                }
                seen = true;
                request_stop(&sender, StopReason::Signal(sig));
            }
        });
        Ok(Self { tx, listener })
    }

    /// A receiver of stop requests.
    pub fn signal(&self) -> StopSignal {
        StopSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// The sending side, for the heartbeat's lost-lock stop.
    pub(crate) fn sender(&self) -> Arc<watch::Sender<Option<StopReason>>> {
        self.tx.clone()
    }
}

impl Drop for StopController {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Signal numbers as a stop reason carries them.
pub(crate) mod libc_sig {
    pub const SIGHUP: i32 = nix::sys::signal::Signal::SIGHUP as i32;
    pub const SIGINT: i32 = nix::sys::signal::Signal::SIGINT as i32;
    pub const SIGTERM: i32 = nix::sys::signal::Signal::SIGTERM as i32;
}

/// Requests a stop for `reason`, unless one was requested already (the first reason stands).
pub(crate) fn request_stop(tx: &watch::Sender<Option<StopReason>>, reason: StopReason) {
    tx.send_if_modified(|current| {
        if current.is_none() {
            *current = Some(reason);
            true
        } else {
            false
        }
    });
}

/// The error a stop turns into.
pub fn stop_error(reason: &StopReason) -> LockError {
    match reason {
        StopReason::Signal(sig) => LockError::Interrupted { signal: *sig },
        StopReason::Lost(why) => LockError::Lost(why.clone()),
    }
}

// The guard's timing, with a scripted lock in virtual time.
