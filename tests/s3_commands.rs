//! Every command end to end on an S3 datastore, against a real local S3 server
//! (moto, or SeaweedFS with `SWAMP_TEST_S3=seaweedfs`): setup (both
//! directions), data put/get/list/versions/rm, status, sync, lock
//! status/release, lock timeouts, the SWAMP_DATASTORE override, and a cache
//! that can be thrown away.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use support::s3::*;
use support::*;

const BUCKET: &str = "team-bucket";

impl World {
    /// One moto with the bucket, one repo (not yet on S3).
    fn new() -> Self {
        World::create(Moto::start(), BUCKET)
    }
}

/// Local data a repo gets before it moves to S3: one item with two versions
/// and one output file.
fn seed_local(w: &World, home: &Path) {
    w.put_ok(home, "app/config", b"replicas: 1\n");
    w.put_ok(home, "app/config", b"replicas: 3\n");
    let outputs = w.repo.path().join(".swamp/outputs");
    std::fs::create_dir_all(&outputs).unwrap();
    std::fs::write(outputs.join("report.txt"), b"all good\n").unwrap();
}

fn planted_lock(ttl_ms: u64) -> Vec<u8> {
    serde_json::to_vec(&lock_record("ghost@elsewhere", ttl_ms, "ghost-token-1")).unwrap()
}

#[test]
fn setup_s3_migrates_existing_data_up() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    seed_local(&w, home.path());
    let local_files = snapshot(&w.repo.path().join(".swamp"));
    assert!(local_files.contains_key("outputs/report.txt"));
    let total_bytes: u64 = local_files.values().map(|v| v.len() as u64).sum();

    let v = w.setup(home.path());
    assert_eq!(v["type"], "s3");
    assert_eq!(v["migrated"], true);
    assert_eq!(v["to"], format!("s3:{BUCKET}/{PREFIX}"));
    assert!(
        v["from"].as_str().unwrap().starts_with("filesystem:"),
        "{v}"
    );
    let m = &v["migration"];
    assert_eq!(m["files"], local_files.len() as u64, "{v}");
    assert_eq!(m["bytes"], total_bytes, "{v}");
    assert_eq!(m["alreadyPresent"], 0, "{v}");
    let dirs: Vec<&str> = m["directories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    for d in ["data", "outputs"] {
        assert!(dirs.contains(&d), "{d} missing from {v}");
    }

    // Every local file is now an object under the prefix, plus the index.
    let keys = w.rel_keys();
    for rel in local_files.keys() {
        assert!(keys.contains(rel), "{rel} not in bucket: {keys:?}");
    }
    assert!(keys.contains(&".datastore-index.json".to_string()));
    let index = w.index();
    assert_eq!(index["format"], 1);
    for (rel, content) in &local_files {
        assert_eq!(index["files"][rel]["size"], content.len() as u64, "{rel}");
        assert_eq!(index["files"][rel]["sha256"], sha256_hex(content), "{rel}");
    }
    // The lock was released after the migration.
    assert!(!w.keys().iter().any(|k| k.ends_with(".datastore.lock")));

    // The config names the bucket; local data is gone.
    let cfg: serde_yaml::Value = serde_yaml::from_str(&w.config()).unwrap();
    assert_eq!(cfg["datastore"]["type"].as_str(), Some("s3"));
    assert_eq!(cfg["datastore"]["bucket"].as_str(), Some(BUCKET));
    assert_eq!(cfg["datastore"]["prefix"].as_str(), Some(PREFIX));
    assert_eq!(
        cfg["datastore"]["endpoint"].as_str(),
        Some(w.moto.endpoint().as_str())
    );
    assert!(cfg["repoId"].as_str().is_some(), "repoId kept");
    assert!(!w.repo.path().join(".swamp/data").exists());
    assert!(!w.repo.path().join(".swamp/outputs/report.txt").exists());

    // And the data reads back from S3 on another machine.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(
        w.ok(other.path(), &["data", "get", "app/config"]),
        b"replicas: 3\n"
    );
    assert_eq!(
        w.ok(
            other.path(),
            &["data", "get", "app/config", "--version", "1"]
        ),
        b"replicas: 1\n"
    );
}

#[test]
fn setup_s3_skip_migration_only_switches_the_config() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    seed_local(&w, home.path());
    let before = snapshot(&w.repo.path().join(".swamp"));
    let mut args = vec!["--json".to_string()];
    args.extend(w.setup_args());
    args.push("--skip-migration".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v: Value = serde_json::from_slice(&w.ok(home.path(), &args)).unwrap();
    assert_eq!(v["migrated"], false, "{v}");
    assert_eq!(v["migration"], Value::Null, "{v}");
    assert_eq!(v["type"], "s3");
    // Nothing moved: local files stay, the bucket holds nothing of ours.
    assert_eq!(snapshot(&w.repo.path().join(".swamp")), before);
    assert!(w.rel_keys().is_empty(), "{:?}", w.keys());
    assert!(w.config().contains("type: s3"), "{}", w.config());
    // The datastore in use is now the (empty) bucket.
    let got = w.run_on(home.path(), &["data", "get", "app/config"]);
    assert_eq!(got.status.code(), Some(1), "{}", stderr(&got));
    assert!(stderr(&got).contains("not found"), "{}", stderr(&got));
}

#[test]
fn setup_s3_with_a_missing_bucket_fails_clearly_and_changes_nothing() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    seed_local(&w, home.path());
    let config_before = w.config();
    let local_before = snapshot(&w.repo.path().join(".swamp"));
    let out = w.run_on(
        home.path(),
        &[
            "datastore",
            "setup",
            "s3",
            "--bucket",
            "no-such-bucket",
            "--endpoint-url",
            &w.moto.endpoint(),
        ],
    );
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(75));
    let err = stderr(&out);
    assert!(err.contains("no-such-bucket"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert_eq!(w.config(), config_before);
    assert_eq!(snapshot(&w.repo.path().join(".swamp")), local_before);
}

#[test]
fn setup_s3_with_an_invalid_bucket_name_is_a_usage_error() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    let config_before = w.config();
    for bad in ["Bad_Bucket", "ab", "-leading-hyphen", "192.168.1.1"] {
        let bucket_arg = format!("--bucket={bad}");
        let out = w.run_on(
            home.path(),
            &[
                "datastore",
                "setup",
                "s3",
                &bucket_arg,
                "--endpoint-url",
                &w.moto.endpoint(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid S3 bucket name"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    assert_eq!(w.config(), config_before);
}

#[test]
fn data_put_get_list_versions_rm_on_s3() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.setup(home.path());
    w.put_ok(home.path(), "app/config", b"v1\n");
    w.put_ok(home.path(), "app/config", b"version two\n");
    w.put_ok(home.path(), "db/schema", b"create table t;\n");
    let keys = w.rel_keys();
    for k in [
        "data/app/config/@versions/1.bin",
        "data/app/config/@versions/2.bin",
        "data/app/config/@versions/2.json",
        "data/db/schema/@versions/1.bin",
    ] {
        assert!(keys.contains(&k.to_string()), "{k} missing: {keys:?}");
    }

    // Read on a fresh machine: everything comes from the bucket.
    let b = tempfile::tempdir().unwrap();
    assert_eq!(
        w.ok(b.path(), &["data", "get", "app/config"]),
        b"version two\n"
    );
    assert_eq!(
        w.ok(b.path(), &["data", "get", "app/config", "--version", "1"]),
        b"v1\n"
    );
    let got = w.json(b.path(), &["data", "get", "db/schema"]);
    assert_eq!(got["content"], "create table t;\n");
    assert_eq!(got["version"], 1);
    assert_eq!(got["sha256"], sha256_hex(b"create table t;\n"));

    let list = w.json(b.path(), &["data", "list"]);
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["app/config", "db/schema"], "{list}");
    assert_eq!(items[0]["latestVersion"], 2);
    assert_eq!(items[0]["size"], 12);

    let versions = w.json(b.path(), &["data", "versions", "app/config"]);
    let vs = versions["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 2, "{versions}");
    assert_eq!(vs[0]["version"], 1);
    assert_eq!(vs[0]["sha256"], sha256_hex(b"v1\n"));
    assert_eq!(vs[1]["version"], 2);
    assert_eq!(vs[1]["size"], 12);

    let missing = w.run_on(b.path(), &["data", "get", "app/config", "--version", "9"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no version 9"),
        "{}",
        stderr(&missing)
    );

    // rm on B removes the objects from the bucket and the item everywhere.
    let rm = w.json(b.path(), &["data", "rm", "app/config"]);
    assert_eq!(rm["removedVersions"], 2, "{rm}");
    let keys = w.rel_keys();
    assert!(
        !keys.iter().any(|k| k.starts_with("data/app/config/")),
        "{keys:?}"
    );
    assert!(keys.contains(&"data/db/schema/@versions/1.bin".to_string()));
    let index = w.index();
    assert!(
        !index["files"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("data/app/config/")),
        "{index}"
    );
    let gone = w.run_on(home.path(), &["data", "get", "app/config"]);
    assert_eq!(gone.status.code(), Some(1), "{}", stderr(&gone));
    assert!(stderr(&gone).contains("not found"), "{}", stderr(&gone));
    let list = w.json(home.path(), &["data", "list"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    // Readers released the lock too.
    assert!(!w.keys().iter().any(|k| k.ends_with(".datastore.lock")));
}

#[test]
fn datastore_status_json_on_s3() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.setup(home.path());
    let v = w.json(home.path(), &["datastore", "status"]);
    assert_eq!(v["type"], "s3", "{v}");
    assert_eq!(v["source"], "repoConfig", "{v}");
    assert_eq!(v["datastore"], format!("s3:{BUCKET}/{PREFIX}"));
    assert_eq!(v["s3"]["bucket"], BUCKET);
    assert_eq!(v["s3"]["prefix"], PREFIX);
    assert_eq!(v["s3"]["endpoint"], w.moto.endpoint());
    let cfg: serde_yaml::Value = serde_yaml::from_str(&w.config()).unwrap();
    let repo_id = cfg["repoId"].as_str().unwrap();
    assert_eq!(v["repoId"], repo_id);
    assert_eq!(
        PathBuf::from(v["cachePath"].as_str().unwrap()),
        home.path().join("repos").join(repo_id)
    );
    assert_eq!(v["health"]["healthy"], true, "{v}");
    let latency = v["health"]["latencyMs"].as_f64().expect("latencyMs number");
    assert!((0.0..60_000.0).contains(&latency), "{v}");
    assert_eq!(v["lock"], Value::Null);

    // A held lock shows up in status.
    w.plant(&format!("{PREFIX}/.datastore.lock"), &planted_lock(600_000));
    let v = w.json(home.path(), &["datastore", "status"]);
    assert_eq!(v["lock"]["info"]["holder"], "ghost@elsewhere", "{v}");

    // A stopped server makes status say unhealthy, not hang or crash.
    w.moto.freeze();
    let out = w
        .on(home.path())
        .env("SWAMP_S3_TIMEOUT_SECS", "1")
        .args(["--json", "datastore", "status"])
        .output()
        .unwrap();
    w.moto.resume();
    assert_eq!(
        out.status.code(),
        Some(1),
        "unhealthy exits 1: {}",
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["health"]["healthy"], false, "{v}");
}

#[test]
fn datastore_sync_pull_push_and_json_shapes() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    seed_local(&w, a.path());
    let migrated = w.setup(a.path())["migration"]["files"].as_u64().unwrap();

    // A fresh machine pulls everything.
    let b = tempfile::tempdir().unwrap();
    let v = w.json(b.path(), &["datastore", "sync", "--pull"]);
    assert_eq!(v["remote"], format!("s3:{BUCKET}/{PREFIX}"), "{v}");
    assert_eq!(v["direction"], "pull");
    assert_eq!(v["pulled"]["downloaded"], migrated, "{v}");
    assert!(v["pulled"]["downloadedBytes"].as_u64().unwrap() > 0);
    assert_eq!(v["pulled"]["deletedLocal"], 0);
    for k in ["uploaded", "uploadedBytes", "deletedRemote", "downloaded"] {
        assert_eq!(v["pushed"][k], 0, "pushed.{k}: {v}");
    }
    let cache_b = w.cache(b.path());
    assert_eq!(
        std::fs::read(cache_b.join("outputs/report.txt")).unwrap(),
        b"all good\n"
    );

    // A file written into B's cache goes up with --push.
    std::fs::write(cache_b.join("outputs/new.txt"), b"fresh").unwrap();
    let v = w.json(b.path(), &["datastore", "sync", "--push"]);
    assert_eq!(v["direction"], "push");
    assert_eq!(v["pushed"]["uploaded"], 1, "{v}");
    assert_eq!(v["pushed"]["uploadedBytes"], 5, "{v}");
    assert_eq!(v["pushed"]["deletedRemote"], 0);
    assert_eq!(v["pulled"]["downloaded"], 0);
    assert!(w.rel_keys().contains(&"outputs/new.txt".to_string()));
    assert_eq!(
        w.fetch(&format!("{PREFIX}/outputs/new.txt")).as_deref(),
        Some(&b"fresh"[..])
    );

    // A deletion in B's cache goes up as a remote delete.
    std::fs::remove_file(cache_b.join("outputs/report.txt")).unwrap();
    let v = w.json(b.path(), &["datastore", "sync"]);
    assert_eq!(v["direction"], "both");
    assert_eq!(v["pushed"]["deletedRemote"], 1, "{v}");
    assert!(!w.rel_keys().contains(&"outputs/report.txt".to_string()));

    // A (which has a cache from nothing yet) syncs both ways and sees both changes.
    let v = w.json(a.path(), &["datastore", "sync"]);
    assert_eq!(v["direction"], "both");
    let cache_a = w.cache(a.path());
    assert_eq!(
        std::fs::read(cache_a.join("outputs/new.txt")).unwrap(),
        b"fresh"
    );
    assert!(!cache_a.join("outputs/report.txt").exists());
    assert_eq!(v["pushed"]["uploaded"], 0, "{v}");

    // --pull and --push together is a usage error.
    let out = w.run_on(a.path(), &["datastore", "sync", "--pull", "--push"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Text output names the remote.
    let text = String::from_utf8(w.ok(a.path(), &["datastore", "sync"])).unwrap();
    assert!(text.contains(&format!("s3:{BUCKET}/{PREFIX}")), "{text}");
}

#[test]
fn an_unchanged_datastore_syncs_zero_files() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    seed_local(&w, home.path());
    w.setup(home.path());
    let first = w.json(home.path(), &["datastore", "sync"]);
    assert!(
        first["pulled"]["downloaded"].as_u64().unwrap() > 0,
        "{first}"
    );
    let keys_before = w.keys();
    let second = w.json(home.path(), &["datastore", "sync"]);
    for side in ["pulled", "pushed"] {
        for (k, n) in second[side].as_object().unwrap() {
            if k == "conflicts" {
                assert_eq!(n, &serde_json::json!([]), "{second}");
            } else {
                assert_eq!(n, 0, "{side}.{k} in second sync: {second}");
            }
        }
    }
    assert_eq!(w.keys(), keys_before);
}

#[test]
fn lock_status_and_force_release_of_the_s3_lock_object() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.setup(home.path());
    let lock_key = format!("{PREFIX}/.datastore.lock");

    let v = w.json(home.path(), &["datastore", "lock", "status"]);
    assert_eq!(v["held"], false, "{v}");
    assert_eq!(v["lock"], Value::Null);
    assert_eq!(v["location"], format!("s3://{BUCKET}/{lock_key}"));

    w.plant(&lock_key, &planted_lock(600_000));
    let v = w.json(home.path(), &["datastore", "lock", "status"]);
    assert_eq!(v["held"], true, "{v}");
    let info = &v["lock"]["info"];
    assert_eq!(info["holder"], "ghost@elsewhere");
    assert_eq!(info["hostname"], "elsewhere");
    assert_eq!(info["pid"], 4242);
    assert_eq!(info["token"], "ghost-token-1");
    assert_eq!(info["ttlMs"], 600_000);
    assert_eq!(v["lock"]["stale"], false);
    assert!(v["lock"]["expiresInMs"].as_u64().unwrap() > 500_000, "{v}");
    let text = String::from_utf8(w.ok(home.path(), &["datastore", "lock", "status"])).unwrap();
    assert!(text.contains("ghost@elsewhere"), "{text}");

    // Without --force: refused, usage exit, lock untouched.
    let out = w.run_on(home.path(), &["datastore", "lock", "release"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(w.keys().contains(&lock_key));

    // With --force: names the holder, the object is gone.
    let out = w.run_on(home.path(), &["datastore", "lock", "release", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ghost@elsewhere"), "{text}");
    assert!(text.contains("4242"), "{text}");
    assert!(!w.keys().contains(&lock_key), "{:?}", w.keys());
    let v = w.json(home.path(), &["datastore", "lock", "status"]);
    assert_eq!(v["held"], false);

    // JSON release of a planted lock, then of nothing.
    w.plant(&lock_key, &planted_lock(600_000));
    let v = w.json(home.path(), &["datastore", "lock", "release", "--force"]);
    assert_eq!(v["released"], true, "{v}");
    assert_eq!(v["lock"]["info"]["holder"], "ghost@elsewhere");
    let v = w.json(home.path(), &["datastore", "lock", "release", "--force"]);
    assert_eq!(v["released"], false, "{v}");
    // With no lock held, a plain release is a no-op success.
    w.ok(home.path(), &["datastore", "lock", "release"]);
}

#[test]
fn a_fresh_planted_lock_makes_writers_time_out_with_75_and_readers_read_on() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.setup(home.path());
    w.put_ok(home.path(), "app/config", b"before\n");
    let lock_key = format!("{PREFIX}/.datastore.lock");
    w.plant(&lock_key, &planted_lock(600_000));

    let mut cmd = w.on(home.path());
    cmd.args([
        "--lock-timeout",
        "1",
        "data",
        "put",
        "app/config",
        "--file",
        "-",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"after\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("timed out"), "{err}");
    assert!(err.contains("ghost@elsewhere"), "{err}");

    // Readers take no lock: they read the last committed state meanwhile.
    let out = w.run_on(
        home.path(),
        &["--lock-timeout", "1", "data", "get", "app/config"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"before\n");
    let out = w.run_on(
        home.path(),
        &["--json", "--lock-timeout", "0.5", "exec", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(75));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "lock_timeout", "{v}");

    // The planted lock is untouched and the put did not happen.
    assert!(w.keys().contains(&lock_key));
    w.ok(home.path(), &["datastore", "lock", "release", "--force"]);
    assert_eq!(
        w.ok(home.path(), &["data", "get", "app/config"]),
        b"before\n"
    );
    assert!(!w
        .rel_keys()
        .contains(&"data/app/config/@versions/2.bin".to_string()));
}

#[test]
fn swamp_datastore_env_selects_s3_without_any_config() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    assert!(!w.config().contains("datastore"), "{}", w.config());
    let env_cmd = |home: &Path| {
        let mut cmd = w.on(home);
        cmd.env("SWAMP_DATASTORE", format!("s3:{BUCKET}/envprefix"))
            .env("AWS_ENDPOINT_URL", w.moto.endpoint());
        cmd
    };
    let out = env_cmd(home.path())
        .args(["--json", "datastore", "status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "env", "{v}");
    assert_eq!(v["type"], "s3");
    assert_eq!(v["s3"]["bucket"], BUCKET);
    assert_eq!(v["s3"]["prefix"], "envprefix");
    assert_eq!(v["health"]["healthy"], true, "{v}");

    let mut put = env_cmd(home.path());
    put.args(["data", "put", "env/item", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = put.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from env\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = w.keys();
    assert!(
        keys.contains(&"envprefix/data/env/item/@versions/1.bin".to_string()),
        "{keys:?}"
    );
    assert!(keys.contains(&"envprefix/.datastore-index.json".to_string()));
    // Nothing was written to the repo's local datastore or config.
    assert!(!w.repo.path().join(".swamp/data").exists());
    assert!(!w.config().contains("datastore"));

    // Another machine with the same override reads it back.
    let other = tempfile::tempdir().unwrap();
    let out = env_cmd(other.path())
        .args(["data", "get", "env/item"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"from env\n");
}

#[test]
fn setup_filesystem_from_s3_migrates_back_down() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    seed_local(&w, home.path());
    w.setup(home.path());
    // Changes made while on S3 come down too.
    w.put_ok(home.path(), "later/item", b"written on s3\n");
    let other = tempfile::tempdir().unwrap();
    let remote = w.rel_keys();
    let index = w.index();
    let files: Vec<String> = index["files"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(files.len() >= 5, "{index}");

    let target = tempfile::tempdir().unwrap();
    let target_path = target.path().join("shared-datastore");
    let v = w.json(
        other.path(),
        &[
            "datastore",
            "setup",
            "filesystem",
            "--path",
            target_path.to_str().unwrap(),
        ],
    );
    assert_eq!(v["type"], "filesystem", "{v}");
    assert_eq!(v["from"], format!("s3:{BUCKET}/{PREFIX}"));
    assert_eq!(v["migrated"], true);
    assert_eq!(v["migration"]["files"], files.len() as u64, "{v}");

    // Every file is in the target with the indexed content.
    for rel in &files {
        let content = std::fs::read(target_path.join(rel))
            .unwrap_or_else(|e| panic!("{rel} missing from target: {e}"));
        assert_eq!(index["files"][rel]["sha256"], sha256_hex(&content), "{rel}");
    }
    // Objects and index are gone from the bucket (lock released too).
    let left = w.rel_keys();
    assert!(left.is_empty(), "left in bucket: {left:?} (was {remote:?})");
    // The config names the directory.
    let cfg: serde_yaml::Value = serde_yaml::from_str(&w.config()).unwrap();
    assert_eq!(cfg["datastore"]["type"].as_str(), Some("filesystem"));
    assert_eq!(
        cfg["datastore"]["path"].as_str(),
        Some(target_path.to_str().unwrap())
    );
    assert!(cfg["datastore"]["bucket"].is_null(), "{}", w.config());
    // And commands use it (no S3 env needed any more).
    let out = run(swamp(w.repo.path()).args(["data", "get", "later/item"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"written on s3\n");
    let out = run(swamp(w.repo.path()).args(["data", "get", "app/config", "--version", "1"]));
    assert_eq!(out.stdout, b"replicas: 1\n");
}

#[test]
fn deleting_the_whole_cache_loses_nothing() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    seed_local(&w, home.path());
    w.setup(home.path());
    w.put_ok(home.path(), "app/config", b"replicas: 5\n");
    // An item writer fetches only its item: a sync brings in the rest.
    w.ok(home.path(), &["datastore", "sync"]);
    let cache = w.cache(home.path());
    let before = snapshot(&cache);
    assert!(
        before.contains_key("outputs/report.txt"),
        "{:?}",
        before.keys()
    );
    let keys_before = w.keys();

    std::fs::remove_dir_all(&cache).unwrap();
    assert!(!cache.exists());

    // A read fetches what it reads and removes nothing remotely; the next
    // full sync repopulates the whole cache.
    assert_eq!(
        w.ok(home.path(), &["data", "get", "app/config"]),
        b"replicas: 5\n"
    );
    assert_eq!(w.keys(), keys_before);
    w.ok(home.path(), &["datastore", "sync"]);
    assert_eq!(w.keys(), keys_before);
    let after = snapshot(&cache);
    let strip = |m: &BTreeMap<String, Vec<u8>>| {
        m.iter()
            .filter(|(k, _)| !is_machine_note(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(strip(&after), strip(&before));

    // A write after the rebuild lands on top of everything that was there.
    w.put_ok(home.path(), "app/config", b"replicas: 6\n");
    let other = tempfile::tempdir().unwrap();
    let versions = w.json(other.path(), &["data", "versions", "app/config"]);
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        4,
        "{versions}"
    );
    let out = w.sh(
        other.path(),
        r#"cat "$SWAMP_DATASTORE_DIR/outputs/report.txt""#,
    );
    assert_eq!(out, b"all good\n");
}

#[test]
fn exec_on_s3_runs_in_the_cache_passes_the_exit_code_and_pushes_even_on_failure() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.setup(home.path());
    let cache = w.cache(home.path());
    let out = w.sh(home.path(), r#"printf %s "$SWAMP_DATASTORE_DIR""#);
    assert_eq!(PathBuf::from(String::from_utf8(out).unwrap()), cache);

    let out = w.run_sh(home.path(), r#"mkdir -p "$SWAMP_DATASTORE_DIR/logs" && printf partial > "$SWAMP_DATASTORE_DIR/logs/run.log"; exit 3"#);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // The failed command's writes are real files: they were pushed.
    assert!(w.rel_keys().contains(&"logs/run.log".to_string()));
    assert_eq!(
        w.fetch(&format!("{PREFIX}/logs/run.log")).as_deref(),
        Some(&b"partial"[..])
    );
    let out = w.run_on(home.path(), &["exec", "--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(!w.keys().iter().any(|k| k.ends_with(".datastore.lock")));
}

#[test]
fn a_stale_planted_lock_is_taken_over() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.setup(home.path());
    let lock_key = format!("{PREFIX}/.datastore.lock");
    w.plant(&lock_key, &planted_lock(100));
    let start = std::time::Instant::now();
    loop {
        let v = w.json(home.path(), &["datastore", "lock", "status"]);
        if v["lock"]["stale"] == true {
            assert_eq!(v["lock"]["expiresInMs"], 0, "{v}");
            break;
        }
        assert!(start.elapsed() < S3_DEADLINE, "never stale: {v}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = String::from_utf8(w.ok(home.path(), &["datastore", "lock", "status"])).unwrap();
    assert!(text.contains("STALE"), "{text}");
    let out = w.put(home.path(), "after/stale", b"ok\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!w.keys().contains(&lock_key), "the taker released the lock");
    assert_eq!(w.ok(home.path(), &["data", "get", "after/stale"]), b"ok\n");
}

#[test]
fn an_env_override_naming_the_configured_bucket_keeps_its_endpoint() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    w.setup(home.path());
    w.put_ok(home.path(), "main/item", b"main\n");
    // Same bucket, another prefix; no AWS_ENDPOINT_URL: the endpoint comes
    // from .swamp.yaml.
    let mut cmd = w.on(home.path());
    cmd.env("SWAMP_DATASTORE", format!("s3:{BUCKET}/other"))
        .args(["--json", "datastore", "status"]);
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "env");
    assert_eq!(v["s3"]["prefix"], "other");
    assert_eq!(v["s3"]["endpoint"], w.moto.endpoint());
    assert_eq!(v["health"]["healthy"], true, "{v}");
    let mut cmd = w.on(home.path());
    cmd.env("SWAMP_DATASTORE", format!("s3:{BUCKET}/other"))
        .args(["data", "get", "main/item"]);
    let out = run(&mut cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "other prefix is empty: {}",
        stderr(&out)
    );
    // The configured prefix is untouched and still works without the override.
    assert_eq!(w.ok(home.path(), &["data", "get", "main/item"]), b"main\n");
}

#[test]
fn setup_s3_to_another_prefix_moves_the_data_between_prefixes() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    seed_local(&w, home.path());
    w.setup(home.path());
    let old: Vec<String> = w.rel_keys();
    let v = w.json(
        home.path(),
        &[
            "datastore",
            "setup",
            "s3",
            "--bucket",
            BUCKET,
            "--prefix",
            "moved",
            "--endpoint-url",
            &w.moto.endpoint(),
        ],
    );
    assert_eq!(v["from"], format!("s3:{BUCKET}/{PREFIX}"), "{v}");
    assert_eq!(v["to"], format!("s3:{BUCKET}/moved"));
    assert_eq!(v["migrated"], true);
    let keys = w.keys();
    assert!(
        !keys.iter().any(|k| k.starts_with(&format!("{PREFIX}/"))),
        "old prefix not cleaned: {keys:?}"
    );
    for rel in &old {
        assert!(keys.contains(&format!("moved/{rel}")), "{rel}: {keys:?}");
    }
    assert!(w.config().contains("prefix: moved"), "{}", w.config());
    let other = tempfile::tempdir().unwrap();
    assert_eq!(
        w.ok(other.path(), &["data", "get", "app/config"]),
        b"replicas: 3\n"
    );
    assert_eq!(
        w.ok(
            home.path(),
            &["data", "get", "app/config", "--version", "1"]
        ),
        b"replicas: 1\n"
    );
    // Setting up the datastore it already is is refused.
    let out = w.run_on(
        home.path(),
        &[
            "datastore",
            "setup",
            "s3",
            "--bucket",
            BUCKET,
            "--prefix",
            "moved",
            "--endpoint-url",
            &w.moto.endpoint(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to do"), "{}", stderr(&out));
}

#[test]
fn setup_s3_into_a_prefix_that_holds_data_reuses_identical_files_and_stops_on_conflicts() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    let write_local = |repo: &Path, name: &str, content: &[u8]| {
        let outputs = repo.join(".swamp/outputs");
        std::fs::create_dir_all(&outputs).unwrap();
        std::fs::write(outputs.join(name), content).unwrap();
    };
    write_local(w.repo.path(), "shared", b"same");
    w.setup(home.path());

    // A second clone with an identical file and a new one: merged.
    let second = clone_repo(w.repo.path());
    write_local(second.path(), "shared", b"same");
    write_local(second.path(), "extra", b"extra");
    let mut cmd = swamp(second.path());
    s3_env(&mut cmd, &w.moto, home.path());
    let mut args = vec!["--json".to_string()];
    args.extend(w.setup_args());
    let out = run(cmd.args(&args));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["migration"]["files"], 2, "{v}");
    assert_eq!(v["migration"]["alreadyPresent"], 1, "{v}");
    let index = w.index();
    assert_eq!(
        index["files"]["outputs/shared"]["sha256"],
        sha256_hex(b"same")
    );
    assert_eq!(
        index["files"]["outputs/extra"]["sha256"],
        sha256_hex(b"extra")
    );

    // A third clone with a different file at the same path: nothing changes,
    // neither without --merge (the prefix holds files it lacks) nor with it
    // (a conflict).
    let third = clone_repo(w.repo.path());
    write_local(third.path(), "shared", b"DIFFERENT");
    let config_before = std::fs::read_to_string(third.path().join(".swamp.yaml")).unwrap();
    let mut cmd = swamp(third.path());
    s3_env(&mut cmd, &w.moto, home.path());
    let out = run(cmd.args(w.setup_args()));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds another datastore"),
        "{}",
        stderr(&out)
    );
    let mut cmd = swamp(third.path());
    s3_env(&mut cmd, &w.moto, home.path());
    let out = run(cmd.args(w.setup_args()).arg("--merge"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("migration stopped before changing anything"),
        "{err}"
    );
    assert!(err.contains("outputs/shared"), "{err}");
    assert_eq!(
        std::fs::read_to_string(third.path().join(".swamp.yaml")).unwrap(),
        config_before
    );
    assert_eq!(
        std::fs::read(third.path().join(".swamp/outputs/shared")).unwrap(),
        b"DIFFERENT"
    );
    assert_eq!(
        w.fetch(&format!("{PREFIX}/outputs/shared")).as_deref(),
        Some(&b"same"[..])
    );
    assert_eq!(w.index(), index);
}

#[test]
fn setup_s3_with_an_unsafe_prefix_is_a_usage_error() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    for bad in ["a/../b", "x//y", ".."] {
        let out = w.run_on(
            home.path(),
            &[
                "datastore",
                "setup",
                "s3",
                "--bucket",
                BUCKET,
                "--prefix",
                bad,
                "--endpoint-url",
                &w.moto.endpoint(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid --prefix"),
            "{}",
            stderr(&out)
        );
    }
    assert!(w.keys().is_empty());
}

/// Every index entry names an object whose content has the indexed hash.
fn assert_index_matches_objects(w: &World) {
    let index = w.index();
    for (rel, entry) in index["files"].as_object().unwrap() {
        let key = format!("{PREFIX}/{rel}");
        let body = w
            .fetch(&key)
            .unwrap_or_else(|| panic!("index lists {rel} but the bucket has no {key}"));
        assert_eq!(
            entry["sha256"],
            sha256_hex(&body),
            "object {key} does not match the index (content {:?})",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn sync_push_from_a_stale_machine_never_corrupts_the_bucket() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    w.setup(a.path());
    w.sh(a.path(), r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && printf one > "$SWAMP_DATASTORE_DIR/outputs/f" && printf keep > "$SWAMP_DATASTORE_DIR/outputs/g""#);
    // B changes both files under the lock, as any command does.
    w.sh(b.path(), r#"printf two > "$SWAMP_DATASTORE_DIR/outputs/f" && printf kept-by-b > "$SWAMP_DATASTORE_DIR/outputs/g""#);
    assert_index_matches_objects(&w);
    // A has local changes it never pushed (e.g. a command whose push failed):
    // a rewrite of f and a deletion of g.
    let cache_a = w.cache(a.path());
    std::fs::write(cache_a.join("outputs/f"), b"three").unwrap();
    std::fs::remove_file(cache_a.join("outputs/g")).unwrap();

    // A pushes without pulling. Refusing or merging are both fine; clobbering
    // B's objects while the index still describes them is not.
    let _ = w.run_on(a.path(), &["datastore", "sync", "--push"]);
    assert_index_matches_objects(&w);
    let c = tempfile::tempdir().unwrap();
    let out = w.run_on(c.path(), &["data", "list"]);
    assert!(out.status.success(), "fresh machine: {}", stderr(&out));
}

/// A machine whose settings leave out part of an S3 datastore (here
/// `exclude: ["logs/"]`, added after another machine pushed logs) refuses to
/// migrate it, rather than moving only its own part and reporting success.
#[test]
fn setup_from_a_machine_with_narrower_settings_refuses_and_changes_nothing() {
    let w = World::new();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    w.setup(a.path());
    w.sh(
        a.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/logs" && echo line > "$SWAMP_DATASTORE_DIR/logs/run.log""#,
    );
    w.put_ok(a.path(), "app/config", b"kept");
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&w.config()).unwrap();
    cfg["datastore"]["exclude"] = serde_yaml::from_str("[\"logs/\"]").unwrap();
    std::fs::write(
        w.repo.path().join(".swamp.yaml"),
        serde_yaml::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let before = w.config();
    let keys = w.keys();
    let target = tempfile::tempdir().unwrap();
    let path = target.path().join("moved");
    let out = w.run_on(
        b.path(),
        &[
            "--json",
            "datastore",
            "setup",
            "filesystem",
            "--path",
            path.to_str().unwrap(),
        ],
    );
    let msg = assert_json_error(&out, 1, "migration_failed");
    assert!(
        msg.contains("leave out 1 files") && msg.contains("logs/run.log"),
        "{msg}"
    );
    assert_eq!(w.config(), before);
    assert_eq!(w.keys(), keys);
    assert!(!path.join("data").exists(), "nothing copied");
}

#[test]
fn status_reports_the_cache_its_last_syncs_unpushed_changes_and_every_lock() {
    let w = World::new();
    let home = tempfile::tempdir().unwrap();
    let fresh = w.json(home.path(), &["datastore", "status"]);
    assert_eq!(fresh["lastPull"], Value::Null, "{fresh}");
    w.setup(home.path());
    w.put_ok(home.path(), "item", b"v1");
    w.sh(
        home.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && echo a > "$SWAMP_DATASTORE_DIR/outputs/a""#,
    );
    let v = w.json(home.path(), &["datastore", "status"]);
    assert!(
        v["lastPull"].is_string() && v["lastPush"].is_string(),
        "{v}"
    );
    assert!(v["cache"]["files"].as_u64().unwrap() >= 3, "{v}");
    assert!(v["cache"]["bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["cache"]["path"], v["cachePath"]);
    assert_eq!(
        v["pending"],
        serde_json::json!({"changed": 0, "deleted": 0, "unsyncable": 0})
    );
    // Changed behind swamp's back: one new file, one agreed file gone.
    let cache = w.cache(home.path());
    std::fs::write(cache.join("outputs/new"), "n").unwrap();
    std::fs::remove_file(cache.join("outputs/a")).unwrap();
    w.plant_scoped("bob@ci-3", "bob", &["data/busy/@versions"]);
    let v = w.json(home.path(), &["datastore", "status"]);
    assert_eq!(v["pending"]["changed"], 1, "{v}");
    assert_eq!(v["pending"]["deleted"], 1, "{v}");
    let scoped = v["scoped"].as_array().expect("scoped");
    assert_eq!(scoped.len(), 1, "{v}");
    assert_eq!(scoped[0]["info"]["holder"], "bob@ci-3", "{v}");
    let text = stdout_of(&w.run_on(home.path(), &["datastore", "status"]));
    for line in [
        "Last pull:",
        "Last push:",
        "Unpushed:    1 changed, 1 deleted",
        "Scoped lock: held by bob@ci-3 (pid 4242) on data/busy/@versions",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // Without bob's lock the next push takes them, and nothing is left unpushed.
    w.ok(
        home.path(),
        &[
            "datastore",
            "lock",
            "release",
            "--force",
            "--scope",
            "data/busy",
        ],
    );
    w.ok(home.path(), &["datastore", "sync"]);
    let v = w.json(home.path(), &["datastore", "status"]);
    assert_eq!(
        v["pending"],
        serde_json::json!({"changed": 0, "deleted": 0, "unsyncable": 0})
    );
}
