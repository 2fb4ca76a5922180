//! The region of an S3 datastore (issue 16): `setup s3` records the one it
//! resolved in `.swamp.yaml`, and with an endpoint and no region no command
//! asks the instance metadata service (on a laptop with MinIO or SeaweedFS
//! that is a timeout and six WARN blocks per command).

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::s3::*;
use support::*;

/// The `region:` value `.swamp.yaml` records, if any.
fn recorded_region(w: &World) -> Option<String> {
    read_config(w.repo.path()).lines().find_map(|l| {
        l.trim()
            .strip_prefix("region:")
            .map(|r| r.trim().trim_matches('\'').to_string())
    })
}

#[test]
fn setup_records_the_region_it_resolved() {
    let cases = [(None, "us-east-1"), (Some("eu-west-3"), "eu-west-3")];
    for (env_region, want) in cases {
        let w = World::create(S3Server::start(), "region-recorded");
        let home = tempfile::tempdir().unwrap();
        let mut cmd = w.on(home.path());
        cmd.env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION");
        if let Some(region) = env_region {
            cmd.env("AWS_REGION", region);
        }
        let out = run(cmd.args(w.setup_args()));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            recorded_region(&w).as_deref(),
            Some(want),
            "{}",
            read_config(w.repo.path())
        );
    }
}

/// A stand-in for the instance metadata service that counts connections.
struct FakeImds {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl FakeImds {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        // Dies with the test process; answers nothing useful.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                seen.fetch_add(1, Ordering::SeqCst);
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                drop(stream);
            }
        });
        FakeImds { url, connections }
    }
}

#[test]
fn with_an_endpoint_and_no_region_no_command_asks_the_metadata_service() {
    let w = World::create(S3Server::start(), "region-no-imds");
    let home = tempfile::tempdir().unwrap();
    w.setup(home.path());
    w.put_ok(home.path(), "item", b"x");
    // A .swamp.yaml from before setup recorded the region (or edited by hand).
    let config = read_config(w.repo.path());
    let without: String = config
        .lines()
        .filter(|l| !l.trim().starts_with("region:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(config, without, "setup recorded a region");
    std::fs::write(w.repo.path().join(".swamp.yaml"), without).unwrap();
    let imds = FakeImds::start();
    for args in [
        &["datastore", "status"][..],
        &["data", "get", "item"],
        &["exec", "--", "true"],
    ] {
        let mut cmd = w.on(home.path());
        cmd.env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url)
            .env_remove("SWAMP_LOG")
            .args(args);
        let out = run(&mut cmd);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            out.stderr.is_empty(),
            "{args:?}: nothing but swamp's own lines: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        imds.connections.load(Ordering::SeqCst),
        0,
        "the metadata service was asked"
    );
}
