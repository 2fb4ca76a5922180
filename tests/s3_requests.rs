//! Requests at the floor (issue 15, part 5), counted at a proxy in front of
//! the server: on a warm cache and an unchanged datastore a reader costs
//! one conditional GET, and a writer's no-op three — acquire, conditional
//! GET of the index, conditional delete — where this machine's probe found
//! `If-Match` on DELETE honoured, four (release reads the record first)
//! where it did not probe.

mod support;

use support::proxy::*;
use support::s3::*;

const BUCKET: &str = "requests-bucket";

/// The requests `args` sends, as "METHOD path".
fn requests_of(
    w: &World,
    proxy: &FaultProxy,
    home: &std::path::Path,
    args: &[&str],
) -> Vec<String> {
    let from = proxy.seen().len();
    w.ok(home, args);
    proxy.requests_since(from)
}

#[test]
fn an_unchanged_datastore_costs_a_reader_one_request_and_a_writer_three() {
    let (w, proxy) = World::behind_proxy(BUCKET);
    let home = tempfile::tempdir().unwrap();
    w.put_ok(home.path(), "app/config", b"v1\n");
    // `status` probes the store, and this machine remembers what it found.
    let status = w.json(home.path(), &["datastore", "status"]);
    assert_eq!(status["conditionalWrites"]["delete"], true, "{status}");
    w.ok(home.path(), &["data", "get", "app/config"]);

    let read = requests_of(&w, &proxy, home.path(), &["data", "get", "app/config"]);
    assert_eq!(read.len(), 1, "{read:#?}");
    assert!(read[0].starts_with("GET ") && read[0].ends_with("/.datastore-index.json"));

    let noop = requests_of(&w, &proxy, home.path(), &["exec", "--", "true"]);
    let methods: Vec<&str> = noop.iter().map(|r| r.split(' ').next().unwrap()).collect();
    assert_eq!(methods, ["PUT", "GET", "DELETE"], "{noop:#?}");

    // A machine that never probed (its record is gone) reads before deleting.
    let cache = w.cache(home.path());
    std::fs::remove_file(cache.join(".swamp-store-probe.json")).unwrap();
    let noop = requests_of(&w, &proxy, home.path(), &["exec", "--", "true"]);
    let methods: Vec<&str> = noop.iter().map(|r| r.split(' ').next().unwrap()).collect();
    assert_eq!(methods, ["PUT", "GET", "GET", "DELETE"], "{noop:#?}");
}
