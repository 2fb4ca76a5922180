//! The S3 lock never fails silently: real swamp processes reach a real S3
//! server (moto) through the fault-injecting proxy (`support::proxy`), which
//! loses replies, answers 409/503, stalls and strips conditional headers; a
//! skewed clock comes from `faketime`; holders are frozen with SIGSTOP.

mod support;

use nix::sys::signal::Signal;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::proxy::*;
use support::s3::*;
use support::*;

/// A world whose datastore is reached through a proxy in front of moto.
struct Proxied {
    w: World,
    proxy: FaultProxy,
    home: tempfile::TempDir,
}

/// Requests on a lock object: the whole-datastore lock, or the scoped
/// record (`.locks/{scope}~{id}.lock`) an item writer (`data put`) holds, which
/// follows the same rules.
fn lock_key() -> Match {
    Match::any().key_suffix(".lock")
}

fn lock_put() -> Match {
    Match::put().key_suffix(".lock")
}

impl Proxied {
    /// A repo set up on S3 through the proxy (no faults during setup).
    fn new(bucket: &'static str) -> Self {
        let p = Self::bare(bucket);
        let out = p.setup();
        assert!(out.status.success(), "setup: {}", stderr(&out));
        p
    }

    /// The proxy and world, not yet set up.
    fn bare(bucket: &'static str) -> Self {
        let w = World::create(Moto::start(), bucket);
        let proxy = FaultProxy::start(w.moto.port);
        Proxied {
            w,
            proxy,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// `--json datastore setup s3` with the proxy as the endpoint.
    fn setup(&self) -> Output {
        let mut args = self.w.setup_args();
        let at = args.iter().position(|a| a == "--endpoint-url").unwrap();
        args[at + 1] = self.proxy.endpoint();
        args.insert(0, "--json".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.w.run_on(self.home.path(), &args)
    }

    fn cmd(&self) -> Command {
        self.w.on(self.home.path())
    }

    /// The whole-datastore lock record, or else a scoped one, if any is left.
    fn remote_lock(&self) -> Option<Value> {
        let scoped = self
            .w
            .rel_keys()
            .into_iter()
            .find(|k| k.starts_with(".locks/"));
        let key = scoped.unwrap_or_else(|| ".datastore.lock".into());
        self.w
            .fetch(&format!("{PREFIX}/{key}"))
            .map(|b| serde_json::from_slice(&b).expect("lock json"))
    }
}

/// A JSON error document: exit code and error code checked, message returned.
fn json_error(out: &Output, exit: i32, code: &str) -> String {
    assert_json_error(out, exit, code)
}

#[test]
fn a_lock_create_whose_reply_was_lost_is_adopted_at_once() {
    let p = Proxied::new("lost-create");
    let rule = p
        .proxy
        .add(Rule::new(lock_put().has_header("if-none-match"), Fault::LoseReply).times(1));
    // Without adoption the command meets its own 30 s record and times out.
    let out = run(p
        .cmd()
        .args(["--lock-timeout", "5", "data", "put", "a", "--file", "-"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(p.proxy.applied(rule), 1);
    assert!(p.remote_lock().is_none(), "released");
}

#[test]
fn a_renewal_whose_reply_was_lost_keeps_the_command_alive() {
    let p = Proxied::new("lost-renewal");
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let renewal = lock_put().has_header("if-match");
    let rule = p
        .proxy
        .add(Rule::new(renewal.clone(), Fault::LoseReply).times(1));
    let mut holder = p
        .cmd()
        // Long enough that a loaded machine's slow renewal does not lapse
        // the lease for real (which would end the holder with 75).
        .env("SWAMP_LOCK_TTL_MS", "3000")
        .args(["exec", "--", "sh", "-c"])
        .arg(format!(
            "while [ ! -f {} ]; do sleep 0.02; done",
            go.display()
        ))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn holder");
    // The lost renewal lands; the SDK's retry meets our own write (412).
    let lost = p.proxy.wait_for(&renewal, 1, S3_DEADLINE)[0].seq;
    assert_eq!(p.proxy.applied(rule), 1);
    // The adopted lease keeps renewing: three more renewals succeed, which
    // spans one TTL, so a lease taken for lost would have been fenced by now.
    let renewed_after = || {
        p.proxy
            .seen()
            .iter()
            .filter(|s| renewal.matches(s) && s.seq > lost && s.status == Some(200))
            .count()
    };
    let deadline = std::time::Instant::now() + S3_DEADLINE;
    while renewed_after() < 3 {
        if std::time::Instant::now() > deadline || holder.try_wait().unwrap().is_some() {
            let log: Vec<String> = p
                .proxy
                .seen()
                .iter()
                .map(|s| {
                    format!(
                        "#{} {} {} {:?} {:?}",
                        s.seq, s.method, s.path, s.fault, s.status
                    )
                })
                .collect();
            panic!(
                "no 3 renewals after the lost reply; holder: {:?}\n{}",
                holder.try_wait(),
                log.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&go, b"").unwrap();
    let status = wait_child(&mut holder);
    let mut err = String::new();
    std::io::Read::read_to_string(holder.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(p.remote_lock().is_none(), "released");
}

#[test]
fn a_takeover_whose_reply_was_lost_is_adopted() {
    let p = Proxied::new("lost-takeover");
    let ghost = lock_record("ghost@gone", 100, "ghost-token");
    p.w.plant(
        &format!("{PREFIX}/.datastore.lock"),
        &serde_json::to_vec(&ghost).unwrap(),
    );
    wait_until("the planted lock is stale", || {
        p.w.json(p.home.path(), &["datastore", "lock", "status"])["lock"]["stale"] == true
    });
    let takeover = lock_put().has_header("if-match");
    let rule = p.proxy.add(Rule::new(takeover, Fault::LoseReply).times(1));
    // A whole-datastore command takes the stale lock over (an item writer
    // would only ignore it).
    let out = run(p.cmd().args(["--lock-timeout", "5", "exec", "--", "true"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(p.proxy.applied(rule), 1);
    assert!(p.remote_lock().is_none(), "released");
}

#[test]
fn a_release_whose_reply_was_lost_still_releases() {
    let p = Proxied::new("lost-release");
    let rule = p
        .proxy
        .add(Rule::new(Match::delete().key_suffix(".lock"), Fault::LoseReply).times(1));
    let out = run(p.cmd().args(["data", "put", "a", "--file", "-"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "no warning: {}", stderr(&out));
    assert_eq!(p.proxy.applied(rule), 1);
    assert!(p.remote_lock().is_none(), "released");
}

#[test]
fn conflicts_and_slowdowns_on_the_lock_are_retried() {
    let p = Proxied::new("lock-retries");
    let conflicts = p
        .proxy
        .add(Rule::new(lock_put(), Fault::Status(409, "ConditionalRequestConflict")).times(2));
    let slow = p
        .proxy
        .add(Rule::new(lock_key(), Fault::Status(503, "SlowDown")).times(2));
    let out = run(p.cmd().args(["data", "put", "a", "--file", "-"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(p.proxy.applied(conflicts), 2);
    assert_eq!(p.proxy.applied(slow), 2);
    assert!(p.remote_lock().is_none(), "released");
}

#[test]
fn a_store_that_ignores_conditional_writes_is_refused_before_anything_changes() {
    let p = Proxied::bare("careless-store");
    p.proxy
        .add(Rule::new(Match::any(), Fault::StripConditionalHeaders));
    put(p.w.repo.path(), "kept", b"local data");
    let before = p.w.config();
    let out = p.setup();
    let msg = json_error(&out, 1, "conditional_writes_unsupported");
    assert!(
        msg.contains("If-None-Match") && msg.contains("If-Match"),
        "{msg}"
    );
    assert_eq!(p.w.config(), before, "config unchanged");
    assert!(
        p.w.rel_keys().is_empty(),
        "nothing left in the bucket: {:?}",
        p.w.rel_keys()
    );
    let got = run(swamp(p.w.repo.path()).args(["data", "get", "kept"]));
    assert_eq!(got.stdout, b"local data");
}

#[test]
fn a_store_that_ignores_only_conditional_deletes_is_accepted_and_said_so() {
    let p = Proxied::bare("no-cond-delete");
    p.proxy
        .add(Rule::new(Match::delete(), Fault::StripConditionalHeaders));
    let out = p.setup();
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["conditionalWrites"]["create"], true, "{doc}");
    assert_eq!(doc["conditionalWrites"]["update"], true, "{doc}");
    assert_eq!(doc["conditionalWrites"]["delete"], false, "{doc}");
    let put = run(p.cmd().args(["data", "put", "a", "--file", "-"]));
    assert!(put.status.success(), "{}", stderr(&put));
    assert!(p.remote_lock().is_none(), "released");
}

#[test]
fn status_runs_the_probe_and_calls_a_careless_store_unhealthy() {
    let p = Proxied::new("status-probe");
    let healthy = p.w.json(p.home.path(), &["datastore", "status"]);
    assert_eq!(healthy["health"]["healthy"], true, "{healthy}");
    assert_eq!(healthy["conditionalWrites"]["create"], true, "{healthy}");
    p.proxy
        .add(Rule::new(Match::any(), Fault::StripConditionalHeaders));
    let out = run(p.cmd().args(["--json", "datastore", "status"]));
    assert_eq!(code_of(&out), 1, "unhealthy exits 1: {}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["health"]["healthy"], false, "{doc}");
    assert_eq!(doc["conditionalWrites"]["create"], false, "{doc}");
    assert_eq!(doc["conditionalWrites"]["update"], false, "{doc}");
    let text = stdout_of(&run(p.cmd().args(["datastore", "status"])));
    assert!(
        text.contains("UNHEALTHY") && text.contains("If-None-Match"),
        "{text}"
    );
}

#[test]
fn a_stalled_store_fails_the_command_clearly_and_releases_the_lock() {
    let p = Proxied::new("stalled");
    p.proxy.add(Rule::new(
        Match::put().key_suffix("/.datastore-index.json"),
        Fault::Stall(Duration::from_secs(600)),
    ));
    let out = run(p
        .cmd()
        .env("SWAMP_S3_TIMEOUT_SECS", "1")
        .args(["--json", "data", "put", "a", "--file", "-"]));
    assert_ne!(code_of(&out), 0);
    let doc = json_of(&out);
    let msg = doc["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("timed out"), "{doc}");
    assert!(p.remote_lock().is_none(), "the lock was released");
}

/// A `swamp` for the world whose clock runs `offset` (e.g. "+45s") off.
fn skewed(p: &Proxied, offset: &str) -> Command {
    let mut cmd = Command::new("faketime");
    cmd.arg("-f")
        .arg(offset)
        .arg(bin())
        .arg("--repo-dir")
        .arg(p.w.repo.path())
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env_remove("SWAMP_DATASTORE")
        .env_remove("SWAMP_LOCK_TTL_MS")
        .stdin(Stdio::null());
    s3_env(&mut cmd, &p.w.moto, p.home.path());
    cmd
}

#[test]
fn a_clock_running_ahead_does_not_steal_a_live_lock() {
    let p = Proxied::new("clock-ahead");
    let dir = tempfile::tempdir().unwrap();
    let (started, go) = (dir.path().join("started"), dir.path().join("go"));
    let mut holder = p
        .cmd()
        .args(["exec", "--", "sh", "-c"])
        .arg(format!(
            "touch {}; while [ ! -f {} ]; do sleep 0.02; done",
            started.display(),
            go.display()
        ))
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let _group = GroupGuard(holder.id());
    wait_until("holder started", || started.exists());
    // 45 s ahead of a 30 s lock: by its own clock the lock looks expired.
    let status = run(skewed(&p, "+45s").args(["--json", "datastore", "lock", "status"]));
    assert_eq!(
        json_of(&status)["lock"]["stale"],
        false,
        "{}",
        stdout_of(&status)
    );
    let out = run(skewed(&p, "+45s").args([
        "--json",
        "--lock-timeout",
        "3",
        "data",
        "put",
        "x",
        "--file",
        "-",
    ]));
    json_error(&out, 75, "lock_timeout");
    std::fs::write(&go, b"").unwrap();
    assert!(
        wait_child(&mut holder).success(),
        "the holder was not disturbed"
    );
}

#[test]
fn a_clock_running_behind_takes_over_a_dead_holder_after_its_ttl() {
    let p = Proxied::new("clock-behind");
    let ghost = lock_record("ghost@gone", 1000, "ghost-token");
    p.w.plant(
        &format!("{PREFIX}/.datastore.lock"),
        &serde_json::to_vec(&ghost).unwrap(),
    );
    // 45 s behind: by its own clock the 1 s lock stays fresh for 46 s.
    let out =
        run(skewed(&p, "-45s").args(["--lock-timeout", "30", "data", "put", "x", "--file", "-"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(p.remote_lock().is_none(), "released");
}

/// Freezes swamp after its command ended, until the lease expired and
/// another machine took the lock and wrote; resumed, it must exit 75 and
/// push nothing.
#[test]
fn a_holder_frozen_after_its_child_ended_exits_75_and_pushes_nothing() {
    let p = Proxied::new("frozen-s3");
    let other = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (started, go) = (dir.path().join("started"), dir.path().join("go"));
    let script = format!(
        "touch {s}; while [ ! -f {g} ]; do sleep 0.02; done; mkdir -p \"$SWAMP_DATASTORE_DIR/data\"; echo late > \"$SWAMP_DATASTORE_DIR/data/late.txt\"",
        s = started.display(),
        g = go.display()
    );
    let late = p.w.cache(p.home.path()).join("data/late.txt");
    let mut holder = p
        .cmd()
        .env("SWAMP_LOCK_TTL_MS", "1500")
        .args(["--json", "exec", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let _group = GroupGuard(holder.id());
    wait_until("holder's command started", || started.exists());
    signal_group(holder.id(), Signal::SIGSTOP);
    std::fs::write(&go, b"").unwrap();
    wait_until("the command wrote and ended", || late.exists());
    wait_until("the frozen lease is stale", || {
        p.w.json(other.path(), &["datastore", "lock", "status"])["lock"]["stale"] == true
    });
    p.w.put_ok(other.path(), "other", b"written by the taker");
    signal_group(holder.id(), Signal::SIGCONT);
    let status = wait_child(&mut holder);
    let mut out = Vec::new();
    std::io::Read::read_to_end(holder.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_eq!(status.code(), Some(75));
    let doc: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(doc["error"]["code"], "lock_lost");
    assert!(
        !p.w.rel_keys().iter().any(|k| k.contains("late.txt")),
        "pushed without the lock: {:?}",
        p.w.rel_keys()
    );
}

/// Setup into S3 takes the target's lock too: a prefix whose lock another
/// machine holds is not migrated into behind its back.
#[test]
fn setup_into_a_prefix_whose_lock_is_held_waits_and_changes_nothing() {
    let p = Proxied::bare("target-locked");
    put(p.w.repo.path(), "mine", b"local data");
    let live = lock_record("alice@ci-7", 600_000, "alice-token");
    p.w.plant(
        &format!("{PREFIX}/.datastore.lock"),
        &serde_json::to_vec(&live).unwrap(),
    );
    let before = p.w.config();
    let mut args = p.w.setup_args();
    args.splice(
        0..0,
        ["--json".to_string(), "--lock-timeout".into(), "1".into()],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = p.w.run_on(p.home.path(), &args);
    let msg = json_error(&out, 75, "lock_timeout");
    assert!(msg.contains("alice@ci-7"), "{msg}");
    assert_eq!(p.w.config(), before);
    assert_eq!(p.w.rel_keys(), vec![".datastore.lock".to_string()]);
}

/// A prefix that already holds another datastore is not merged into silently.
#[test]
fn setup_into_a_prefix_holding_another_datastore_needs_merge() {
    let p = Proxied::bare("target-occupied");
    // Plain files: `data put` also writes a dated audit log, and two repos'
    // logs of one day would conflict.
    let write = |repo: &std::path::Path, name: &str| {
        let outputs = repo.join(".swamp/outputs");
        std::fs::create_dir_all(&outputs).unwrap();
        std::fs::write(outputs.join(name), name.as_bytes()).unwrap();
    };
    write(p.w.repo.path(), "mine");
    // Another clone's datastore lives there already.
    let other = clone_repo(p.w.repo.path());
    write(other.path(), "theirs");
    let mut args = p.w.setup_args();
    args.insert(0, "--json".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = swamp(other.path());
    s3_env(&mut cmd, &p.w.moto, p.home.path());
    let theirs = run(cmd.args(&args));
    assert!(theirs.status.success(), "{}", stderr(&theirs));
    let before = p.w.config();
    let out = p.w.run_on(p.home.path(), &args);
    let msg = json_error(&out, 1, "target_occupied");
    assert!(
        msg.contains("outputs/theirs") && msg.contains("--merge"),
        "{msg}"
    );
    assert_eq!(p.w.config(), before);
    assert!(
        !p.w.rel_keys().iter().any(|k| k.contains("mine")),
        "nothing uploaded"
    );
    let mut merge = args.clone();
    merge.push("--merge");
    let merged = p.w.run_on(p.home.path(), &merge);
    assert!(merged.status.success(), "{}", stdout_of(&merged));
    let index = p.w.index();
    let files = index["files"].as_object().expect("files");
    assert!(files.contains_key("outputs/mine"), "{index}");
    assert!(files.contains_key("outputs/theirs"), "{index}");
}

/// SIGTERM while the push hangs on a stalled upload: swamp winds down within
/// its bounds, releases the lock, and the index names nothing that did not
/// reach the bucket.
#[test]
fn sigterm_during_a_stalled_push_releases_the_lock() {
    let p = Proxied::new("term-mid-push");
    let stalled = Match::put().key_contains("/outputs/");
    p.proxy.add(Rule::new(
        stalled.clone(),
        Fault::Stall(Duration::from_secs(600)),
    ));
    let script = r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs"; for i in 1 2 3 4 5 6 7 8; do echo $i > "$SWAMP_DATASTORE_DIR/outputs/f$i"; done"#;
    let mut holder = p
        .cmd()
        .args(["exec", "--", "sh", "-c", script])
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let _group = GroupGuard(holder.id());
    p.proxy.wait_for_arrivals(&stalled, 1, S3_DEADLINE);
    let sent = std::time::Instant::now();
    signal(holder.id(), Signal::SIGTERM);
    let status = wait_child(&mut holder);
    let took = sent.elapsed();
    eprintln!("exited {took:?} after SIGTERM");
    assert_eq!(status.code(), Some(143));
    // The design bound is 5 s (2.5 s grace + 1.5 s release); a busy machine
    // gets slack, a hang does not.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(p.remote_lock().is_none(), "the lock was released");
    if p.w
        .fetch(&format!("{PREFIX}/.datastore-index.json"))
        .is_some()
    {
        let index = p.w.index();
        assert!(
            !index["files"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with("outputs/")),
            "{index}"
        );
    }
}

/// kill -9 of an S3 holder: its lock stays until its TTL passes (a command
/// that will not wait gets 75), or until `lock release --force`.
#[test]
fn after_kill_9_of_an_s3_holder_the_lock_waits_for_its_ttl_or_a_force_release() {
    let p = Proxied::new("kill-9-s3");
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let mut holder = p
        .cmd()
        .args(["exec", "--", "sh", "-c"])
        .arg(format!("touch {}; exec sleep 600", started.display()))
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let group = GroupGuard(holder.id());
    wait_until("holder started", || started.exists());
    signal_group(holder.id(), Signal::SIGKILL);
    let _ = holder.wait();
    drop(group);
    let blocked = run(p.cmd().args([
        "--json",
        "--lock-timeout",
        "0",
        "data",
        "put",
        "x",
        "--file",
        "-",
    ]));
    json_error(&blocked, 75, "lock_timeout");
    let released = run(p.cmd().args(["datastore", "lock", "release", "--force"]));
    assert!(released.status.success(), "{}", stderr(&released));
    assert!(
        stdout_of(&released).contains("pid"),
        "{}",
        stdout_of(&released)
    );
    let out = run(p
        .cmd()
        .args(["--lock-timeout", "0", "data", "put", "x", "--file", "-"]));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The index write lands and its reply is lost; the SDK's retry meets our
/// own index (412). The command succeeds, stores exactly one version, and
/// another machine sees it.
#[test]
fn an_index_write_whose_reply_was_lost_is_not_reported_as_a_conflict() {
    let p = Proxied::new("lost-index-reply");
    let rule = p.proxy.add(
        Rule::new(
            Match::put().key_suffix("/.datastore-index.json"),
            Fault::LoseReply,
        )
        .times(1),
    );
    let out = p.w.put(p.home.path(), "app/config", b"replicas: 3\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(p.proxy.applied(rule), 1);
    let other = tempfile::tempdir().unwrap();
    let versions = p.w.json(other.path(), &["data", "versions", "app/config"]);
    assert_eq!(
        versions["versions"].as_array().map(Vec::len),
        Some(1),
        "{versions}"
    );
    let got = p.w.ok(other.path(), &["data", "get", "app/config"]);
    assert_eq!(got, b"replicas: 3\n");
}

/// Issue 13, finding 4: a holder hashed and sent its upload, then froze and
/// lost the lock; a taker wrote the same path and its index; only then does
/// the holder's upload reach the store. The late object is complete and
/// carries its own recorded hash, but it was uploaded for the generation the
/// taker's index has, not a newer one: a fresh machine refuses it (naming
/// repair) instead of "healing" to it, the holder exits 75, and repair from
/// the taker's cache puts the indexed content back.
#[test]
fn a_late_upload_from_a_holder_that_lost_the_lock_never_wins_over_the_takers_index() {
    let p = Proxied::new("late-upload");
    let (taker, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let upload = Match::put().key_contains("/outputs/f");
    p.proxy
        .add(Rule::new(upload.clone(), Fault::HoldUntilReleased).times(1));
    let mut holder = p
        .cmd()
        .env("SWAMP_LOCK_TTL_MS", "1500")
        .args([
            "--json",
            "exec",
            "--",
            "sh",
            "-c",
            r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && printf 'holder, late' > "$SWAMP_DATASTORE_DIR/outputs/f""#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let _group = GroupGuard(holder.id());
    p.proxy.wait_for_arrivals(&upload, 1, S3_DEADLINE);
    signal_group(holder.id(), Signal::SIGSTOP);
    wait_until("the frozen lease is stale", || {
        p.w.json(taker.path(), &["datastore", "lock", "status"])["lock"]["stale"] == true
    });
    p.w.sh(
        taker.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && printf "taker's" > "$SWAMP_DATASTORE_DIR/outputs/f""#,
    );
    p.proxy.release_held();
    let key = format!("{PREFIX}/outputs/f");
    wait_until("the late upload landed", || {
        p.w.fetch(&key).as_deref() == Some(&b"holder, late"[..])
    });
    signal_group(holder.id(), Signal::SIGCONT);
    let status = wait_child(&mut holder);
    assert_eq!(
        status.code(),
        Some(75),
        "the holder must end with lock lost"
    );

    let out =
        p.w.run_on(fresh.path(), &["--json", "datastore", "sync", "--pull"]);
    let msg = json_error(&out, 1, "sync_failed");
    assert!(
        msg.contains("outputs/f") && msg.contains("swamp datastore repair"),
        "{msg}"
    );
    // Repair on the fresh machine cannot fix it (no copy there): exit 1,
    // naming the way; on the taker it restores the indexed content.
    let out = p.w.run_on(fresh.path(), &["datastore", "repair"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    assert!(stdout_of(&out).contains("run repair on a machine whose cache holds them"));
    let v = p.w.json(taker.path(), &["datastore", "repair"]);
    assert_eq!(
        v["repair"]["restored"],
        serde_json::json!(["outputs/f"]),
        "{v}"
    );
    let seen =
        p.w.sh(fresh.path(), r#"cat "$SWAMP_DATASTORE_DIR/outputs/f""#);
    assert_eq!(seen, b"taker's");
}

impl Proxied {
    /// Runs swamp with `args` (a short lease, so a rerun soon takes over),
    /// holds the next request `held` selects with `fault`, kills the whole
    /// process group with SIGKILL once that request arrived, then lets held
    /// requests through (they reach the store after their sender died).
    fn kill_9_at(&self, held: &Match, fault: Fault, args: &[&str]) {
        let earlier = self.proxy.count(held);
        self.proxy.add(Rule::new(held.clone(), fault).times(1));
        let mut victim = self
            .cmd()
            .env("SWAMP_LOCK_TTL_MS", "1500")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn swamp");
        let _group = GroupGuard(victim.id());
        self.proxy.wait_for_arrivals(held, earlier + 1, S3_DEADLINE);
        kill_group(victim.id());
        wait_child(&mut victim);
        self.proxy.release_held();
    }

    /// No temp file left in the cache of `home`, and no lock held (as
    /// `observer`, another machine, sees it).
    fn assert_nothing_left(&self, home: &std::path::Path, observer: &std::path::Path) {
        let cache = self.w.cache(home);
        assert!(temp_files(&cache).is_empty(), "{:?}", temp_files(&cache));
        let status = self.w.json(observer, &["datastore", "lock", "status"]);
        assert_eq!(status["held"], false, "{status}");
    }
}

/// Every file under `root` whose name is one of swamp's temp shapes.
fn temp_files(root: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            } else if name.contains(".swamp-tmp-") {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

/// kill -9 of a machine while it downloads: the next command on that
/// machine finishes the pull (after the dead lease's TTL), every file has the
/// indexed content, and no temp file is left in the cache.
#[test]
fn kill_9_during_a_pull_is_repaired_by_the_next_command() {
    let p = Proxied::new("kill-mid-pull");
    let writer = tempfile::tempdir().unwrap();
    p.w.sh(
        writer.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && for i in 1 2 3; do echo "file $i" > "$SWAMP_DATASTORE_DIR/outputs/f$i"; done"#,
    );
    let download = Match::get().key_suffix("/outputs/f2");
    p.kill_9_at(
        &download,
        Fault::HoldUntilReleased,
        &["datastore", "sync", "--pull"],
    );
    let seen = p.w.sh(
        p.home.path(),
        r#"cat "$SWAMP_DATASTORE_DIR/outputs/f1" "$SWAMP_DATASTORE_DIR/outputs/f2" "$SWAMP_DATASTORE_DIR/outputs/f3""#,
    );
    assert_eq!(seen, b"file 1\nfile 2\nfile 3\n");
    p.assert_nothing_left(p.home.path(), writer.path());
}

/// kill -9 of a machine while its index write is in flight, whether the
/// write then lands (the request was already sent) or never does: the next
/// command on that machine converges, another machine sees the file, and
/// nothing is left locked or half-written.
#[test]
fn kill_9_during_the_index_write_is_repaired_by_the_next_command() {
    for (round, lands) in [true, false].into_iter().enumerate() {
        let p = Proxied::new(if lands {
            "kill-index-lands"
        } else {
            "kill-index-lost"
        });
        let index_put = Match::put().key_suffix("/.datastore-index.json");
        let fault = if lands {
            Fault::HoldUntilReleased
        } else {
            Fault::Stall(Duration::from_secs(600))
        };
        let script = format!(
            r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && echo "round {round}" > "$SWAMP_DATASTORE_DIR/outputs/new""#
        );
        p.kill_9_at(&index_put, fault, &["exec", "--", "sh", "-c", &script]);
        if lands {
            wait_until("the orphaned index write landed", || {
                p.w.fetch(&format!("{PREFIX}/.datastore-index.json"))
                    .is_some()
                    && p.w.index()["files"].get("outputs/new").is_some()
            });
        }
        // The same machine's next command converges.
        let out = p.w.run_on(p.home.path(), &["datastore", "sync"]);
        assert!(out.status.success(), "lands={lands}: {}", stderr(&out));
        assert!(
            p.w.index()["files"].get("outputs/new").is_some(),
            "lands={lands}: {}",
            p.w.index()
        );
        let other = tempfile::tempdir().unwrap();
        let seen =
            p.w.sh(other.path(), r#"cat "$SWAMP_DATASTORE_DIR/outputs/new""#);
        assert_eq!(seen, format!("round {round}\n").as_bytes(), "lands={lands}");
        p.assert_nothing_left(p.home.path(), other.path());
    }
}

/// Transient 503s on uploads and on downloads are retried: both commands
/// succeed and the data is identical.
#[test]
fn transient_slowdowns_on_uploads_and_downloads_change_nothing() {
    let p = Proxied::new("slowdowns");
    let uploads = Match::put().key_contains("/outputs/");
    let downloads = Match::get().key_contains("/outputs/");
    p.proxy
        .add(Rule::new(uploads.clone(), Fault::Status(503, "SlowDown")).times(2));
    p.proxy
        .add(Rule::new(downloads.clone(), Fault::Status(503, "SlowDown")).times(2));
    p.w.sh(
        p.home.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && for i in 1 2 3; do echo "slow $i" > "$SWAMP_DATASTORE_DIR/outputs/s$i"; done"#,
    );
    let other = tempfile::tempdir().unwrap();
    let seen = p.w.sh(
        other.path(),
        r#"cat "$SWAMP_DATASTORE_DIR"/outputs/s1 "$SWAMP_DATASTORE_DIR"/outputs/s2 "$SWAMP_DATASTORE_DIR"/outputs/s3"#,
    );
    assert_eq!(seen, b"slow 1\nslow 2\nslow 3\n");
    let refused = |m: &Match| {
        p.proxy
            .seen()
            .into_iter()
            .filter(|s| m.matches(s) && s.status == Some(503))
            .count()
    };
    assert_eq!((refused(&uploads), refused(&downloads)), (2, 2));
}

/// An upload that keeps failing fails its command with one clear line; the
/// index lists only what reached the bucket, another machine meanwhile sees
/// the rest and no missing or half-written file, and once the store
/// recovers the next command uploads what was left.
#[test]
fn a_persistently_failing_upload_fails_clearly_and_the_next_command_sends_it() {
    let p = Proxied::new("failing-upload");
    let bad = Match::put().key_suffix("/outputs/bad");
    let rule = p
        .proxy
        .add(Rule::new(bad.clone(), Fault::Status(500, "InternalError")).times(1000));
    let out = p.w.run_on(
        p.home.path(),
        &[
            "--json",
            "exec",
            "--",
            "sh",
            "-c",
            r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && echo good > "$SWAMP_DATASTORE_DIR/outputs/good" && echo bad > "$SWAMP_DATASTORE_DIR/outputs/bad""#,
        ],
    );
    let msg = json_error(&out, 1, "sync_failed");
    assert!(msg.contains("outputs/bad"), "{msg}");
    let files = p.w.index()["files"].clone();
    assert!(files.get("outputs/good").is_some(), "{files}");
    assert!(files.get("outputs/bad").is_none(), "{files}");
    let other = tempfile::tempdir().unwrap();
    let seen = p.w.sh(
        other.path(),
        r#"cat "$SWAMP_DATASTORE_DIR/outputs/good"; test ! -e "$SWAMP_DATASTORE_DIR/outputs/bad" && echo absent"#,
    );
    assert_eq!(seen, b"good\nabsent\n");
    p.proxy.remove(rule);
    p.w.ok(p.home.path(), &["datastore", "sync"]);
    let seen =
        p.w.sh(other.path(), r#"cat "$SWAMP_DATASTORE_DIR/outputs/bad""#);
    assert_eq!(seen, b"bad\n");
}

/// kill -9 while a push uploads (its second file held in flight, then let
/// through after the process died): the next command on that machine sends
/// what is missing and indexes all of it; another machine sees every file.
#[test]
fn kill_9_during_a_push_is_repaired_by_the_next_command() {
    let p = Proxied::new("kill-mid-push");
    let upload = Match::put().key_suffix("/outputs/p2");
    p.kill_9_at(
        &upload,
        Fault::HoldUntilReleased,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && for i in 1 2 3; do echo "push $i" > "$SWAMP_DATASTORE_DIR/outputs/p$i"; done"#,
        ],
    );
    p.w.ok(p.home.path(), &["datastore", "sync"]);
    let files = p.w.index()["files"].clone();
    for i in 1..=3 {
        assert!(files.get(format!("outputs/p{i}")).is_some(), "{files}");
    }
    let other = tempfile::tempdir().unwrap();
    let seen = p.w.sh(
        other.path(),
        r#"cd "$SWAMP_DATASTORE_DIR/outputs" && cat p1 p2 p3"#,
    );
    assert_eq!(seen, b"push 1\npush 2\npush 3\n");
    p.assert_nothing_left(p.home.path(), other.path());
}

/// kill -9 of `setup s3` while it uploads a filesystem datastore: the config
/// still names the filesystem, nothing is lost there, and a rerun (after the
/// dead leases' TTL) completes the migration with every file in the bucket.
#[test]
fn kill_9_during_a_migration_into_s3_is_completed_by_a_rerun() {
    let p = Proxied::bare("kill-mid-migration");
    for i in 1..=3 {
        put(
            p.w.repo.path(),
            &format!("item/{i}"),
            format!("value {i}").as_bytes(),
        );
    }
    let upload = Match::put().key_contains("/data/item/2");
    let mut args = p.w.setup_args();
    let at = args.iter().position(|a| a == "--endpoint-url").unwrap();
    args[at + 1] = p.proxy.endpoint();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = p.w.config();
    p.kill_9_at(&upload, Fault::HoldUntilReleased, &args);
    assert_eq!(
        p.w.config(),
        before,
        "the config still names the filesystem"
    );
    let out = run(swamp(p.w.repo.path()).args(["data", "get", "item/2"]));
    assert_eq!(out.stdout, b"value 2", "{}", stderr(&out));
    let out = p.w.run_on(p.home.path(), &args);
    assert!(out.status.success(), "rerun: {}", stderr(&out));
    for i in 1..=3 {
        let got =
            p.w.ok(p.home.path(), &["data", "get", &format!("item/{i}")]);
        assert_eq!(got, format!("value {i}").as_bytes());
    }
}
