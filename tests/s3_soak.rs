//! The mixed soak: 16 real processes on 3 machines (swamp homes, so 3 S3
//! caches) run a fixed script of `data put`, `data rm`, `exec` and
//! `datastore sync` against one datastore, all at once. Afterwards a fresh
//! machine checks that nothing was lost or duplicated: the audit log, replayed
//! in order, gives every put exactly the version it was answered with and
//! the versions each item ends with; every surviving version holds content a
//! put of that version wrote; every exec's line is in its log, in order; and
//! no lock is left. The same script runs on a filesystem datastore.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use support::s3::*;
use support::*;

const BUCKET: &str = "soak-bucket";
const PROCESSES: usize = 16;
const ROUNDS: usize = 4;
const ITEMS: usize = 3;

/// What the processes were told happened, to compare with the final state.
#[derive(Default)]
struct Outcomes {
    /// (item, version) → contents of the puts answered with that version.
    puts: BTreeMap<(String, u64), Vec<String>>,
    /// Successful removals (of an item that existed).
    removals: usize,
    /// Per process, the lines its successful execs appended, in order.
    exec_lines: BTreeMap<usize, Vec<String>>,
}

/// Runs one soak: `command(process, args)` builds a swamp command for that
/// process's machine. Returns what the processes saw.
fn soak(
    command: Arc<dyn Fn(usize) -> Command + Send + Sync>,
    sync_args: &'static [&'static str],
) -> Outcomes {
    let workers: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let command = command.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for round in 0..ROUNDS {
                    let token = format!("p{p}r{round}");
                    let run = |args: &[&str], stdin: Option<&[u8]>| -> Output {
                        let mut cmd = command(p);
                        cmd.args(["--json", "--lock-timeout", "600"]).args(args);
                        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
                        let mut child = cmd.spawn().expect("spawn swamp");
                        if let Some(bytes) = stdin {
                            child.stdin.take().unwrap().write_all(bytes).unwrap();
                        }
                        drop(child.stdin.take());
                        child.wait_with_output().expect("wait swamp")
                    };
                    match (p + round) % 4 {
                        0 => {
                            let item = format!("item-{}", (p + round) % ITEMS);
                            let out = run(&["data", "put", &item, "--file", "-"], Some(token.as_bytes()));
                            assert!(out.status.success(), "p{p} r{round} put: {}{}", stdout_of(&out), stderr(&out));
                            let version = json_of(&out)["version"].as_u64().expect("version");
                            seen.push(('p', item, version, token));
                        }
                        1 => {
                            let item = format!("item-{}", (p * 7 + round) % ITEMS);
                            let out = run(&["data", "rm", &item], None);
                            if out.status.success() {
                                seen.push(('r', item, 0, token));
                            } else {
                                assert_json_error(&out, 1, "not_found");
                            }
                        }
                        2 => {
                            let script = format!(
                                r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && echo {token} >> "$SWAMP_DATASTORE_DIR/outputs/log-{p}""#
                            );
                            let out = run(&["exec", "--", "sh", "-c", &script], None);
                            assert!(out.status.success(), "p{p} r{round} exec: {}{}", stdout_of(&out), stderr(&out));
                            seen.push(('e', String::new(), 0, token));
                        }
                        _ => {
                            let out = run(sync_args, None);
                            assert!(out.status.success(), "p{p} r{round} {sync_args:?}: {}{}", stdout_of(&out), stderr(&out));
                        }
                    }
                }
                (p, seen)
            })
        })
        .collect();
    let mut outcomes = Outcomes::default();
    for worker in workers {
        let (p, seen) = worker.join().expect("worker panicked");
        for (kind, item, version, token) in seen {
            match kind {
                'p' => outcomes
                    .puts
                    .entry((item, version))
                    .or_default()
                    .push(token),
                'r' => outcomes.removals += 1,
                _ => outcomes.exec_lines.entry(p).or_default().push(token),
            }
        }
    }
    outcomes
}

/// Checks the final state, read through `command` on a machine that ran
/// none of the soak, against `outcomes`.
fn check(command: &dyn Fn() -> Command, outcomes: &Outcomes) {
    let run = |args: &[&str]| -> Output {
        let out = run(command().args(args));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    // The audit log, every file of it (day files on a filesystem datastore,
    // one file per command on S3), in time order: writers of one item hold
    // its lock in turn, so their lines are ordered by time.
    let audit = run(&[
        "exec",
        "--",
        "sh",
        "-c",
        r#"find "$SWAMP_DATASTORE_DIR/audit" -name '*.jsonl' -exec cat {} +"#,
    ]);
    let mut entries: Vec<(chrono::DateTime<chrono::FixedOffset>, Value, String)> =
        String::from_utf8(audit.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let entry: Value = serde_json::from_str(line).expect("audit line");
                let time = chrono::DateTime::parse_from_rfc3339(entry["time"].as_str().unwrap())
                    .expect("audit time");
                (time, entry, line.to_string())
            })
            .collect();
    entries.sort_by_key(|(time, _, _)| *time);
    let log: Vec<String> = entries.iter().map(|(_, _, l)| l.clone()).collect();
    let mut replayed: BTreeMap<String, u64> = BTreeMap::new();
    let (mut puts, mut removals) = (0, 0);
    for (_, entry, line) in entries {
        let name = entry["name"].as_str().unwrap().to_string();
        match entry["action"].as_str().unwrap() {
            "put" => {
                puts += 1;
                let count = replayed.entry(name.clone()).or_default();
                *count += 1;
                assert_eq!(
                    entry["version"].as_u64(),
                    Some(*count),
                    "{name}: {line} in {log:#?}"
                );
            }
            "rm" => {
                removals += 1;
                replayed.insert(name, 0);
            }
            other => panic!("unexpected audit action {other}"),
        }
    }
    let answered: usize = outcomes.puts.values().map(Vec::len).sum();
    // Each process runs each of the four commands once per four rounds.
    assert_eq!(answered, PROCESSES * ROUNDS / 4, "every put succeeded");
    let execs: usize = outcomes.exec_lines.values().map(Vec::len).sum();
    assert_eq!(execs, PROCESSES * ROUNDS / 4, "every exec succeeded");
    assert_eq!(
        puts, answered,
        "every answered put is in the audit log, once"
    );
    assert_eq!(
        removals, outcomes.removals,
        "every answered rm is in the audit log, once"
    );
    for item in 0..ITEMS {
        let name = format!("item-{item}");
        let expected = replayed.get(&name).copied().unwrap_or(0);
        let out = crate::run(command().args(["--json", "data", "versions", &name]));
        let versions = if out.status.success() {
            json_of(&out)["versions"].as_array().unwrap().len() as u64
        } else {
            assert_json_error(&out, 1, "not_found");
            0
        };
        assert_eq!(
            versions, expected,
            "{name}: versions against the audit replay"
        );
        for version in 1..=versions {
            let content = run(&["data", "get", &name, "--version", &version.to_string()]).stdout;
            let content = String::from_utf8(content).unwrap();
            let written = outcomes
                .puts
                .get(&(name.clone(), version))
                .cloned()
                .unwrap_or_default();
            assert!(
                written.contains(&content),
                "{name} v{version} holds {content:?}, written: {written:?}"
            );
        }
    }
    for (p, lines) in &outcomes.exec_lines {
        let log = run(&[
            "exec",
            "--",
            "sh",
            "-c",
            &format!(r#"cat "$SWAMP_DATASTORE_DIR/outputs/log-{p}""#),
        ]);
        let got: Vec<String> = String::from_utf8(log.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(&got, lines, "exec log of p{p}");
    }
    let status = json_of(&run(&["--json", "datastore", "lock", "status"]));
    assert_eq!(status["held"], false, "{status}");
}

#[test]
fn sixteen_processes_on_three_caches_mixing_commands_lose_nothing() {
    let moto = S3Server::start_serial();
    let w = Arc::new(World::create(moto, BUCKET));
    let setup_home = tempfile::tempdir().unwrap();
    w.setup(setup_home.path());
    let homes: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let machines: Vec<PathBuf> = homes.iter().map(|h| h.path().to_path_buf()).collect();
    let on = w.clone();
    let outcomes = soak(
        Arc::new(move |p| on.on(&machines[p % machines.len()])),
        &["datastore", "sync"],
    );
    let fresh = tempfile::tempdir().unwrap();
    check(&|| w.on(fresh.path()), &outcomes);
    drop(homes);
}

#[test]
fn sixteen_processes_on_a_filesystem_datastore_mixing_commands_lose_nothing() {
    if matches!(S3Kind::from_env(), S3Kind::SeaweedFs) {
        return; // Not an S3 test: it ran in the moto round.
    }
    let repo = init_repo();
    let root: PathBuf = repo.path().to_path_buf();
    let for_soak = root.clone();
    let outcomes = soak(Arc::new(move |_| swamp(&for_soak)), &["data", "list"]);
    check(&|| swamp(Path::new(&root)), &outcomes);
}
