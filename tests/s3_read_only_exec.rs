//! `exec --read-only` on an S3 datastore (issue 15, part 1): no datastore
//! lock, so it runs on another machine while a writer holds the lock; it
//! sees every file of one committed state; it sends nothing but reads; and
//! whatever its child does stays out of the cache and the bucket.

mod support;

use std::path::Path;
use support::proxy::*;
use support::s3::*;
use support::*;

const BUCKET: &str = "read-only-exec-bucket";

/// A script writing `text` to `outputs/report` in the datastore.
fn write_report(text: &str) -> String {
    format!(
        "mkdir -p \"$SWAMP_DATASTORE_DIR/outputs\" && printf '{text}' > \"$SWAMP_DATASTORE_DIR/outputs/report\""
    )
}

const READ_BOTH: &str = "cat \"$SWAMP_DATASTORE_DIR/data/app/config/@versions/1.bin\" \
                         \"$SWAMP_DATASTORE_DIR/outputs/report\"; echo \"ro=$SWAMP_READ_ONLY\"";

fn read_only<'a>(extra: &[&'a str], script: &'a str) -> Vec<&'a str> {
    let mut args = extra.to_vec();
    args.extend(["exec", "--read-only", "--", "sh", "-c", script]);
    args
}

#[test]
fn a_read_only_exec_on_another_machine_runs_while_a_writer_holds_the_lock() {
    let w = World::create(Moto::start(), BUCKET);
    let writer = tempfile::tempdir().unwrap();
    w.setup(writer.path());
    w.put_ok(writer.path(), "app/config", b"v1\n");
    w.sh(writer.path(), &write_report("r1\n"));
    let marks = tempfile::tempdir().unwrap();
    let (mut holder, _guard) = w.hold_lock(writer.path(), marks.path());

    // A cold cache and a short lock timeout: an exec that waited for the
    // lock would fail with 75. Unscoped, it sees every file.
    let reader = tempfile::tempdir().unwrap();
    let out = w.run_on(
        reader.path(),
        &read_only(&["--lock-timeout", "2"], READ_BOTH),
    );
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout_of(&out), "v1\nr1\nro=1\n");
    // A writing exec still waits for the lock, and times out.
    let put = w.run_on(
        reader.path(),
        &["--lock-timeout", "2", "exec", "--", "true"],
    );
    assert_eq!(code_of(&put), 75, "{}", stderr(&put));

    std::fs::write(marks.path().join("go"), b"").unwrap();
    assert!(wait_child(&mut holder).success());
}

/// Commits one item and one report, then makes the proxy refuse every
/// write with 403, as read-only credentials would.
fn commit_then_refuse_writes(w: &World, proxy: &FaultProxy, writer: &Path) {
    w.put_ok(writer, "app/config", b"v1\n");
    w.sh(writer, &write_report("r1\n"));
    for method in ["PUT", "DELETE", "POST"] {
        proxy.add(Rule::new(
            Match::method(method),
            Fault::Status(403, "AccessDenied"),
        ));
    }
}

/// It sends only GET/HEAD, so it works where every write is refused; a
/// child that changes its copy (possible as root) fails with the paths
/// named, and neither the reader's cache nor the bucket changes.
#[test]
fn a_read_only_exec_sends_only_reads_and_its_changes_go_nowhere() {
    let (w, proxy) = World::behind_proxy(BUCKET);
    let writer = tempfile::tempdir().unwrap();
    commit_then_refuse_writes(&w, &proxy, writer.path());
    let keys = w.keys();
    let index = w.index();
    let from = proxy.seen().len();

    let reader = tempfile::tempdir().unwrap();
    let out = w.run_on(reader.path(), &read_only(&[], READ_BOTH));
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout_of(&out), "v1\nr1\nro=1\n");
    // (`datastore status` would probe the store with writes.)
    let cache = reader.path().join("repos").join(repo_id(w.repo.path()));
    let cached = snapshot(&cache.join("outputs"));

    let overwrite = write_report("changed\n");
    let out = w.run_on(reader.path(), &read_only(&["--json"], &overwrite));
    if nix::unistd::geteuid().is_root() {
        let message = assert_json_error(&out, 1, "read_only_changed");
        assert!(message.contains("outputs/report"), "{message}");
    } else {
        assert_ne!(code_of(&out), 0, "the write is refused: {}", stderr(&out));
    }
    let sent = proxy.requests_since(from);
    FaultProxy::assert_reads_only(&sent);
    assert_eq!(
        snapshot(&cache.join("outputs")),
        cached,
        "the cache is untouched"
    );
    assert_eq!(
        (w.keys(), w.index()),
        (keys, index),
        "the bucket is untouched"
    );

    // With writes allowed again, the reader's cache has nothing to push.
    proxy.clear();
    let synced = w.json(reader.path(), &["datastore", "sync", "--push"]);
    assert_eq!(synced["pushed"]["uploaded"], 0, "{synced}");
    assert_eq!(
        w.ok(writer.path(), &["exec", "--", "sh", "-c", READ_BOTH]),
        b"v1\nr1\nro=\n"
    );
}

/// Credentials that may only read and list (a SeaweedFS identity, so this
/// runs in the SeaweedFS pass) are enough for `exec --read-only`, on a cold
/// cache; a writing `exec` with them is refused by the store.
#[test]
fn a_read_only_exec_works_with_credentials_that_may_only_read() {
    let Some((server, reader)) = S3Server::start_with_reader() else {
        return;
    };
    let w = World::create(server, BUCKET);
    let writer = tempfile::tempdir().unwrap();
    w.setup(writer.path());
    w.put_ok(writer.path(), "app/config", b"v1\n");
    w.sh(writer.path(), &write_report("r1\n"));
    let before = w.objects();

    let machine = tempfile::tempdir().unwrap();
    let as_reader = |args: &[&str]| w.run_signed(machine.path(), &reader, args);
    let out = as_reader(&read_only(&[], READ_BOTH));
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout_of(&out), "v1\nr1\nro=1\n");
    let out = as_reader(&["exec", "--", "true"]);
    assert_eq!(code_of(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("access denied"), "{}", stderr(&out));
    assert!(w.objects() == before, "the bucket changed: {:?}", w.keys());
}
