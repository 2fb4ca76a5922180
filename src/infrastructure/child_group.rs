//! The process group `swamp exec` runs its command in.
//!
//! Model: the command and everything it starts (pipelines, `&` jobs) form one
//! process group of their own, so swamp can stop all of it at once — on a lost
//! lock, on a signal, and when the command exits while something it started
//! still runs, because nothing may write into the datastore once swamp
//! releases the lock. The command is also tied to swamp's life: it gets
//! SIGKILL if swamp dies (`PR_SET_PDEATHSIG`), so a swamp killed with -9 does
//! not leave it writing without a lock.
//!
//! Interactive use is the exception: when swamp runs in the foreground of its
//! controlling terminal, the command stays in swamp's own group, so the
//! terminal's job control (Ctrl-Z, Ctrl-C, reads from the terminal) treats both
//! as one job, exactly as without swamp. A group of its own would be a
//! background job there: its reads of the terminal would stop it, and a Ctrl-Z
//! would stop it alone while swamp kept the lock. Then only the command itself
//! (not what it started) is signalled and killed.
//!
//! Residual: grandchildren do not get a death signal of their own; if swamp
//! is SIGKILLed they outlive it until they exit (the lock expires by its TTL);
//! the same holds for an interactive command's background jobs.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgrp, getpid, getppid, tcgetpgrp, Pid};
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use tokio::process::{Child, Command};

/// The group of the command swamp runs now (0: none), so a second signal,
/// which exits at once, can still stop it.
static CURRENT_GROUP: AtomicI32 = AtomicI32::new(0);

/// Kills the process group of the running command, if it has one of its own.
pub(crate) fn kill_current_group() {
    let pgid = CURRENT_GROUP.load(Ordering::SeqCst);
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// A command running in its own process group (or, interactively, in ours).
pub(crate) struct ChildGroup {
    child: Child,
    pid: Pid,
    /// Whether the command leads a group of its own.
    own_group: bool,
}

/// Whether swamp runs in the foreground of its controlling terminal.
fn in_terminal_foreground() -> bool {
    match std::fs::File::open("/dev/tty") {
        Ok(tty) => matches!(tcgetpgrp(&tty), Ok(fg) if fg == getpgrp()),
        Err(_) => false,
    }
}

impl ChildGroup {
    /// Spawns `cmd` as the leader of a new process group tied to this process
    /// (in this process's group when it runs in a terminal's foreground).
    pub(crate) fn spawn(mut cmd: Command) -> io::Result<Self> {
        let parent = getpid();
        let own_group = !in_terminal_foreground();
        if own_group {
            cmd.process_group(0);
        }
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe system calls (prctl, getppid) and allocates
        // nothing.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // swamp may have died before the death signal was armed.
                if getppid() != parent {
                    return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = cmd.kill_on_drop(true).spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the command exited before it could be tracked"))?;
        let pid = Pid::from_raw(pid as i32);
        if own_group {
            CURRENT_GROUP.store(pid.as_raw(), Ordering::SeqCst);
        }
        Ok(Self {
            child,
            pid,
            own_group,
        })
    }

    /// Waits for the leader to exit.
    pub(crate) async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// Sends `signal` to every process of the group (interactively: to the
    /// command).
    pub(crate) fn signal(&self, signal: Signal) {
        // ESRCH: already gone.
        let _ = if self.own_group {
            killpg(self.pid, signal)
        } else {
            kill(self.pid, signal)
        };
    }

    /// Kills every process of the group and reaps the leader.
    pub(crate) async fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait().await;
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        // Whatever happens to swamp's future, nothing of the group outlives
        // it. (Interactively the leader is killed by `kill_on_drop` unless
        // it was reaped already.)
        if self.own_group {
            let _ = killpg(self.pid, Signal::SIGKILL);
            CURRENT_GROUP.store(0, Ordering::SeqCst);
            wait_until_gone(self.pid, GONE_WITHIN);
        }
    }
}

/// How long a killed group may take to die before swamp goes on anyway.
const GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits (briefly, bounded) until no process of group `pgid` runs: a
/// SIGKILL is delivered asynchronously, and a job that is still on a CPU
/// could write one more time after swamp released the lock. Zombies count as
/// gone (they run no code; a container's init may never reap them).
fn wait_until_gone(pgid: Pid, bound: std::time::Duration) {
    let deadline = std::time::Instant::now() + bound;
    while killpg(pgid, None).is_ok() && group_has_live_member(pgid) {
        if std::time::Instant::now() >= deadline {
            tracing::warn!(
                pgid = pgid.as_raw(),
                "a killed process group did not die in time"
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Whether a process of group `pgid` is alive and not a zombie (Linux /proc).
fn group_has_live_member(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parens.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
        group == Some(pgid.as_raw()) && state != Some("Z") && state != Some("X")
    })
}
