//! The S3 datastore end to end against a real local S3 server (moto).

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
