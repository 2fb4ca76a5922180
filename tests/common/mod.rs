//! Helpers shared by the black-box CLI tests. Each test binary uses a subset,
//! hence the `dead_code` allowances.

#![allow(dead_code)]

use assert_cmd::Command;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Upper bound on any single CLI invocation, so a hang fails instead of blocking.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Generous deadline for polled conditions on a busy machine.
pub const POLL_DEADLINE: Duration = Duration::from_secs(30);

/// The `swamp` binary with a clean environment and no `--repo-dir`.
pub fn swamp_bare() -> Command {
    let mut cmd = Command::cargo_bin("swamp").expect("the swamp binary is built");
    cmd.env_remove("SWAMP_DATASTORE")
        .env_remove("SWAMP_LOCK_TTL_MS")
        .env_remove("SWAMP_LOG")
        .timeout(COMMAND_TIMEOUT);
    cmd
}

/// The `swamp` binary run with `--repo-dir repo` and a clean environment.
pub fn swamp(repo: &Path) -> Command {
    let mut cmd = swamp_bare();
    cmd.arg("--repo-dir").arg(repo);
    cmd
}

/// A fresh temp directory initialized as a swamp repo (the directory itself is the repo).
pub fn init_repo() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = swamp(dir.path()).args(["repo", "init"]).output().unwrap();
    assert!(
        out.status.success(),
        "repo init failed: {}",
        stderr_of(&out)
    );
    dir
}

/// Parses stdout as exactly one JSON document.
pub fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\nstdout: {}\nstderr: {}",
            stdout_of(output),
            stderr_of(output)
        )
    })
}

/// Stdout as text.
pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The exit code (panics when killed by a signal).
pub fn code_of(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}", output.status))
}

/// Asserts `output` is a `--json` error: exit `code`, stdout exactly one
/// `{"error":{"code","message"}}` document with `error_code`; returns the message.
pub fn assert_json_error(output: &Output, exit: i32, error_code: &str) -> String {
    assert_eq!(
        code_of(output),
        exit,
        "stdout: {}\nstderr: {}",
        stdout_of(output),
        stderr_of(output)
    );
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
    assert_eq!(
        code_of(output),
        exit,
        "stdout: {}\nstderr: {}",
        stdout_of(output),
        stderr_of(output)
    );
    assert!(output.stdout.is_empty(), "stdout: {}", stdout_of(output));
    let err = stderr_of(output);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    lines[0].to_string()
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Polls `cond` until it holds or `POLL_DEADLINE` passes (then panics with `what`).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < POLL_DEADLINE,
            "timed out after {POLL_DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The default datastore directory of `repo`.
pub fn local_dir(repo: &Path) -> PathBuf {
    repo.join(".swamp")
}

/// The lock file of a filesystem datastore at `datastore`.
pub fn lock_file(datastore: &Path) -> PathBuf {
    datastore.join(".datastore.lock")
}

/// Writes a valid lock record held by `holder` (pid 4242) into `datastore`.
pub fn plant_lock(datastore: &Path, holder: &str, ttl_ms: u64) -> PathBuf {
    std::fs::create_dir_all(datastore).unwrap();
    let record = serde_json::json!({
        "holder": holder,
        "hostname": "elsewhere",
        "pid": 4242,
        "acquiredAt": chrono::Utc::now().to_rfc3339(),
        "ttlMs": ttl_ms,
        "token": "0123456789abcdef0123456789abcdef",
    });
    let path = lock_file(datastore);
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    path
}

/// Stores `content` as a new version of `name` (via stdin) and asserts success.
pub fn put(repo: &Path, name: &str, content: &[u8]) {
    let out = swamp(repo)
        .args(["data", "put", name])
        .write_stdin(content.to_vec())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "data put {name} failed: {}",
        stderr_of(&out)
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

/// Every regular file under `root`, as sorted `/`-joined relative paths.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if root.exists() {
        for entry in walkdir::WalkDir::new(root) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
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
