//! Scoped writers on S3 (issue 15, part 3), with real processes on several
//! caches ("machines"): writers of one item exclude each other and lose no
//! version, writers of different items run at once and their index commits
//! merge without dropping each other's entries, each command audits to a
//! file of its own, a live scoped record blocks only its item and the
//! whole-datastore lock drains it, and `lock status` / `lock release
//! --force --scope` show and break S3 scoped records.
//!
//! The racing tests use `S3Server::start_serial`: moto checks a condition
//! and writes in separate steps, so under contention two `If-Match` commits
//! could both land there; S3 and SeaweedFS make them atomic.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Stdio};
use support::s3::*;
use support::*;

/// `data put NAME` of `content` on `home`, started (not waited for).
fn spawn_put(w: &World, home: &Path, name: &str, content: &str) -> Child {
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), content).unwrap();
    let (_, kept) = input.keep().unwrap();
    w.on(home)
        .args(["--lock-timeout", "120", "data", "put", name, "--file"])
        .arg(&kept)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn put")
}

/// Waits for every child; panics naming the first that failed.
fn all_succeed(children: Vec<Child>) {
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "a put failed: {}", stderr(&out));
    }
}

/// Every version's content of `name`, read on a fresh cache.
fn contents(w: &World, name: &str) -> Vec<String> {
    let fresh = tempfile::tempdir().unwrap();
    let doc = w.json(fresh.path(), &["data", "versions", name]);
    let versions: Vec<u64> = doc["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    versions
        .iter()
        .map(|v| {
            let got = w.ok(
                fresh.path(),
                &["data", "get", name, "--version", &v.to_string()],
            );
            String::from_utf8(got).unwrap()
        })
        .collect()
}

/// A world on an atomic server, set up from one machine, and `machines`
/// more homes.
fn world(bucket: &'static str, machines: usize) -> (World, Vec<tempfile::TempDir>) {
    let w = World::create(S3Server::start_serial(), bucket);
    let homes: Vec<_> = (0..machines)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    w.setup(homes[0].path());
    (w, homes)
}

#[test]
fn eight_writers_of_one_item_from_three_caches_keep_all_24_versions() {
    let (w, homes) = world("scoped-one-item", 3);
    let mut children = Vec::new();
    for round in 0..3 {
        for writer in 0..8 {
            let home = homes[writer % 3].path();
            children.push(spawn_put(
                &w,
                home,
                "shared/item",
                &format!("w{writer} p{round}"),
            ));
        }
    }
    all_succeed(children);
    let mut got = contents(&w, "shared/item");
    assert_eq!(got.len(), 24, "{got:?}");
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 24, "every content exactly once: {got:?}");
}

#[test]
fn writers_of_distinct_items_from_three_caches_all_land_and_audit_apart() {
    let (w, homes) = world("scoped-distinct", 3);
    w.put_ok(homes[0].path(), "before", b"already there");
    let children: Vec<Child> = (0..16)
        .map(|i| {
            spawn_put(
                &w,
                homes[i % 3].path(),
                &format!("item-{i}"),
                &format!("c{i}"),
            )
        })
        .collect();
    all_succeed(children);
    let fresh = tempfile::tempdir().unwrap();
    let list = w.json(fresh.path(), &["data", "list"]);
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        17,
        "no commit dropped another's entries: {names:?}"
    );
    for i in 0..16 {
        let got = w.ok(fresh.path(), &["data", "get", &format!("item-{i}")]);
        assert_eq!(got, format!("c{i}").as_bytes());
    }
    // One audit file per command, one line each; no shared file to lose lines in.
    let index = w.index();
    let audits: Vec<&String> = index["files"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("audit/"))
        .collect();
    assert_eq!(audits.len(), 17, "{audits:?}");
    let lines: usize = audits
        .iter()
        .map(|k| {
            let body = w.fetch(&format!("{PREFIX}/{k}")).expect("audit object");
            String::from_utf8(body).unwrap().lines().count()
        })
        .sum();
    assert_eq!(lines, 17);
    // Every machine then pulls everything, and none holds anything unpushed.
    for home in &homes {
        let synced = w.json(home.path(), &["datastore", "sync"]);
        assert_eq!(synced["pushed"]["uploaded"], 0, "{synced}");
        let cache = w.cache(home.path());
        for i in 0..16 {
            assert!(cache
                .join(format!("data/item-{i}/@versions/1.bin"))
                .is_file());
        }
    }
}

fn put_within(w: &World, home: &Path, seconds: &str, name: &str) -> std::process::Output {
    let mut cmd = w.on(home);
    cmd.args(["--json", "--lock-timeout", seconds, "data", "put", name])
        .args(["--file", "/dev/null"]);
    run(&mut cmd)
}

#[test]
fn a_live_scoped_record_blocks_its_item_and_the_whole_lock_but_nothing_else() {
    let (w, homes) = world("scoped-blocked", 1);
    let home = homes[0].path();
    w.put_ok(home, "busy", b"v1");
    w.plant_scoped("alice@laptop", "planted", &["data/busy/@versions"]);

    // Another item: not blocked.
    let other = put_within(&w, home, "5", "free");
    assert!(other.status.success(), "{}", stderr(&other));
    // Its own item: waits, then exit 75 naming the holder and its scope.
    let blocked = put_within(&w, home, "1", "busy");
    let message = assert_json_error(&blocked, 75, "lock_timeout");
    assert!(message.contains("alice@laptop"), "{message}");
    // The whole lock is announced, then drains: exit 75, nothing ran.
    let marker = w.repo.path().join("ran");
    let mut exec = w.on(home);
    exec.args(["--json", "--lock-timeout", "1", "exec", "--", "touch"])
        .arg(&marker);
    let drained = run(&mut exec);
    let message = assert_json_error(&drained, 75, "lock_timeout");
    assert!(message.contains("alice@laptop"), "{message}");
    assert!(!marker.exists());
    // The announcement was withdrawn when it gave up.
    assert!(w.fetch(&format!("{PREFIX}/.datastore.lock")).is_none());

    // `lock status` lists the record with its scope; a forced release of
    // a conflicting scope removes it.
    let status = w.json(home, &["datastore", "lock", "status"]);
    let scoped = status["scoped"].as_array().expect("scoped").clone();
    assert_eq!(scoped.len(), 1, "{status}");
    assert!(
        scoped[0].to_string().contains("data/busy/@versions"),
        "{status}"
    );
    w.ok(
        home,
        &[
            "datastore",
            "lock",
            "release",
            "--force",
            "--scope",
            "data/busy",
        ],
    );
    assert!(w.fetch(&format!("{PREFIX}/.locks/planted.lock")).is_none());
    let after = put_within(&w, home, "5", "busy");
    assert!(after.status.success(), "{}", stderr(&after));
    assert_eq!(contents(&w, "busy").len(), 2);
}

#[test]
fn an_item_writer_waits_for_a_whole_datastore_command() {
    let (w, homes) = world("scoped-waits", 2);
    let marks = tempfile::tempdir().unwrap();
    let (mut holder, _guard) = w.hold_lock(homes[0].path(), marks.path());
    let blocked = put_within(&w, homes[1].path(), "1", "item");
    assert_json_error(&blocked, 75, "lock_timeout");
    std::fs::write(marks.path().join("go"), "").unwrap();
    assert!(wait_child(&mut holder).success());
    let after = put_within(&w, homes[1].path(), "30", "item");
    assert!(after.status.success(), "{}", stderr(&after));
    let listed: Value = w.index();
    assert!(listed["files"]
        .as_object()
        .unwrap()
        .contains_key("data/item/@versions/1.json"));
}

/// An item writer sent its index commit, then froze past its lease; a taker
/// wrote the next version of the item; only then does the frozen writer's
/// commit reach the store. It is conditional on the index the writer read,
/// so it is refused; woken, the writer finds its lease gone before it tries
/// again, exits 75 and commits nothing, and the taker's version stands.
#[test]
fn a_frozen_item_writer_whose_commit_arrives_late_never_overwrites_the_taker() {
    use nix::sys::signal::Signal;
    use std::os::unix::process::CommandExt;
    use support::proxy::{Fault, Match, Rule};

    let (w, proxy) = World::behind_proxy("scoped-frozen");
    let (home, taker, fresh) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    w.put_ok(home.path(), "item", b"v1");
    let commit = Match::put().key_suffix("/.datastore-index.json");
    let earlier = proxy.count(&commit);
    proxy.add(Rule::new(commit.clone(), Fault::HoldUntilReleased).times(1));
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), "frozen writer's").unwrap();
    let mut holder = w
        .on(home.path())
        .env("SWAMP_LOCK_TTL_MS", "1500")
        .args(["--json", "data", "put", "item", "--file"])
        .arg(input.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let _group = GroupGuard(holder.id());
    proxy.wait_for_arrivals(&commit, earlier + 1, S3_DEADLINE);
    signal_group(holder.id(), Signal::SIGSTOP);
    // The taker waits for the frozen record to go stale, then writes v2.
    let out = put_within(&w, taker.path(), "60", "item");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_of(&out)["version"], 2);
    proxy.release_held();
    signal_group(holder.id(), Signal::SIGCONT);
    let status = wait_child(&mut holder);
    assert_eq!(
        status.code(),
        Some(75),
        "the frozen writer ends with lock lost"
    );

    let doc = w.json(fresh.path(), &["data", "versions", "item"]);
    assert_eq!(doc["versions"].as_array().map(Vec::len), Some(2), "{doc}");
    assert_eq!(
        w.ok(fresh.path(), &["data", "get", "item", "--version", "2"]),
        b""
    );
    assert_eq!(
        w.ok(fresh.path(), &["data", "get", "item", "--version", "1"]),
        b"v1"
    );
}

#[test]
fn a_scoped_exec_on_s3_pushes_its_paths_only_and_refuses_changes_elsewhere() {
    let (w, homes) = world("scoped-exec", 2);
    let (a, b) = (homes[0].path(), homes[1].path());
    w.sh(
        a,
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs/report" "$SWAMP_DATASTORE_DIR/outputs/other" && echo old > "$SWAMP_DATASTORE_DIR/outputs/report/r.txt" && echo kept > "$SWAMP_DATASTORE_DIR/outputs/other/o.txt""#,
    );
    // Machine B (cold) hydrates the scope only, changes it, pushes it.
    let doc = w.json(
        b,
        &[
            "exec",
            "--scope",
            "outputs/report",
            "--",
            "sh",
            "-c",
            r#"cat "$SWAMP_DATASTORE_DIR/outputs/report/r.txt" >&2 && echo new > "$SWAMP_DATASTORE_DIR/outputs/report/r.txt""#,
        ],
    );
    assert_eq!(
        doc["changed"],
        serde_json::json!(["outputs/report/r.txt"]),
        "{doc}"
    );
    assert!(
        !w.cache(b).join("outputs/other/o.txt").exists(),
        "only the scope was fetched"
    );
    let fresh = tempfile::tempdir().unwrap();
    let seen = w.sh(
        fresh.path(),
        r#"cat "$SWAMP_DATASTORE_DIR/outputs/report/r.txt""#,
    );
    assert_eq!(seen, b"new\n");

    // A change outside the scope: exit 1, nothing pushed, the cache untouched.
    let before = w.objects();
    let mut cmd = w.on(b);
    cmd.args(["--json", "exec", "--scope", "outputs/report", "--", "sh", "-c"])
        .arg(r#"echo newer > "$SWAMP_DATASTORE_DIR/outputs/report/r.txt"; echo stray > "$SWAMP_DATASTORE_DIR/outputs/stray.txt""#);
    let out = run(&mut cmd);
    let message = assert_json_error(&out, 1, "outside_scope");
    assert!(message.contains("outputs/stray.txt"), "{message}");
    assert_eq!(w.objects(), before, "nothing pushed");
    let cache = w.cache(b);
    assert_eq!(
        std::fs::read_to_string(cache.join("outputs/report/r.txt")).unwrap(),
        "new\n"
    );
    assert!(!cache.join("outputs/stray.txt").exists());
}

/// A `data put` of another item runs to the end while a scoped exec holds
/// `outputs/run` — on another machine, or on the exec's own (the two share
/// its cache) — and a whole-datastore command waits.
fn an_item_writer_runs_beside_a_scoped_exec(bucket: &'static str, same_machine: bool) {
    use std::os::unix::process::CommandExt;
    let (w, homes) = world(bucket, 2);
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    let script = format!(
        r#"touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done; mkdir -p "$SWAMP_DATASTORE_DIR/outputs/run" && echo done > "$SWAMP_DATASTORE_DIR/outputs/run/out""#
    );
    let mut holder = w
        .on(homes[0].path())
        .args(["exec", "--scope", "outputs/run", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let _group = GroupGuard(holder.id());
    wait_until("the scoped exec runs", || {
        marks.path().join("started").exists()
    });
    let other = if same_machine { &homes[0] } else { &homes[1] };
    let put = put_within(&w, other.path(), "10", "item");
    assert!(put.status.success(), "{}", stderr(&put));
    let whole = {
        let mut cmd = w.on(other.path());
        cmd.args(["--json", "--lock-timeout", "1", "exec", "--", "true"]);
        run(&mut cmd)
    };
    assert_json_error(&whole, 75, "lock_timeout");
    std::fs::write(marks.path().join("go"), "").unwrap();
    assert!(wait_child(&mut holder).success());
    let fresh = tempfile::tempdir().unwrap();
    assert_eq!(
        w.sh(
            fresh.path(),
            r#"cat "$SWAMP_DATASTORE_DIR/outputs/run/out""#
        ),
        b"done\n"
    );
    assert_eq!(w.ok(fresh.path(), &["data", "get", "item"]), b"");
}

#[test]
fn an_item_writer_elsewhere_runs_while_a_scoped_exec_holds_its_paths_on_s3() {
    an_item_writer_runs_beside_a_scoped_exec("scoped-exec-parallel", false);
}

#[test]
fn an_item_writer_on_the_same_machine_runs_while_a_scoped_exec_holds_its_paths() {
    // Without the shared cache lock the put waited for the exec to end.
    an_item_writer_runs_beside_a_scoped_exec("scoped-same-cache", true);
}

#[test]
fn writers_of_distinct_items_on_one_machine_all_land_and_its_state_agrees_on_each() {
    let (w, homes) = world("scoped-one-cache", 1);
    let home = homes[0].path();
    w.put_ok(home, "before", b"already there");
    let children: Vec<Child> = (0..12)
        .map(|i| spawn_put(&w, home, &format!("item-{i}"), &format!("c{i}")))
        .collect();
    all_succeed(children);
    let fresh = tempfile::tempdir().unwrap();
    for i in 0..12 {
        let got = w.ok(fresh.path(), &["data", "get", &format!("item-{i}")]);
        assert_eq!(got, format!("c{i}").as_bytes());
    }
    // Each writer merged its entries into the one state file: none lost
    // (a lost entry would make the next push hash the file again).
    let state: Value = serde_json::from_slice(
        &std::fs::read(w.cache(home).join(".swamp-sync-state.json")).unwrap(),
    )
    .unwrap();
    let agreed = state["files"].as_object().expect("files");
    for i in 0..12 {
        let rel = format!("data/item-{i}/@versions/1.bin");
        assert!(agreed.contains_key(&rel), "{rel} not agreed: {agreed:?}");
    }
    let synced = w.json(home, &["datastore", "sync"]);
    assert_eq!(synced["pushed"]["uploaded"], 0, "{synced}");
    assert_eq!(synced["pulled"]["downloaded"], 0, "{synced}");
}

/// Whether the process `pid` waits in the kernel for a file lock
/// (`/proc/locks` lists each blocked request as `-> FLOCK ... PID ...`).
fn waits_for_a_file_lock(pid: u32) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"->") && fields.get(5) == Some(&pid.to_string().as_str())
    })
}

/// Spawns `cmd` as `data put NAME --file INPUT` in a process group of its
/// own, with its output piped; the guard kills the group with the test.
fn spawn_put_in_group(
    mut cmd: std::process::Command,
    name: &str,
    input: &std::path::Path,
) -> (std::process::Child, GroupGuard) {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .args(["--lock-timeout", "120", "data", "put", name, "--file"])
        .arg(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn data put {name}: {e}"));
    let group = GroupGuard(child.id());
    (child, group)
}

/// Two scoped writers of one machine's fresh cache for different remotes
/// (one repo, its `.swamp.yaml` bucket and a `SWAMP_DATASTORE` override):
/// the first claims the cache before its pull, so the second, arriving
/// while that pull is held mid-download, waits for the cache to itself and
/// then takes it over. Both succeed, and none of the first remote's files
/// stays in the cache untracked, for a push to the second to upload.
#[test]
fn a_writer_for_another_remote_waits_for_a_fresh_caches_first_writer() {
    use support::proxy::{Fault, Match, Rule};

    let (w, proxy) = World::behind_proxy("remote-race-a");
    let (seed, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    w.put_ok(seed.path(), "shared", b"v1 of a");
    w.moto.create_bucket("remote-race-b");
    let on_b = |cmd: &mut std::process::Command| {
        cmd.env("SWAMP_DATASTORE", format!("s3:remote-race-b/{PREFIX}"))
            .env("AWS_ENDPOINT_URL", w.moto.endpoint());
    };

    // A's pull of the item it writes is held at its first download.
    let download = Match::get().key_contains("/data/shared/");
    let earlier = proxy.count(&download);
    proxy.add(Rule::new(download.clone(), Fault::HoldUntilReleased).times(1));
    // A's held request must not time out and be retried unheld while B
    // starts on a busy machine: A gets a long per-request timeout.
    let input_a = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input_a.path(), "v2 of a").unwrap();
    let mut a_cmd = w.on(home.path());
    a_cmd.env("SWAMP_S3_TIMEOUT_SECS", "300");
    let (a, _a_group) = spawn_put_in_group(a_cmd, "shared", input_a.path());
    proxy.wait_for_arrivals(&download, earlier + 1, S3_DEADLINE);

    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), "b's").unwrap();
    let mut b_cmd = w.on(home.path());
    on_b(&mut b_cmd);
    let (mut b, _b_group) = spawn_put_in_group(b_cmd, "other", input.path());
    // B must not get ahead of A's pull: it queues for the cache lock.
    // (Without the claim it pulled beside A, saved first and ended, and A
    // then failed, leaving its downloads untracked.)
    wait_until("b waits for the cache or ends", || {
        waits_for_a_file_lock(b.id()) || b.try_wait().ok().flatten().is_some()
    });
    assert!(
        b.try_wait().unwrap().is_none(),
        "b ended while a's pull was held"
    );
    proxy.release_held();
    let a_out = a.wait_with_output().unwrap();
    assert!(a_out.status.success(), "a: {}", stderr(&a_out));
    let b_status = wait_child(&mut b);
    let mut b_err = String::new();
    std::io::Read::read_to_string(&mut b.stderr.take().unwrap(), &mut b_err).unwrap();
    assert!(b_status.success(), "b: {b_err}");

    // A whole push to B finds nothing of A's in the cache to upload.
    let mut sync = w.on(home.path());
    on_b(&mut sync);
    let out = run(sync.args(["--json", "datastore", "sync"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let b_keys = w.moto.keys("remote-race-b");
    assert!(
        !b_keys.iter().any(|k| k.contains("data/shared")),
        "a's item reached b: {b_keys:?}"
    );
    assert!(
        b_keys.iter().any(|k| k.contains("data/other/")),
        "{b_keys:?}"
    );
    let fresh = tempfile::tempdir().unwrap();
    assert_eq!(w.ok(fresh.path(), &["data", "get", "shared"]), b"v2 of a");
}
