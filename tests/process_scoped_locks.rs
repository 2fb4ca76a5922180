//! Scoped locks on a filesystem datastore (issue 15, part 3), with real
//! processes: writers of one item exclude each other and lose nothing,
//! writers of different items do not wait for each other, the
//! whole-datastore lock drains running item writers and is not starved by
//! new ones, a holder that died goes stale, and `lock status` / `lock
//! release --force --scope` show and break scoped locks.
//!
//! A frozen or killed holder is a record nobody renews: some tests plant
//! such a record (fresh, or left to go stale) the way `plant_lock` does for
//! the whole lock.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use support::*;

/// Plants a scoped record held by "alice@laptop" on `paths`, written now,
/// with `ttl_ms`; returns its path.
fn plant_scoped(repo: &Path, paths: &[&str], ttl_ms: u64) -> PathBuf {
    let dir = local_dir(repo).join(".locks");
    std::fs::create_dir_all(&dir).unwrap();
    let record = scoped_lock_record("alice@laptop", ttl_ms, paths);
    let path = dir.join("planted.lock");
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    path
}

/// `data put NAME` of `content` with `flags` before the command.
fn put_with(repo: &Path, flags: &[&str], name: &str, content: &str) -> std::process::Output {
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), content).unwrap();
    run(swamp(repo)
        .args(flags)
        .args(["data", "put", name, "--file"])
        .arg(input.path()))
}

fn versions(repo: &Path, name: &str) -> Vec<u64> {
    let out = run(swamp(repo).args(["--json", "data", "versions", name]));
    let doc = json_of(&out);
    doc["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

/// 8 processes put 3 versions each of one item at once: 24 distinct
/// versions, every content there exactly once.
#[test]
fn eight_writers_of_one_item_times_three_puts_give_24_versions() {
    let repo = init_repo();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let path = repo.path().to_path_buf();
            std::thread::spawn(move || {
                for i in 0..3 {
                    let out = put_with(
                        &path,
                        &["--lock-timeout", "300"],
                        "shared/item",
                        &format!("{w}-{i}"),
                    );
                    assert_eq!(code_of(&out), 0, "put {w}-{i}: {}", stderr(&out));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("writer panicked");
    }
    assert_eq!(
        versions(repo.path(), "shared/item"),
        (1..=24).collect::<Vec<_>>()
    );
    let mut contents: Vec<String> = (1..=24)
        .map(|v| {
            let out = run(swamp(repo.path()).args([
                "data",
                "get",
                "shared/item",
                "--version",
                &v.to_string(),
            ]));
            stdout_of(&out)
        })
        .collect();
    contents.sort();
    let mut expected: Vec<String> = (0..8)
        .flat_map(|w| (0..3).map(move |i| format!("{w}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(contents, expected);
    assert_eq!(
        lock_status(repo.path(), None)["scoped"],
        serde_json::json!([])
    );
}

/// A holder of one item (frozen: its record is fresh) makes writers of that
/// item and the whole-datastore lock wait, not writers of other items; once
/// its record goes stale, everyone proceeds.
#[test]
fn a_frozen_item_holder_blocks_only_its_item_until_it_goes_stale() {
    let repo = init_repo();
    let record = plant_scoped(repo.path(), &["data/a/@versions"], 60_000);
    let quick = ["--lock-timeout", "1"];
    let other = put_with(repo.path(), &quick, "b", "b1");
    assert_eq!(code_of(&other), 0, "{}", stderr(&other));
    let same = put_with(repo.path(), &quick, "a", "a1");
    assert_eq!(code_of(&same), 75, "{}", stderr(&same));
    let message = stderr(&same);
    assert!(
        message.contains("alice@laptop")
            && message.contains("data/a/@versions")
            && message.contains("--scope"),
        "names the holder, its scope and the way out: {message}"
    );
    let whole = run(swamp(repo.path()).args(quick).args(["exec", "--", "true"]));
    assert_eq!(code_of(&whole), 75, "{}", stderr(&whole));
    // The holder stops renewing: once its TTL passes, it is ignored.
    plant_scoped(repo.path(), &["data/a/@versions"], 200);
    wait_until("the planted record is stale", || {
        lock_status(repo.path(), None)["scoped"][0]["stale"] == true
    });
    let same = put_with(repo.path(), &quick, "a", "a1");
    assert_eq!(code_of(&same), 0, "{}", stderr(&same));
    let whole = run(swamp(repo.path()).args(quick).args(["exec", "--", "true"]));
    assert_eq!(code_of(&whole), 0, "{}", stderr(&whole));
    assert!(
        record.exists(),
        "a stale record is left for its owner or a force release"
    );
}

/// The whole lock announces itself before it drains: while an `exec` waits
/// for a running item writer, a new writer of another item waits behind it.
#[test]
fn the_whole_lock_drains_item_writers_and_new_ones_wait_behind_it() {
    let repo = init_repo();
    plant_scoped(repo.path(), &["data/a/@versions"], 60_000);
    let mut exec = swamp(repo.path())
        .args(["--lock-timeout", "120", "exec", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard(exec.id());
    wait_until("the exec announces the whole lock", || {
        lock_status(repo.path(), None)["held"] == true
    });
    let late = put_with(repo.path(), &["--lock-timeout", "1"], "b", "b1");
    assert_eq!(
        code_of(&late),
        75,
        "a new item writer yields: {}",
        stderr(&late)
    );
    assert!(exec.try_wait().unwrap().is_none(), "the exec still drains");
    let released = run(swamp(repo.path()).args([
        "datastore",
        "lock",
        "release",
        "--force",
        "--scope",
        "data/a",
    ]));
    assert_eq!(code_of(&released), 0, "{}", stderr(&released));
    assert!(
        stdout_of(&released).contains("alice@laptop"),
        "{}",
        stdout_of(&released)
    );
    assert!(wait_child(&mut exec).success());
    let late = put_with(repo.path(), &["--lock-timeout", "5"], "b", "b1");
    assert_eq!(code_of(&late), 0, "{}", stderr(&late));
}

/// While an `exec` holds the whole lock, item writers wait.
#[test]
fn item_writers_wait_for_the_whole_lock() {
    let repo = init_repo();
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    let script = format!("touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done");
    let mut holder = swamp(repo.path())
        .args(["exec", "--", "sh", "-c", &script])
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard(holder.id());
    wait_until("the exec holds the lock", || {
        marks.path().join("started").exists()
    });
    let put = put_with(repo.path(), &["--lock-timeout", "1"], "a", "a1");
    assert_eq!(code_of(&put), 75, "{}", stderr(&put));
    assert_eq!(
        lock_status(repo.path(), None)["scoped"],
        serde_json::json!([]),
        "it took its record back"
    );
    std::fs::write(marks.path().join("go"), b"").unwrap();
    assert!(wait_child(&mut holder).success());
    let put = put_with(repo.path(), &["--lock-timeout", "5"], "a", "a1");
    assert_eq!(code_of(&put), 0, "{}", stderr(&put));
}

/// A writer killed with -9 while it may hold its item's lock leaves a
/// record nobody renews; the next writer of that item waits for its TTL and
/// then proceeds, and every version that was committed reads back whole.
#[test]
fn writers_killed_mid_put_leave_nothing_that_blocks_or_corrupts() {
    let repo = init_repo();
    let big = "x".repeat(1 << 20);
    for round in 0..6u64 {
        let input = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(input.path(), &big).unwrap();
        let mut victim = swamp(repo.path())
            .env("SWAMP_LOCK_TTL_MS", "1000")
            .args(["data", "put", "item", "--file"])
            .arg(input.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let _guard = GroupGuard(victim.id());
        std::thread::sleep(std::time::Duration::from_millis(round * 4));
        kill_group(victim.id());
        wait_child(&mut victim);
        let next = run(swamp(repo.path())
            .env("SWAMP_LOCK_TTL_MS", "1000")
            .args(["--lock-timeout", "30", "data", "put", "item", "--file"])
            .arg(input.path()));
        assert_eq!(code_of(&next), 0, "round {round}: {}", stderr(&next));
    }
    for v in versions(repo.path(), "item") {
        let out =
            run(swamp(repo.path()).args(["data", "get", "item", "--version", &v.to_string()]));
        assert_eq!(out.stdout.len(), big.len(), "version {v} reads back whole");
    }
}

/// `lock status` shows scoped locks with their scope; `release --scope`
/// without `--force` refuses and names the holder.
#[test]
fn lock_status_lists_scoped_locks_and_release_needs_force() {
    let repo = init_repo();
    let record = plant_scoped(repo.path(), &["data/a/@versions"], 60_000);
    let status = lock_status(repo.path(), None);
    assert_eq!(
        status["scoped"][0]["scope"],
        serde_json::json!(["data/a/@versions"]),
        "{status}"
    );
    assert_eq!(status["scoped"][0]["info"]["holder"], "alice@laptop");
    let text = run(swamp(repo.path()).args(["datastore", "lock", "status"]));
    assert!(
        stdout_of(&text).contains("scoped lock held by alice@laptop"),
        "{}",
        stdout_of(&text)
    );
    let refused =
        run(swamp(repo.path()).args(["datastore", "lock", "release", "--scope", "data/a"]));
    assert_eq!(code_of(&refused), 2, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("alice@laptop"),
        "{}",
        stderr(&refused)
    );
    let elsewhere = run(swamp(repo.path()).args([
        "datastore",
        "lock",
        "release",
        "--force",
        "--scope",
        "data/b",
    ]));
    assert_eq!(code_of(&elsewhere), 0);
    assert!(
        record.exists(),
        "a scope that does not conflict releases nothing"
    );
    let bad = run(swamp(repo.path()).args([
        "datastore",
        "lock",
        "release",
        "--force",
        "--scope",
        "../x",
    ]));
    assert_eq!(code_of(&bad), 2, "{}", stderr(&bad));
    let forced = run(swamp(repo.path()).args([
        "--json",
        "datastore",
        "lock",
        "release",
        "--force",
        "--scope",
        "data",
    ]));
    assert_eq!(json_of(&forced)["released"], true);
    assert!(!record.exists());
}
