//! Helpers for the process tests: run the built binary as real processes,
//! wait on conditions with generous deadlines, and signal process groups.
#![allow(dead_code)]

pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous deadline for anything a busy 2-core machine must get done.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The built `swamp` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_swamp"))
}

/// A `swamp` command for `repo` with a clean environment for the datastore.
pub fn swamp(repo: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--repo-dir")
        .arg(repo)
        .env_remove("SWAMP_DATASTORE")
        .env_remove("SWAMP_LOCK_TTL_MS")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    cmd
}

/// A fresh initialized repo.
pub fn init_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = swamp(dir.path())
        .args(["repo", "init"])
        .output()
        .expect("run swamp");
    assert!(out.status.success(), "repo init failed: {out:?}");
    dir
}

/// Runs and returns the output, failing with context if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run swamp")
}

/// Polls `cond` until it holds or the deadline passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child to exit, killing it after the deadline.
pub fn wait_child(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("child {} did not exit in time", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `sig` to the process group led by `pid`.
pub fn signal_group(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), sig).expect("killpg");
}

/// Sends `sig` to one process.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("kill");
}

/// Whether `pid` is gone or a zombie (dead but not yet reaped).
pub fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|rest| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// `datastore lock status --json` of `repo`.
pub fn lock_status(repo: &Path, ttl_ms: Option<u64>) -> serde_json::Value {
    let mut cmd = swamp(repo);
    if let Some(ttl) = ttl_ms {
        cmd.env("SWAMP_LOCK_TTL_MS", ttl.to_string());
    }
    let out = run(cmd.args(["--json", "datastore", "lock", "status"]));
    assert!(out.status.success(), "lock status failed: {out:?}");
    serde_json::from_slice(&out.stdout).expect("lock status json")
}

/// Text of stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
