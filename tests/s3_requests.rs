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

/// A change costs what it changed (issue 15, part 4): among 600 files in a
/// sharded index, changing one uploads the file, its one shard and the
/// root — and another machine's warm pull fetches the root, that shard and
/// the file, nothing else of the index.
#[test]
fn one_change_uploads_one_shard_and_a_warm_pull_fetches_only_it() {
    let (w, proxy) = World::behind_proxy(BUCKET);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    w.sh(
        a.path(),
        r#"for i in $(seq 1 600); do mkdir -p "$SWAMP_DATASTORE_DIR/outputs/d$((i % 60))"; echo "$i" > "$SWAMP_DATASTORE_DIR/outputs/d$((i % 60))/f$i"; done"#,
    );
    let root = w.index_root();
    assert_eq!(root["shardBits"], 2, "600 files: 4 shards: {root}");
    w.json(a.path(), &["datastore", "status"]);
    w.ok(b.path(), &["datastore", "sync", "--pull"]);

    let change = requests_of(
        &w,
        &proxy,
        a.path(),
        &[
            "exec",
            "--",
            "sh",
            "-c",
            r#"echo changed > "$SWAMP_DATASTORE_DIR/outputs/d7/f7""#,
        ],
    );
    let puts: Vec<&String> = change.iter().filter(|r| r.starts_with("PUT ")).collect();
    assert_eq!(
        change.len(),
        6,
        "lock, root 304, file, shard, root, release: {change:#?}"
    );
    assert_eq!(
        puts.iter()
            .filter(|r| r.contains("/.datastore-index-shards/"))
            .count(),
        1,
        "{change:#?}"
    );
    assert!(
        puts.iter().any(|r| r.ends_with("/outputs/d7/f7")),
        "{change:#?}"
    );

    let pull = requests_of(&w, &proxy, b.path(), &["datastore", "sync", "--pull"]);
    // Besides the lock's own requests (create, the drain's listing, release).
    let gets: Vec<&String> = pull
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/proj/") && !r.ends_with(".lock"))
        .collect();
    assert_eq!(
        gets.iter()
            .filter(|r| r.contains("/.datastore-index-shards/"))
            .count(),
        1,
        "{pull:#?}"
    );
    assert!(
        gets.iter().any(|r| r.ends_with("/outputs/d7/f7")),
        "{pull:#?}"
    );
    assert_eq!(gets.len(), 3, "root, shard, file: {pull:#?}");
    assert_eq!(
        std::fs::read_to_string(w.cache(b.path()).join("outputs/d7/f7")).unwrap(),
        "changed\n"
    );
}

/// Replaced shards are deleted in batches (one DeleteObjects per 32), so
/// the bucket holds the shards the root names plus fewer than 32 more, and
/// every name the root lists is there.
#[test]
fn replaced_shards_are_collected_in_batches() {
    let (w, proxy) = World::behind_proxy(BUCKET);
    let home = tempfile::tempdir().unwrap();
    let mut collected = 0;
    for round in 0..40 {
        let from = proxy.seen().len();
        w.put_ok(
            home.path(),
            "app/config",
            format!("round {round}").as_bytes(),
        );
        let sent = proxy.requests_since(from);
        // DeleteObjects is the only POST here (no file is large enough
        // for a multipart upload).
        collected += sent.iter().filter(|r| r.starts_with("POST ")).count();
        let root = w.index_root();
        let named: Vec<String> = root["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s.as_str().filter(|s| !s.is_empty()).map(str::to_string))
            .collect();
        let garbage = root["garbage"].as_array().map_or(0, Vec::len);
        assert!(garbage < 32, "round {round}: {root}");
        let shards: Vec<String> = w
            .rel_keys()
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix(".datastore-index-shards/")
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect();
        for name in &named {
            assert!(
                shards.contains(name),
                "round {round}: {name} is named but gone"
            );
        }
        assert!(
            shards.len() <= named.len() + garbage,
            "round {round}: {} shards, {} named, {garbage} garbage",
            shards.len(),
            named.len()
        );
    }
    // Each put replaces at least one shard (a small datastore has one), so
    // 40 puts fill the list at least once.
    assert!(collected >= 1, "no batch deletion");
    assert_eq!(
        w.ok(home.path(), &["data", "get", "app/config"]),
        b"round 39"
    );
}
