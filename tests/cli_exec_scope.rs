//! `exec --scope PATH` on a filesystem datastore: the child works on a
//! private writable copy while only PATH is locked; its changes under PATH
//! are applied, a change anywhere else fails the command (exit 1, the paths
//! named, nothing applied), writers of other paths run meanwhile, writers
//! of PATH and whole-datastore commands wait, and a kill -9 leaves the
//! datastore as it was.

mod support;

use nix::sys::signal::Signal;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::*;
use tempfile::TempDir;

struct Repo {
    repo: TempDir,
    home: TempDir,
}

impl Repo {
    fn new() -> Self {
        let r = Repo {
            repo: init_repo(),
            home: tempfile::tempdir().unwrap(),
        };
        for (rel, content) in [
            ("outputs/report/b.txt", "b before"),
            ("outputs/report/c.txt", "c, doomed"),
            ("outputs/other/kept.txt", "kept"),
        ] {
            let path = r.datastore().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        r
    }

    fn swamp(&self) -> Command {
        let mut cmd = swamp(self.repo.path());
        cmd.env("SWAMP_HOME", self.home.path());
        cmd
    }

    /// `--json exec --scope SCOPE -- sh -c SCRIPT`.
    fn scoped(&self, scope: &str, script: &str) -> Output {
        run(self
            .swamp()
            .args(["--json", "exec", "--scope", scope, "--", "sh", "-c", script]))
    }

    fn datastore(&self) -> PathBuf {
        local_dir(self.repo.path())
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.datastore().join(rel)).ok()
    }

    fn views(&self) -> usize {
        std::fs::read_dir(self.home.path().join("views"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }
}

#[test]
fn a_scoped_exec_keeps_its_changes_under_its_paths() {
    let r = Repo::new();
    let out = r.scoped(
        "outputs/report",
        r#"cd "$SWAMP_DATASTORE_DIR/outputs/report" && echo a > a.txt && echo 'b after' > b.txt && rm c.txt && mkdir -p deep && echo d > deep/d.txt"#,
    );
    assert_exit(&out, 0);
    let doc = json_of(&out);
    assert_eq!(doc["scope"], serde_json::json!(["outputs/report"]), "{doc}");
    assert!(doc["changed"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("outputs/report/a.txt")));
    assert_eq!(r.read("outputs/report/a.txt").as_deref(), Some("a\n"));
    assert_eq!(r.read("outputs/report/b.txt").as_deref(), Some("b after\n"));
    assert_eq!(r.read("outputs/report/c.txt"), None);
    assert_eq!(r.read("outputs/report/deep/d.txt").as_deref(), Some("d\n"));
    assert_eq!(r.read("outputs/other/kept.txt").as_deref(), Some("kept"));
    // A new directory on the way to the scope is fine too.
    let out = r.scoped(
        "outputs/fresh/run",
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs/fresh/run" && echo x > "$SWAMP_DATASTORE_DIR/outputs/fresh/run/x""#,
    );
    assert_exit(&out, 0);
    assert_eq!(r.read("outputs/fresh/run/x").as_deref(), Some("x\n"));
    assert_eq!(r.views(), 0, "the working copies are gone");
}

#[test]
fn a_change_outside_the_scope_fails_and_applies_nothing() {
    let r = Repo::new();
    let cases: [(&str, &str); 3] = [
        (
            "a new file elsewhere",
            r#"echo x > "$D/outputs/other/new.txt""#,
        ),
        (
            "a changed file elsewhere",
            r#"echo x > "$D/outputs/other/kept.txt""#,
        ),
        (
            "a removed file elsewhere",
            r#"rm "$D/outputs/other/kept.txt""#,
        ),
    ];
    for (what, elsewhere) in cases {
        let script = format!(
            r#"D="$SWAMP_DATASTORE_DIR"; echo in > "$D/outputs/report/in.txt"; {elsewhere}; exit 3"#
        );
        let out = r.scoped("outputs/report", &script);
        let message = assert_json_error(&out, 1, "outside_scope");
        assert!(message.contains("outputs/other/"), "{what}: {message}");
        assert!(message.contains("exited 3"), "{what}: {message}");
        assert_eq!(
            r.read("outputs/report/in.txt"),
            None,
            "{what}: nothing applied"
        );
        assert_eq!(
            r.read("outputs/other/kept.txt").as_deref(),
            Some("kept"),
            "{what}"
        );
        assert!(
            !r.datastore().join("outputs/other/new.txt").exists(),
            "{what}"
        );
    }
    // A link in the scope is refused the same way.
    let out = r.scoped(
        "outputs/report",
        r#"ln -s /etc/hostname "$SWAMP_DATASTORE_DIR/outputs/report/link""#,
    );
    assert_json_error(&out, 1, "not_a_file");
    assert!(std::fs::symlink_metadata(r.datastore().join("outputs/report/link")).is_err());
}

#[test]
fn scopes_are_datastore_paths() {
    let r = Repo::new();
    for bad in ["../escape", "/abs", "notadir/x", ""] {
        let out = r.scoped(bad, "true");
        assert_json_error(&out, 2, "validation_failed");
    }
    let out = run(r
        .swamp()
        .args(["exec", "--read-only", "--scope", "outputs", "--", "true"]));
    assert_exit(&out, 2);
}

/// An `exec --scope` on `scope` that waits for `{marks}/go`, having touched
/// `{marks}/started`.
fn hold_scope(r: &Repo, scope: &str, marks: &Path) -> (std::process::Child, GroupGuard) {
    let m = marks.display();
    let script = format!(
        r#"touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done; echo held > "$SWAMP_DATASTORE_DIR/{scope}/held""#
    );
    let holder = r
        .swamp()
        .args(["exec", "--scope", scope, "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn the scoped exec");
    let guard = GroupGuard(holder.id());
    wait_until("the scoped exec runs", || marks.join("started").exists());
    (holder, guard)
}

#[test]
fn writers_of_other_paths_run_while_a_scoped_exec_holds_its_paths() {
    let r = Repo::new();
    let marks = tempfile::tempdir().unwrap();
    let (mut holder, _guard) = hold_scope(&r, "outputs/report", marks.path());
    // Another item: no wait.
    let put = run(r.swamp().args([
        "--lock-timeout",
        "5",
        "data",
        "put",
        "other",
        "--file",
        "/dev/null",
    ]));
    assert_exit(&put, 0);
    // The same paths, or the whole datastore: they wait (exit 75 here).
    let same = run(r.swamp().args([
        "--json",
        "--lock-timeout",
        "1",
        "exec",
        "--scope",
        "outputs/report/sub",
        "--",
        "true",
    ]));
    assert_json_error(&same, 75, "lock_timeout");
    let whole = run(r
        .swamp()
        .args(["--json", "--lock-timeout", "1", "exec", "--", "true"]));
    assert_json_error(&whole, 75, "lock_timeout");
    std::fs::write(marks.path().join("go"), "").unwrap();
    assert!(wait_child(&mut holder).success());
    assert_eq!(r.read("outputs/report/held").as_deref(), Some("held\n"));
}

#[test]
fn a_scoped_exec_killed_mid_run_changes_nothing_and_leaves_nothing() {
    let r = Repo::new();
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    let script = format!(
        r#"echo partial > "$SWAMP_DATASTORE_DIR/outputs/report/partial"; touch '{m}/started'; sleep 60"#
    );
    let mut victim = r
        .swamp()
        .args([
            "exec",
            "--scope",
            "outputs/report",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard(victim.id());
    wait_until("the child wrote", || marks.path().join("started").exists());
    signal_group(victim.id(), Signal::SIGKILL);
    wait_child(&mut victim);
    assert_eq!(r.read("outputs/report/partial"), None);
    // The next view made on this machine sweeps the dead one's copy; the
    // scoped lock it left goes stale (the put of another item never waits).
    let out = r.scoped("outputs/report2", "true");
    assert_exit(&out, 0);
    assert_eq!(r.views(), 0);
}
