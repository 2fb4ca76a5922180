//! `exec --read-only` on the filesystem datastore: the child works on a
//! private read-only copy of the datastore, holds no lock while it runs,
//! sees one state from start to end, changes nothing, and leaves nothing
//! behind — on success, on failure, on a signal, and after a kill -9.

mod support;

use nix::sys::signal::Signal;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::*;
use tempfile::TempDir;

/// A repo with one item on its filesystem datastore, and a swamp home of its
/// own (views live under it).
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
        put(r.repo.path(), "app/config", b"v1\n");
        r
    }

    fn swamp(&self) -> Command {
        let mut cmd = swamp(self.repo.path());
        cmd.env("SWAMP_HOME", self.home.path());
        cmd
    }

    /// `exec --read-only -- sh -c SCRIPT` (plus `extra` global flags).
    fn read_only(&self, extra: &[&str], script: &str) -> std::process::Output {
        run(self
            .swamp()
            .args(extra)
            .args(["exec", "--read-only", "--", "sh", "-c", script]))
    }

    fn datastore(&self) -> PathBuf {
        local_dir(self.repo.path())
    }

    fn views(&self) -> Vec<String> {
        match std::fs::read_dir(self.home.path().join("views")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

const CONFIG_V1: &str = "\"$SWAMP_DATASTORE_DIR/data/app/config/@versions/1.bin\"";

#[test]
fn the_child_reads_the_datastore_and_its_exit_code_passes_through() {
    let r = Repo::new();
    for code in [0, 3] {
        let script = format!(
            "cat {CONFIG_V1}; echo \"read-only=$SWAMP_READ_ONLY\"; \
             case \"$SWAMP_DATASTORE_DIR\" in \"$SWAMP_HOME\"/views/*) echo private;; esac; exit {code}"
        );
        let out = r.read_only(&[], &script);
        assert_eq!(code_of(&out), code, "{}", stderr(&out));
        assert_eq!(stdout_of(&out), "v1\nread-only=1\nprivate\n");
    }
    assert_eq!(r.views(), Vec::<String>::new(), "every view was removed");
    let out = run(r
        .swamp()
        .args(["--json", "exec", "--read-only", "--", "true"]));
    let doc = json_of(&out);
    assert_eq!(
        (doc["exitCode"].as_i64(), doc["readOnly"].as_bool()),
        (Some(0), Some(true))
    );
}

/// Whatever the child does to its copy never reaches the datastore. An
/// ordinary user's child cannot write (the modes refuse it); a root child
/// can, and then the command fails with the paths named.
#[test]
fn a_child_that_writes_changes_nothing_and_is_told() {
    let r = Repo::new();
    let before = snapshot(&r.datastore());
    let script = "echo new > \"$SWAMP_DATASTORE_DIR/data/new\" && \
                  echo changed >> \"$SWAMP_DATASTORE_DIR/data/app/config/@versions/1.bin\"";
    for json in [false, true] {
        let flags: &[&str] = if json { &["--json"] } else { &[] };
        let out = r.read_only(flags, script);
        if nix::unistd::geteuid().is_root() {
            let message = if json {
                assert_json_error(&out, 1, "read_only_changed")
            } else {
                assert_text_error(&out, 1)
            };
            assert!(
                message.contains("data/new")
                    && message.contains("data/app/config/@versions/1.bin")
                    && message.contains("without --read-only"),
                "{message}"
            );
        } else {
            assert_ne!(code_of(&out), 0, "the write is refused: {}", stderr(&out));
            assert!(
                stderr(&out).contains("Permission denied"),
                "{}",
                stderr(&out)
            );
        }
    }
    assert_eq!(
        snapshot(&r.datastore()),
        before,
        "the datastore is untouched"
    );
    assert_eq!(r.views(), Vec::<String>::new());
    let get = run(r.swamp().args(["data", "get", "app/config"]));
    assert_eq!(get.stdout, b"v1\n");
}

/// The copy is made under the lock, the child runs without it: a writer
/// proceeds while the child runs, and the child keeps seeing the state it
/// started from.
#[test]
fn a_read_only_child_holds_no_lock_and_sees_one_state() {
    let r = Repo::new();
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    let script = format!(
        "touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done; \
         ls \"$SWAMP_DATASTORE_DIR/data/app/config/@versions\"; cat {CONFIG_V1}"
    );
    let child = r
        .swamp()
        .args(["exec", "--read-only", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard(child.id());
    wait_until("the read-only child runs", || {
        marks.path().join("started").exists()
    });
    // A writer that had to wait for the lock would time out.
    let input = marks.path().join("v2");
    std::fs::write(&input, b"v2\n").unwrap();
    let put = run(r.swamp().args([
        "--lock-timeout",
        "5",
        "data",
        "put",
        "app/config",
        "--file",
        input.to_str().unwrap(),
    ]));
    assert_eq!(code_of(&put), 0, "{}", stderr(&put));
    std::fs::write(marks.path().join("go"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout_of(&out),
        "1.bin\n1.json\nv1\n",
        "the child sees the state it started from, not version 2"
    );
    let get = run(r.swamp().args(["data", "get", "app/config"]));
    assert_eq!(get.stdout, b"v2\n");
}

/// On a filesystem datastore the copy needs the lock: while a writer holds
/// it, a read-only exec waits (and times out with 75).
#[test]
fn on_a_filesystem_datastore_the_copy_waits_for_a_writer() {
    let r = Repo::new();
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    let script = format!("touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done");
    let mut holder = r
        .swamp()
        .args(["exec", "--", "sh", "-c", &script])
        .process_group(0)
        .spawn()
        .unwrap();
    let _guard = GroupGuard(holder.id());
    wait_until("the writer holds the lock", || {
        marks.path().join("started").exists()
    });
    let out = r.read_only(&["--lock-timeout", "0.5"], "true");
    assert_eq!(code_of(&out), 75, "{}", stderr(&out));
    std::fs::write(marks.path().join("go"), b"").unwrap();
    assert!(wait_child(&mut holder).success());
    assert_eq!(r.views(), Vec::<String>::new());
}

/// A signal reaches the child, swamp exits 128+N, and the view is removed;
/// a view a kill -9 left behind is removed by the next read-only exec.
#[test]
fn signals_and_kill_9_leave_no_view_behind() {
    let r = Repo::new();
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    let script = format!(
        "trap 'echo term > {m}/term; exit 1' TERM; echo $$ > {m}/pid; touch {s}; \
         while :; do sleep 0.05; done",
        m = marks.path().display(),
        s = started.display()
    );
    let run_child = || {
        let _ = std::fs::remove_file(&started);
        let child = r
            .swamp()
            .args(["exec", "--read-only", "--", "sh", "-c", &script])
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        wait_until("the read-only child runs", || started.exists());
        child
    };

    let mut child = run_child();
    let _guard = GroupGuard(child.id());
    signal(child.id(), Signal::SIGTERM);
    let status = wait_child(&mut child);
    assert_eq!(status.code(), Some(128 + Signal::SIGTERM as i32));
    assert!(
        marks.path().join("term").exists(),
        "the child got the signal"
    );
    assert_eq!(r.views(), Vec::<String>::new());

    let mut child = run_child();
    let _guard = GroupGuard(child.id());
    // The exec'd child runs in a process group of its own: end it too.
    let pid = std::fs::read_to_string(marks.path().join("pid")).unwrap();
    let _child_guard = GroupGuard(pid.trim().parse().unwrap());
    kill_group(child.id());
    wait_child(&mut child);
    assert_eq!(r.views().len(), 1, "a kill -9 leaves its view");
    let out = r.read_only(&[], "ls \"$SWAMP_HOME/views\" | wc -l");
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout_of(&out).trim(), "1", "only the running view is left");
    assert_eq!(r.views(), Vec::<String>::new());
}
