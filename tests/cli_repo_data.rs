//! Black-box tests of `repo init`, `data put|get|list|versions|rm`, the audit
//! log, `exec`, and running outside a repo.

mod support;

use serde_json::Value;
use std::fs;
use std::path::Path;
use support::*;

fn audit_entries(datastore: &Path) -> Vec<Value> {
    let dir = datastore.join("audit");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut entries = Vec::new();
    for file in files {
        assert_eq!(
            file.extension().and_then(|e| e.to_str()),
            Some("jsonl"),
            "{}",
            file.display()
        );
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.ends_with('\n'), "every audit line ends with a newline");
        for line in text.lines() {
            entries.push(
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("bad audit line {line:?}: {e}")),
            );
        }
    }
    entries
}

// ---------------------------------------------------------------- repo init

#[test]
fn init_writes_config_and_local_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = swamp_cli(dir.path())
        .args(["repo", "init"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert!(stdout_of(&out).contains("Initialized swamp repository"));
    assert!(dir.path().join(".swamp").is_dir());
    let doc: serde_yaml::Value = serde_yaml::from_str(&read_config(dir.path())).unwrap();
    let version = doc["swampVersion"].as_str().expect("swampVersion");
    assert!(!version.is_empty());
    let at = doc["initializedAt"].as_str().expect("initializedAt");
    chrono::DateTime::parse_from_rfc3339(at).expect("initializedAt is RFC 3339");
    let id = uuid::Uuid::parse_str(doc["repoId"].as_str().expect("repoId")).expect("UUID");
    assert_eq!(id.get_version_num(), 4, "repoId is a v4 UUID: {id}");
    assert!(stdout_of(&out).contains(&id.to_string()));
}

#[test]
fn init_json_reports_repo_id() {
    let dir = tempfile::tempdir().unwrap();
    let out = swamp_cli(dir.path())
        .args(["--json", "repo", "init"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let doc = json_of(&out);
    assert_eq!(doc["alreadyInitialized"], false);
    assert_eq!(doc["repoId"], repo_id(dir.path()).as_str());
}

#[test]
fn init_creates_missing_repo_dir() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("a/b/repo");
    swamp_cli(&repo).args(["repo", "init"]).assert().success();
    assert!(repo.join(".swamp.yaml").is_file());
    assert!(repo.join(".swamp").is_dir());
}

#[test]
fn init_rerun_keeps_repo_id_and_data() {
    let repo = init_repo();
    let id = repo_id(repo.path());
    put(repo.path(), "keep/me", b"precious");
    let config_before = read_config(repo.path());

    let out = swamp_cli(repo.path())
        .args(["repo", "init"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let text = stdout_of(&out);
    assert!(text.contains("already initialized"), "{text}");
    assert!(text.contains(&id), "{text}");
    assert_eq!(read_config(repo.path()), config_before, "config untouched");

    let out = swamp_cli(repo.path())
        .args(["--json", "repo", "init"])
        .output()
        .unwrap();
    let doc = json_of(&out);
    assert_eq!(doc["alreadyInitialized"], true);
    assert_eq!(doc["repoId"], id.as_str());

    let out = swamp_cli(repo.path())
        .args(["data", "get", "keep/me"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    assert_eq!(out.stdout, b"precious");
}

// ---------------------------------------------------------------- data put/get

#[test]
fn put_from_file_then_get() {
    let repo = init_repo();
    let src = repo.path().join("input.txt");
    fs::write(&src, b"hello file\n").unwrap();
    let out = swamp_cli(repo.path())
        .args(["data", "put", "app/config", "--file"])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    let text = stdout_of(&out);
    assert!(
        text.contains("app/config") && text.contains("version 1"),
        "{text}"
    );

    let out = swamp_cli(repo.path())
        .args(["data", "get", "app/config"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    assert_eq!(out.stdout, b"hello file\n");
}

#[test]
fn put_short_file_flag() {
    let repo = init_repo();
    let src = repo.path().join("input.bin");
    fs::write(&src, b"short").unwrap();
    swamp_cli(repo.path())
        .args(["data", "put", "x", "-f"])
        .arg(&src)
        .assert()
        .success();
    let out = swamp_cli(repo.path())
        .args(["data", "get", "x"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"short");
}

#[test]
fn put_from_stdin_explicit_dash_and_default() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "put", "s", "--file", "-"])
        .write_stdin("from dash")
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["name"], "s");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["size"], 9);
    assert_eq!(doc["sha256"], sha256_hex(b"from dash").as_str());
    assert!(doc["createdAt"].is_string());

    let out = swamp_cli(repo.path())
        .args(["--json", "data", "put", "s"])
        .write_stdin("default stdin")
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(json_of(&out)["version"], 2);

    let out = swamp_cli(repo.path())
        .args(["data", "get", "s"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"default stdin");
}

#[test]
fn put_empty_content_is_a_version() {
    let repo = init_repo();
    put(repo.path(), "empty", b"");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "versions", "empty"])
        .output()
        .unwrap();
    let doc = json_of(&out);
    assert_eq!(doc["versions"][0]["size"], 0);
    assert_eq!(doc["versions"][0]["sha256"], sha256_hex(b"").as_str());
}

#[test]
fn put_from_missing_file_fails_without_creating_item() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "put", "ghost", "--file"])
        .arg(repo.path().join("does-not-exist"))
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 1);
    assert_eq!(json_of(&out)["error"]["code"], "io_error");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "ghost"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");
}

#[test]
fn get_latest_and_specific_versions() {
    let repo = init_repo();
    put(repo.path(), "multi", b"v1");
    put(repo.path(), "multi", b"version two");
    put(repo.path(), "multi", b"three");
    for (args, want) in [
        (vec![], &b"three"[..]),
        (vec!["--version", "1"], &b"v1"[..]),
        (vec!["--version", "2"], &b"version two"[..]),
        (vec!["--version", "3"], &b"three"[..]),
    ] {
        let out = swamp_cli(repo.path())
            .args(["data", "get", "multi"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(code_of(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(out.stdout, want, "{args:?}");
    }
}

#[test]
fn get_json_includes_metadata_and_content() {
    let repo = init_repo();
    put(repo.path(), "j", b"text content");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "j"])
        .output()
        .unwrap();
    let doc = json_of(&out);
    assert_eq!(doc["name"], "j");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["size"], 12);
    assert_eq!(doc["content"], "text content");
    assert_eq!(doc["sha256"], sha256_hex(b"text content").as_str());

    let binary = [0u8, 159, 146, 150, 255];
    put(repo.path(), "bin", &binary);
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "bin"])
        .output()
        .unwrap();
    let doc = json_of(&out);
    assert_eq!(doc["contentHex"], hex::encode(binary).as_str());
    let out = swamp_cli(repo.path())
        .args(["data", "get", "bin"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, binary, "text mode prints raw bytes");
}

#[test]
fn get_unknown_version_is_not_found() {
    let repo = init_repo();
    put(repo.path(), "item", b"one");
    let out = swamp_cli(repo.path())
        .args(["data", "get", "item", "--version", "9"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 1);
    assert!(line.contains("item") && line.contains('9'), "{line}");

    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "item", "--version", "9"])
        .output()
        .unwrap();
    let msg = assert_json_error(&out, 1, "not_found");
    assert!(msg.contains("version 9"), "{msg}");
}

#[test]
fn get_unknown_item_is_not_found() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["data", "get", "nope"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 1);
    assert!(line.contains("'nope' not found"), "{line}");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "nope"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "nope", "--version", "1"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");
}

#[test]
fn parent_of_an_item_is_not_an_item() {
    let repo = init_repo();
    put(repo.path(), "a/b", b"child");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "a"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");
}

// ---------------------------------------------------------------- list/versions

#[test]
fn list_empty() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    assert_eq!(stdout_of(&out).trim(), "No data items");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    assert_eq!(json_of(&out), serde_json::json!({"items": []}));
}

#[test]
fn list_text_and_json() {
    let repo = init_repo();
    put(repo.path(), "zeta", b"z");
    put(repo.path(), "app/config", b"first");
    put(repo.path(), "app/config", b"second!");

    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("NAME") && lines[0].contains("VERSION"),
        "{text}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..4], ["app/config", "2", "7", "B"], "{text}");
    assert!(lines[2].starts_with("zeta"), "{text}");

    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    let doc = json_of(&out);
    let items = doc["items"].as_array().expect("items array");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "app/config");
    assert_eq!(items[0]["latestVersion"], 2);
    assert_eq!(items[0]["size"], 7);
    chrono::DateTime::parse_from_rfc3339(items[0]["updatedAt"].as_str().unwrap()).unwrap();
    assert_eq!(items[1]["name"], "zeta");
    assert_eq!(items[1]["latestVersion"], 1);
    assert_eq!(items[1]["size"], 1);
}

#[test]
fn versions_report_size_and_sha256() {
    let repo = init_repo();
    let contents: [&[u8]; 3] = [b"alpha", b"beta beta", b"gamma\n\0binary"];
    for c in contents {
        put(repo.path(), "hist/item", c);
    }
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "versions", "hist/item"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let doc = json_of(&out);
    assert_eq!(doc["name"], "hist/item");
    let versions = doc["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    let mut last_created = None;
    for (i, (v, content)) in versions.iter().zip(contents).enumerate() {
        assert_eq!(v["name"], "hist/item");
        assert_eq!(v["version"], (i + 1) as u64);
        assert_eq!(v["size"], content.len() as u64);
        assert_eq!(v["sha256"], sha256_hex(content).as_str());
        let created =
            chrono::DateTime::parse_from_rfc3339(v["createdAt"].as_str().unwrap()).unwrap();
        if let Some(prev) = last_created {
            assert!(created >= prev, "versions are oldest first");
        }
        last_created = Some(created);
    }

    let out = swamp_cli(repo.path())
        .args(["data", "versions", "hist/item"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains(&sha256_hex(b"beta beta")), "{text}");
}

#[test]
fn versions_of_unknown_item_is_not_found() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "versions", "missing"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");
}

// ---------------------------------------------------------------- rm

#[test]
fn rm_removes_all_versions() {
    let repo = init_repo();
    put(repo.path(), "doomed/item", b"1");
    put(repo.path(), "doomed/item", b"2");
    put(repo.path(), "survivor", b"s");

    let out = swamp_cli(repo.path())
        .args(["data", "rm", "doomed/item"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert!(stdout_of(&out).contains("doomed/item"));

    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "doomed/item"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "doomed/item", "--version", "1"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");

    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    let doc = json_of(&out);
    let names: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["survivor"]);
    assert!(!local_dir(repo.path()).join("data/doomed/item").exists());
}

#[test]
fn rm_json_and_rm_unknown() {
    let repo = init_repo();
    put(repo.path(), "x", b"1");
    put(repo.path(), "x", b"2");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "rm", "x"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    let doc = json_of(&out);
    assert_eq!(doc["name"], "x");
    assert_eq!(doc["removedVersions"], 2);

    let out = swamp_cli(repo.path())
        .args(["--json", "data", "rm", "x"])
        .output()
        .unwrap();
    assert_json_error(&out, 1, "not_found");
}

#[test]
fn put_after_rm_starts_again() {
    let repo = init_repo();
    put(repo.path(), "again", b"old");
    swamp_cli(repo.path())
        .args(["data", "rm", "again"])
        .assert()
        .success();
    put(repo.path(), "again", b"new");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get", "again"])
        .output()
        .unwrap();
    let doc = json_of(&out);
    assert_eq!(doc["content"], "new");
    assert_eq!(doc["version"], 1);
}

// ---------------------------------------------------------------- audit

#[test]
fn audit_has_one_line_per_put_and_rm() {
    let repo = init_repo();
    put(repo.path(), "aud/a", b"1");
    put(repo.path(), "aud/a", b"2");
    put(repo.path(), "aud/b", b"3");
    swamp_cli(repo.path())
        .args(["data", "rm", "aud/a"])
        .assert()
        .success();
    // Reads and failures are not audited.
    swamp_cli(repo.path())
        .args(["data", "get", "aud/b"])
        .assert()
        .success();
    swamp_cli(repo.path())
        .args(["data", "rm", "aud/none"])
        .assert()
        .code(1);

    let entries = audit_entries(&local_dir(repo.path()));
    let summary: Vec<(String, String, Option<u64>)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
                e["version"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("put".into(), "aud/a".into(), Some(1)),
            ("put".into(), "aud/a".into(), Some(2)),
            ("put".into(), "aud/b".into(), Some(1)),
            ("rm".into(), "aud/a".into(), None),
        ]
    );
    for e in &entries {
        chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap();
        assert!(e["actor"].as_str().is_some_and(|a| !a.is_empty()), "{e}");
    }
}

// ---------------------------------------------------------------- exec

#[test]
fn exec_sets_datastore_dir_and_repo_dir() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            r#"printf '%s\n%s\n' "$SWAMP_DATASTORE_DIR" "$SWAMP_REPO_DIR""#,
        ])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            local_dir(repo.path()).to_str().unwrap(),
            repo.path().to_str().unwrap()
        ]
    );
}

#[test]
fn exec_datastore_dir_follows_flag() {
    let repo = init_repo();
    let other = tempfile::tempdir().unwrap();
    let out = swamp_cli(repo.path())
        .arg("--datastore")
        .arg(format!("filesystem:{}", other.path().display()))
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            r#"printf '%s' "$SWAMP_DATASTORE_DIR""#,
        ])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout_of(&out), other.path().to_str().unwrap());
}

#[test]
fn exec_files_written_land_in_datastore() {
    let repo = init_repo();
    swamp_cli(repo.path())
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && printf hi > "$SWAMP_DATASTORE_DIR/outputs/o.txt""#,
        ])
        .assert()
        .success();
    assert_eq!(
        fs::read(local_dir(repo.path()).join("outputs/o.txt")).unwrap(),
        b"hi"
    );
}

#[test]
fn exec_passes_exit_code_through() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["exec", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 7);
    assert!(out.stdout.is_empty());
    let out = swamp_cli(repo.path())
        .args(["exec", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
}

#[test]
fn exec_passes_arguments_with_hyphens() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            r#"printf '%s|' "$@""#,
            "sh",
            "-x",
            "--json",
            "a b",
        ])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout_of(&out), "-x|--json|a b|");
}

#[test]
fn exec_json_prints_exit_code() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["--json", "exec", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 7);
    assert_eq!(
        json_of(&out),
        serde_json::json!({"exitCode": 7, "readOnly": false})
    );
    let out = swamp_cli(repo.path())
        .args(["--json", "exec", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    assert_eq!(
        json_of(&out),
        serde_json::json!({"exitCode": 0, "readOnly": false})
    );
}

#[test]
fn exec_child_killed_by_signal_is_128_plus_n() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["exec", "--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 128 + 15);
    let out = swamp_cli(repo.path())
        .args(["--json", "exec", "--", "sh", "-c", "kill -KILL $$"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 128 + 9);
    assert_eq!(
        json_of(&out),
        serde_json::json!({"exitCode": 137, "readOnly": false})
    );
    assert!(!lock_file(&local_dir(repo.path())).exists());
}

#[test]
fn exec_unknown_program_is_127() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["exec", "--", "swamp-test-no-such-program-xyz"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 127);
    assert!(line.contains("swamp-test-no-such-program-xyz"), "{line}");
    let out = swamp_cli(repo.path())
        .args(["--json", "exec", "--", "swamp-test-no-such-program-xyz"])
        .output()
        .unwrap();
    assert_json_error(&out, 127, "spawn_failed");
}

#[test]
fn exec_non_executable_is_126() {
    let repo = init_repo();
    let script = repo.path().join("not-executable.sh");
    fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let out = swamp_cli(repo.path())
        .args(["--json", "exec", "--"])
        .arg(&script)
        .output()
        .unwrap();
    assert_json_error(&out, 126, "spawn_failed");
}

#[test]
fn exec_releases_the_lock() {
    let repo = init_repo();
    swamp_cli(repo.path())
        .args(["exec", "--", "sh", "-c", "exit 3"])
        .assert()
        .code(3);
    assert!(!lock_file(&local_dir(repo.path())).exists());
    let out = swamp_cli(repo.path())
        .args(["--json", "datastore", "lock", "status"])
        .output()
        .unwrap();
    assert_eq!(json_of(&out)["held"], false);
}

// ---------------------------------------------------------------- not a repo

#[test]
fn commands_outside_a_repo_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["data", "list"],
        vec!["data", "get", "x"],
        vec!["data", "put", "x"],
        vec!["exec", "--", "true"],
        vec!["datastore", "status"],
        vec!["datastore", "lock", "status"],
    ];
    for args in commands {
        let out = swamp_cli(dir.path())
            .args(&args)
            .write_stdin("x")
            .output()
            .unwrap();
        let line = assert_text_error(&out, 2);
        assert!(
            line.starts_with("error: Not a swamp repository:"),
            "{args:?}: {line}"
        );
        assert!(line.contains(dir.path().to_str().unwrap()), "{line}");

        let out = swamp_cli(dir.path())
            .arg("--json")
            .args(&args)
            .write_stdin("x")
            .output()
            .unwrap();
        let msg = assert_json_error(&out, 2, "not_a_repo");
        assert!(msg.starts_with("Not a swamp repository:"), "{msg}");
    }
    assert!(
        fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created in the non-repo directory"
    );
}

#[test]
fn default_repo_dir_is_current_directory() {
    let repo = init_repo();
    put(repo.path(), "cwd/item", b"via cwd");
    let out = swamp_cli_bare()
        .current_dir(repo.path())
        .args(["data", "get", "cwd/item"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, b"via cwd");

    let elsewhere = tempfile::tempdir().unwrap();
    let out = swamp_cli_bare()
        .current_dir(elsewhere.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    assert_json_error(&out, 2, "not_a_repo");
}
