//! Odd names and odd files on a real S3 server (moto, or SeaweedFS with
//! `SWAMP_TEST_S3=seaweedfs`), through the built binary: what cannot sync is
//! named on every push and never blocks the rest; long names and names with
//! swamp's temp marker travel; a file replaced by a directory on one machine
//! follows on the others.

mod support;

use std::path::Path;
use support::s3::*;
use support::*;

const BUCKET: &str = "names-bucket";

fn world() -> World {
    let w = World::create(S3Server::start(), BUCKET);
    let setup_home = tempfile::tempdir().unwrap();
    w.setup(setup_home.path());
    w
}

/// Runs `script` through `exec` on `home`, insisting on success; returns stderr.
fn sh_stderr(w: &World, home: &Path, script: &str) -> String {
    let out = w.run_sh(home, script);
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    stderr(&out)
}

#[test]
fn unsyncable_files_are_named_on_every_push_and_the_rest_travels() {
    let w = world();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let long = "n".repeat(240);
    let script = format!(
        r#"cd "$SWAMP_DATASTORE_DIR" && mkdir -p outputs && cd outputs &&
        printf ok > plain && printf long > {long} && printf mine > my.swamp-tmp-notes &&
        ln -s plain link && printf x > "$(printf 'bell\a')" && printf x > "$(printf 'caf\351')""#
    );
    let err = sh_stderr(&w, a.path(), &script);
    for (name, why) in [
        ("outputs/link", "a symbolic link"),
        ("outputs/bell\\u{7}", "control characters"),
        ("outputs/caf\u{fffd}", "not valid UTF-8"),
    ] {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("warning: {name} is not synced:")))
            .unwrap_or_else(|| panic!("no warning for {name}: {err}"));
        assert!(line.contains(why), "{line}");
    }
    assert_eq!(err.matches("is not synced").count(), 3, "{err}");
    // Reported again on the next push, and in --json.
    let v = w.json(a.path(), &["datastore", "sync"]);
    assert_eq!(
        v["pushed"]["unsyncable"].as_array().unwrap().len(),
        3,
        "{v}"
    );
    let mut keys = w.rel_keys();
    keys.retain(|k| k.starts_with("outputs/"));
    keys.sort();
    assert_eq!(
        keys,
        [
            "outputs/my.swamp-tmp-notes".to_string(),
            format!("outputs/{long}"),
            "outputs/plain".to_string(),
        ]
    );
    // Another machine pulls every syncable file, and its commands work.
    let seen = w.sh(
        b.path(),
        &format!(r#"cd "$SWAMP_DATASTORE_DIR/outputs" && cat plain {long} my.swamp-tmp-notes"#),
    );
    assert_eq!(seen, b"oklongmine");
    w.ok(b.path(), &["data", "list"]);
    assert!(!w.cache(b.path()).join("outputs/link").exists());
}

#[test]
fn a_file_replaced_by_a_directory_follows_on_other_machines() {
    let w = world();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    w.sh(
        a.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && printf file > "$SWAMP_DATASTORE_DIR/outputs/d""#,
    );
    assert_eq!(
        w.sh(b.path(), r#"cat "$SWAMP_DATASTORE_DIR/outputs/d""#),
        b"file"
    );
    w.sh(
        a.path(),
        r#"cd "$SWAMP_DATASTORE_DIR/outputs" && rm d && mkdir d && printf inner > d/inner"#,
    );
    let out = w.run_sh(b.path(), r#"cat "$SWAMP_DATASTORE_DIR/outputs/d/inner""#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"inner");
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    // A file on b that never reached the bucket (written behind swamp's
    // back) where a makes a directory: moved aside, and said.
    let cache_b = w.cache(b.path());
    std::fs::write(cache_b.join("outputs/e"), "mine, unpushed").unwrap();
    w.sh(
        a.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs/e" && printf theirs > "$SWAMP_DATASTORE_DIR/outputs/e/f""#,
    );
    let out = w.run_sh(b.path(), r#"cat "$SWAMP_DATASTORE_DIR/outputs/e/f""#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"theirs");
    let err = stderr(&out);
    assert!(
        err.contains("warning: outputs/e is a file here and a directory remotely"),
        "{err}"
    );
    let v = w.json(b.path(), &["datastore", "status"]);
    let conflicts = v["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{v}");
    let copy = cache_b
        .join(".swamp-conflicts")
        .join(conflicts[0].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(copy).unwrap(), "mine, unpushed");
}
