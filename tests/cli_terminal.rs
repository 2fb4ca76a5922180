//! What a person sees (issue 16): the line and spinner of a command waiting
//! for a busy lock, colour only on a terminal and never under `NO_COLOR`.
//! Terminal tests run swamp in a real terminal (a private tmux server) and
//! read the screen back with `capture-pane`.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use support::*;

/// `exec` holding the whole-datastore lock until `{marks}/go` exists.
fn hold_lock(repo: &Path, marks: &Path) -> Child {
    let m = marks.display();
    let script = format!("touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done");
    let child = swamp(repo)
        .args(["exec", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    wait_until("the holder runs", || marks.join("started").exists());
    child
}

/// How long the process whose debug log is `log` has retried a busy lock:
/// from its first `lock busy` event to its last.
fn busy_for(log: &Path) -> std::time::Duration {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let stamps: Vec<chrono::DateTime<chrono::Utc>> = text
        .lines()
        .filter(|l| l.contains("lock busy, waiting"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    match (stamps.first(), stamps.last()) {
        (Some(a), Some(b)) => (*b - *a).to_std().unwrap_or_default(),
        _ => std::time::Duration::ZERO,
    }
}

#[test]
fn a_waiting_command_names_the_holder_once_and_json_or_quiet_say_nothing() {
    let repo = init_repo();
    let marks = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut holder = hold_lock(repo.path(), marks.path());
    let _group = GroupGuard(holder.id());
    let waiters: Vec<(Vec<&str>, std::path::PathBuf, Child)> = [
        vec!["data", "put", "a", "--file", "/dev/null"],
        vec!["--json", "data", "put", "b", "--file", "/dev/null"],
        vec!["-q", "data", "put", "c", "--file", "/dev/null"],
    ]
    .into_iter()
    .enumerate()
    .map(|(i, args)| {
        let log = logs.path().join(format!("{i}.err"));
        let child = swamp(repo.path())
            // The coordinator's debug events tell how long each waited.
            .env(
                "SWAMP_LOG",
                "swamp_datastore::infrastructure::coordinator=debug",
            )
            .env("NO_COLOR", "1")
            .arg("--lock-timeout")
            .arg("120")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        (args, log, child)
    })
    .collect();
    wait_until("every waiter waited past the notice", || {
        waiters
            .iter()
            .all(|(_, log, _)| busy_for(log) >= std::time::Duration::from_millis(1500))
    });
    let holder_pid = holder.id();
    std::fs::write(marks.path().join("go"), "").unwrap();
    assert!(wait_child(&mut holder).success());
    for (args, log, mut child) in waiters {
        assert!(wait_child(&mut child).success(), "{args:?}");
        let err = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("waiting for the lock"))
            .collect();
        if args[0] == "data" {
            assert_eq!(lines.len(), 1, "one waiting line: {err}");
            assert!(
                lines[0].starts_with("waiting for the lock held by ")
                    && lines[0].contains(&format!("(pid {holder_pid})"))
                    && lines[0].ends_with(" s…"),
                "{}",
                lines[0]
            );
        } else {
            assert!(lines.is_empty(), "{args:?} waits in silence: {err}");
        }
    }
}

#[test]
fn on_a_terminal_the_wait_shows_a_spinner_that_is_cleared_afterwards() {
    let repo = init_repo();
    let marks = tempfile::tempdir().unwrap();
    let mut holder = hold_lock(repo.path(), marks.path());
    let _group = GroupGuard(holder.id());
    let tmux = Tmux::new("spinner");
    let d = repo.path().display();
    tmux.start(&format!(
        "{bin} --repo-dir {d} --lock-timeout 120 data put item --file /dev/null; echo exit:$? > {d}/code; sleep 600",
        bin = bin().display()
    ));
    wait_until("the waiting line and the spinner", || {
        let screen = tmux.screen(false);
        screen.contains("waiting for the lock held by")
            && screen.lines().any(|l| {
                l.trim_start().chars().nth(1) == Some(' ')
                    && l.contains("waiting ")
                    && !l.contains("held by")
            })
    });
    std::fs::write(marks.path().join("go"), "").unwrap();
    assert!(wait_child(&mut holder).success());
    wait_until("the waiter finished", || {
        whole_line(&repo.path().join("code")).is_some()
    });
    assert_eq!(
        std::fs::read_to_string(repo.path().join("code")).unwrap(),
        "exit:0\n"
    );
    wait_until("the screen settles", || {
        tmux.screen(false).contains("Stored item version 1")
    });
    let screen = tmux.screen(false);
    let left: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(left.len(), 2, "only the final lines are left: {screen}");
    assert!(
        left[0].starts_with("waiting for the lock held by"),
        "{screen}"
    );
    assert!(left[1].starts_with("Stored item version 1"), "{screen}");
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let repo = init_repo();
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        let tmux = Tmux::new(if coloured { "colour" } else { "no-colour" });
        let d = repo.path().display();
        let env = no_color
            .map(|v| format!("NO_COLOR={v} "))
            .unwrap_or_default();
        let done = repo.path().join(format!("done-{coloured}"));
        tmux.start(&format!(
            "env -u SWAMP_LOG {env}{bin} --repo-dir {d} -vv exec -- true; touch {done}; sleep 600",
            bin = bin().display(),
            done = done.display()
        ));
        wait_until("the command ran", || done.exists());
        wait_until("its log is on the screen", || {
            tmux.screen(false).contains("DEBUG")
        });
        let screen = tmux.screen(true);
        assert_eq!(
            screen.contains("\u{1b}["),
            coloured,
            "NO_COLOR={no_color:?}: {screen:?}"
        );
    }
}

/// The content of `path` once the shell has written it whole (`echo ... >`
/// creates the file before it writes the line).
fn whole_line(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .filter(|text| text.ends_with('\n'))
}

/// `cmd` as a shell command line: its environment changes, then its argv.
fn shell_line(cmd: &std::process::Command) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = String::from("env");
    // env's options (-u) before its assignments.
    for (key, value) in cmd.get_envs() {
        if value.is_none() {
            line += &format!(" -u {}", key.to_string_lossy());
        }
    }
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            line += &format!(
                " {}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            );
        }
    }
    line += &format!(" {}", quote(&cmd.get_program().to_string_lossy()));
    for arg in cmd.get_args() {
        line += &format!(" {}", quote(&arg.to_string_lossy()));
    }
    line
}

#[test]
fn the_guards_own_pull_shows_a_bar_on_a_terminal_once_it_takes_a_while() {
    use support::s3::*;
    let w = World::create(S3Server::start(), "terminal-bar");
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    w.setup(a.path());
    w.sh(
        a.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/files" && for i in $(seq 1 600); do echo "$i" > "$SWAMP_DATASTORE_DIR/files/f$i"; done"#,
    );
    for (home, quiet) in [(b.path(), false), (c.path(), true)] {
        let tmux = Tmux::new(if quiet { "bar-quiet" } else { "bar" });
        let done = home.join("done");
        let mut cmd = w.on(home);
        // One transfer at a time: the pull takes well over a second.
        cmd.env("SWAMP_SYNC_CONCURRENCY", "1")
            .env_remove("SWAMP_LOG");
        if quiet {
            cmd.arg("-q");
        }
        cmd.args(["exec", "--", "true"]);
        tmux.start(&format!(
            "{}; echo exit:$? > {}; sleep 600",
            shell_line(&cmd),
            done.display()
        ));
        let mut saw_bar = false;
        wait_until("the command finished", || {
            let screen = tmux.screen(false);
            saw_bar |= screen.contains("pull [") && screen.contains("/600 files");
            whole_line(&done).is_some()
        });
        assert_eq!(whole_line(&done).as_deref(), Some("exit:0\n"));
        assert_eq!(saw_bar, !quiet, "a bar while pulling, none under -q");
        let screen = tmux.screen(false);
        assert!(!screen.contains("pull ["), "the bar is cleared: {screen}");
        assert!(w.cache(home).join("files/f600").is_file());
    }
}
