//! Faults on an S3 datastore, against a real local S3 server (moto, or
//! SeaweedFS with `SWAMP_TEST_S3=seaweedfs`): a malicious or corrupt remote
//! index, objects that do not match the index, a server that stops answering
//! mid-command, and a symlink planted in the cache.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::s3::*;
use support::*;

const BUCKET: &str = "fault-bucket";

impl World {
    /// One moto with the bucket, one repo set up on S3 with some data
    /// (`outputs/legit`).
    fn new() -> Self {
        let w = World::create(Moto::start(), BUCKET);
        let home = tempfile::tempdir().unwrap();
        w.setup(home.path());
        w.sh(
            home.path(),
            r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && printf legit > "$SWAMP_DATASTORE_DIR/outputs/legit""#,
        );
        w
    }
}

/// Calls `visit` on every entry under `root` (files, dirs, links; links are
/// not followed), skipping directories that cannot be read.
fn walk(root: &Path, mut visit: impl FnMut(&std::fs::DirEntry)) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            visit(&entry);
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(entry.path());
            }
        }
    }
}

/// Every entry under `root` but directories (regular files, and also links
/// and anything else: stricter than `support::snapshot`) with its content
/// (empty if it cannot be read).
fn snapshot_all(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(root, |entry| {
        if !entry.file_type().unwrap().is_dir() && entry.file_name() != SYNC_TIMES_NOTE {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, std::fs::read(&path).unwrap_or_default());
        }
    });
    out
}

/// Every path (files, dirs, links) under `root` whose name is in `names`.
fn find_named(root: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(root, |entry| {
        if names.contains(&entry.file_name().to_string_lossy().as_ref()) {
            found.push(entry.path());
        }
    });
    found
}

/// Asserts a failed command with exactly one line on stderr containing `needle`.
fn assert_clear_failure(out: &Output, needle: &str, what: &str) {
    assert!(!out.status.success(), "{what}: succeeded");
    assert_ne!(out.status.code(), Some(75), "{what}: not a lock problem");
    let err = stderr(out);
    assert!(err.contains(needle), "{what}: {err}");
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one-line error expected: {err}");
    assert!(lines[0].starts_with("error: "), "{what}: {err}");
}

const DATA_COMMANDS: [&[&str]; 5] = [
    &["data", "list"],
    &["data", "get", "some/item"],
    &["data", "versions", "some/item"],
    &["exec", "--", "true"],
    &["datastore", "sync"],
];

#[test]
fn a_malicious_index_cannot_write_outside_the_cache() {
    let w = World::new();
    let good_index = w.fetch(&index_key()).unwrap();
    let sandbox = tempfile::tempdir().unwrap();
    let names = ["escape", "abs", "b"];
    let root_before: Vec<bool> = names
        .iter()
        .map(|n| Path::new("/").join(n).exists())
        .collect();
    // Objects with escaping keys, as far as the server stores them.
    for key in [
        format!("{PREFIX}/../escape"),
        format!("{PREFIX}/x/../../escape"),
        format!("{PREFIX}/a/../../b"),
        format!("{PREFIX}//abs"),
    ] {
        let _ = w.moto.request("PUT", &format!("/{BUCKET}/{key}"), b"pwned");
    }
    let good_files = w.index();
    for (i, bad) in ["../escape", "/abs", "a/../../b"].iter().enumerate() {
        let mut index = good_files.clone();
        index["files"][*bad] = serde_json::json!({"size": 5, "sha256": sha256_hex(b"pwned")});
        w.plant(&index_key(), &serde_json::to_vec(&index).unwrap());
        for args in DATA_COMMANDS {
            // A fresh machine each time, deep in the sandbox.
            let home = sandbox.path().join(format!("m{i}/deep/er/home"));
            let out = w.run_on(&home, args);
            assert_clear_failure(&out, "unsafe path", &format!("{bad} / {args:?}"));
            assert!(stderr(&out).contains(bad), "{}", stderr(&out));
        }
    }
    let found = find_named(sandbox.path(), &names);
    assert!(found.is_empty(), "escaped writes: {found:?}");
    let found = find_named(w.repo.path(), &names);
    assert!(found.is_empty(), "escaped writes into the repo: {found:?}");
    let root_after: Vec<bool> = names
        .iter()
        .map(|n| Path::new("/").join(n).exists())
        .collect();
    assert_eq!(root_before, root_after, "something appeared at /");

    // With the index repaired, everything works again.
    w.plant(&index_key(), &good_index);
    let home = sandbox.path().join("after");
    let got = w.sh(&home, r#"cat "$SWAMP_DATASTORE_DIR/outputs/legit""#);
    assert_eq!(got, b"legit");
    assert!(find_named(sandbox.path(), &names).is_empty());
}

/// A sharded index's shards are checked like the index: an unsafe path in
/// a well-named shard, a shard whose bytes do not match its name, and an
/// entry in a shard of another slot each fail every data command with one
/// line before anything is written, on a fresh machine and a warm one; a
/// shard the bucket lacks fails the same way.
#[test]
fn a_malicious_shard_cannot_write_outside_the_cache_or_smuggle_entries() {
    let w = World::new();
    let warm = tempfile::tempdir().unwrap();
    w.ok(warm.path(), &["datastore", "sync", "--pull"]);
    let good_root = w.fetch(&index_key()).unwrap();
    let entry =
        |content: &[u8]| serde_json::json!({"size": content.len(), "sha256": sha256_hex(content)});
    let plant_shard = |body: &[u8]| {
        let name = format!("99-{}", &sha256_hex(body)[..32]);
        w.plant(
            &format!("{PREFIX}/.datastore-index-shards/{name}.json"),
            body,
        );
        name
    };
    // One slot: an escaping path, in a shard named by its content.
    let unsafe_body = serde_json::json!({"files": {"../escape": entry(b"pwned")}}).to_string();
    let name = plant_shard(unsafe_body.as_bytes());
    let one_slot = |name: &str| serde_json::json!({"format": 2, "generation": 99, "shardBits": 0, "shards": [name]});
    // Two slots: a path placed in the slot it does not hash to.
    let path = "outputs/smuggled";
    let group_slot = (crc32fast::hash(path.as_bytes()) >> 31) as usize;
    let stray_body = serde_json::json!({"files": {path: entry(b"x")}}).to_string();
    let stray = plant_shard(stray_body.as_bytes());
    let mut two_slots = vec![String::new(), String::new()];
    two_slots[1 - group_slot] = stray;
    // Every command that reads that shard (a read of one item reads only
    // its own slot's, so it never sees the stray entry).
    let whole_readers: Vec<&[&str]> = DATA_COMMANDS
        .into_iter()
        .filter(|args| !args.contains(&"some/item"))
        .collect();
    let cases = [
        (one_slot(&name), "unsafe path", DATA_COMMANDS.to_vec()),
        // A name the bucket does not hold.
        (
            one_slot(&format!("99-{}", "0".repeat(32))),
            "not hold",
            DATA_COMMANDS.to_vec(),
        ),
        (
            serde_json::json!({"format": 2, "generation": 99, "shardBits": 1, "shards": two_slots}),
            "belongs to another shard",
            whole_readers,
        ),
    ];
    for (root, needle, commands) in cases {
        w.plant(&index_key(), root.to_string().as_bytes());
        for args in commands {
            let fresh = tempfile::tempdir().unwrap();
            let out = w.run_on(fresh.path(), args);
            assert_clear_failure(&out, needle, &format!("{needle} / {args:?}"));
            assert!(find_named(fresh.path(), &["escape", "smuggled"]).is_empty());
        }
        let out = w.run_on(warm.path(), &["data", "list"]);
        assert_clear_failure(&out, needle, &format!("{needle} / warm"));
    }
    let mut tampered = unsafe_body.clone().into_bytes();
    tampered[2] = b'F';
    w.plant(
        &format!("{PREFIX}/.datastore-index-shards/{name}.json"),
        &tampered,
    );
    w.plant(&index_key(), one_slot(&name).to_string().as_bytes());
    let out = w.run_on(tempfile::tempdir().unwrap().path(), &["data", "list"]);
    assert_clear_failure(&out, "does not match its name", "tampered shard");
    assert!(find_named(warm.path(), &["escape", "smuggled"]).is_empty());
    // With the root restored, everything works again.
    w.plant(&index_key(), &good_root);
    w.ok(warm.path(), &["datastore", "sync", "--pull"]);
}

#[test]
fn an_unsafe_key_is_refused_by_a_machine_with_a_warm_cache() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.ok(home.path(), &["datastore", "sync", "--pull"]);
    let cache = w.cache(home.path());
    let before = snapshot_all(&cache);
    let mut index = w.index();
    index["files"]["outputs/../../../escape"] =
        serde_json::json!({"size": 5, "sha256": sha256_hex(b"pwned")});
    w.plant(&index_key(), &serde_json::to_vec(&index).unwrap());
    let out = w.run_on(home.path(), &["data", "list"]);
    assert_clear_failure(&out, "unsafe path", "warm cache");
    assert_eq!(snapshot_all(&cache), before, "cache changed");
    assert!(find_named(home.path(), &["escape"]).is_empty());
}

#[test]
fn a_corrupt_index_is_a_clear_error_and_the_cache_stays_intact() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.ok(home.path(), &["datastore", "sync", "--pull"]);
    let cache = w.cache(home.path());
    let before = snapshot_all(&cache);
    assert!(before.contains_key("outputs/legit"), "{:?}", before.keys());
    let good_index = w.fetch(&index_key()).unwrap();

    w.plant(&index_key(), b"{garbage");
    for args in DATA_COMMANDS {
        let out = w.run_on(home.path(), args);
        assert_clear_failure(&out, "remote index is corrupt", &format!("{args:?}"));
        assert_eq!(snapshot_all(&cache), before, "cache changed by {args:?}");
    }
    // A fresh machine fails the same way, with a JSON error code.
    let fresh = tempfile::tempdir().unwrap();
    let out = w.run_on(fresh.path(), &["--json", "data", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "remote_index_invalid", "{v}");
    // Valid JSON of the wrong shape and a newer format are refused too.
    w.plant(
        &index_key(),
        br#"{"format":1,"files":{"outputs/x":{"size":1,"sha256":"zz"}}}"#,
    );
    let out = w.run_on(home.path(), &["data", "list"]);
    assert_clear_failure(&out, "remote index is corrupt", "bad sha");
    w.plant(&index_key(), br#"{"format":99,"files":{}}"#);
    let out = w.run_on(home.path(), &["data", "list"]);
    assert_clear_failure(&out, "upgrade swamp", "format 99");
    assert_eq!(snapshot_all(&cache), before);
    // The failed commands never pushed over the bad index or left the lock.
    assert_eq!(
        w.fetch(&index_key()).unwrap(),
        br#"{"format":99,"files":{}}"#
    );
    assert!(!w.keys().iter().any(|k| k.ends_with(".datastore.lock")));

    w.plant(&index_key(), &good_index);
    w.ok(home.path(), &["datastore", "sync", "--pull"]);
    assert_eq!(snapshot_all(&cache), before);
}

#[test]
fn an_object_that_does_not_match_the_index_is_never_written_under_its_name() {
    let w = World::new();
    w.plant(&format!("{PREFIX}/outputs/evil"), b"evil");
    let mut index = w.index();
    index["files"]["outputs/evil"] = serde_json::json!({"size": 4, "sha256": sha256_hex(b"good")});
    w.plant(&index_key(), &serde_json::to_vec(&index).unwrap());

    let home = tempfile::tempdir().unwrap();
    let out = w.run_on(home.path(), &["datastore", "sync", "--pull"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("does not match the index"), "{err}");
    assert!(err.contains("outputs/evil"), "{err}");
    let cache = w.cache(home.path());
    assert!(!cache.join("outputs/evil").exists());
    let leftovers: Vec<String> = snapshot_all(&cache)
        .into_keys()
        .filter(|k| k.contains("evil"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // exec never ran with the bad content in place.
    let out = w.run_sh(home.path(), r#"cat "$SWAMP_DATASTORE_DIR/outputs/evil""#);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("evil"));
    assert!(!cache.join("outputs/evil").exists());

    // Once the object matches, the next command fetches it.
    w.plant(&format!("{PREFIX}/outputs/evil"), b"good");
    let got = w.sh(home.path(), r#"cat "$SWAMP_DATASTORE_DIR/outputs/evil""#);
    assert_eq!(got, b"good");
}

/// Resumes moto if the test fails while it is frozen.
struct Thaw<'a>(&'a Moto);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

#[test]
fn a_frozen_server_fails_the_command_and_the_next_run_repairs() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    let cache = w.cache(home.path());
    let mark = tempfile::tempdir().unwrap();
    let m = mark.path().display().to_string();
    let err_path = mark.path().join("holder.stderr");
    let script = format!(
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs"; printf precious > "$SWAMP_DATASTORE_DIR/outputs/frozen"; touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done"#
    );
    let mut holder = w
        .on(home.path())
        .env("SWAMP_S3_TIMEOUT_SECS", "2")
        .args(["exec", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard(holder.id());
    wait_until("holder started", || mark.path().join("started").exists());

    w.moto.freeze();
    let thaw = Thaw(&w.moto);
    std::fs::write(mark.path().join("go"), b"").unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = holder.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < S3_DEADLINE,
            "swamp hung on a frozen server"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(thaw);
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(!status.success(), "{status:?}: {err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(error_lines.len(), 1, "{err}");
    assert!(
        error_lines[0].contains("timed out") || error_lines[0].contains("lock lost"),
        "{err}"
    );
    // The file the command wrote is still in its cache.
    assert_eq!(
        std::fs::read(cache.join("outputs/frozen")).unwrap(),
        b"precious"
    );

    // The server answers again; the holder's lock may be left behind.
    wait_until("moto answers", || {
        w.moto
            .request("GET", &format!("/{BUCKET}?list-type=2"), b"")
            .is_some()
    });
    w.ok(home.path(), &["datastore", "lock", "release", "--force"]);
    let v = w.json(home.path(), &["datastore", "sync"]);
    assert_eq!(v["direction"], "both", "{v}");
    let keys = w.keys();
    assert!(
        keys.contains(&format!("{PREFIX}/outputs/frozen")),
        "{keys:?} after {v}"
    );
    let index = w.index();
    assert_eq!(
        index["files"]["outputs/frozen"]["sha256"],
        sha256_hex(b"precious"),
        "{index}"
    );
    // Another machine sees it.
    let other = tempfile::tempdir().unwrap();
    let got = w.sh(other.path(), r#"cat "$SWAMP_DATASTORE_DIR/outputs/frozen""#);
    assert_eq!(got, b"precious");
    // And a further sync has nothing left to do.
    let v = w.json(home.path(), &["datastore", "sync"]);
    assert_eq!(v["pushed"]["uploaded"], 0, "{v}");
}

#[test]
fn pull_refuses_to_write_through_a_symlink_in_the_cache() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    w.ok(a.path(), &["datastore", "sync", "--pull"]);
    let cache = w.cache(a.path());
    assert!(cache.join("outputs/legit").exists());
    let outside = tempfile::tempdir().unwrap();

    // Someone replaces the cache's outputs/ with a link out of the cache...
    std::fs::remove_dir_all(cache.join("outputs")).unwrap();
    std::os::unix::fs::symlink(outside.path(), cache.join("outputs")).unwrap();
    // ... and another machine adds a file under outputs/.
    w.sh(
        b.path(),
        r#"printf remote > "$SWAMP_DATASTORE_DIR/outputs/new""#,
    );
    let index_before = w.fetch(&index_key()).unwrap();

    for args in [
        &["exec", "--", "true"][..],
        &["datastore", "sync", "--pull"][..],
    ] {
        let out = w.run_on(a.path(), args);
        assert!(!out.status.success(), "{args:?} followed the symlink");
        assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
        let written = snapshot_all(outside.path());
        assert!(written.is_empty(), "written through the link: {written:?}");
    }
    // A reader fetches only data items: it never goes near outputs/.
    w.ok(a.path(), &["data", "list"]);
    assert!(snapshot_all(outside.path()).is_empty());
    // Nothing was pushed from the outside directory either.
    assert_eq!(w.fetch(&index_key()).unwrap(), index_before);

    // A nested link is refused the same way.
    std::fs::remove_file(cache.join("outputs")).unwrap();
    std::fs::create_dir_all(cache.join("outputs")).unwrap();
    std::os::unix::fs::symlink(outside.path(), cache.join("outputs/sub")).unwrap();
    w.sh(b.path(), r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs/sub" && printf deep > "$SWAMP_DATASTORE_DIR/outputs/sub/x""#);
    let out = w.run_on(a.path(), &["datastore", "sync", "--pull"]);
    assert!(!out.status.success(), "followed the nested symlink");
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
    assert!(snapshot_all(outside.path()).is_empty());
}

#[test]
fn an_unreachable_endpoint_or_missing_credentials_fail_fast_and_clearly() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    // Nothing listens on the port of a listener we just closed. (Another
    // bucket than the configured one: an override naming the configured
    // bucket would inherit its endpoint.)
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let mut cmd = w.on(home.path());
    cmd.env("SWAMP_DATASTORE", "s3:unreachable-bucket/elsewhere")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{dead_port}"))
        .env("SWAMP_S3_TIMEOUT_SECS", "2")
        .args(["data", "list"]);
    let out = run(&mut cmd);
    assert!(start.elapsed() < S3_DEADLINE);
    assert_clear_failure(&out, "endpoint unreachable", "dead endpoint");
    assert_eq!(out.status.code(), Some(1));

    let mut cmd = w.on(home.path());
    cmd.env("SWAMP_DATASTORE", "s3:unreachable-bucket/elsewhere")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{dead_port}"))
        .env("SWAMP_S3_TIMEOUT_SECS", "2")
        .args(["--json", "datastore", "status"]);
    let out = run(&mut cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "unhealthy exits 1: {}",
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["health"]["healthy"], false, "{v}");
    assert!(
        v["health"]["message"]
            .as_str()
            .unwrap()
            .contains("endpoint unreachable"),
        "{v}"
    );

    let nohome = tempfile::tempdir().unwrap();
    let mut cmd = w.on(home.path());
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env("HOME", nohome.path())
        .args(["data", "list"]);
    let out = run(&mut cmd);
    assert_clear_failure(&out, "no AWS credentials found", "no credentials");
}

#[test]
fn sigint_during_exec_pushes_what_was_written_and_releases_the_lock() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let m = mark.path().display().to_string();
    let script = format!(
        r#"printf partial > "$SWAMP_DATASTORE_DIR/outputs/interrupted"; touch '{m}/started'; while :; do sleep 0.05; done"#
    );
    let mut child = w
        .on(home.path())
        .args(["exec", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard(child.id());
    wait_until("exec started", || mark.path().join("started").exists());
    signal(child.id(), nix::sys::signal::Signal::SIGINT);
    let status = wait_child(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(
        w.fetch(&format!("{PREFIX}/outputs/interrupted")).as_deref(),
        Some(&b"partial"[..])
    );
    assert!(!w.keys().iter().any(|k| k.ends_with(".datastore.lock")));
}

/// A prefix with objects but no index (the index lost, files copied in by
/// another tool) is refused with one line, never taken for empty: nothing is
/// overwritten and no index is written.
#[test]
fn objects_without_an_index_are_refused_and_left_alone() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.plant(
        &format!("{PREFIX}/outputs/from-aws-cli"),
        b"copied in by hand",
    );
    w.moto
        .request("DELETE", &format!("/{}/{}", w.bucket, index_key()), b"")
        .expect("server reachable");
    for args in [
        vec!["--json", "data", "list"],
        vec![
            "--json",
            "exec",
            "--",
            "sh",
            "-c",
            "echo mine > \"$SWAMP_DATASTORE_DIR/outputs/from-aws-cli\"",
        ],
    ] {
        let out = w.run_on(home.path(), &args);
        let msg = assert_json_error(&out, 1, "sync_failed");
        assert!(
            msg.contains("no index") && msg.contains("outputs/from-aws-cli"),
            "{args:?}: {msg}"
        );
    }
    assert_eq!(
        w.fetch(&format!("{PREFIX}/outputs/from-aws-cli"))
            .as_deref(),
        Some(&b"copied in by hand"[..])
    );
    assert!(w.fetch(&index_key()).is_none(), "no index written");
    // `datastore repair` rebuilds the index from the objects (hashing the one
    // another tool uploaded without swamp's recorded hash), and every
    // command works again.
    let v = w.json(home.path(), &["datastore", "repair"]);
    assert_eq!(v["repair"]["indexWas"], "missing", "{v}");
    assert_eq!(
        v["repair"]["added"],
        serde_json::json!(["outputs/from-aws-cli", "outputs/legit"]),
        "{v}"
    );
    assert_eq!(
        w.index()["files"]["outputs/from-aws-cli"]["sha256"],
        sha256_hex(b"copied in by hand")
    );
    let out = w.sh(
        home.path(),
        r#"cat "$SWAMP_DATASTORE_DIR/outputs/from-aws-cli""#,
    );
    assert_eq!(out, b"copied in by hand");
    // A corrupt index is one line naming repair, and repair rebuilds it.
    w.plant(&index_key(), b"{\"format\":1,\"files\":[1,2,3]}");
    let out = w.run_on(home.path(), &["--json", "data", "list"]);
    let msg = assert_json_error(&out, 1, "remote_index_invalid");
    assert!(msg.contains("swamp datastore repair"), "{msg}");
    let text = w.ok(home.path(), &["datastore", "repair"]);
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("the index was unreadable"), "{text}");
    w.ok(home.path(), &["data", "list"]);
}
