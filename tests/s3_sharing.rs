//! Two or more "machines" (separate SWAMP_HOME caches) sharing one S3
//! datastore through a real local S3 server (moto, or SeaweedFS with
//! `SWAMP_TEST_S3=seaweedfs`): writes, deletions and same-size rewrites
//! propagate; concurrent writers serialize through the S3 lock; a paused
//! holder that lost its lock pushes nothing.

mod support;

use nix::sys::signal::Signal;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::s3::*;
use support::*;

const BUCKET: &str = "shared-bucket";

impl World {
    /// One moto with the bucket, one repo already set up on S3.
    fn new() -> Self {
        Self::set_up(Moto::start())
    }

    /// `new` on a moto with serialized requests (see `Moto::start_serial`).
    fn serial() -> Self {
        Self::set_up(Moto::start_serial())
    }

    fn set_up(moto: Moto) -> Self {
        let w = World::create(moto, BUCKET);
        let setup_home = tempfile::tempdir().unwrap();
        w.setup(setup_home.path());
        w
    }

    fn lock_status(&self, home: &Path) -> Value {
        self.json(home, &["datastore", "lock", "status"])
    }
}

/// Reads `outputs/NAME` through `exec` on `home` ("" if absent).
fn read_output(w: &World, home: &Path, name: &str) -> String {
    let script = format!(r#"cat "$SWAMP_DATASTORE_DIR/outputs/{name}" 2>/dev/null || true"#);
    String::from_utf8(w.sh(home, &script)).unwrap()
}

fn write_output(w: &World, home: &Path, name: &str, content: &str) {
    let script = format!(
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && printf '{content}' > "$SWAMP_DATASTORE_DIR/outputs/{name}""#
    );
    w.sh(home, &script);
}

#[test]
fn writes_on_one_machine_are_seen_on_another() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();

    w.put_ok(a.path(), "app/config", b"replicas: 3\n");
    assert_eq!(
        w.ok(b.path(), &["data", "get", "app/config"]),
        b"replicas: 3\n"
    );
    // A second version from B is seen on A.
    w.put_ok(b.path(), "app/config", b"replicas: 4\n");
    assert_eq!(
        w.ok(a.path(), &["data", "get", "app/config"]),
        b"replicas: 4\n"
    );
    let v = w.json(a.path(), &["data", "versions", "app/config"]);
    assert_eq!(v["versions"].as_array().unwrap().len(), 2, "{v}");

    // Files written by any command through exec.
    write_output(&w, a.path(), "f", "AAAA");
    assert!(w.rel_keys().contains(&"outputs/f".to_string()));
    assert_eq!(read_output(&w, b.path(), "f"), "AAAA");
    assert_eq!(
        std::fs::read(w.cache(b.path()).join("outputs/f")).unwrap(),
        b"AAAA"
    );

    // A same-size rewrite propagates (content, not size, decides).
    write_output(&w, a.path(), "f", "BBBB");
    assert_eq!(read_output(&w, b.path(), "f"), "BBBB");
    assert_eq!(
        std::fs::read(w.cache(b.path()).join("outputs/f")).unwrap(),
        b"BBBB"
    );
    // ... and back the other way.
    write_output(&w, b.path(), "f", "CCCC");
    assert_eq!(read_output(&w, a.path(), "f"), "CCCC");

    // Nested directories travel too.
    w.sh(
        a.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/workflow-runs/r1/steps" && echo done > "$SWAMP_DATASTORE_DIR/workflow-runs/r1/steps/s1""#,
    );
    let got = w.sh(
        b.path(),
        r#"cat "$SWAMP_DATASTORE_DIR/workflow-runs/r1/steps/s1""#,
    );
    assert_eq!(got, b"done\n");
}

#[test]
fn deletions_propagate_both_ways() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    w.put_ok(a.path(), "app/config", b"x\n");
    w.put_ok(a.path(), "keep/me", b"y\n");
    assert_eq!(w.ok(b.path(), &["data", "get", "app/config"]), b"x\n");
    let cache_a = w.cache(a.path());
    assert!(cache_a.join("data/app/config/@versions/1.bin").exists());

    // rm on B → gone on A (and from A's cache after A's next command).
    w.ok(b.path(), &["data", "rm", "app/config"]);
    let out = w.run_on(a.path(), &["data", "get", "app/config"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    assert!(!cache_a.join("data/app/config/@versions/1.bin").exists());
    assert!(!cache_a.join("data/app/config/@versions/1.json").exists());
    assert_eq!(w.ok(a.path(), &["data", "get", "keep/me"]), b"y\n");
    let keys = w.rel_keys();
    assert!(
        !keys.iter().any(|k| k.starts_with("data/app/config/")),
        "{keys:?}"
    );

    // A file removed via exec on A → gone from B's cache after B's next command.
    write_output(&w, a.path(), "doomed", "bye");
    assert_eq!(read_output(&w, b.path(), "doomed"), "bye");
    let cache_b = w.cache(b.path());
    assert!(cache_b.join("outputs/doomed").exists());
    w.sh(a.path(), r#"rm "$SWAMP_DATASTORE_DIR/outputs/doomed""#);
    assert!(!w.rel_keys().contains(&"outputs/doomed".to_string()));
    assert!(cache_b.join("outputs/doomed").exists(), "not yet pulled");
    w.ok(b.path(), &["data", "list"]);
    assert!(!cache_b.join("outputs/doomed").exists());
    assert_eq!(read_output(&w, b.path(), "doomed"), "");
}

/// Increments `outputs/counter` with a pause between read and write, so two
/// writers not serialized by the lock would certainly lose an update.
const INCREMENT: &str = r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs"; c="$SWAMP_DATASTORE_DIR/outputs/counter"; n=$(cat "$c" 2>/dev/null || echo 0); sleep 0.01; echo $((n+1)) > "$c""#;

#[test]
fn eight_processes_on_two_machines_times_20_increments_lose_nothing() {
    let w = std::sync::Arc::new(World::serial());
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let homes = [a.path().to_path_buf(), b.path().to_path_buf()];
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let w = w.clone();
            let home = homes[i % 2].clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let out = w.run_on(
                        &home,
                        &["--lock-timeout", "600", "exec", "--", "sh", "-c", INCREMENT],
                    );
                    assert!(
                        out.status.success(),
                        "worker {i} round {round} failed ({:?}): {}",
                        out.status,
                        stderr(&out)
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker panicked");
    }
    let c = tempfile::tempdir().unwrap();
    assert_eq!(read_output(&w, c.path(), "counter").trim(), "160");
    assert_eq!(w.lock_status(c.path())["held"], false);
}

#[test]
fn a_paused_holder_loses_its_lock_and_pushes_nothing() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let m = mark.path().display().to_string();
    let holder_err = mark.path().join("holder.stderr");
    let script = format!(
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs"; printf mine > "$SWAMP_DATASTORE_DIR/outputs/holder"; touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done"#
    );
    let mut holder = w
        .on(a.path())
        .env("SWAMP_LOCK_TTL_MS", "3000")
        .args(["exec", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&holder_err).unwrap())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let guard = GroupGuard(holder.id());
    wait_until("holder started", || mark.path().join("started").exists());
    assert!(w.lock_status(b.path())["held"] == true);

    signal_group(holder.id(), Signal::SIGSTOP);
    let start = Instant::now();
    loop {
        let v = w.lock_status(b.path());
        if v["lock"]["stale"] == true {
            break;
        }
        assert_eq!(
            v["held"], true,
            "lock vanished while the holder is stopped: {v}"
        );
        assert!(
            start.elapsed() < S3_DEADLINE,
            "lock never became stale: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The taker on machine B takes the stale lock over and writes.
    write_output(&w, b.path(), "taker", "taker");
    assert!(w.rel_keys().contains(&"outputs/taker".to_string()));

    // The holder wakes up, finds its lease expired and stops without pushing.
    signal_group(holder.id(), Signal::SIGCONT);
    let status = wait_child(&mut holder);
    drop(guard);
    let err = std::fs::read_to_string(&holder_err).unwrap();
    assert_eq!(status.code(), Some(75), "holder: {status:?} {err}");
    assert!(err.contains("lock lost"), "{err}");

    let c = tempfile::tempdir().unwrap();
    w.ok(c.path(), &["datastore", "sync", "--pull"]);
    let keys = w.rel_keys();
    assert!(keys.contains(&"outputs/taker".to_string()), "{keys:?}");
    assert!(
        !keys.contains(&"outputs/holder".to_string()),
        "the holder pushed after losing its lock: {keys:?}"
    );
    let cache_c = w.cache(c.path());
    assert_eq!(
        std::fs::read(cache_c.join("outputs/taker")).unwrap(),
        b"taker"
    );
    assert!(!cache_c.join("outputs/holder").exists());
    // The holder did not delete the taker's lock record either; it is free now.
    assert_eq!(w.lock_status(c.path())["held"], false);
}

/// A change that never reached the bucket (written behind swamp's back, as
/// a failed push leaves it) meets a change of the same path from another
/// machine: the remote version takes the path, the local one is kept as a
/// conflict copy, the user is told, and `datastore status` lists it.
#[test]
fn a_local_change_that_meets_a_remote_one_is_kept_as_a_conflict_copy() {
    let w = World::new();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_output(&w, a.path(), "f", "base");
    assert_eq!(read_output(&w, b.path(), "f"), "base");
    write_output(&w, a.path(), "f", "theirs");
    let local = w.cache(b.path()).join("outputs/f");
    std::fs::write(&local, "mine, never pushed").unwrap();
    let out = w.run_on(b.path(), &["exec", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(
        warning.contains("warning: outputs/f was changed here and remotely"),
        "{warning}"
    );
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "theirs");
    let status = w.json(b.path(), &["datastore", "status"]);
    let conflicts = status["conflicts"].as_array().expect("conflicts");
    assert_eq!(conflicts.len(), 1, "{status}");
    let copy = w
        .cache(b.path())
        .join(".swamp-conflicts")
        .join(conflicts[0].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(copy).unwrap(), "mine, never pushed");
    // The copy stays on this machine: nothing of it reaches the bucket.
    assert!(!w.rel_keys().iter().any(|k| k.contains("swamp-conflicts")));
    assert_eq!(read_output(&w, a.path(), "f"), "theirs");
}

/// An object the index lists is deleted from the bucket by hand. A fresh
/// machine's command fails and names it, instead of taking it for deleted
/// and pushing an index without it (which would delete everyone's copy).
#[test]
fn an_object_lost_from_the_bucket_is_reported_never_propagated_as_a_deletion() {
    let w = World::new();
    let (a, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_output(&w, a.path(), "kept", "k");
    write_output(&w, a.path(), "lost", "l");
    let (status, _) = w
        .moto
        .request(
            "DELETE",
            &format!("/{}/{PREFIX}/outputs/lost", w.bucket),
            b"",
        )
        .expect("server reachable");
    assert!(status == 204 || status == 200, "delete answered {status}");
    let out = w.run_on(fresh.path(), &["--json", "exec", "--", "true"]);
    let msg = assert_json_error(&out, 1, "sync_failed");
    assert!(
        msg.contains("outputs/lost") && msg.contains("missing from the bucket"),
        "{msg}"
    );
    assert!(
        w.index()["files"]["outputs/lost"].is_object(),
        "still indexed"
    );
    // The machine that holds it keeps it, and keeps working.
    assert_eq!(read_output(&w, a.path(), "lost"), "l");
    assert!(
        w.index()["files"]["outputs/lost"].is_object(),
        "still indexed"
    );
}

/// Another repo (another repoId) pointed at a prefix the first repo's
/// pushes own is refused, by a command and by a merging setup alike, and
/// nothing in the bucket changes.
#[test]
fn another_repo_pointed_at_the_prefix_is_refused_and_changes_nothing() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    w.put_ok(a.path(), "app/config", b"first repo's");
    let owner = repo_id(w.repo.path());
    assert_eq!(w.index()["repoId"], owner.as_str());
    let before = w.fetch(&index_key()).unwrap();
    let keys_before = w.keys();

    let other = init_repo();
    let home = tempfile::tempdir().unwrap();
    let on_other = |args: &[&str]| {
        let mut cmd = swamp(other.path());
        s3_env(&mut cmd, &w.moto, home.path());
        cmd.env("SWAMP_DATASTORE", format!("s3:{BUCKET}/{PREFIX}"))
            .env("AWS_ENDPOINT_URL", w.moto.endpoint());
        run(cmd.args(args))
    };
    for args in [
        &["--json", "data", "list"][..],
        &["--json", "data", "rm", "app/config"][..],
    ] {
        let out = on_other(args);
        let message = assert_json_error(&out, 1, "foreign_repo");
        assert!(
            message.contains(&format!("set 'repoId: {owner}'")),
            "{message}"
        );
    }
    let mut setup = swamp(other.path());
    s3_env(&mut setup, &w.moto, home.path());
    let mut args = w.setup_args();
    args.push("--merge".into());
    let out = run(setup.args(&args));
    assert!(!out.status.success(), "merged into another repo's prefix");
    assert!(
        stderr(&out).contains(&format!("holds the datastore of repo {owner}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.fetch(&index_key()).unwrap(), before);
    assert_eq!(w.keys(), keys_before);
    assert_eq!(
        w.ok(a.path(), &["data", "get", "app/config"]),
        b"first repo's"
    );
}
