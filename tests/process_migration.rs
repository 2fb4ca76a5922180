//! kill -9 in the middle of `datastore setup filesystem`: no data lost, the
//! config always names a complete copy, and a rerun finishes the job.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use support::*;

const FILES: usize = 1500;

fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for dir in ["outputs", "data"] {
        let top = root.join(dir);
        if !top.exists() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&top) {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.file_type().is_file() && !name.contains(".swamp-tmp-") {
                let rel = entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

fn config_points_to(repo: &Path, target: &Path) -> bool {
    std::fs::read_to_string(repo.join(".swamp.yaml"))
        .unwrap()
        .contains(&target.display().to_string())
}

fn kill_setup_when(kill_point: &str, ready: impl Fn(&Path, &Path) -> bool) {
    let repo = init_repo();
    let dir = repo.path();
    let batch = dir.join(".swamp/outputs/batch");
    std::fs::create_dir_all(&batch).unwrap();
    for i in 0..FILES {
        std::fs::write(
            batch.join(format!("f{i:05}")),
            format!("content of file {i}\n").repeat(8),
        )
        .unwrap();
    }
    let put = run(swamp(dir).args(["data", "put", "app/config", "--file", "-"]));
    assert!(put.status.success());
    let before = snapshot(&dir.join(".swamp"));
    assert_eq!(before.len(), FILES + 2);

    let target_dir = tempfile::tempdir().unwrap();
    let target = target_dir.path().join("shared");
    let mut setup = swamp(dir)
        .args(["datastore", "setup", "filesystem", "--path"])
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn setup");
    wait_until(kill_point, || {
        ready(dir, &target) || setup.try_wait().unwrap().is_some()
    });
    let _ = setup.kill();
    let _ = setup.wait();

    // Invariant: the config names a location that holds everything.
    let named = if config_points_to(dir, &target) {
        target.clone()
    } else {
        dir.join(".swamp")
    };
    assert_eq!(
        snapshot(&named),
        before,
        "config names an incomplete copy ({kill_point})"
    );

    // The killed process left its lock; break it and rerun.
    let released = run(swamp(dir).args(["datastore", "lock", "release", "--force"]));
    assert!(released.status.success());
    if !config_points_to(dir, &target) {
        let rerun = run(swamp(dir)
            .args(["datastore", "setup", "filesystem", "--path"])
            .arg(&target));
        assert!(rerun.status.success(), "rerun failed: {}", stderr(&rerun));
    }
    assert!(config_points_to(dir, &target));
    assert_eq!(snapshot(&target), before);
    let got = run(swamp(dir).args(["data", "get", "app/config"]));
    assert!(got.status.success(), "{}", stderr(&got));
}

#[test]
fn kill_9_while_copying_loses_nothing() {
    kill_setup_when("first file copied", |_, target| {
        target.join("outputs/batch/f00000").exists()
    });
}

#[test]
fn kill_9_while_cleaning_up_loses_nothing() {
    kill_setup_when("config switched", |repo, target| {
        config_points_to(repo, target)
    });
}

/// Two setups of one repo at once: both wait for the source lock; the one
/// that comes second finds `.swamp.yaml` changed and refuses, instead of
/// migrating out of a datastore the config no longer names.
#[test]
fn two_setups_at_once_one_wins_the_other_fails_clearly() {
    let repo = init_repo();
    let dir = repo.path();
    put(dir, "app/config", b"replicas: 3\n");
    let marker = tempfile::tempdir().unwrap();
    let (started, go) = (marker.path().join("started"), marker.path().join("go"));
    let mut holder = swamp(dir)
        .args(["exec", "--", "sh", "-c"])
        .arg(format!(
            "touch {}; while [ ! -f {} ]; do sleep 0.02; done",
            started.display(),
            go.display()
        ))
        .spawn()
        .expect("spawn holder");
    wait_until("holder started", || started.exists());
    let targets = tempfile::tempdir().unwrap();
    let (a, b) = (targets.path().join("a"), targets.path().join("b"));
    let setups: Vec<_> = [&a, &b]
        .iter()
        .map(|t| {
            swamp(dir)
                .args([
                    "--json",
                    "--lock-timeout",
                    "120",
                    "datastore",
                    "setup",
                    "filesystem",
                    "--path",
                ])
                .arg(t)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn setup")
        })
        .collect();
    // Both are waiting for the lock the holder has.
    wait_until("both setups wait", || {
        lock_status(dir, None)["held"] == true
    });
    std::fs::write(&go, b"").unwrap();
    assert!(wait_child(&mut holder).success());
    let outs: Vec<_> = setups
        .into_iter()
        .map(|s| s.wait_with_output().expect("wait setup"))
        .collect();
    let winners: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one setup wins: {outs:?}");
    let loser = outs.iter().find(|o| !o.status.success()).unwrap();
    let msg = assert_json_error(loser, 2, "refused");
    assert!(msg.contains("changed while this setup waited"), "{msg}");
    let won = if config_points_to(dir, &a) { &a } else { &b };
    assert!(config_points_to(dir, won));
    let got = run(swamp(dir).args(["data", "get", "app/config"]));
    assert_eq!(got.stdout, b"replicas: 3\n");
}
