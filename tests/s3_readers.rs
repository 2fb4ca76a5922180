//! Readers on an S3 datastore take no datastore lock (issue 15, part 1):
//! `data get/list/versions` on one machine run while another machine holds
//! the lock, and only ever return versions some committed index listed —
//! also while writers on two machines push, and while a writer and readers
//! share one machine's cache (the cache lock keeps them apart).

mod support;

use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::proxy::*;
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

#[test]
fn readers_on_another_machine_read_while_a_writer_holds_the_lock() {
    let w = World::new();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    w.put_ok(a.path(), "app/config", b"v1\n");
    let marks = tempfile::tempdir().unwrap();
    let (mut holder, _guard) = w.hold_lock(a.path(), marks.path());

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
fn a_reader_on_the_writers_own_machine_reads_committed_state_without_waiting() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    w.put_ok(a.path(), "app/config", b"v1\n");
    let marks = tempfile::tempdir().unwrap();
    let (mut holder, _guard) = w.hold_lock(a.path(), marks.path());
    // The holder's command owns this machine's cache (its child may be
    // writing there, like this draft): readers here pull into a private
    // directory instead of waiting, and see only what was committed.
    let cache = a.path().join("repos").join(repo_id(w.repo.path()));
    std::fs::create_dir_all(cache.join("outputs")).unwrap();
    std::fs::write(cache.join("outputs/draft"), b"uncommitted").unwrap();
    let quick = |args: &[&str]| {
        let mut full = vec!["--lock-timeout", "0.5"];
        full.extend_from_slice(args);
        w.run_on(a.path(), &full)
    };
    let got = quick(&["data", "get", "app/config"]);
    assert_eq!(code_of(&got), 0, "{}", stderr(&got));
    assert_eq!(got.stdout, b"v1\n");
    let listed = json_of(&quick(&["--json", "data", "list"]));
    assert_eq!(listed["items"][0]["name"], "app/config", "{listed}");
    let script = "cat \"$SWAMP_DATASTORE_DIR/data/app/config/@versions/1.bin\"; \
                  test -e \"$SWAMP_DATASTORE_DIR/outputs/draft\" && echo draft; true";
    let ro = quick(&["exec", "--read-only", "--", "sh", "-c", script]);
    assert_eq!(code_of(&ro), 0, "{}", stderr(&ro));
    assert_eq!(stdout_of(&ro), "v1\n", "committed state only");
    assert_eq!(
        std::fs::read(cache.join("outputs/draft")).unwrap(),
        b"uncommitted",
        "the holder's cache is untouched"
    );
    let views = a.path().join("views");
    let left = std::fs::read_dir(&views).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the private directories are removed");
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

/// Readers send nothing but reads, so credentials that may only read (GET
/// and LIST) serve them: here every write is refused with 403 and they work.
#[test]
fn readers_send_only_reads_and_work_where_writes_are_refused() {
    let (w, proxy) = World::behind_proxy(BUCKET);
    let writer = tempfile::tempdir().unwrap();
    w.put_ok(writer.path(), "app/config", b"v1\n");
    w.put_ok(writer.path(), "app/other", b"o\n");
    let from = proxy.seen().len();
    for method in ["PUT", "DELETE", "POST"] {
        proxy.add(Rule::new(
            Match::method(method),
            Fault::Status(403, "AccessDenied"),
        ));
    }
    let reader = tempfile::tempdir().unwrap();
    assert_eq!(w.ok(reader.path(), &["data", "get", "app/config"]), b"v1\n");
    let listed = w.json(reader.path(), &["data", "list"]);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let versions = w.json(reader.path(), &["data", "versions", "app/other"]);
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(1));
    let sent = proxy.requests_since(from);
    FaultProxy::assert_reads_only(&sent);
}

/// The same, where the store itself enforces it: SeaweedFS with a reader
/// identity that may only read and list (see `start_seaweedfs_with_reader`).
/// On another machine (a cold cache) `data get`, `get --version`, `list`
/// and `versions` signed by the reader work; a `data put` signed by the
/// reader is refused by the store and leaves the bucket as it was, which
/// shows the credentials really cannot write. Only in the SeaweedFS pass:
/// moto accepts any credentials.
#[test]
fn readers_work_with_credentials_that_may_only_read_and_list() {
    let Some((server, reader)) = S3Server::start_with_reader() else {
        return;
    };
    let w = World::create(server, BUCKET);
    let writer = tempfile::tempdir().unwrap();
    w.setup(writer.path());
    for v in 1..=3 {
        w.put_ok(writer.path(), "app/config", format!("v{v}\n").as_bytes());
    }
    w.put_ok(writer.path(), "app/other", b"o\n");
    let before = w.objects();

    let machine = tempfile::tempdir().unwrap();
    let as_reader = |args: &[&str]| w.run_signed(machine.path(), &reader, args);
    let read = |args: &[&str]| {
        let out = as_reader(args);
        assert_eq!(code_of(&out), 0, "{args:?} as the reader: {}", stderr(&out));
        out
    };
    assert_eq!(read(&["data", "get", "app/config"]).stdout, b"v3\n");
    assert_eq!(
        read(&["data", "get", "app/config", "--version", "1"]).stdout,
        b"v1\n"
    );
    let listed = json_of(&read(&["--json", "data", "list"]));
    let items: Vec<(&Value, &Value)> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| (&item["name"], &item["latestVersion"]))
        .collect();
    assert_eq!(
        items,
        [
            (&json!("app/config"), &json!(3)),
            (&json!("app/other"), &json!(1))
        ],
        "{listed}"
    );
    let versions = json_of(&read(&["--json", "data", "versions", "app/config"]));
    let numbers: Vec<&Value> = versions["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| &v["version"])
        .collect();
    assert_eq!(numbers, [1, 2, 3], "{versions}");

    // The control: the reader's credentials cannot write.
    let input = machine.path().join("input");
    std::fs::write(&input, b"v4\n").unwrap();
    let put = as_reader(&[
        "data",
        "put",
        "app/config",
        "--file",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code_of(&put), 1, "{}", stderr(&put));
    assert!(
        stderr(&put).contains("access denied"),
        "refused by the store: {}",
        stderr(&put)
    );
    assert!(w.objects() == before, "the bucket changed: {:?}", w.keys());
    assert_eq!(w.ok(writer.path(), &["data", "get", "app/config"]), b"v3\n");
}

/// A push that has uploaded its objects but not yet its index is invisible
/// to a reader: it reads the last committed index, without waiting.
#[test]
fn a_reader_sees_the_last_committed_state_while_a_push_is_half_done() {
    let (w, proxy) = World::behind_proxy(BUCKET);
    let (writer, reader) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    w.put_ok(writer.path(), "app/config", b"v1\n");
    let index_put = Match::put().key_suffix("/.datastore-index.json");
    let earlier = proxy.count(&index_put);
    proxy.add(Rule::new(index_put.clone(), Fault::HoldUntilReleased).times(1));
    let input = writer.path().join("v2");
    std::fs::write(&input, b"v2\n").unwrap();
    let mut put = w
        .on(writer.path())
        .args([
            "data",
            "put",
            "app/config",
            "--file",
            input.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let _group = GroupGuard(put.id());
    proxy.wait_for_arrivals(&index_put, earlier + 1, S3_DEADLINE);
    assert!(
        w.keys()
            .iter()
            .any(|k| k.ends_with("app/config/@versions/2.bin")),
        "the new version's objects are uploaded: {:?}",
        w.keys()
    );
    let quick = ["--lock-timeout", "1"];
    let got = w.run_on(
        reader.path(),
        &[&quick[..], &["data", "get", "app/config"]].concat(),
    );
    assert_eq!(code_of(&got), 0, "{}", stderr(&got));
    assert_eq!(got.stdout, b"v1\n");
    let versions = w.json(reader.path(), &["data", "versions", "app/config"]);
    assert_eq!(
        versions["versions"].as_array().map(Vec::len),
        Some(1),
        "{versions}"
    );
    proxy.release_held();
    assert!(wait_child(&mut put).success());
    assert_eq!(w.ok(reader.path(), &["data", "get", "app/config"]), b"v2\n");
}

/// A cold cache fetches only what a read needs (the index and the read's
/// files), and what it did not fetch is neither read as missing nor pushed
/// as deleted: the next full sync brings the rest and the index keeps it.
#[test]
fn a_cold_reader_fetches_only_what_it_reads() {
    let (w, proxy) = World::behind_proxy(BUCKET);
    let writer = tempfile::tempdir().unwrap();
    for i in 0..4 {
        for v in 1..=2 {
            w.put_ok(
                writer.path(),
                &format!("item{i}"),
                format!("{i}.{v}").as_bytes(),
            );
        }
    }
    w.sh(
        writer.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && echo big > "$SWAMP_DATASTORE_DIR/outputs/report""#,
    );
    let indexed = w.index()["files"].as_object().unwrap().len();
    let reader = tempfile::tempdir().unwrap();
    let requests_for = |args: &[&str]| {
        let from = proxy.seen().len();
        let out = w.ok(reader.path(), args);
        let sent = proxy.requests_since(from);
        (out, sent)
    };
    let (got, sent) = requests_for(&["data", "get", "item2"]);
    assert_eq!(got, b"2.2");
    // The index root, the one shard that lists the item, then the newest
    // version's metadata and content.
    assert_eq!(sent.len(), 4, "{sent:#?}");
    assert!(sent.iter().all(|r| r.starts_with("GET ")), "{sent:#?}");
    assert!(sent[1].contains("/.datastore-index-shards/"), "{sent:#?}");
    // The shard is held now: the root, then the version's two files.
    let (_, sent) = requests_for(&["data", "get", "item2", "--version", "1"]);
    assert_eq!(sent.len(), 3, "{sent:#?}");
    let cache = w.cache(reader.path());
    let mut held = files_under(&cache.join("data"));
    held.sort();
    assert_eq!(
        held,
        [
            "item2/@versions/1.bin",
            "item2/@versions/1.json",
            "item2/@versions/2.bin",
            "item2/@versions/2.json"
        ]
    );
    let listed = w.json(reader.path(), &["data", "list"]);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(4),
        "{listed}"
    );
    assert_eq!(listed["items"][3]["latestVersion"], 2, "{listed}");
    assert!(
        !cache.join("outputs/report").exists(),
        "nothing else fetched"
    );
    // A full sync brings the rest; nothing that was not fetched is deleted.
    w.ok(reader.path(), &["datastore", "sync"]);
    assert_eq!(w.index()["files"].as_object().unwrap().len(), indexed);
    assert!(cache.join("outputs/report").exists());
    assert_eq!(w.ok(writer.path(), &["data", "get", "item0"]), b"0.2");
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
