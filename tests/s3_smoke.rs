//! The S3 datastore end to end against a real local S3 server (moto, or
//! SeaweedFS with `SWAMP_TEST_S3=seaweedfs`).

mod support;

use support::s3::*;
use support::*;

#[test]
fn put_on_one_machine_is_seen_on_another() {
    let moto = Moto::start();
    moto.create_bucket("team-bucket");
    let repo = init_repo();
    let home_a = tempfile::tempdir().unwrap();
    let home_b = tempfile::tempdir().unwrap();
    let swamp_on = |home: &std::path::Path| {
        let mut cmd = swamp(repo.path());
        s3_env(&mut cmd, &moto, home);
        cmd
    };
    let out = run(swamp_on(home_a.path()).args([
        "datastore",
        "setup",
        "s3",
        "--bucket",
        "team-bucket",
        "--prefix",
        "proj",
        "--endpoint-url",
        &moto.endpoint(),
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut put = swamp_on(home_a.path());
    put.args(["data", "put", "app/config", "--file", "-"]);
    put.stdin(std::process::Stdio::piped());
    let mut child = put.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"replicas: 3\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let got = run(swamp_on(home_b.path()).args(["data", "get", "app/config"]));
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(got.stdout, b"replicas: 3\n");
    assert!(moto
        .keys("team-bucket")
        .iter()
        .any(|k| k == "proj/.datastore-index.json"));
}

#[test]
fn a_file_over_16_mib_goes_up_in_parts_and_comes_back_whole() {
    let moto = Moto::start();
    moto.create_bucket("big-bucket");
    let repo = init_repo();
    let (home_a, home_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let swamp_on = |home: &std::path::Path| {
        let mut cmd = swamp(repo.path());
        s3_env(&mut cmd, &moto, home);
        cmd
    };
    let setup = run(swamp_on(home_a.path()).args([
        "datastore",
        "setup",
        "s3",
        "--bucket",
        "big-bucket",
        "--endpoint-url",
        &moto.endpoint(),
    ]));
    assert!(setup.status.success(), "{}", stderr(&setup));
    // 17 MiB + 3 bytes of varied content: two parts, the last one short.
    let big: Vec<u8> = (0..(17 * 1024 * 1024 + 3) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let source = repo.path().join("big.bin");
    std::fs::write(&source, &big).unwrap();
    let script = format!(
        "mkdir -p \"$SWAMP_DATASTORE_DIR/outputs\" && cp {} \"$SWAMP_DATASTORE_DIR/outputs/big.bin\"",
        source.display()
    );
    let push = run(swamp_on(home_a.path()).args(["exec", "--", "sh", "-c", &script]));
    assert!(push.status.success(), "{}", stderr(&push));
    let pull = run(swamp_on(home_b.path()).args(["datastore", "sync", "--pull"]));
    assert!(pull.status.success(), "{}", stderr(&pull));
    let pulled = home_b
        .path()
        .join("repos")
        .join(repo_id(repo.path()))
        .join("outputs/big.bin");
    let got = std::fs::read(&pulled).expect("pulled file");
    assert_eq!(got.len(), big.len());
    assert!(got == big, "content differs after a multipart round trip");

    // The index records the CRC32 of each 16 MiB part next to the SHA-256...
    let index = index_of(|key| moto.get_object("big-bucket", key), "");
    let entry = &index["files"]["outputs/big.bin"];
    assert_eq!(entry["sha256"], sha256_hex(&big));
    assert_eq!(entry["parts"]["partSize"], 16 * 1024 * 1024);
    let crcs: Vec<u32> = big.chunks(16 * 1024 * 1024).map(crc32fast::hash).collect();
    assert_eq!(entry["parts"]["crc32"], serde_json::json!(crcs));
    // ...and a pull checks them: one flipped byte in the second part, written
    // by another tool, is refused and nothing lands in the cache.
    let mut evil = big.clone();
    evil[16 * 1024 * 1024 + 1] ^= 0xff;
    moto.put_object("big-bucket", "outputs/big.bin", &evil);
    // Both ways of downloading a large file check it: parts in parallel
    // (the default) and one plain GET.
    for part_downloads in ["4", "1"] {
        let home_c = tempfile::tempdir().unwrap();
        let pull = run(swamp_on(home_c.path())
            .env("SWAMP_PART_DOWNLOADS", part_downloads)
            .args(["datastore", "sync", "--pull"]));
        assert!(!pull.status.success(), "a corrupt object was accepted");
        assert!(
            stderr(&pull).contains("does not match the index"),
            "{}",
            stderr(&pull)
        );
        let cache_c = home_c.path().join("repos").join(repo_id(repo.path()));
        assert!(!cache_c.join("outputs/big.bin").exists());
    }
    // The original content is pulled whole with one plain GET too.
    moto.put_object("big-bucket", "outputs/big.bin", &big);
    let home_d = tempfile::tempdir().unwrap();
    let pull = run(swamp_on(home_d.path())
        .env("SWAMP_PART_DOWNLOADS", "1")
        .args(["datastore", "sync", "--pull"]));
    assert!(pull.status.success(), "{}", stderr(&pull));
    let cache_d = home_d.path().join("repos").join(repo_id(repo.path()));
    assert!(std::fs::read(cache_d.join("outputs/big.bin")).unwrap() == big);
}
