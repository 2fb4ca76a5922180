//! Helpers shared by the integration tests: run the built binary (as a plain
//! `std::process::Command` for the process and S3 tests, or as an `assert_cmd`
//! command with a timeout for the black-box CLI tests), read its output, wait
//! on conditions with generous deadlines, signal process groups, and plant
//! files in a repo behind swamp's back. Each test binary uses a subset, hence
//! the `dead_code` allowance.
#![allow(dead_code)]

pub mod proxy;
pub mod s3;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Generous deadline for anything a busy 2-core machine must get done.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Upper bound on any single CLI invocation by `swamp_cli`, so a hang fails
/// instead of blocking.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Deadline for the conditions the CLI tests poll (see `wait_until_within`).
pub const POLL_DEADLINE: Duration = Duration::from_secs(30);

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

/// The `swamp` binary as an `assert_cmd` command (killed after
/// `COMMAND_TIMEOUT`) with a clean environment and no `--repo-dir`.
pub fn swamp_cli_bare() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("swamp").expect("the swamp binary is built");
    cmd.env_remove("SWAMP_DATASTORE")
        .env_remove("SWAMP_LOCK_TTL_MS")
        .env_remove("SWAMP_LOG")
        .timeout(COMMAND_TIMEOUT);
    cmd
}

/// `swamp_cli_bare` run with `--repo-dir repo`.
pub fn swamp_cli(repo: &Path) -> assert_cmd::Command {
    let mut cmd = swamp_cli_bare();
    cmd.arg("--repo-dir").arg(repo);
    cmd
}

/// A fresh temp directory initialized as a swamp repo (the directory itself is the repo).
pub fn init_repo() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = swamp(dir.path())
        .args(["repo", "init"])
        .output()
        .expect("run swamp");
    assert!(out.status.success(), "repo init failed: {out:?}");
    dir
}

/// Another clone of `repo` as it was before any datastore setup: a fresh
/// repo with the same repoId and a local datastore of its own.
pub fn clone_repo(repo: &Path) -> TempDir {
    let dir = init_repo();
    let fresh = read_config(dir.path()).replace(&repo_id(dir.path()), &repo_id(repo));
    std::fs::write(dir.path().join(".swamp.yaml"), fresh).expect("write config");
    dir
}

/// Runs and returns the output, failing with context if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run swamp")
}

/// Polls `cond` until it holds or `DEADLINE` passes.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(what, DEADLINE, cond)
}

/// Polls `cond` until it holds or `deadline` passes (then panics with `what`).
pub fn wait_until_within(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
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

/// Kills the process group led by `pid`, even a stopped one; errors (a group
/// that is already gone) are ignored.
pub fn kill_group(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGCONT);
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
}

/// Kills a (possibly stopped) process group if the test fails half-way.
pub struct GroupGuard(pub u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
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
pub fn lock_status(repo: &Path, ttl_ms: Option<u64>) -> Value {
    let mut cmd = swamp(repo);
    if let Some(ttl) = ttl_ms {
        cmd.env("SWAMP_LOCK_TTL_MS", ttl.to_string());
    }
    let out = run(cmd.args(["--json", "datastore", "lock", "status"]));
    assert!(out.status.success(), "lock status failed: {out:?}");
    serde_json::from_slice(&out.stdout).expect("lock status json")
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Stdout as text.
pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Parses stdout as exactly one JSON document.
pub fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\nstdout: {}\nstderr: {}",
            stdout_of(output),
            stderr(output)
        )
    })
}

/// The exit code (panics when killed by a signal).
pub fn code_of(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}", output.status))
}

/// Asserts `output` exited with `exit`, showing both streams otherwise.
pub fn assert_exit(output: &Output, exit: i32) {
    assert_eq!(
        code_of(output),
        exit,
        "stdout: {}\nstderr: {}",
        stdout_of(output),
        stderr(output)
    );
}

/// Asserts `output` is a `--json` error: exit `code`, stdout exactly one
/// `{"error":{"code","message"}}` document with `error_code`; returns the message.
pub fn assert_json_error(output: &Output, exit: i32, error_code: &str) -> String {
    assert_exit(output, exit);
    let doc = json_of(output);
    let obj = doc.as_object().expect("top-level object");
    assert_eq!(obj.len(), 1, "only an 'error' key expected: {doc}");
    let err = doc["error"].as_object().expect("error object");
    assert_eq!(doc["error"]["code"], error_code, "{doc}");
    let message = err["message"].as_str().expect("message string").to_string();
    assert!(!message.is_empty());
    assert!(!message.contains('\n'), "message is one line: {message:?}");
    message
}

/// Asserts `output` is a text-mode error: exit `code`, nothing on stdout and one
/// `error: ...` line on stderr; returns that line.
pub fn assert_text_error(output: &Output, exit: i32) -> String {
    assert_exit(output, exit);
    assert!(output.stdout.is_empty(), "stdout: {}", stdout_of(output));
    let err = stderr(output);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    lines[0].to_string()
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The default datastore directory of `repo`.
pub fn local_dir(repo: &Path) -> PathBuf {
    repo.join(".swamp")
}

/// The lock file of a filesystem datastore at `datastore`.
pub fn lock_file(datastore: &Path) -> PathBuf {
    datastore.join(".datastore.lock")
}

/// A valid lock record held by `holder` (pid 4242 on host "elsewhere"),
/// acquired now.
pub fn lock_record(holder: &str, ttl_ms: u64, token: &str) -> Value {
    serde_json::json!({
        "holder": holder,
        "hostname": "elsewhere",
        "pid": 4242,
        "acquiredAt": chrono::Utc::now().to_rfc3339(),
        "ttlMs": ttl_ms,
        "token": token,
    })
}

/// A live scoped lock record held by `holder` (pid 4242) on `paths`, at the
/// highest priority.
pub fn scoped_lock_record(holder: &str, ttl_ms: u64, paths: &[&str]) -> Value {
    let mut record = lock_record(holder, ttl_ms, "feedfacefeedfacefeedfacefeedface");
    record["scope"] = serde_json::json!(paths);
    record["priority"] = serde_json::json!(u64::MAX);
    record
}

/// Writes a valid lock record held by `holder` (pid 4242) into `datastore`.
pub fn plant_lock(datastore: &Path, holder: &str, ttl_ms: u64) -> PathBuf {
    std::fs::create_dir_all(datastore).unwrap();
    let record = lock_record(holder, ttl_ms, "0123456789abcdef0123456789abcdef");
    let path = lock_file(datastore);
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    path
}

/// Stores `content` as a new version of `name` (via stdin) and asserts success.
pub fn put(repo: &Path, name: &str, content: &[u8]) {
    let out = swamp_cli(repo)
        .args(["data", "put", name])
        .write_stdin(content.to_vec())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "data put {name} failed: {}",
        stderr(&out)
    );
}

/// Reads `.swamp.yaml` of `repo`.
pub fn read_config(repo: &Path) -> String {
    std::fs::read_to_string(repo.join(".swamp.yaml")).expect(".swamp.yaml")
}

/// The `repoId` line value of `.swamp.yaml`.
pub fn repo_id(repo: &Path) -> String {
    let doc: serde_yaml::Value = serde_yaml::from_str(&read_config(repo)).unwrap();
    doc["repoId"].as_str().expect("repoId").to_string()
}

/// Appends `text` to `.swamp.yaml`.
pub fn append_config(repo: &Path, text: &str) {
    let mut current = read_config(repo);
    if !current.ends_with('\n') {
        current.push('\n');
    }
    current.push_str(text);
    std::fs::write(repo.join(".swamp.yaml"), current).unwrap();
}

/// Every regular file under `root` (symlinks are not followed) but the lock
/// mutexes (`LOCK_MUTEX_FILE`), as sorted
/// `/`-joined relative paths; empty if `root` does not exist.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if root.exists() {
        for entry in walkdir::WalkDir::new(root) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() && entry.file_name() != LOCK_MUTEX_FILE {
                let rel = entry.path().strip_prefix(root).unwrap();
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    out.sort();
    out
}

/// The empty file whose `flock` serializes changes to a filesystem
/// datastore's lock records (one next to `.datastore.lock`, one in
/// `.locks/`): swamp's own, made once and kept, never content.
pub const LOCK_MUTEX_FILE: &str = ".swamp-lock-mutex";

/// Every regular file under `root` with its content, by `/`-joined relative path.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    files_under(root)
        .into_iter()
        .map(|rel| {
            let bytes = std::fs::read(root.join(&rel)).unwrap();
            (rel, bytes)
        })
        .collect()
}

/// The cache's note of the last successful pull and push, which every one
/// rewrites.
pub const SYNC_TIMES_NOTE: &str = ".swamp-sync-times.json";

/// Whether `rel` (a path in an S3 cache) is one of this machine's own notes
/// rather than datastore content: what it agreed with the bucket, what it
/// probed, when it last synced, and its local lock files (made by whichever
/// command used them).
pub fn is_machine_note(rel: &str) -> bool {
    rel.starts_with(".swamp-sync-state")
        || rel == ".swamp-store-probe.json"
        || rel == SYNC_TIMES_NOTE
        || (rel.starts_with(".swamp-cache") && rel.ends_with(".lock"))
}

/// A private tmux server (its own socket), killed when the test ends: a
/// real terminal for tests of what a terminal shows.
pub struct Tmux(pub String);

impl Tmux {
    /// A server of its own for this test.
    pub fn new(name: &str) -> Self {
        Tmux(format!("swamp-test-{name}-{}", std::process::id()))
    }

    /// Runs a tmux command against this server.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("tmux (apt-get install tmux)")
    }

    /// Starts `line` (a shell command line) in a detached 120x30 session.
    pub fn start(&self, line: &str) {
        let out = self.run(&[
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "30",
            "sh",
            "-c",
            line,
        ]);
        assert!(out.status.success(), "tmux: {}", stderr(&out));
    }

    /// The screen as it stands (with escape sequences when `escapes`).
    pub fn screen(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p"];
        if escapes {
            args.push("-e");
        }
        String::from_utf8_lossy(&self.run(&args).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
