//! A lost lease never ends in exit 0, and nothing `exec` started outlives the
//! lock: real swamp processes on a filesystem datastore, frozen with SIGSTOP,
//! signalled and killed at chosen points.

mod support;

use nix::sys::signal::Signal;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use support::*;

/// Kills the listed pids (read from files when the test ends), so nothing a
/// test started outlives it, even when it fails half-way.
struct PidFiles(Vec<std::path::PathBuf>);

impl Drop for PidFiles {
    fn drop(&mut self) {
        for file in &self.0 {
            if let Some(pid) = read_pid(file) {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn wait_pid(file: &Path) -> u32 {
    wait_until("pid file written", || read_pid(file).is_some());
    read_pid(file).expect("pid")
}

/// A holder stopped after its command ended, resumed once its lease expired
/// (and another process took the lock and released it), must report the lost
/// lock: its command ran, but part of the guard did not hold the lock. The
/// race between "child exited" and "heartbeat noticed" is run several times,
/// because without the final fence check either side may win.
#[test]
fn a_holder_frozen_after_its_child_ended_exits_75_not_0() {
    let repo = init_repo();
    let dir = repo.path();
    for round in 0..3 {
        let (started, go, pid) = (
            dir.join(format!("started{round}")),
            dir.join(format!("go{round}")),
            dir.join(format!("child{round}.pid")),
        );
        let _cleanup = PidFiles(vec![pid.clone()]);
        let script = format!(
            "echo $$ > {p}; touch {s}; while [ ! -f {g} ]; do sleep 0.02; done",
            p = pid.display(),
            s = started.display(),
            g = go.display()
        );
        let mut holder = swamp(dir)
            .env("SWAMP_LOCK_TTL_MS", "1000")
            .args(["--json", "exec", "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn holder");
        let _group = GroupGuard(holder.id());
        wait_until("holder's command started", || started.exists());
        let child = wait_pid(&pid);
        // Freeze swamp only; its command (in a group of its own) runs on.
        signal_group(holder.id(), Signal::SIGSTOP);
        std::fs::write(&go, b"").unwrap();
        wait_until("the command ended", || is_dead(child));
        wait_until("frozen holder's lease is stale", || {
            lock_status(dir, None)["lock"]["stale"] == true
        });
        // Someone else takes the lock over and finishes.
        let taker = run(swamp(dir).env("SWAMP_LOCK_TTL_MS", "1000").args([
            "--lock-timeout",
            "60",
            "exec",
            "--",
            "true",
        ]));
        assert!(taker.status.success(), "taker: {}", stderr(&taker));
        signal_group(holder.id(), Signal::SIGCONT);
        let status = wait_child(&mut holder);
        let mut err = String::new();
        std::io::Read::read_to_string(holder.stderr.as_mut().unwrap(), &mut err).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(holder.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert_eq!(status.code(), Some(75), "round {round}: stderr {err}");
        let doc: serde_json::Value = serde_json::from_slice(&out).expect("json error");
        assert_eq!(doc["error"]["code"], "lock_lost", "round {round}");
        assert_eq!(lock_status(dir, None)["held"], false);
    }
}

/// A background job that ignores SIGTERM and SIGHUP and writes forever.
fn stubborn_writer(dir: &Path) -> String {
    format!(
        "(trap '' TERM HUP INT PIPE; echo $(exec sh -c 'echo $PPID') > {d}/bg.pid; while true; do echo x >> {d}/bg.out; sleep 0.05; done) & \
         while [ ! -s {d}/bg.pid ]; do sleep 0.02; done; touch {d}/started; while [ ! -f {d}/never ]; do sleep 0.05; done",
        d = dir.display()
    )
}

/// The lock is lost while the command's background job writes: the whole
/// process group is killed before swamp exits 75.
#[test]
fn on_lost_lock_every_process_the_command_started_is_killed() {
    let repo = init_repo();
    let dir = repo.path();
    let _cleanup = PidFiles(vec![dir.join("bg.pid")]);
    let mut holder = swamp(dir)
        .env("SWAMP_LOCK_TTL_MS", "1500")
        .args(["exec", "--", "sh", "-c", &stubborn_writer(dir)])
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let _group = GroupGuard(holder.id());
    wait_until("holder started", || dir.join("started").exists());
    let bg = wait_pid(&dir.join("bg.pid"));
    assert!(!is_dead(bg));
    // Another process removes the lock: the next renewal finds it gone.
    let released = run(swamp(dir).args(["datastore", "lock", "release", "--force"]));
    assert!(released.status.success(), "{}", stderr(&released));
    let status = wait_child(&mut holder);
    assert_eq!(status.code(), Some(75));
    wait_until("the background writer is dead", || is_dead(bg));
}

/// SIGTERM to swamp alone: forwarded to the command's group; what ignores it
/// is killed after the grace period, before the lock is released.
#[test]
fn sigterm_stops_the_whole_group_before_the_lock_is_released() {
    let repo = init_repo();
    let dir = repo.path();
    let _cleanup = PidFiles(vec![dir.join("bg.pid")]);
    let mut holder = swamp(dir)
        .args(["exec", "--", "sh", "-c", &stubborn_writer(dir)])
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let _group = GroupGuard(holder.id());
    wait_until("holder started", || dir.join("started").exists());
    let bg = wait_pid(&dir.join("bg.pid"));
    signal(holder.id(), Signal::SIGTERM);
    let status = wait_child(&mut holder);
    assert_eq!(status.code(), Some(143));
    // Dead (or a zombie awaiting its reaper) when the lock was released.
    assert!(is_dead(bg), "background writer outlived the lock");
    assert_eq!(lock_status(dir, None)["held"], false);
}

/// A command that exits while a job it started still runs: the job is killed
/// before the release, so it cannot write into the datastore without the lock.
#[test]
fn jobs_left_running_by_the_command_end_before_the_release() {
    let repo = init_repo();
    let dir = repo.path();
    let _cleanup = PidFiles(vec![dir.join("bg.pid")]);
    let script = format!(
        "(trap '' TERM HUP; echo $(exec sh -c 'echo $PPID') > {d}/bg.pid; exec sleep 600) & while [ ! -s {d}/bg.pid ]; do sleep 0.02; done",
        d = dir.display()
    );
    // Its own process group: not the foreground of a terminal the test
    // runner may have (interactively, exec keeps the command in its group).
    let out = run(swamp(dir)
        .args(["exec", "--", "sh", "-c", &script])
        .process_group(0));
    assert!(out.status.success(), "{}", stderr(&out));
    let bg = read_pid(&dir.join("bg.pid")).expect("bg pid");
    assert!(
        is_dead(bg),
        "a job the command left running outlived the lock"
    );
}

/// swamp killed with -9: its command gets SIGKILL too, instead of running on
/// without a lock.
#[test]
fn the_command_dies_with_a_swamp_killed_with_9() {
    let repo = init_repo();
    let dir = repo.path();
    let pid = dir.join("child.pid");
    let _cleanup = PidFiles(vec![pid.clone()]);
    let script = format!("echo $$ > {}; exec sleep 600", pid.display());
    let mut holder = swamp(dir)
        .args(["exec", "--", "sh", "-c", &script])
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let _group = GroupGuard(holder.id());
    let child = wait_pid(&pid);
    signal(holder.id(), Signal::SIGKILL);
    let _ = holder.wait();
    wait_until("the command died with swamp", || is_dead(child));
}

/// In the foreground of a real terminal, `exec`'s command stays in swamp's
/// process group, so it can read the terminal (a group of its own would be a
/// background job and stop on its first read).
#[test]
fn an_interactive_command_reads_the_terminal() {
    let repo = init_repo();
    let dir = repo.path();
    let tmux = Tmux(format!("swamp-test-{}", std::process::id()));
    let line = format!(
        "{bin} --repo-dir {d} exec -- sh -c 'read answer; echo \"got:$answer\" > {d}/out'; echo \"exit:$?\" > {d}/code",
        bin = bin().display(),
        d = dir.display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "20",
        "sh",
        "-c",
        &line,
    ]);
    assert!(started.status.success(), "{}", stderr(&started));
    wait_until("swamp holds the lock", || {
        lock_status(dir, None)["held"] == true
    });
    let typed = tmux.run(&["send-keys", "hello", "Enter"]);
    assert!(typed.status.success(), "{}", stderr(&typed));
    wait_until("the command finished", || dir.join("code").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("out")).unwrap(),
        "got:hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("code")).unwrap(),
        "exit:0\n"
    );
}
