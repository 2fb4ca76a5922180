//! The process group `swamp exec` runs its command in.
//!
//! Model: the command and everything it starts (pipelines, `&` jobs) form one
//! process group of their own, so swamp can stop all of it at once — on a lost
//! lock, on a signal, and when the command exits while something it started
//! still runs, because nothing may write into the datastore once swamp
//! releases the lock. The command is also tied to swamp's life: it gets
//! SIGKILL if swamp dies (`PR_SET_PDEATHSIG`), so a swamp killed with -9 does
//! not leave it writing without a lock. When swamp runs in the foreground of a
//! terminal, the terminal is handed to the new group (as a shell does for a
//! job), so an interactive command can still read it, and taken back after.
//!
//! Residual: grandchildren do not get a death signal of their own; if swamp
//! is SIGKILLed they outlive it until they exit (the lock expires by its TTL).

use nix::sys::signal::{killpg, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgrp, getpid, getppid, setpgid, tcgetpgrp, tcsetpgrp, Pid};
use std::io;
use std::os::fd::BorrowedFd;
use tokio::process::{Child, Command};

/// A command running in its own process group.
pub(crate) struct ChildGroup {
    child: Child,
    pgid: Pid,
    /// Whether the terminal was handed to the group (and must be taken back).
    took_terminal: bool,
}

/// Standard input, if it is a terminal whose foreground group is ours.
fn foreground_terminal() -> Option<BorrowedFd<'static>> {
    // SAFETY: fd 0 stays open for the life of the process.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    match tcgetpgrp(stdin) {
        Ok(fg) if fg == getpgrp() => Some(stdin),
        _ => None,
    }
}

/// Calls `tcsetpgrp` with SIGTTOU blocked: a process outside the foreground
/// group gets SIGTTOU (and stops) for it otherwise.
fn give_terminal(fd: BorrowedFd<'_>, to: Pid) -> nix::Result<()> {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old))?;
    let result = tcsetpgrp(fd, to);
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
    result
}

impl ChildGroup {
    /// Spawns `cmd` as the leader of a new process group tied to this process.
    pub(crate) fn spawn(mut cmd: Command) -> io::Result<Self> {
        let parent = getpid();
        let terminal = foreground_terminal().is_some();
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe system calls (setpgid, tcsetpgrp, sigprocmask,
        // prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
                if terminal {
                    let stdin = BorrowedFd::borrow_raw(0);
                    give_terminal(stdin, getpid())?;
                }
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // swamp may have died before the death signal was armed.
                if getppid() != parent {
                    return Err(io::Error::other("swamp exited before the command started"));
                }
                Ok(())
            });
        }
        let child = cmd.kill_on_drop(true).spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the command exited before it could be tracked"))?;
        let pgid = Pid::from_raw(pid as i32);
        // Also from the parent, so the group exists before we signal it
        // (whichever of the two runs first wins; the other is a no-op).
        let _ = setpgid(pgid, pgid);
        if terminal {
            if let Some(fd) = foreground_terminal() {
                let _ = give_terminal(fd, pgid);
            }
        }
        Ok(Self {
            child,
            pgid,
            took_terminal: terminal,
        })
    }

    /// Waits for the leader to exit.
    pub(crate) async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await;
        self.restore_terminal();
        status
    }

    /// Sends `signal` to every process of the group.
    pub(crate) fn signal(&self, signal: Signal) {
        // ESRCH: the group is already empty.
        let _ = killpg(self.pgid, signal);
    }

    /// Kills every process of the group and reaps the leader.
    pub(crate) async fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait().await;
        self.restore_terminal();
    }

    fn restore_terminal(&mut self) {
        if std::mem::take(&mut self.took_terminal) {
            // SAFETY: fd 0 stays open for the life of the process.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            let _ = give_terminal(stdin, getpgrp());
        }
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        // Whatever happens to swamp's future, nothing of the group outlives it.
        self.signal(Signal::SIGKILL);
        self.restore_terminal();
    }
}
