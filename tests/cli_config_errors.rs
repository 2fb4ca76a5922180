//! Black-box tests of configuration and input errors: every bad input fails with
//! one clear line (or one JSON error document) and exit code 2, and the
//! datastore resolution order env > flag > .swamp.yaml > default.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;
use support::*;

const GOOD_ID: &str = "0b5c8a4e-9d1e-4f7a-8a57-0d3f2b1c6e11";

/// A bad `filesystem:`/`s3:` spec, the problem its message must name, and a
/// piece of the input the message must quote.
const BAD_SPECS: [(&str, &str, &str); 9] = [
    ("bogus", "missing ':'", "bogus"),
    ("ftp:/x", "unknown datastore type 'ftp'", "ftp"),
    ("filesystem:", "path is empty", "filesystem:"),
    ("filesystem:relative/p", "not absolute", "relative/p"),
    ("s3:", "bucket is empty", "s3:"),
    ("s3:Bad_Bucket", "lowercase", "Bad_Bucket"),
    ("s3:ab", "3 to 63 characters", "'ab'"),
    ("s3:192.168.1.1", "IP address", "192.168.1.1"),
    ("s3:my..bucket", "adjacent dots", "my..bucket"),
];

/// JSON-mode error: exit 2, one JSON document on stdout, nothing on stderr.
fn assert_json_config_error(out: &Output, code: &str) -> String {
    let msg = assert_json_error(out, 2, code);
    assert!(out.stderr.is_empty(), "stderr: {}", stderr(out));
    msg
}

fn write_config(repo: &Path, text: &str) {
    fs::write(repo.join(".swamp.yaml"), text).unwrap();
}

fn status_json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    let out = cmd
        .args(["--json", "datastore", "status"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    json_of(&out)
}

// ---------------------------------------------------------------- datastore specs

#[test]
fn bad_env_specs_fail_with_reason() {
    let repo = init_repo();
    let cwd = tempfile::tempdir().unwrap();
    for (value, problem, quoted) in BAD_SPECS {
        let out = swamp_cli(repo.path())
            .current_dir(cwd.path())
            .env("SWAMP_DATASTORE", value)
            .args(["data", "list"])
            .output()
            .unwrap();
        let line = assert_text_error(&out, 2);
        assert!(line.contains(problem), "{value}: {line}");
        assert!(line.contains(quoted), "{value}: {line}");
        if !value.starts_with("s3:") || value == "s3:" {
            assert!(
                line.contains("SWAMP_DATASTORE"),
                "{value}: names the origin: {line}"
            );
        }

        let out = swamp_cli(repo.path())
            .current_dir(cwd.path())
            .env("SWAMP_DATASTORE", value)
            .args(["--json", "data", "put", "x"])
            .write_stdin("content")
            .output()
            .unwrap();
        let msg = assert_json_config_error(&out, "config_invalid");
        assert!(msg.contains(problem), "{value}: {msg}");
    }
    assert!(
        fs::read_dir(cwd.path()).unwrap().next().is_none(),
        "no relative datastore was created"
    );
    assert!(
        !local_dir(repo.path()).join("data").exists(),
        "nothing was stored"
    );
}

#[test]
fn bad_flag_specs_fail_with_reason() {
    let repo = init_repo();
    let cwd = tempfile::tempdir().unwrap();
    for (value, problem, quoted) in BAD_SPECS {
        let out = swamp_cli(repo.path())
            .current_dir(cwd.path())
            .args(["--datastore", value, "datastore", "status"])
            .output()
            .unwrap();
        let line = assert_text_error(&out, 2);
        assert!(line.contains(problem), "{value}: {line}");
        assert!(line.contains(quoted), "{value}: {line}");
        if !value.starts_with("s3:") || value == "s3:" {
            assert!(
                line.contains("--datastore"),
                "{value}: names the origin: {line}"
            );
        }

        let out = swamp_cli(repo.path())
            .current_dir(cwd.path())
            .args(["--json", "--datastore", value, "data", "put", "x"])
            .write_stdin("content")
            .output()
            .unwrap();
        let msg = assert_json_config_error(&out, "config_invalid");
        assert!(msg.contains(problem), "{value}: {msg}");
    }
    assert!(fs::read_dir(cwd.path()).unwrap().next().is_none());
    assert!(!local_dir(repo.path()).join("data").exists());
}

#[test]
fn bad_env_spec_wins_over_good_flag() {
    let repo = init_repo();
    let good = tempfile::tempdir().unwrap();
    let out = swamp_cli(repo.path())
        .env("SWAMP_DATASTORE", "bogus")
        .arg("--datastore")
        .arg(format!("filesystem:{}", good.path().display()))
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    let msg = assert_json_config_error(&out, "config_invalid");
    assert!(msg.contains("SWAMP_DATASTORE"), "{msg}");
}

// ---------------------------------------------------------------- precedence

#[test]
fn precedence_env_beats_flag_beats_repo_config_beats_default() {
    let repo = init_repo();
    let stores = tempfile::tempdir().unwrap();
    let a = stores.path().join("A");
    let b = stores.path().join("B");
    let c = stores.path().join("C");

    let doc = status_json(&mut swamp_cli(repo.path()));
    assert_eq!(doc["source"], "default");
    assert_eq!(doc["path"], local_dir(repo.path()).to_str().unwrap());

    append_config(
        repo.path(),
        &format!("datastore:\n  type: filesystem\n  path: {}\n", c.display()),
    );
    let doc = status_json(&mut swamp_cli(repo.path()));
    assert_eq!(doc["source"], "repoConfig");
    assert_eq!(doc["path"], c.to_str().unwrap());

    let flag_b = format!("filesystem:{}", b.display());
    let doc = status_json(swamp_cli(repo.path()).args(["--datastore", &flag_b]));
    assert_eq!(doc["source"], "flag");
    assert_eq!(doc["path"], b.to_str().unwrap());
    assert_eq!(doc["datastore"], flag_b.as_str());

    let env_a = format!("filesystem:{}", a.display());
    let doc = status_json(
        swamp_cli(repo.path())
            .env("SWAMP_DATASTORE", &env_a)
            .args(["--datastore", &flag_b]),
    );
    assert_eq!(doc["source"], "env");
    assert_eq!(doc["path"], a.to_str().unwrap());
    assert_eq!(doc["datastore"], env_a.as_str());

    // The text rendering names the source too.
    let out = swamp_cli(repo.path())
        .env("SWAMP_DATASTORE", &env_a)
        .args(["--datastore", &flag_b, "datastore", "status"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(text.contains("SWAMP_DATASTORE"), "{text}");
    assert!(text.contains(a.to_str().unwrap()), "{text}");
}

#[test]
fn data_goes_where_the_winning_source_says() {
    let repo = init_repo();
    let stores = tempfile::tempdir().unwrap();
    let a = stores.path().join("A");
    let b = stores.path().join("B");
    let c = stores.path().join("C");
    append_config(
        repo.path(),
        &format!("datastore:\n  type: filesystem\n  path: {}\n", c.display()),
    );
    let flag_b = format!("filesystem:{}", b.display());
    let env_a = format!("filesystem:{}", a.display());

    swamp_cli(repo.path())
        .env("SWAMP_DATASTORE", &env_a)
        .args(["--datastore", &flag_b, "data", "put", "where"])
        .write_stdin("in A")
        .assert()
        .success();
    swamp_cli(repo.path())
        .args(["--datastore", &flag_b, "data", "put", "where"])
        .write_stdin("in B")
        .assert()
        .success();
    put(repo.path(), "where", b"in C");

    for (dir, content) in [(&a, "in A"), (&b, "in B"), (&c, "in C")] {
        let bin = dir.join("data/where/@versions/1.bin");
        assert_eq!(
            fs::read_to_string(&bin).unwrap(),
            content,
            "{}",
            bin.display()
        );
        assert!(!dir.join("data/where/@versions/2.bin").exists());
    }
    assert!(!local_dir(repo.path()).join("data").exists());
}

#[test]
fn empty_env_value_falls_through_to_flag() {
    let repo = init_repo();
    let b = tempfile::tempdir().unwrap();
    let doc = status_json(
        swamp_cli(repo.path())
            .env("SWAMP_DATASTORE", "")
            .arg("--datastore")
            .arg(format!("filesystem:{}", b.path().display())),
    );
    assert_eq!(doc["source"], "flag");
}

// ---------------------------------------------------------------- .swamp.yaml

#[test]
fn malformed_yaml_names_file_and_line() {
    let repo = init_repo();
    let file = repo.path().join(".swamp.yaml");
    write_config(repo.path(), &format!("repoId: {GOOD_ID}\nbad: [\n"));
    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 2);
    assert!(line.contains(file.to_str().unwrap()), "{line}");
    assert!(line.contains("line "), "{line}");

    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    let msg = assert_json_config_error(&out, "config_invalid");
    assert!(
        msg.contains(file.to_str().unwrap()) && msg.contains("line "),
        "{msg}"
    );
}

#[test]
fn init_does_not_overwrite_a_broken_config() {
    let repo = init_repo();
    let broken = "repoId: [\n";
    write_config(repo.path(), broken);
    let out = swamp_cli(repo.path())
        .args(["--json", "repo", "init"])
        .output()
        .unwrap();
    assert_json_config_error(&out, "config_invalid");
    assert_eq!(read_config(repo.path()), broken);
}

#[test]
fn yaml_that_is_not_a_mapping_fails() {
    let repo = init_repo();
    write_config(repo.path(), "- a\n- b\n");
    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 2);
    assert!(line.contains(".swamp.yaml"), "{line}");
}

#[test]
fn unknown_datastore_type_in_yaml() {
    let repo = init_repo();
    append_config(repo.path(), "datastore:\n  type: ftp\n");
    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 2);
    assert!(line.contains("unknown datastore type 'ftp'"), "{line}");
    assert!(line.contains("datastore.type"), "{line}");
    assert!(line.contains(".swamp.yaml"), "{line}");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    assert_json_config_error(&out, "config_invalid");
}

#[test]
fn yaml_filesystem_path_must_be_given_and_absolute() {
    let repo = init_repo();
    let base = read_config(repo.path());
    for (section, problem) in [
        ("datastore:\n  type: filesystem\n", "required"),
        (
            "datastore:\n  type: filesystem\n  path: rel/x\n",
            "not absolute",
        ),
        ("datastore:\n  type: filesystem\n  path: ''\n", "empty"),
        ("datastore: 5\n", "expected a mapping"),
        ("datastore:\n  type: s3\n  bucket: Bad_B\n", "lowercase"),
    ] {
        write_config(repo.path(), &format!("{base}{section}"));
        let out = swamp_cli(repo.path())
            .args(["data", "list"])
            .output()
            .unwrap();
        let line = assert_text_error(&out, 2);
        assert!(line.contains(problem), "{section:?}: {line}");
    }
}

#[test]
fn missing_repo_id_fails() {
    let repo = init_repo();
    write_config(repo.path(), "swampVersion: 0.1.0\n");
    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 2);
    assert!(
        line.contains("repoId") && line.contains("missing"),
        "{line}"
    );
    let out = swamp_cli(repo.path())
        .args(["--json", "datastore", "status"])
        .output()
        .unwrap();
    let msg = assert_json_config_error(&out, "config_invalid");
    assert!(msg.contains("repoId"), "{msg}");
}

#[test]
fn non_uuid_repo_id_fails() {
    let repo = init_repo();
    write_config(repo.path(), "swampVersion: 0.1.0\nrepoId: not-a-uuid\n");
    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 2);
    assert!(line.contains("'not-a-uuid' is not a UUID"), "{line}");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    assert_json_config_error(&out, "config_invalid");
}

#[test]
fn unknown_keys_only_warn() {
    let repo = init_repo();
    append_config(
        repo.path(),
        "colour: red\ndatastore:\n  flavour: mint\n  exclude: []\n",
    );
    put(repo.path(), "still/works", b"yes");

    let out = swamp_cli(repo.path())
        .args(["data", "get", "still/works"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, b"yes");
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(warnings.iter().all(|w| w.starts_with("warning: ")), "{err}");
    assert!(err.contains("'colour'"), "{err}");
    assert!(err.contains("'datastore.flavour'"), "{err}");

    // With --json the warnings stay on stderr and stdout stays one document.
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    assert_eq!(json_of(&out)["items"][0]["name"], "still/works");
    assert!(stderr(&out).contains("colour"));
}

#[test]
fn unknown_directories_entry_fails() {
    let repo = init_repo();
    append_config(repo.path(), "datastore:\n  directories: [data, nope]\n");
    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 2);
    assert!(line.contains("unknown directory 'nope'"), "{line}");
    assert!(line.contains("datastore.directories"), "{line}");
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list"])
        .output()
        .unwrap();
    assert_json_config_error(&out, "config_invalid");
}

#[test]
fn invalid_exclude_glob_fails() {
    let repo = init_repo();
    append_config(repo.path(), "datastore:\n  exclude: [\"a[\"]\n");
    let out = swamp_cli(repo.path())
        .args(["data", "list"])
        .output()
        .unwrap();
    let line = assert_text_error(&out, 2);
    assert!(line.contains("invalid exclude pattern 'a['"), "{line}");
    let out = swamp_cli(repo.path())
        .args(["--json", "datastore", "status"])
        .output()
        .unwrap();
    let msg = assert_json_config_error(&out, "config_invalid");
    assert!(msg.contains("a["), "{msg}");
}

// ---------------------------------------------------------------- data names

const BAD_NAMES: [(&str, &str); 14] = [
    ("../x", "'..'"),
    ("/abs", "absolute"),
    ("a//b", "empty path segments"),
    ("a\\b", "backslash"),
    ("a b", "' '"),
    ("a\tb", "control characters"),
    ("a\u{1}b", "control characters"),
    ("a\nb", "control characters"),
    ("a/../../x", "'..'"),
    ("a/./b", "'.'"),
    ("..", "'..'"),
    ("", "empty"),
    ("a@b", "'@'"),
    ("é", "not allowed"),
];

#[test]
fn invalid_data_names_are_rejected_for_every_command() {
    let outer = tempfile::tempdir().unwrap();
    let repo = outer.path().join("repo");
    swamp_cli(&repo).args(["repo", "init"]).assert().success();
    for (name, problem) in BAD_NAMES {
        for cmd in ["put", "get", "versions", "rm"] {
            let out = swamp_cli(&repo)
                .args(["data", cmd, name])
                .write_stdin("payload")
                .output()
                .unwrap();
            let line = assert_text_error(&out, 2);
            assert!(line.contains("invalid data name"), "{cmd} {name:?}: {line}");
            assert!(line.contains(problem), "{cmd} {name:?}: {line}");

            let out = swamp_cli(&repo)
                .args(["--json", "data", cmd, name])
                .write_stdin("payload")
                .output()
                .unwrap();
            assert_json_config_error(&out, "validation_failed");
        }
    }
    let top: Vec<_> = fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["repo"], "nothing created next to the repo");
    assert!(
        files_under(&local_dir(&repo)).is_empty(),
        "nothing stored: {:?}",
        files_under(&local_dir(&repo))
    );
    assert!(!outer.path().join("x").exists());
}

#[test]
fn valid_unusual_names_are_accepted() {
    let repo = init_repo();
    for name in [".hidden", "a.b-c_d/e1", "UPPER/lower", "x/y/z/w"] {
        put(repo.path(), name, name.as_bytes());
        let out = swamp_cli(repo.path())
            .args(["data", "get", name])
            .output()
            .unwrap();
        assert_eq!(out.stdout, name.as_bytes());
    }
}

// ---------------------------------------------------------------- other bad input

#[test]
fn bad_lock_ttl_env_fails() {
    let repo = init_repo();
    for value in ["abc", "50", "", "-5", "1.5"] {
        let out = swamp_cli(repo.path())
            .env("SWAMP_LOCK_TTL_MS", value)
            .args(["data", "put", "x"])
            .write_stdin("content")
            .output()
            .unwrap();
        let line = assert_text_error(&out, 2);
        assert!(line.contains("SWAMP_LOCK_TTL_MS"), "{value:?}: {line}");
        assert!(line.contains(&format!("'{value}'")), "{value:?}: {line}");

        let out = swamp_cli(repo.path())
            .env("SWAMP_LOCK_TTL_MS", value)
            .args(["--json", "data", "list"])
            .output()
            .unwrap();
        assert_json_config_error(&out, "validation_failed");
    }
    assert!(!local_dir(repo.path()).join("data").exists());
    // A valid value works.
    swamp_cli(repo.path())
        .env("SWAMP_LOCK_TTL_MS", "5000")
        .args(["data", "put", "x"])
        .write_stdin("content")
        .assert()
        .success();
}

#[test]
fn bad_part_downloads_env_fails_before_any_request() {
    let repo = init_repo();
    for value in ["0", "65", "abc", "", "-1"] {
        let out = swamp_cli(repo.path())
            .env("SWAMP_DATASTORE", "s3:some-bucket/p")
            // Nothing listens here: the command must fail on the value first.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
            .env("SWAMP_PART_DOWNLOADS", value)
            .args(["data", "list"])
            .output()
            .unwrap();
        let line = assert_text_error(&out, 2);
        assert!(line.contains("SWAMP_PART_DOWNLOADS"), "{value:?}: {line}");
        assert!(line.contains(&format!("'{value}'")), "{value:?}: {line}");
    }
}

#[test]
fn bad_lock_timeout_flag_fails() {
    let repo = init_repo();
    // 1e20 and 1e99 overflowed Duration and panicked (exit 101) once.
    for value in ["-1", "nan", "inf", "abc", "1e20", "1e99", "31536001"] {
        let out = swamp_cli(repo.path())
            .arg(format!("--lock-timeout={value}"))
            .args(["--json", "data", "list"])
            .output()
            .unwrap();
        let msg = assert_json_config_error(&out, "validation_failed");
        assert!(msg.contains("lock-timeout"), "{value}: {msg}");
    }
}

/// Setup moves the datastore `.swamp.yaml` names; under an override it would
/// migrate out of the override and orphan the configured one. It refuses
/// (exit 2) before touching anything.
#[test]
fn setup_refuses_while_an_override_is_set() {
    let repo = init_repo();
    let other = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    put(repo.path(), "kept", b"in the configured datastore");
    let before = read_config(repo.path());
    let override_spec = format!("filesystem:{}", other.path().display());
    let cases: [(&str, Option<&str>, Option<&str>); 2] = [
        ("SWAMP_DATASTORE", Some(&override_spec), None),
        ("--datastore", None, Some(&override_spec)),
    ];
    for (what, env, flag) in cases {
        let mut cmd = swamp_cli(repo.path());
        if let Some(value) = env {
            cmd.env("SWAMP_DATASTORE", value);
        }
        if let Some(value) = flag {
            cmd.args(["--datastore", value]);
        }
        let out = cmd
            .args(["--json", "datastore", "setup", "filesystem", "--path"])
            .arg(target.path())
            .output()
            .unwrap();
        let msg = assert_json_config_error(&out, "validation_failed");
        assert!(msg.contains(what) && msg.contains("unset"), "{what}: {msg}");
        assert_eq!(read_config(repo.path()), before, "{what}: config changed");
        assert!(
            files_under(target.path()).is_empty(),
            "{what}: target written"
        );
    }
    let got = swamp_cli(repo.path())
        .args(["data", "get", "kept"])
        .output()
        .unwrap();
    assert_eq!(got.stdout, b"in the configured datastore");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["--json", "frobnicate"])
        .output()
        .unwrap();
    let msg = assert_json_config_error(&out, "validation_failed");
    assert!(msg.contains("frobnicate"), "{msg}");

    let out = swamp_cli(repo.path())
        .args(["data", "frobnicate", "--json"])
        .output()
        .unwrap();
    assert_json_config_error(&out, "validation_failed");

    let out = swamp_cli(repo.path())
        .args(["frobnicate"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 2);
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("frobnicate"));
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "list", "--bogus-flag"])
        .output()
        .unwrap();
    let msg = assert_json_config_error(&out, "validation_failed");
    assert!(msg.contains("--bogus-flag"), "{msg}");
}

#[test]

fn missing_argument_json_error_names_the_argument() {
    let repo = init_repo();
    let out = swamp_cli(repo.path())
        .args(["--json", "data", "get"])
        .output()
        .unwrap();
    let msg = assert_json_config_error(&out, "validation_failed");
    assert!(msg.contains("<NAME>"), "{msg}");
}

#[test]
fn help_and_version_exit_0() {
    let out = swamp_cli_bare().arg("--help").output().unwrap();
    assert_eq!(code_of(&out), 0);
    assert!(stdout_of(&out).contains("datastore"));
    let out = swamp_cli_bare()
        .args(["--json", "--version"])
        .output()
        .unwrap();
    assert_eq!(code_of(&out), 0);
    assert!(stdout_of(&out).starts_with("swamp "));
}
