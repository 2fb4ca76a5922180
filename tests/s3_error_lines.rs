//! Every S3 failure a user can meet ends in one line on stderr that names
//! the next step, with a non-zero exit — and carries none of the SDK's
//! `Debug` dump (headers, bodies, `ErrorMetadata { .. }`). Run against
//! SeaweedFS, which checks credentials and permissions (moto accepts any).

mod support;

use std::process::Command;
use support::s3::*;
use support::*;

/// One failure: how the command is broken, and what its line must say.
struct Case {
    what: &'static str,
    args: &'static [&'static str],
    set: fn(&mut Command, &World, &Credentials),
    exit: i32,
    says: &'static [&'static str],
}

fn assert_one_clean_line(case: &Case, out: &std::process::Output) {
    assert_eq!(code_of(out), case.exit, "{}: {}", case.what, stderr(out));
    let text = stderr(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{}: one line: {text}", case.what);
    assert!(lines[0].starts_with("error: "), "{}: {text}", case.what);
    for part in case.says {
        assert!(text.contains(part), "{}: no {part:?} in {text}", case.what);
    }
    for dump in [
        "{",
        "ErrorMetadata",
        "Extensions",
        "SdkBody",
        "DispatchFailure(",
    ] {
        assert!(
            !text.contains(dump),
            "{}: SDK dump {dump:?} in {text}",
            case.what
        );
    }
}

#[test]
fn each_s3_failure_is_one_line_that_names_the_next_step() {
    let (server, reader) = S3Server::start_seaweedfs_with_reader();
    let w = World::create(server, "error-lines");
    let home = tempfile::tempdir().unwrap();
    w.setup(home.path());
    w.put_ok(home.path(), "item", b"x");
    let cases = [
        Case {
            what: "no credentials",
            args: &["data", "list"],
            set: |cmd, _, _| {
                cmd.env_remove("AWS_ACCESS_KEY_ID")
                    .env_remove("AWS_SECRET_ACCESS_KEY")
                    .env_remove("AWS_SESSION_TOKEN");
            },
            exit: 1,
            says: &["no AWS credentials found", "AWS_ACCESS_KEY_ID"],
        },
        Case {
            what: "rejected credentials",
            args: &["data", "list"],
            set: |cmd, _, _| {
                cmd.env("AWS_ACCESS_KEY_ID", "nobody")
                    .env("AWS_SECRET_ACCESS_KEY", "wrong");
            },
            exit: 1,
            says: &["the credentials were rejected", "check AWS_ACCESS_KEY_ID"],
        },
        Case {
            what: "access denied",
            args: &["data", "put", "other", "--file", "/dev/null"],
            set: |cmd, _, reader| {
                reader.set_on(cmd);
            },
            exit: 1,
            says: &["access denied", "lack permission"],
        },
        Case {
            what: "no such bucket",
            args: &["data", "list"],
            set: |cmd, w, _| {
                cmd.env("SWAMP_DATASTORE", "s3:no-such-bucket-here/p")
                    .env("AWS_ENDPOINT_URL", w.moto.endpoint());
            },
            exit: 1,
            says: &[
                "bucket 'no-such-bucket-here' does not exist",
                "create it or fix the bucket name",
            ],
        },
        Case {
            what: "endpoint down",
            args: &["data", "list"],
            set: |cmd, _, _| {
                // Another bucket: the config's endpoint is for its own.
                cmd.env("SWAMP_DATASTORE", "s3:elsewhere/p")
                    .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
                    .env("SWAMP_S3_TIMEOUT_SECS", "5");
            },
            exit: 1,
            says: &["endpoint unreachable", "check the endpoint URL"],
        },
    ];
    for case in &cases {
        let fresh = tempfile::tempdir().unwrap();
        let mut cmd = w.on(fresh.path());
        (case.set)(&mut cmd, &w, &reader);
        let out = run(cmd.args(case.args));
        assert_one_clean_line(case, &out);
    }
}

/// A bucket in another region: S3 answers `301 PermanentRedirect`, naming
/// the bucket's region in `x-amz-bucket-region` (a HEAD gets the bare
/// status). The local servers ignore the region, so a fault proxy in front
/// of one answers as S3 would; the command ends in one line naming the
/// region settings, and the region itself when S3 said it.
#[test]
fn a_bucket_in_another_region_is_one_line_that_names_the_region_settings() {
    use support::proxy::{Fault, FaultProxy, Match, Rule};
    let w = World::create(S3Server::start(), "region-lines");
    let named: &[&str] = &[
        "wrong region for this bucket, which is in eu-west-3",
        "--region eu-west-3",
        "AWS_REGION",
    ];
    let unnamed: &[&str] = &["wrong region for this bucket:", "--region", "AWS_REGION"];
    for (fault, says) in [
        (Fault::WrongRegion("eu-west-3"), named),
        (Fault::Status(301, "PermanentRedirect"), unnamed),
    ] {
        let proxy = FaultProxy::start(w.moto.port);
        proxy.add(Rule::new(Match::any(), fault.clone()));
        let case = Case {
            what: "wrong region",
            args: &[],
            set: |_, _, _| {},
            exit: 1,
            says,
        };
        for args in [
            &["data", "list"][..],
            &["data", "put", "x", "--file", "/dev/null"],
        ] {
            let fresh = tempfile::tempdir().unwrap();
            let mut cmd = w.on(fresh.path());
            cmd.env("SWAMP_DATASTORE", format!("s3:region-lines/{PREFIX}"))
                .env("AWS_ENDPOINT_URL", proxy.endpoint());
            let out = run(cmd.args(args));
            assert_one_clean_line(&case, &out);
        }
        assert!(
            proxy.count(&Match::any()) > 0,
            "{fault:?}: the commands reached the proxy"
        );
    }
}
