//! Black-box tests of configuration and input errors: every bad input fails with
//! one clear line (or one JSON error document) and exit code 2, and the
//! datastore resolution order env > flag > .swamp.yaml > default.
//!
//! Bad configuration is a table: one row per bad input, saying where it goes
//! (environment, global flag, `.swamp.yaml`), the error code and what the
//! message must contain. `assert_rejected` runs every row through a reading,
//! a writing and a reporting command, in text mode and with `--json`.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;
use support::*;
use Input::{Env, Flag, Yaml, YamlFile};

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
    // Which datastore was chosen is the point here, not its health (a
    // datastore that does not exist yet is unhealthy: exit 1).
    assert!(matches!(code_of(&out), 0 | 1), "{}", stderr(&out));
    json_of(&out)
}

// ---------------------------------------------------------------- bad configuration

/// Where a row puts its input. In values and expected text, `{repo}` stands
/// for the repo directory and `{scratch}` for an empty directory outside it
/// (also the working directory, so a relative datastore would show up there).
#[derive(Debug, Clone, Copy)]
enum Input {
    /// An environment variable: name, value.
    Env(&'static str, &'static str),
    /// A global flag, passed as `--flag=value`.
    Flag(&'static str, &'static str),
    /// Text appended to the `.swamp.yaml` that `repo init` wrote.
    Yaml(&'static str),
    /// The whole `.swamp.yaml`.
    YamlFile(&'static str),
}

/// One bad input and how swamp must reject it.
#[derive(Debug)]
struct Case {
    /// What goes where (usually one input).
    inputs: &'static [Input],
    /// The `{"error": {"code"}}` of the JSON document.
    code: &'static str,
    /// Text the message must contain, in both modes.
    contains: &'static [&'static str],
}

const CONFIG: &str = "config_invalid";
const VALIDATION: &str = "validation_failed";

/// Each row runs through all of these: one reads, one writes (a check that
/// came too late would leave data behind), one reports the resolution.
const COMMANDS: [&[&str]; 3] = [
    &["data", "list"],
    &["data", "put", "x"],
    &["datastore", "status"],
];

/// Bad `SWAMP_DATASTORE` / `--datastore` specs. Each message names the
/// problem, quotes the input and names where it came from.
#[rustfmt::skip]
const SPEC_CASES: &[Case] = &[
    Case { inputs: &[Env("SWAMP_DATASTORE", "bogus")], code: CONFIG, contains: &["missing ':'", "bogus", "SWAMP_DATASTORE"] },
    Case { inputs: &[Env("SWAMP_DATASTORE", "ftp:/x")], code: CONFIG, contains: &["unknown datastore type 'ftp'", "ftp", "SWAMP_DATASTORE"] },
    Case { inputs: &[Env("SWAMP_DATASTORE", "filesystem:")], code: CONFIG, contains: &["path is empty", "filesystem:", "SWAMP_DATASTORE"] },
    Case { inputs: &[Env("SWAMP_DATASTORE", "filesystem:relative/p")], code: CONFIG, contains: &["not absolute", "relative/p", "SWAMP_DATASTORE"] },
    Case { inputs: &[Env("SWAMP_DATASTORE", "s3:")], code: CONFIG, contains: &["bucket is empty", "s3:", "SWAMP_DATASTORE"] },
    Case { inputs: &[Env("SWAMP_DATASTORE", "s3:Bad_Bucket")], code: CONFIG, contains: &["lowercase", "Bad_Bucket", "SWAMP_DATASTORE"] },
    Case { inputs: &[Env("SWAMP_DATASTORE", "s3:ab")], code: CONFIG, contains: &["3 to 63 characters", "'ab'", "SWAMP_DATASTORE"] },
    Case { inputs: &[Env("SWAMP_DATASTORE", "s3:192.168.1.1")], code: CONFIG, contains: &["IP address", "192.168.1.1", "SWAMP_DATASTORE"] },
    Case { inputs: &[Env("SWAMP_DATASTORE", "s3:my..bucket")], code: CONFIG, contains: &["adjacent dots", "my..bucket", "SWAMP_DATASTORE"] },
    Case { inputs: &[Flag("--datastore", "bogus")], code: CONFIG, contains: &["missing ':'", "bogus", "--datastore"] },
    Case { inputs: &[Flag("--datastore", "ftp:/x")], code: CONFIG, contains: &["unknown datastore type 'ftp'", "ftp", "--datastore"] },
    Case { inputs: &[Flag("--datastore", "filesystem:")], code: CONFIG, contains: &["path is empty", "filesystem:", "--datastore"] },
    Case { inputs: &[Flag("--datastore", "filesystem:relative/p")], code: CONFIG, contains: &["not absolute", "relative/p", "--datastore"] },
    Case { inputs: &[Flag("--datastore", "s3:")], code: CONFIG, contains: &["bucket is empty", "s3:", "--datastore"] },
    Case { inputs: &[Flag("--datastore", "s3:Bad_Bucket")], code: CONFIG, contains: &["lowercase", "Bad_Bucket", "--datastore"] },
    Case { inputs: &[Flag("--datastore", "s3:ab")], code: CONFIG, contains: &["3 to 63 characters", "'ab'", "--datastore"] },
    Case { inputs: &[Flag("--datastore", "s3:192.168.1.1")], code: CONFIG, contains: &["IP address", "192.168.1.1", "--datastore"] },
    Case { inputs: &[Flag("--datastore", "s3:my..bucket")], code: CONFIG, contains: &["adjacent dots", "my..bucket", "--datastore"] },
    // The environment is read first: a bad value there fails even with a good flag...
    Case { inputs: &[Env("SWAMP_DATASTORE", "bogus"), Flag("--datastore", "filesystem:{scratch}/good")], code: CONFIG, contains: &["'bogus' from SWAMP_DATASTORE"] },
    // ...but an empty one counts as unset, so the flag is read.
    Case { inputs: &[Env("SWAMP_DATASTORE", ""), Flag("--datastore", "bogus")], code: CONFIG, contains: &["'bogus' from --datastore"] },
];

/// Bad `.swamp.yaml` contents. Messages name the file, and the field when
/// one is wrong.
#[rustfmt::skip]
const REPO_CONFIG_CASES: &[Case] = &[
    Case { inputs: &[Yaml("bad: [\n")], code: CONFIG, contains: &["{repo}/.swamp.yaml", "line "] },
    Case { inputs: &[YamlFile("- a\n- b\n")], code: CONFIG, contains: &[".swamp.yaml", "expected a mapping of keys"] },
    Case { inputs: &[YamlFile("swampVersion: 0.1.0\n")], code: CONFIG, contains: &["repoId", "missing"] },
    Case { inputs: &[YamlFile("swampVersion: 0.1.0\nrepoId: not-a-uuid\n")], code: CONFIG, contains: &["'not-a-uuid' is not a UUID"] },
    Case { inputs: &[YamlFile("swampVersion: 0.1.0\nrepoId: 00000000-0000-0000-0000-000000000000\n")], code: CONFIG, contains: &["repoId", "not a random (version 4) UUID", "swamp repo init"] },
    Case { inputs: &[YamlFile("repoId: 6f1c3d1e-2b7a-4c1e-9b1a-1d2e3f4a5b6c\nswampVersion: '1'\nrepoId: 6f1c3d1e-2b7a-4c1e-9b1a-1d2e3f4a5b6c\n")], code: CONFIG, contains: &["line 3:", "duplicate entry with key \"repoId\""] },
    Case { inputs: &[Yaml("datastore: 5\n")], code: CONFIG, contains: &["expected a mapping"] },
    Case { inputs: &[Yaml("datastore:\n  type: ftp\n")], code: CONFIG, contains: &["unknown datastore type 'ftp'", "datastore.type", ".swamp.yaml"] },
    Case { inputs: &[Yaml("datastore:\n  type: filesystem\n")], code: CONFIG, contains: &["required", "datastore.path"] },
    Case { inputs: &[Yaml("datastore:\n  type: filesystem\n  path: $SWAMP_TEST_NEVER_SET/x\n")], code: CONFIG, contains: &["$SWAMP_TEST_NEVER_SET is not set", "datastore.path"] },
    Case { inputs: &[Yaml("datastore:\n  type: filesystem\n  path: ''\n")], code: CONFIG, contains: &["empty", "datastore.path"] },
    Case { inputs: &[Yaml("datastore:\n  type: s3\n  bucket: Bad_B\n")], code: CONFIG, contains: &["lowercase"] },
    Case { inputs: &[Yaml("datastore:\n  directories: [data, nope]\n")], code: CONFIG, contains: &["unknown directory 'nope'", "datastore.directories"] },
    Case { inputs: &[Yaml("datastore:\n  exclude: [\"a[\"]\n")], code: CONFIG, contains: &["invalid exclude pattern 'a['"] },
];

/// An S3 datastore on an endpoint where nothing listens: a bad value must
/// fail before any request.
const S3_NOWHERE: [Input; 2] = [
    Env("SWAMP_DATASTORE", "s3:some-bucket/p"),
    Env("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
];

/// Bad tuning variables. Messages name the variable and quote the value.
#[rustfmt::skip]
const TUNING_CASES: &[Case] = &[
    Case { inputs: &[Env("SWAMP_LOCK_TTL_MS", "abc")], code: VALIDATION, contains: &["SWAMP_LOCK_TTL_MS", "'abc'"] },
    Case { inputs: &[Env("SWAMP_LOCK_TTL_MS", "50")], code: VALIDATION, contains: &["SWAMP_LOCK_TTL_MS", "'50'"] },
    Case { inputs: &[Env("SWAMP_LOCK_TTL_MS", "")], code: VALIDATION, contains: &["SWAMP_LOCK_TTL_MS", "''"] },
    Case { inputs: &[Env("SWAMP_LOCK_TTL_MS", "-5")], code: VALIDATION, contains: &["SWAMP_LOCK_TTL_MS", "'-5'"] },
    Case { inputs: &[Env("SWAMP_LOCK_TTL_MS", "1.5")], code: VALIDATION, contains: &["SWAMP_LOCK_TTL_MS", "'1.5'"] },
    Case { inputs: &[S3_NOWHERE[0], S3_NOWHERE[1], Env("SWAMP_PART_DOWNLOADS", "0")], code: VALIDATION, contains: &["SWAMP_PART_DOWNLOADS", "'0'"] },
    Case { inputs: &[S3_NOWHERE[0], S3_NOWHERE[1], Env("SWAMP_PART_DOWNLOADS", "65")], code: VALIDATION, contains: &["SWAMP_PART_DOWNLOADS", "'65'"] },
    Case { inputs: &[S3_NOWHERE[0], S3_NOWHERE[1], Env("SWAMP_PART_DOWNLOADS", "abc")], code: VALIDATION, contains: &["SWAMP_PART_DOWNLOADS", "'abc'"] },
    Case { inputs: &[S3_NOWHERE[0], S3_NOWHERE[1], Env("SWAMP_PART_DOWNLOADS", "")], code: VALIDATION, contains: &["SWAMP_PART_DOWNLOADS", "''"] },
    Case { inputs: &[S3_NOWHERE[0], S3_NOWHERE[1], Env("SWAMP_PART_DOWNLOADS", "-1")], code: VALIDATION, contains: &["SWAMP_PART_DOWNLOADS", "'-1'"] },
    // Read once for every command: a filesystem datastore refuses them too.
    Case { inputs: &[Env("SWAMP_PART_DOWNLOADS", "0")], code: VALIDATION, contains: &["SWAMP_PART_DOWNLOADS", "'0'"] },
    Case { inputs: &[Env("SWAMP_SYNC_CONCURRENCY", "0")], code: VALIDATION, contains: &["SWAMP_SYNC_CONCURRENCY", "'0'"] },
    Case { inputs: &[Env("SWAMP_SYNC_CONCURRENCY", "many")], code: VALIDATION, contains: &["SWAMP_SYNC_CONCURRENCY", "'many'"] },
    // Once ignored when bad (the default applied silently).
    Case { inputs: &[S3_NOWHERE[0], S3_NOWHERE[1], Env("SWAMP_S3_TIMEOUT_SECS", "0")], code: VALIDATION, contains: &["SWAMP_S3_TIMEOUT_SECS", "'0'"] },
    Case { inputs: &[S3_NOWHERE[0], S3_NOWHERE[1], Env("SWAMP_S3_TIMEOUT_SECS", "soon")], code: VALIDATION, contains: &["SWAMP_S3_TIMEOUT_SECS", "'soon'"] },
    Case { inputs: &[Env("SWAMP_S3_TIMEOUT_SECS", "-1")], code: VALIDATION, contains: &["SWAMP_S3_TIMEOUT_SECS", "'-1'"] },
];

/// Runs `case` in a fresh repo through every command of `COMMANDS`, in text
/// mode (exit 2, nothing on stdout, one `error: ...` line on stderr) and with
/// `--json` (exit 2, one error document with `case.code` on stdout, nothing
/// on stderr). Either way the message contains `case.contains`, and nothing
/// was stored, created in the working directory or written to `.swamp.yaml`.
fn assert_rejected(case: &Case) {
    let repo = init_repo();
    let scratch = tempfile::tempdir().unwrap();
    let fill = |text: &str| {
        text.replace("{repo}", repo.path().to_str().unwrap())
            .replace("{scratch}", scratch.path().to_str().unwrap())
    };
    for input in case.inputs {
        match input {
            Yaml(text) => append_config(repo.path(), text),
            YamlFile(text) => write_config(repo.path(), text),
            Env(..) | Flag(..) => {}
        }
    }
    let config = read_config(repo.path());
    for command in COMMANDS {
        for json in [false, true] {
            let mut cmd = swamp_cli(repo.path());
            cmd.current_dir(scratch.path());
            for input in case.inputs {
                match input {
                    Env(name, value) => {
                        cmd.env(name, fill(value));
                    }
                    Flag(name, value) => {
                        cmd.arg(format!("{name}={}", fill(value)));
                    }
                    Yaml(_) | YamlFile(_) => {}
                }
            }
            if json {
                cmd.arg("--json");
            }
            let out = cmd.args(command).write_stdin("content").output().unwrap();
            let message = if json {
                assert_json_config_error(&out, case.code)
            } else {
                assert_text_error(&out, 2)
            };
            for needle in case.contains {
                let needle = fill(needle);
                assert!(
                    message.contains(&needle),
                    "{command:?}, json {json}: no {needle:?} in: {message}"
                );
            }
        }
    }
    assert!(
        fs::read_dir(scratch.path()).unwrap().next().is_none(),
        "nothing created in the working directory or the flag's datastore"
    );
    assert!(
        !local_dir(repo.path()).join("data").exists(),
        "nothing was stored"
    );
    assert_eq!(read_config(repo.path()), config, ".swamp.yaml unchanged");
}

/// Runs every row, so one failure does not hide the others, then fails
/// naming each row that failed (its reason is printed just above its name).
fn assert_all_rejected(cases: &[Case]) {
    let failed: Vec<&Case> = cases
        .iter()
        .filter(|case| {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| assert_rejected(case)));
            if result.is_err() {
                eprintln!("^ row failed: {case:?}");
            }
            result.is_err()
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} rows failed: {failed:#?}",
        failed.len(),
        cases.len()
    );
}

#[test]
fn bad_datastore_specs_are_rejected() {
    assert_all_rejected(SPEC_CASES);
}

#[test]
fn bad_repo_configs_are_rejected() {
    assert_all_rejected(REPO_CONFIG_CASES);
}

#[test]
fn bad_tuning_variables_are_rejected() {
    assert_all_rejected(TUNING_CASES);
}

#[test]
fn valid_lock_ttl_env_works() {
    let repo = init_repo();
    swamp_cli(repo.path())
        .env("SWAMP_LOCK_TTL_MS", "5000")
        .args(["data", "put", "x"])
        .write_stdin("content")
        .assert()
        .success();
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
