//! Black-box tests of `datastore status`, `datastore lock status|release`, lock
//! contention as seen by writers, and `datastore setup filesystem` migrations.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use support::*;

const DIRECTORIES: [&str; 12] = [
    "data",
    "outputs",
    "workflow-runs",
    "secrets",
    "bundles",
    "vault-bundles",
    "audit",
    "telemetry",
    "logs",
    "files",
    "definitions-evaluated",
    "workflows-evaluated",
];

const HOLDER: &str = "alice@far-away-host";

fn lock_status_json(repo: &Path) -> Value {
    let out = swamp_cli(repo)
        .args(["--json", "datastore", "lock", "status"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    json_of(&out)
}

fn status_json(repo: &Path) -> Value {
    let out = swamp_cli(repo)
        .args(["--json", "datastore", "status"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    json_of(&out)
}

/// Runs `sh -c script` through `swamp exec` in `repo`.
fn exec_sh(repo: &Path, script: &str) {
    let out = swamp_cli(repo)
        .args(["exec", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "exec failed: {}", stderr(&out));
}

/// A repo with two items (three versions) and an exec-written output file.
fn populated_repo() -> tempfile::TempDir {
    let repo = init_repo();
    put(repo.path(), "app/config", b"config v1");
    put(repo.path(), "app/config", b"config v2, longer");
    put(repo.path(), "db/dump", b"\x00\x01binary\xff");
    exec_sh(
        repo.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs/run1" && printf 'result' > "$SWAMP_DATASTORE_DIR/outputs/run1/result.txt""#,
    );
    repo
}

fn setup_fs(repo: &Path, target: &Path, extra: &[&str]) -> std::process::Output {
    swamp_cli(repo)
        .args(["--json", "datastore", "setup", "filesystem", "--path"])
        .arg(target)
        .args(extra)
        .output()
        .unwrap()
}

fn config_yaml(repo: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&read_config(repo)).unwrap()
}

// ---------------------------------------------------------------- status

#[test]
fn status_text_default() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["datastore", "status"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    let text = stdout_of(&out);
    let field = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} line in {text}"))
            .trim()
            .to_string()
    };
    assert_eq!(
        field("Datastore"),
        format!("filesystem:{}", local_dir(repo.path()).display())
    );
    assert_eq!(field("Type"), "filesystem");
    assert_eq!(field("Source"), "default");
    assert!(field("Health").starts_with("healthy"), "{text}");
    assert_eq!(field("Directories"), DIRECTORIES.join(", "));
    assert_eq!(field("Lock"), "no lock held");
    assert!(!text.contains("Exclude:"), "{text}");
}

#[test]
fn status_json_shape() {
    let repo = init_repo();
    let doc = status_json(repo.path());
    let keys: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "type",
        "datastore",
        "source",
        "repoId",
        "path",
        "health",
        "directories",
        "exclude",
        "lock",
        "scoped",
    ];
    expected.sort_unstable();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "{doc}");
    assert_eq!(doc["type"], "filesystem");
    let local = local_dir(repo.path());
    assert_eq!(
        doc["datastore"],
        format!("filesystem:{}", local.display()).as_str()
    );
    assert_eq!(doc["path"], local.to_str().unwrap());
    assert_eq!(doc["source"], "default");
    assert_eq!(doc["repoId"], repo_id(repo.path()).as_str());
    assert_eq!(doc["health"]["healthy"], true);
    assert!(doc["health"]["latencyMs"].as_f64().unwrap() >= 0.0);
    assert!(doc["health"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    let dirs: Vec<&str> = doc["directories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(dirs, DIRECTORIES);
    assert_eq!(doc["exclude"], serde_json::json!([]));
    assert!(doc["lock"].is_null(), "{doc}");
    // status never leaves a lock or probe files behind
    assert!(files_under(&local).is_empty(), "{:?}", files_under(&local));
}

#[test]
fn status_reports_configured_directories_and_exclude() {
    let repo = init_repo();
    append_config(
        repo.path(),
        "datastore:\n  directories: [data, logs]\n  exclude: [\"logs/debug/\", \"*.tmp\"]\n",
    );
    let doc = status_json(repo.path());
    assert_eq!(doc["directories"], serde_json::json!(["data", "logs"]));
    assert_eq!(doc["exclude"], serde_json::json!(["logs/debug/", "*.tmp"]));
    let out = swamp_cli(repo.path())
        .args(["datastore", "status"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(text.contains("Directories: data, logs"), "{text}");
    assert!(text.contains("Exclude:     logs/debug/, *.tmp"), "{text}");
}

#[test]
fn status_of_missing_datastore_is_unhealthy_and_creates_nothing() {
    let repo = init_repo();
    let base = tempfile::tempdir().unwrap();
    let missing = base.path().join("missing");
    let out = swamp_cli(repo.path())
        .arg("--datastore")
        .arg(format!("filesystem:{}", missing.display()))
        .args(["--json", "datastore", "status"])
        .output()
        .unwrap();
    // Unhealthy: the report, and exit 1.
    assert_eq!(code_of(&out), 1, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["health"]["healthy"], false);
    assert!(doc["health"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot access"));
    assert_eq!(doc["source"], "flag");
    assert!(!missing.exists(), "status must not create the datastore");
}

#[test]
fn status_of_file_datastore_is_unhealthy() {
    let repo = init_repo();
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("a-file");
    fs::write(&file, b"not a dir").unwrap();
    let out = swamp_cli(repo.path())
        .arg("--datastore")
        .arg(format!("filesystem:{}", file.display()))
        .args(["--json", "datastore", "status"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 1, "{}", stdout_of(&out));
    let doc = json_of(&out);
    assert_eq!(doc["health"]["healthy"], false);
    assert!(doc["health"]["message"]
        .as_str()
        .unwrap()
        .contains("not a directory"));
}

#[test]
fn status_shows_a_held_lock_without_taking_it() {
    let repo = init_repo();
    let lock = plant_lock(&local_dir(repo.path()), HOLDER, 600_000);
    let before = fs::read(&lock).unwrap();
    let doc = status_json(repo.path());
    assert_eq!(doc["lock"]["info"]["holder"], HOLDER);
    assert_eq!(doc["lock"]["stale"], false);
    let out = swamp_cli(repo.path())
        .args(["datastore", "status"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    let lock_line = text.lines().find(|l| l.starts_with("Lock:")).unwrap();
    assert!(lock_line.contains(HOLDER), "{text}");
    assert_eq!(fs::read(&lock).unwrap(), before, "lock untouched");
}

// ---------------------------------------------------------------- lock status

#[test]
fn lock_status_without_lock() {
    let repo = init_repo();
    let location = lock_file(&local_dir(repo.path()));
    let out = swamp_cli(repo.path())
        .args(["datastore", "lock", "status"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let text = stdout_of(&out);
    assert!(text.contains("no lock held"), "{text}");
    assert!(text.contains(location.to_str().unwrap()), "{text}");
    let doc = lock_status_json(repo.path());
    assert_eq!(doc["held"], false);
    assert!(doc["lock"].is_null());
    assert_eq!(doc["location"], location.to_str().unwrap());
}

#[test]
fn lock_status_with_planted_lock() {
    let repo = init_repo();
    plant_lock(&local_dir(repo.path()), HOLDER, 600_000);
    let out = swamp_cli(repo.path())
        .args(["datastore", "lock", "status"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let text = stdout_of(&out);
    assert!(text.contains("held by"), "{text}");
    assert!(text.contains(HOLDER) && text.contains("4242"), "{text}");
    assert!(!text.contains("STALE"), "{text}");

    let doc = lock_status_json(repo.path());
    assert_eq!(doc["held"], true);
    let lock = &doc["lock"];
    assert_eq!(lock["info"]["holder"], HOLDER);
    assert_eq!(lock["info"]["pid"], 4242);
    assert_eq!(lock["info"]["ttlMs"], 600_000);
    assert_eq!(lock["stale"], false);
    assert!(lock["ageMs"].as_u64().is_some());
    let expires = lock["expiresInMs"].as_i64().unwrap();
    assert!(expires > 0 && expires <= 600_000, "{doc}");
}

/// A live lock with a TTL too large for milliseconds in an i64 once showed
/// `expiresInMs: 0`, as if it were about to expire.
#[test]
fn a_live_lock_with_a_huge_ttl_is_not_shown_as_expiring() {
    let repo = init_repo();
    plant_lock(&local_dir(repo.path()), HOLDER, u64::MAX);
    let doc = lock_status_json(repo.path());
    let lock = &doc["lock"];
    assert_eq!(lock["stale"], false, "{doc}");
    let expires = lock["expiresInMs"].as_u64().expect("expiresInMs");
    assert!(expires > u64::MAX / 2, "{doc}");
}

#[test]
fn corrupt_lock_is_unreadable_but_held() {
    let repo = init_repo();
    let path = lock_file(&local_dir(repo.path()));
    fs::write(&path, b"{ this is not json").unwrap();
    let out = swamp_cli(repo.path())
        .args(["datastore", "lock", "status"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let text = stdout_of(&out);
    assert!(text.contains("unreadable"), "{text}");
    let doc = lock_status_json(repo.path());
    assert_eq!(doc["held"], true);
    assert!(doc["lock"]["info"].is_null());
    assert!(doc["lock"]["corrupt"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    // A fresh corrupt record blocks writers like any other lock.
    let out = swamp_cli(repo.path())
        .args(["--json", "--lock-timeout", "1", "data", "put", "x"])
        .write_stdin("x")
        .output()
        .unwrap();
    let msg = assert_json_error(&out, 75, "lock_timeout");
    assert!(msg.contains("unreadable"), "{msg}");
    assert!(path.exists());
}

// ---------------------------------------------------------------- lock release

#[test]
fn release_without_force_is_refused() {
    let repo = init_repo();
    let lock = plant_lock(&local_dir(repo.path()), HOLDER, 600_000);
    let before = fs::read(&lock).unwrap();
    let out = swamp_cli(repo.path())
        .args(["datastore", "lock", "release"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 2);
    assert!(line.contains("--force"), "{line}");
    assert!(line.contains(HOLDER), "{line}");

    let out = swamp_cli(repo.path())
        .args(["--json", "datastore", "lock", "release"])
        .output()
        .unwrap();
    assert_json_error(&out, 2, "refused");
    assert_eq!(
        fs::read(&lock).unwrap(),
        before,
        "lock file still there, unchanged"
    );
}

#[test]
fn release_with_force_removes_and_names_holder() {
    let repo = init_repo();
    let lock = plant_lock(&local_dir(repo.path()), HOLDER, 600_000);
    let out = swamp_cli(repo.path())
        .args(["datastore", "lock", "release", "--force"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    let text = stdout_of(&out);
    assert!(text.contains("Released") && text.contains(HOLDER), "{text}");
    assert!(!lock.exists());
    assert!(
        files_under(&local_dir(repo.path())).is_empty(),
        "no side files left: {:?}",
        files_under(&local_dir(repo.path()))
    );
    assert_eq!(lock_status_json(repo.path())["held"], false);
}

#[test]
fn release_with_force_json() {
    let repo = init_repo();
    let lock = plant_lock(&local_dir(repo.path()), HOLDER, 600_000);
    let out = swamp_cli(repo.path())
        .args(["--json", "datastore", "lock", "release", "--force"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let doc = json_of(&out);
    assert_eq!(doc["released"], true);
    assert_eq!(doc["lock"]["info"]["holder"], HOLDER);
    assert!(!lock.exists());
}

#[test]
fn release_with_force_removes_corrupt_lock() {
    let repo = init_repo();
    let path = lock_file(&local_dir(repo.path()));
    fs::write(&path, b"garbage").unwrap();
    let out = swamp_cli(repo.path())
        .args(["--json", "datastore", "lock", "release", "--force"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    assert_eq!(json_of(&out)["released"], true);
    assert!(!path.exists());
}

#[test]
fn release_without_lock_is_a_no_op() {
    let repo = init_repo();
    for extra in [&[][..], &["--force"][..]] {
        let out = swamp_cli(repo.path())
            .args(["datastore", "lock", "release"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(code_of(&out), 0, "{extra:?}: {}", stderr(&out));
        assert!(
            stdout_of(&out).contains("no lock held"),
            "{}",
            stdout_of(&out)
        );
        let out = swamp_cli(repo.path())
            .args(["--json", "datastore", "lock", "release"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(code_of(&out), 0);
        let doc = json_of(&out);
        assert_eq!(doc["released"], false);
        assert!(doc["lock"].is_null());
    }
}

// ---------------------------------------------------------------- contention

#[test]
fn fresh_lock_makes_writers_time_out() {
    let repo = init_repo();
    let lock = plant_lock(&local_dir(repo.path()), HOLDER, 600_000);
    let before = fs::read(&lock).unwrap();

    let out = swamp_cli(repo.path())
        .args(["--lock-timeout", "1", "data", "put", "blocked"])
        .write_stdin("never")
        .output()
        .unwrap();
    let line = assert_text_error(&out, 75);
    assert!(line.contains(HOLDER), "{line}");

    let out = swamp_cli(repo.path())
        .args(["--json", "--lock-timeout", "1", "data", "put", "blocked"])
        .write_stdin("never")
        .output()
        .unwrap();
    let msg = assert_json_error(&out, 75, "lock_timeout");
    assert!(msg.contains(HOLDER), "{msg}");

    let out = swamp_cli(repo.path())
        .args(["--json", "--lock-timeout", "1", "exec", "--", "sh", "-c"])
        .arg(format!("touch '{}'", repo.path().join("ran").display()))
        .output()
        .unwrap();
    assert_json_error(&out, 75, "lock_timeout");
    assert!(!repo.path().join("ran").exists(), "exec child must not run");

    assert_eq!(fs::read(&lock).unwrap(), before, "lock not stolen");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "blocked"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");
    // Readers do not need the lock.
    swamp_cli(repo.path())
        .args(["data", "list"])
        .assert()
        .success();
}

#[test]
fn stale_lock_is_taken_over() {
    let repo = init_repo();
    let lock = plant_lock(&local_dir(repo.path()), HOLDER, 100);
    wait_until_within("the planted lock to turn stale", POLL_DEADLINE, || {
        lock_status_json(repo.path())["lock"]["stale"] == true
    });
    let out = swamp_cli(repo.path())
        .args(["--lock-timeout", "30", "data", "put", "after/takeover"])
        .write_stdin("taken over")
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    // An item writer holds a scoped lock: it removes the stale record (only
    // that record, conditionally) and goes on; a whole-datastore command
    // after it finds the lock free.
    assert!(!lock.exists());
    let exec = swamp_cli(repo.path())
        .args(["--lock-timeout", "30", "exec", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code_of(&exec), 0, "{}", stderr(&exec));
    assert!(!lock.exists(), "lock released after the exec");
    let out = swamp_cli(repo.path())
        .args(["data", "get", "after/takeover"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"taken over");
}

#[test]
fn stale_lock_text_status_says_stale() {
    let repo = init_repo();
    plant_lock(&local_dir(repo.path()), HOLDER, 100);
    wait_until_within("the planted lock to turn stale", POLL_DEADLINE, || {
        lock_status_json(repo.path())["lock"]["stale"] == true
    });
    let out = swamp_cli(repo.path())
        .args(["datastore", "lock", "status"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(text.contains("STALE") && text.contains(HOLDER), "{text}");
    let doc = lock_status_json(repo.path());
    assert_eq!(doc["lock"]["expiresInMs"], 0);
}

#[test]
fn stale_corrupt_lock_is_taken_over() {
    let repo = init_repo();
    let path = lock_file(&local_dir(repo.path()));
    fs::write(&path, b"garbage").unwrap();
    // An unreadable record is judged by this process's TTL (30 s by default):
    // backdate it by an hour so it is stale at once.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let doc = lock_status_json(repo.path());
    assert_eq!(doc["held"], true);
    assert_eq!(doc["lock"]["stale"], true, "{doc}");
    swamp_cli(repo.path())
        .args(["--lock-timeout", "30", "data", "put", "x"])
        .write_stdin("ok")
        .assert()
        .success();
    swamp_cli(repo.path())
        .args(["--lock-timeout", "30", "exec", "--", "true"])
        .assert()
        .success();
    assert!(!path.exists(), "the whole-datastore command took it over");
}

#[test]
fn writers_release_the_lock() {
    let repo = init_repo();
    let scoped = |repo: &Path| files_under(&local_dir(repo).join(".locks"));
    put(repo.path(), "a", b"1");
    assert!(!lock_file(&local_dir(repo.path())).exists());
    assert_eq!(
        scoped(repo.path()),
        Vec::<String>::new(),
        "the item's scoped record is gone"
    );
    swamp_cli(repo.path())
        .args(["data", "rm", "a"])
        .assert()
        .success();
    assert!(!lock_file(&local_dir(repo.path())).exists());
    // A failing writer releases it too.
    swamp_cli(repo.path())
        .args(["data", "rm", "a"])
        .assert()
        .code(1);
    assert!(!lock_file(&local_dir(repo.path())).exists());
}

// ---------------------------------------------------------------- setup filesystem

#[test]
fn setup_migrates_everything() {
    let repo = populated_repo();
    append_config(repo.path(), "notes: keep this\n");
    let id = repo_id(repo.path());
    let local = local_dir(repo.path());
    let before = snapshot(&local);
    assert!(before.contains_key("outputs/run1/result.txt"));
    assert!(before.contains_key("data/app/config/@versions/2.bin"));
    let total: u64 = before.values().map(|b| b.len() as u64).sum();

    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("shared/store");
    let out = setup_fs(repo.path(), &target, &[]);
    assert_eq!(code_of(&out), 0, "{}", stdout_of(&out));
    let doc = json_of(&out);
    assert_eq!(
        doc,
        serde_json::json!({
            "from": format!("filesystem:{}", local.display()),
            "to": format!("filesystem:{}", target.display()),
            "type": "filesystem",
            "migrated": true,
            "migration": {
                "files": before.len(),
                "bytes": total,
                "alreadyPresent": 0,
                "directories": ["audit", "data", "outputs"],
            },
        })
    );

    // Every file arrived intact, nothing else was left in the target.
    assert_eq!(snapshot(&target), before);
    // The source directories are gone.
    for dir in ["data", "outputs", "audit"] {
        assert!(!local.join(dir).exists(), "{dir} still in .swamp");
    }
    assert!(local.is_dir(), ".swamp itself stays");
    assert!(!lock_file(&local).exists() && !lock_file(&target).exists());

    // The config now names the target; other keys and the repoId survive.
    let cfg = config_yaml(repo.path());
    assert_eq!(cfg["datastore"]["type"], "filesystem");
    assert_eq!(cfg["datastore"]["path"], target.to_str().unwrap());
    assert_eq!(cfg["repoId"], id.as_str());
    assert_eq!(cfg["notes"], "keep this");
    assert!(cfg["swampVersion"].as_str().is_some());
    assert!(cfg["initializedAt"].as_str().is_some());

    let status = status_json(repo.path());
    assert_eq!(status["source"], "repoConfig");
    assert_eq!(status["path"], target.to_str().unwrap());

    // Data reads come from the new place.
    let out = swamp_cli(repo.path())
        .args(["data", "get", "app/config"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"config v2, longer");
    let out = swamp_cli(repo.path())
        .args(["data", "get", "db/dump"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"\x00\x01binary\xff");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "versions", "app/config"])
        .output()
        .unwrap();
    let versions = json_of(&out);
    assert_eq!(
        versions["versions"][0]["sha256"],
        sha256_hex(b"config v1").as_str()
    );
    // And new writes go there too.
    put(repo.path(), "after/move", b"new");
    assert!(target.join("data/after/move/@versions/1.bin").is_file());
    assert!(!local.join("data").exists());
}

#[test]
fn setup_text_output() {
    let repo = populated_repo();
    let files = files_under(&local_dir(repo.path())).len();
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    let out = swamp_cli(repo.path())
        .args(["datastore", "setup", "filesystem", "--path"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    let text = stdout_of(&out);
    assert!(text.contains(&format!("Migrated {files} files")), "{text}");
    assert!(text.contains("audit, data, outputs"), "{text}");
    assert!(
        text.contains(&format!("Datastore is now filesystem:{}", target.display())),
        "{text}"
    );
}

#[test]
fn setup_of_empty_datastore_switches_config() {
    let repo = init_repo();
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    let out = setup_fs(repo.path(), &target, &[]);
    assert_eq!(code_of(&out), 0, "{}", stdout_of(&out));
    let doc = json_of(&out);
    assert_eq!(doc["migrated"], true);
    assert_eq!(doc["migration"]["files"], 0);
    assert_eq!(doc["migration"]["directories"], serde_json::json!([]));
    assert!(target.is_dir());
    assert_eq!(
        config_yaml(repo.path())["datastore"]["path"],
        target.to_str().unwrap()
    );
}

#[test]
fn setup_skip_migration_only_switches_config() {
    let repo = populated_repo();
    let local = local_dir(repo.path());
    let before = snapshot(&local);
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    let out = setup_fs(repo.path(), &target, &["--skip-migration"]);
    assert_eq!(code_of(&out), 0, "{}", stdout_of(&out));
    let doc = json_of(&out);
    assert_eq!(doc["migrated"], false);
    assert!(doc["migration"].is_null());
    assert_eq!(
        doc["to"],
        format!("filesystem:{}", target.display()).as_str()
    );

    assert_eq!(snapshot(&local), before, "data stays in the old place");
    assert!(
        files_under(&target).is_empty(),
        "{:?}",
        files_under(&target)
    );
    assert_eq!(
        config_yaml(repo.path())["datastore"]["path"],
        target.to_str().unwrap()
    );

    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "app/config"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");
    put(repo.path(), "fresh", b"new store");
    assert!(target.join("data/fresh/@versions/1.bin").is_file());
    assert!(!local.join("data/fresh").exists());

    let out = swamp_cli(repo.path())
        .args([
            "datastore",
            "setup",
            "filesystem",
            "--skip-migration",
            "--path",
        ])
        .arg(targets.path().join("u"))
        .output()
        .unwrap();
    assert!(
        stdout_of(&out).contains("no data migrated"),
        "{}",
        stdout_of(&out)
    );
}

#[test]

fn list_after_skip_migration_shows_only_the_new_datastore() {
    let repo = populated_repo();
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    let out = setup_fs(repo.path(), &target, &["--skip-migration"]);
    assert_eq!(code_of(&out), 0, "{}", stdout_of(&out));
    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    assert_eq!(stdout_of(&out).trim(), "No data items");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    assert_eq!(json_of(&out), serde_json::json!({"items": []}));
}

#[test]

fn list_with_flag_datastore_shows_only_that_datastore() {
    let repo = init_repo();
    put(repo.path(), "local/only", b"in .swamp");
    let other = tempfile::tempdir().unwrap();
    let flag = format!("filesystem:{}", other.path().display());
    swamp_cli(repo.path())
        .args(["--datastore", &flag, "data", "put", "remote/only"])
        .write_stdin("in other")
        .assert()
        .success();
    let out = swamp_cli(repo.path())
        .args(["--json", "--datastore", &flag, "data", "list"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let doc = json_of(&out);
    let names: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    // Every listed item must be readable with the same options.
    for name in &names {
        swamp_cli(repo.path())
            .args(["--datastore", &flag, "data", "get", name])
            .assert()
            .success();
    }
    assert_eq!(names, ["remote/only"]);
}

#[test]
fn excluded_data_stays_local_and_is_listed() {
    let repo = init_repo();
    let stores = tempfile::tempdir().unwrap();
    let store = stores.path().join("store");
    append_config(
        repo.path(),
        &format!(
            "datastore:\n  type: filesystem\n  path: {}\n  exclude: [\"data/private/\"]\n",
            store.display()
        ),
    );
    put(repo.path(), "private/key", b"secret");
    put(repo.path(), "pub", b"public");
    let local = local_dir(repo.path());
    assert!(local.join("data/private/key/@versions/1.bin").is_file());
    assert!(!store.join("data/private").exists());
    assert!(store.join("data/pub/@versions/1.bin").is_file());
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    let doc = json_of(&out);
    let names: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["private/key", "pub"]);
    let out = swamp_cli(repo.path())
        .args(["data", "get", "private/key"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"secret");
}

#[test]
fn setup_conflict_changes_nothing() {
    let repo = populated_repo();
    let local = local_dir(repo.path());
    let config_before = read_config(repo.path());
    let source_before = snapshot(&local);
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    let clash = target.join("outputs/run1/result.txt");
    fs::create_dir_all(clash.parent().unwrap()).unwrap();
    fs::write(&clash, b"someone else's result").unwrap();

    let out = setup_fs(repo.path(), &target, &[]);
    let msg = assert_json_error(&out, 1, "migration_conflict");
    assert!(msg.contains("outputs/run1/result.txt"), "{msg}");

    assert_eq!(read_config(repo.path()), config_before, "config unchanged");
    assert_eq!(snapshot(&local), source_before, "source intact");
    assert_eq!(
        snapshot(&target),
        BTreeMap::from([(
            "outputs/run1/result.txt".to_string(),
            b"someone else's result".to_vec()
        )]),
        "target unchanged, nothing copied"
    );
    assert!(
        !lock_file(&local).exists(),
        "lock released after the failure"
    );
    let out = swamp_cli(repo.path())
        .args(["data", "get", "app/config"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"config v2, longer");

    // Text mode: one line naming the path.
    let out = swamp_cli(repo.path())
        .args(["datastore", "setup", "filesystem", "--path"])
        .arg(&target)
        .output()
        .unwrap();
    let line = assert_text_error(&out, 1);
    assert!(line.contains("outputs/run1/result.txt"), "{line}");
}

#[test]
fn setup_conflict_with_directory_at_file_path() {
    let repo = populated_repo();
    let config_before = read_config(repo.path());
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    fs::create_dir_all(target.join("outputs/run1/result.txt")).unwrap();
    let out = setup_fs(repo.path(), &target, &[]);
    let msg = assert_json_error(&out, 1, "migration_conflict");
    assert!(msg.contains("outputs/run1/result.txt"), "{msg}");
    assert_eq!(read_config(repo.path()), config_before);
    assert!(files_under(&target).is_empty());
}

#[test]
fn setup_blocked_by_file_at_parent_path_changes_nothing() {
    let repo = populated_repo();
    let local = local_dir(repo.path());
    let config_before = read_config(repo.path());
    let source_before = snapshot(&local);
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    fs::create_dir_all(target.join("outputs")).unwrap();
    fs::write(
        target.join("outputs/run1"),
        b"a file where a directory is needed",
    )
    .unwrap();
    let out = setup_fs(repo.path(), &target, &[]);
    assert_eq!(code_of(&out), 1, "{}", stdout_of(&out));
    let msg = json_of(&out)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("outputs/run1"), "{msg}");
    assert_eq!(read_config(repo.path()), config_before);
    assert_eq!(snapshot(&local), source_before);
    assert_eq!(files_under(&target), ["outputs/run1"]);
}

#[test]

fn setup_file_at_parent_path_is_a_conflict() {
    let repo = populated_repo();
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    fs::create_dir_all(target.join("outputs")).unwrap();
    fs::write(target.join("outputs/run1"), b"blocker").unwrap();
    let out = setup_fs(repo.path(), &target, &[]);
    let msg = assert_json_error(&out, 1, "migration_conflict");
    assert!(msg.contains("outputs/run1"), "{msg}");
}

#[test]
fn setup_identical_file_counts_as_already_present() {
    let repo = populated_repo();
    let local = local_dir(repo.path());
    let before = snapshot(&local);
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    let same = target.join("outputs/run1/result.txt");
    fs::create_dir_all(same.parent().unwrap()).unwrap();
    fs::write(&same, b"result").unwrap();

    let out = setup_fs(repo.path(), &target, &[]);
    assert_eq!(code_of(&out), 0, "{}", stdout_of(&out));
    let doc = json_of(&out);
    assert_eq!(doc["migration"]["alreadyPresent"], 1);
    assert_eq!(doc["migration"]["files"], before.len());
    assert_eq!(snapshot(&target), before);
    assert!(!local.join("outputs").exists());
}

#[test]
fn setup_target_that_is_a_file_fails() {
    let repo = populated_repo();
    let local = local_dir(repo.path());
    let config_before = read_config(repo.path());
    let source_before = snapshot(&local);
    let targets = tempfile::tempdir().unwrap();
    let file = targets.path().join("plain-file");
    fs::write(&file, b"I am a file").unwrap();
    for extra in [&[][..], &["--skip-migration"][..]] {
        let out = setup_fs(repo.path(), &file, extra);
        assert_eq!(code_of(&out), 1, "{extra:?}: {}", stdout_of(&out));
        let msg = json_of(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("not a directory"), "{msg}");
        assert!(msg.contains(file.to_str().unwrap()), "{msg}");
    }
    assert_eq!(fs::read(&file).unwrap(), b"I am a file");
    assert_eq!(read_config(repo.path()), config_before);
    assert_eq!(snapshot(&local), source_before);
}

#[test]
fn setup_relative_path_is_made_absolute() {
    let repo = populated_repo();
    let cwd = tempfile::tempdir().unwrap();
    let base = cwd.path().canonicalize().unwrap();
    let out = swamp_cli(repo.path())
        .current_dir(&base)
        .args([
            "--json",
            "datastore",
            "setup",
            "filesystem",
            "--path",
            "./sub/../store",
        ])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stdout_of(&out));
    let expected = base.join("store");
    assert_eq!(
        json_of(&out)["to"],
        format!("filesystem:{}", expected.display()).as_str()
    );
    let cfg = config_yaml(repo.path());
    assert_eq!(cfg["datastore"]["path"], expected.to_str().unwrap());
    assert!(expected.join("data/app/config/@versions/1.bin").is_file());
    // The stored path works from any directory.
    let out = swamp_cli(repo.path())
        .args(["data", "get", "app/config", "--version", "1"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"config v1");
}

#[test]
fn setup_keeps_excluded_files_local() {
    let repo = init_repo();
    append_config(repo.path(), "datastore:\n  exclude: [\"outputs/local/\"]\n");
    put(repo.path(), "item", b"data");
    exec_sh(
        repo.path(),
        r#"d="$SWAMP_DATASTORE_DIR/outputs"; mkdir -p "$d/local" "$d/shared" && printf L > "$d/local/l.txt" && printf S > "$d/shared/s.txt""#,
    );
    let local = local_dir(repo.path());
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    let out = setup_fs(repo.path(), &target, &[]);
    assert_eq!(code_of(&out), 0, "{}", stdout_of(&out));

    assert_eq!(fs::read(local.join("outputs/local/l.txt")).unwrap(), b"L");
    assert!(!target.join("outputs/local").exists());
    assert_eq!(fs::read(target.join("outputs/shared/s.txt")).unwrap(), b"S");
    assert!(!local.join("outputs/shared").exists());
    assert!(target.join("data/item/@versions/1.bin").is_file());

    let cfg = config_yaml(repo.path());
    assert_eq!(cfg["datastore"]["exclude"][0], "outputs/local/");
    assert_eq!(cfg["datastore"]["path"], target.to_str().unwrap());
    let status = status_json(repo.path());
    assert_eq!(status["exclude"], serde_json::json!(["outputs/local/"]));
}

#[test]
fn setup_respects_configured_directories() {
    let repo = init_repo();
    append_config(repo.path(), "datastore:\n  directories: [data]\n");
    put(repo.path(), "item", b"data");
    let local = local_dir(repo.path());
    // `logs` is not a datastore directory here, so it stays local.
    fs::create_dir_all(local.join("logs")).unwrap();
    fs::write(local.join("logs/run.log"), b"log").unwrap();
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    let out = setup_fs(repo.path(), &target, &[]);
    assert_eq!(code_of(&out), 0, "{}", stdout_of(&out));
    assert_eq!(
        json_of(&out)["migration"]["directories"],
        serde_json::json!(["data"])
    );
    assert!(local.join("logs/run.log").is_file());
    assert!(!target.join("logs").exists());
    assert!(target.join("data/item/@versions/1.bin").is_file());
    assert_eq!(
        config_yaml(repo.path())["datastore"]["directories"][0],
        "data"
    );
}

#[test]
fn setup_twice_moves_again() {
    let repo = populated_repo();
    let before = snapshot(&local_dir(repo.path()));
    let targets = tempfile::tempdir().unwrap();
    let first = targets.path().join("first");
    let second = targets.path().join("second");
    assert_eq!(code_of(&setup_fs(repo.path(), &first, &[])), 0);
    let out = setup_fs(repo.path(), &second, &[]);
    assert_eq!(code_of(&out), 0, "{}", stdout_of(&out));
    let doc = json_of(&out);
    assert_eq!(
        doc["from"],
        format!("filesystem:{}", first.display()).as_str()
    );
    assert_eq!(snapshot(&second), before);
    assert!(files_under(&first).is_empty(), "{:?}", files_under(&first));
}

#[test]
fn setup_to_current_datastore_is_rejected() {
    let repo = populated_repo();
    let config_before = read_config(repo.path());
    let out = setup_fs(repo.path(), &local_dir(repo.path()), &[]);
    assert_json_error(&out, 2, "validation_failed");
    assert_eq!(read_config(repo.path()), config_before);
}

#[test]
fn setup_into_current_datastore_directories_is_rejected() {
    let repo = populated_repo();
    let config_before = read_config(repo.path());
    let inside: PathBuf = local_dir(repo.path()).join("outputs/nested");
    let out = setup_fs(repo.path(), &inside, &[]);
    let msg = assert_json_error(&out, 2, "validation_failed");
    assert!(msg.contains("inside"), "{msg}");
    assert_eq!(read_config(repo.path()), config_before);
}

#[test]

fn rejected_setup_creates_no_directory() {
    let repo = populated_repo();
    let inside: PathBuf = local_dir(repo.path()).join("outputs/nested");
    let out = setup_fs(repo.path(), &inside, &[]);
    assert_json_error(&out, 2, "validation_failed");
    assert!(!inside.exists(), "{} was created", inside.display());
}

#[test]
fn setup_waits_for_the_lock() {
    let repo = populated_repo();
    let local = local_dir(repo.path());
    let config_before = read_config(repo.path());
    let source_before = snapshot(&local);
    plant_lock(&local, HOLDER, 600_000);
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("t");
    let out = swamp_cli(repo.path())
        .args([
            "--json",
            "--lock-timeout",
            "1",
            "datastore",
            "setup",
            "filesystem",
            "--path",
        ])
        .arg(&target)
        .output()
        .unwrap();
    let msg = assert_json_error(&out, 75, "lock_timeout");
    assert!(msg.contains(HOLDER), "{msg}");
    assert_eq!(read_config(repo.path()), config_before);
    let mut after = snapshot(&local);
    after.remove(".datastore.lock");
    assert_eq!(after, source_before);
    assert!(files_under(&target).is_empty());
}

/// A target that already holds another datastore's files is not merged into
/// silently: refused before anything changes, unless `--merge` is given.
#[test]
fn setup_refuses_a_target_holding_another_datastore_unless_merge() {
    let repo = init_repo();
    put(repo.path(), "mine", b"from this repo");
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("store");
    fs::create_dir_all(target.join("data/theirs")).unwrap();
    fs::write(target.join("data/theirs/file.txt"), b"another datastore").unwrap();
    let before = read_config(repo.path());
    let out = setup_fs(repo.path(), &target, &[]);
    let msg = assert_json_error(&out, 1, "target_occupied");
    assert!(
        msg.contains("data/theirs/file.txt") && msg.contains("--merge"),
        "{msg}"
    );
    assert_eq!(read_config(repo.path()), before);
    assert!(!target.join("data/mine").exists(), "nothing copied");
    let merged = setup_fs(repo.path(), &target, &["--merge"]);
    assert_eq!(code_of(&merged), 0, "{}", stdout_of(&merged));
    assert_eq!(
        fs::read(target.join("data/theirs/file.txt")).unwrap(),
        b"another datastore"
    );
    let got = swamp_cli(repo.path())
        .args(["data", "get", "mine"])
        .output()
        .unwrap();
    assert_eq!(got.stdout, b"from this repo");
}

/// Setup takes the target's lock as well: a target whose lock another
/// process holds is not migrated into behind its back.
#[test]
fn setup_waits_for_the_target_lock() {
    let repo = init_repo();
    put(repo.path(), "mine", b"data");
    let targets = tempfile::tempdir().unwrap();
    let target = targets.path().join("store");
    fs::create_dir_all(&target).unwrap();
    plant_lock(&target, HOLDER, 600_000);
    let before = read_config(repo.path());
    let out = setup_fs(repo.path(), &target, &["--lock-timeout", "1"]);
    let msg = assert_json_error(&out, 75, "lock_timeout");
    assert!(msg.contains(HOLDER), "{msg}");
    assert_eq!(read_config(repo.path()), before);
    assert!(!target.join("data").exists(), "nothing copied");
}
