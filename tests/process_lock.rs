//! Concurrency and fault tests of the filesystem lock with real processes.

mod support;

use nix::sys::signal::Signal;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use support::*;

/// A shell increment of `$SWAMP_DATASTORE_DIR/counter` with a pause between
/// read and write, so two unlocked writers would certainly lose an update.
const INCREMENT: &str = r#"c="$SWAMP_DATASTORE_DIR/counter"; n=$(cat "$c" 2>/dev/null || echo 0); sleep 0.01; echo $((n+1)) > "$c""#;

fn counter(repo: &std::path::Path) -> u64 {
    std::fs::read_to_string(repo.join(".swamp/counter"))
        .expect("counter file")
        .trim()
        .parse()
        .expect("counter value")
}

#[test]
fn eight_processes_times_25_increments_lose_nothing() {
    let repo = init_repo();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let path = repo.path().to_path_buf();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let out = run(swamp(&path).args([
                        "--lock-timeout",
                        "300",
                        "exec",
                        "--",
                        "sh",
                        "-c",
                        INCREMENT,
                    ]));
                    assert!(out.status.success(), "exec failed: {}", stderr(&out));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked");
    }
    assert_eq!(counter(repo.path()), 200);
    assert_eq!(lock_status(repo.path(), None)["held"], false);
}

#[test]
fn racing_takers_of_a_stale_lock_never_both_win() {
    let repo = init_repo();
    for round in 0..4 {
        // Plant a lock whose holder vanished long ago.
        let stale = serde_json::json!({
            "holder": "ghost@nowhere", "hostname": "nowhere", "pid": 999999,
            "acquiredAt": "2020-01-01T00:00:00Z", "ttlMs": 100, "token": format!("ghost{round}")
        });
        let lock = repo.path().join(".swamp/.datastore.lock");
        std::fs::write(&lock, serde_json::to_vec(&stale).unwrap()).unwrap();
        wait_until("planted lock is stale", || {
            lock_status(repo.path(), None)["lock"]["stale"] == true
        });
        let racers: Vec<_> = (0..6)
            .map(|_| {
                swamp(repo.path())
                    .args(["--lock-timeout", "120", "exec", "--", "sh", "-c", INCREMENT])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for r in racers {
            let out = r.wait_with_output().expect("wait");
            assert!(out.status.success(), "racer failed: {}", stderr(&out));
        }
        assert_eq!(counter(repo.path()), 6 * (round + 1));
    }
}

#[test]
fn a_holder_frozen_past_its_ttl_reports_lock_lost_and_writes_nothing() {
    let repo = init_repo();
    let dir = repo.path();
    let script = format!(
        "echo $$ > {d}/child.pid; touch {d}/started; while [ ! -f {d}/go ]; do sleep 0.02; done; echo holder >> {d}/out",
        d = dir.display()
    );
    let holder = swamp(dir)
        .env("SWAMP_LOCK_TTL_MS", "1500")
        .args(["exec", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    wait_until("holder's command started", || dir.join("started").exists());
    let child_pid: u32 = std::fs::read_to_string(dir.join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    signal_group(holder.id(), Signal::SIGSTOP);
    wait_until("frozen holder's lock is stale", || {
        lock_status(dir, None)["lock"]["stale"] == true
    });
    let taker = run(swamp(dir).env("SWAMP_LOCK_TTL_MS", "1500").args([
        "--lock-timeout",
        "60",
        "exec",
        "--",
        "sh",
        "-c",
        &format!("echo taker >> {}/out", dir.display()),
    ]));
    assert!(taker.status.success(), "taker failed: {}", stderr(&taker));
    // The taker holds a fresh lock while the old holder wakes up.
    let blocker = swamp(dir)
        .env("SWAMP_LOCK_TTL_MS", "30000")
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            &format!(
                "touch {d}/blocking; while [ ! -f {d}/unblock ]; do sleep 0.02; done",
                d = dir.display()
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn blocker");
    wait_until("second holder running", || dir.join("blocking").exists());
    let blocker_token = lock_status(dir, None)["lock"]["info"]["token"].clone();

    signal_group(holder.id(), Signal::SIGCONT);
    let out = holder.wait_with_output().expect("wait holder");
    assert_eq!(out.status.code(), Some(75), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("lock lost"),
        "stderr: {}",
        stderr(&out)
    );
    wait_until("holder's child is gone", || is_dead(child_pid));
    std::fs::write(dir.join("go"), b"").unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("out")).unwrap(), "taker\n");
    // The old holder did not touch its successor's lock.
    assert_eq!(
        lock_status(dir, None)["lock"]["info"]["token"],
        blocker_token
    );
    std::fs::write(dir.join("unblock"), b"").unwrap();
    let mut blocker = blocker;
    assert!(wait_child(&mut blocker).success());
}

#[test]
fn after_kill_9_the_next_command_proceeds_once_the_ttl_passes() {
    let repo = init_repo();
    let dir = repo.path();
    let mut holder = swamp(dir)
        .env("SWAMP_LOCK_TTL_MS", "1500")
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            &format!("touch {}/started; sleep 600", dir.display()),
        ])
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    wait_until("holder started", || dir.join("started").exists());
    signal_group(holder.id(), Signal::SIGKILL);
    let _ = holder.wait();
    let out = run(swamp(dir).env("SWAMP_LOCK_TTL_MS", "1500").args([
        "--lock-timeout",
        "60",
        "exec",
        "--",
        "true",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lock_status(dir, None)["held"], false);
}

#[test]
fn after_kill_9_force_release_lets_the_next_command_in_at_once() {
    let repo = init_repo();
    let dir = repo.path();
    let mut holder = swamp(dir)
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            &format!("touch {}/started; sleep 600", dir.display()),
        ])
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    wait_until("holder started", || dir.join("started").exists());
    signal_group(holder.id(), Signal::SIGKILL);
    let _ = holder.wait();
    // The 30 s lock is still fresh: a command that will not wait fails with 75.
    let blocked = run(swamp(dir).args(["--json", "--lock-timeout", "0", "exec", "--", "true"]));
    assert_eq!(blocked.status.code(), Some(75));
    let doc: serde_json::Value = serde_json::from_slice(&blocked.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "lock_timeout");
    let released = run(swamp(dir).args(["datastore", "lock", "release", "--force"]));
    assert!(released.status.success(), "{}", stderr(&released));
    assert!(String::from_utf8_lossy(&released.stdout).contains("pid"));
    let out = run(swamp(dir).args(["--lock-timeout", "0", "exec", "--", "true"]));
    assert!(out.status.success(), "{}", stderr(&out));
}

fn interrupted_holder_releases(sig: Signal, to_group: bool, code: i32) {
    let repo = init_repo();
    let dir = repo.path();
    let mut holder = swamp(dir)
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            &format!("touch {}/started; sleep 600", dir.display()),
        ])
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    wait_until("holder started", || dir.join("started").exists());
    assert_eq!(lock_status(dir, None)["held"], true);
    if to_group {
        signal_group(holder.id(), sig);
    } else {
        signal(holder.id(), sig);
    }
    let status = wait_child(&mut holder);
    assert_eq!(status.code(), Some(code));
    assert_eq!(lock_status(dir, None)["held"], false);
    // Clean up a child that ignored nothing but may linger as a zombie.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        Signal::SIGKILL,
    );
}

#[test]
fn ctrl_c_releases_the_lock_and_exits_130() {
    interrupted_holder_releases(Signal::SIGINT, true, 130);
}

#[test]
fn sigterm_to_swamp_alone_is_forwarded_and_releases_the_lock() {
    interrupted_holder_releases(Signal::SIGTERM, false, 143);
}

#[test]
fn commands_wait_for_the_lock_rather_than_fail() {
    let repo = init_repo();
    let dir = repo.path();
    let mut holder = swamp(dir)
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            &format!(
                "touch {d}/started; while [ ! -f {d}/go ]; do sleep 0.02; done",
                d = dir.display()
            ),
        ])
        .spawn()
        .expect("spawn holder");
    wait_until("holder started", || dir.join("started").exists());
    // The waiter's debug log says each time it found the lock busy.
    let waiter_log = dir.join("waiter.log");
    let mut waiter = swamp(dir)
        .args(["data", "put", "x", "--file", "-"])
        .env(
            "SWAMP_LOG",
            "swamp_datastore::infrastructure::coordinator=debug",
        )
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&waiter_log).unwrap())
        .spawn()
        .expect("spawn waiter");
    let busy_seen = || {
        std::fs::read_to_string(&waiter_log)
            .unwrap_or_default()
            .matches("lock busy, waiting")
            .count()
    };
    // Found busy, backed off and tried again: it waits, and it is still
    // waiting while the holder runs (whatever the machine's speed).
    wait_until("the waiter retrying a busy lock", || {
        busy_seen() >= 2 || waiter.try_wait().unwrap().is_some()
    });
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "waiter did not wait: {}",
        std::fs::read_to_string(&waiter_log).unwrap_or_default()
    );
    std::fs::write(dir.join("go"), b"").unwrap();
    assert!(wait_child(&mut holder).success());
    assert!(wait_child(&mut waiter).success());
}
