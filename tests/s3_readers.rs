//! Readers on an S3 datastore take no datastore lock (issue 15, part 1):
//! `data get/list/versions` on one machine run while another machine holds
//! the lock, and only ever return versions some committed index listed —
//! also while writers on two machines push, and while a writer and readers
//! share one machine's cache (the cache lock keeps them apart).

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::s3::*;
use support::*;

const BUCKET: &str = "readers-bucket";

impl World {
    /// One server with the bucket, one repo already set up on S3.
    fn new() -> Self {
        let w = World::create(Moto::start(), BUCKET);
        let setup_home = tempfile::tempdir().unwrap();
        w.setup(setup_home.path());
        w
    }
}

/// An `exec` on `home` that holds the lock until `{marks}/go` exists, having
/// touched `{marks}/started`; killed with its group if the test fails.
fn hold_lock(w: &World, home: &Path, marks: &Path) -> (std::process::Child, GroupGuard) {
    let m = marks.display();
    let script = format!(r#"touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done"#);
    let holder = w
        .on(home)
        .args(["exec", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let guard = GroupGuard(holder.id());
    wait_until("the holder runs inside the lock", || {
        marks.join("started").exists()
    });
    (holder, guard)
}

#[test]
fn readers_on_another_machine_read_while_a_writer_holds_the_lock() {
    let w = World::new();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    w.put_ok(a.path(), "app/config", b"v1\n");
    let marks = tempfile::tempdir().unwrap();
    let (mut holder, _guard) = hold_lock(&w, a.path(), marks.path());

    // A cold cache and a short lock timeout: a reader that waited for the
    // lock would fail with 75.
    let quick = |args: &[&str]| {
        let mut full = vec!["--lock-timeout", "2"];
        full.extend_from_slice(args);
        w.run_on(b.path(), &full)
    };
    let got = quick(&["data", "get", "app/config"]);
    assert_eq!(code_of(&got), 0, "{}", stderr(&got));
    assert_eq!(got.stdout, b"v1\n");
    let listed = json_of(&quick(&["--json", "data", "list"]));
    assert_eq!(listed["items"][0]["name"], "app/config", "{listed}");
    let versions = json_of(&quick(&["--json", "data", "versions", "app/config"]));
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(1));
    // Writers still wait for the lock, and time out.
    let input = marks.path().join("input");
    std::fs::write(&input, b"x").unwrap();
    let put = quick(&["data", "put", "other", "--file", input.to_str().unwrap()]);
    assert_eq!(code_of(&put), 75, "{}", stderr(&put));

    std::fs::write(marks.path().join("go"), b"").unwrap();
    assert!(wait_child(&mut holder).success());
}

#[test]
fn a_reader_on_the_writers_own_machine_waits_for_its_cache() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    w.put_ok(a.path(), "app/config", b"v1\n");
    let marks = tempfile::tempdir().unwrap();
    let (mut holder, _guard) = hold_lock(&w, a.path(), marks.path());
    // The holder's child may be writing into this cache: a reader here waits
    // for the cache lock (and gives up with 75 after --lock-timeout).
    let out = w.run_on(
        a.path(),
        &["--lock-timeout", "0.5", "data", "get", "app/config"],
    );
    assert_eq!(code_of(&out), 75, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another swamp process on this machine"),
        "{}",
        stderr(&out)
    );
    std::fs::write(marks.path().join("go"), b"").unwrap();
    assert!(wait_child(&mut holder).success());
    assert_eq!(w.ok(a.path(), &["data", "get", "app/config"]), b"v1\n");
}

/// Writers on two machines put numbered versions of their own item while
/// readers on both machines (sharing the writers' caches) read them: every
/// read succeeds, shows a version that was committed, never goes back, and
/// at the end nothing is missing.
#[test]
fn readers_racing_writers_see_only_committed_versions_and_nothing_is_lost() {
    const PUTS: usize = 6;
    let w = Arc::new(World::new());
    let homes: Vec<PathBuf> = (0..2)
        .map(|_| tempfile::tempdir().unwrap().keep())
        .collect();
    let _cleanup = Cleanup(homes.clone());
    let items = ["one/item", "two/item"];
    for (home, item) in homes.iter().zip(items) {
        w.put_ok(home, item, b"0");
    }
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = homes
        .iter()
        .zip(items)
        .map(|(home, item)| {
            let (w, home) = (w.clone(), home.clone());
            std::thread::spawn(move || {
                for n in 1..=PUTS {
                    let out = w.put(&home, item, n.to_string().as_bytes());
                    assert_eq!(code_of(&out), 0, "put {item} {n}: {}", stderr(&out));
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (w, writing) = (w.clone(), writing.clone());
            let home = homes[r % 2].clone();
            let item = items[r / 2];
            std::thread::spawn(move || {
                let mut last = 0usize;
                let mut reads = 0;
                while writing.load(Ordering::SeqCst) || reads == 0 {
                    let out = w.run_on(&home, &["--lock-timeout", "600", "data", "get", item]);
                    assert_eq!(code_of(&out), 0, "reader {r}: {}", stderr(&out));
                    let seen: usize = String::from_utf8_lossy(&out.stdout)
                        .parse()
                        .unwrap_or_else(|_| panic!("reader {r} read {:?}", out.stdout));
                    assert!(
                        seen >= last && seen <= PUTS,
                        "reader {r}: {seen} after {last}"
                    );
                    last = seen;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer panicked");
    }
    writing.store(false, Ordering::SeqCst);
    for reader in readers {
        assert!(reader.join().expect("reader panicked") > 0);
    }
    let fresh = tempfile::tempdir().unwrap();
    for item in items {
        assert_eq!(
            w.ok(fresh.path(), &["data", "get", item]),
            PUTS.to_string().as_bytes()
        );
        let versions = w.json(fresh.path(), &["data", "versions", item]);
        assert_eq!(
            versions["versions"].as_array().map(Vec::len),
            Some(PUTS + 1),
            "{versions}"
        );
    }
}

/// Removes the homes (kept past their `TempDir`s so threads can share them).
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for home in &self.0 {
            let _ = std::fs::remove_dir_all(home);
        }
    }
}
