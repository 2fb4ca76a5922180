//! Black-box tests of filesystem datastore paths in a shared `.swamp.yaml`
//! (issue 16): written relative when inside the repo, the default written
//! as nothing, `~` and `$VAR` expanded where the file is read.

mod support;

use std::path::Path;
use support::*;

fn status_path(repo: &Path, envs: &[(&str, &str)]) -> String {
    let mut cmd = swamp(repo);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = run(cmd.args(["--json", "datastore", "status"]));
    // The path is the point here; a datastore not made yet is unhealthy (1).
    assert!(matches!(code_of(&out), 0 | 1), "{}", stderr(&out));
    json_of(&out)["path"].as_str().expect("path").to_string()
}

#[test]
fn a_path_inside_the_repo_is_written_relative_and_holds_on_another_clone() {
    let repo = init_repo();
    put(repo.path(), "item", b"v1");
    let target = repo.path().join("shared/ds");
    let out = run(swamp(repo.path())
        .args(["datastore", "setup", "filesystem", "--path"])
        .arg(&target));
    assert!(out.status.success(), "{}", stderr(&out));
    let config = read_config(repo.path());
    assert!(config.contains("path: shared/ds"), "{config}");
    assert_eq!(status_path(repo.path(), &[]), target.display().to_string());
    // The committed file on a teammate's clone, elsewhere on disk.
    let clone = tempfile::tempdir().unwrap();
    std::fs::write(clone.path().join(".swamp.yaml"), &config).unwrap();
    assert_eq!(
        status_path(clone.path(), &[]),
        clone.path().join("shared/ds").display().to_string()
    );
}

#[test]
fn setting_up_the_default_path_drops_the_datastore_section() {
    let repo = init_repo();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = run(swamp(repo.path())
        .args(["datastore", "setup", "filesystem", "--path"])
        .arg(elsewhere.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    put(repo.path(), "item", b"moved and back");
    let out = run(swamp(repo.path())
        .args(["datastore", "setup", "filesystem", "--path"])
        .arg(repo.path().join(".swamp")));
    assert!(out.status.success(), "{}", stderr(&out));
    let config = read_config(repo.path());
    assert!(!config.contains("datastore"), "{config}");
    let out = run(swamp(repo.path()).args(["data", "get", "item"]));
    assert_eq!(out.stdout, b"moved and back");
}

#[test]
fn home_and_variables_expand_where_the_file_is_read() {
    let repo = init_repo();
    let home = tempfile::tempdir().unwrap();
    let team = tempfile::tempdir().unwrap();
    append_config(
        repo.path(),
        "datastore:\n  type: filesystem\n  path: ~/swamp-ds\n",
    );
    let h = home.path().display().to_string();
    assert_eq!(
        status_path(repo.path(), &[("HOME", &h)]),
        format!("{h}/swamp-ds")
    );
    let text = read_config(repo.path()).replace("~/swamp-ds", "${TEAM_DS}/infra");
    std::fs::write(repo.path().join(".swamp.yaml"), text).unwrap();
    let t = team.path().display().to_string();
    assert_eq!(
        status_path(repo.path(), &[("TEAM_DS", &t)]),
        format!("{t}/infra")
    );
    let out = run(swamp(repo.path())
        .env_remove("TEAM_DS")
        .args(["data", "list"]));
    let line = assert_text_error(&out, 2);
    assert!(
        line.contains("$TEAM_DS is not set") && line.contains("datastore.path"),
        "{line}"
    );
}
