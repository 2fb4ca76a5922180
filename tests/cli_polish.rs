//! Black-box tests of the CLI's manners (issue 16): examples at the end of
//! every `--help`, command groups without a subcommand, shell completions,
//! `-q` and `-v`.

mod support;

use support::*;

/// Every command, by its path of subcommands.
const COMMANDS: &[&[&str]] = &[
    &[],
    &["repo", "init"],
    &["data"],
    &["data", "put"],
    &["data", "get"],
    &["data", "list"],
    &["data", "versions"],
    &["data", "rm"],
    &["exec"],
    &["datastore"],
    &["datastore", "status"],
    &["datastore", "setup"],
    &["datastore", "setup", "filesystem"],
    &["datastore", "setup", "s3"],
    &["datastore", "lock"],
    &["datastore", "lock", "status"],
    &["datastore", "lock", "release"],
    &["datastore", "repair"],
    &["datastore", "sync"],
    &["completion"],
];

#[test]
fn every_help_ends_with_real_examples() {
    for path in COMMANDS {
        let out = run(std::process::Command::new(bin()).args(*path).arg("--help"));
        assert!(out.status.success(), "{path:?}: {}", stderr(&out));
        let help = stdout_of(&out);
        let examples = help
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{path:?} --help has no examples:\n{help}"));
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            (1..=3).contains(&lines.len())
                && lines
                    .iter()
                    .all(|l| l.trim_start().starts_with("swamp ") || l.contains("| swamp ")),
            "{path:?}: {lines:?}"
        );
        // Each example names the command it is the help of.
        let named = path.join(" ");
        assert!(
            lines.iter().any(|l| l.contains(&named)),
            "{path:?}: {lines:?}"
        );
    }
}

#[test]
fn a_group_without_its_subcommand_prints_its_usage_and_exits_2() {
    for path in [
        &["data"][..],
        &["datastore"],
        &["datastore", "lock"],
        &["datastore", "setup"],
        &[],
    ] {
        let out = run(std::process::Command::new(bin()).args(path));
        assert_eq!(code_of(&out), 2, "{path:?}");
        assert!(out.stdout.is_empty(), "{path:?}: usage goes to stderr");
        assert!(
            stderr(&out).contains("Usage:"),
            "{path:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn completions_are_printed_for_every_shell() {
    let shells = [
        ("bash", "complete -F"),
        ("zsh", "#compdef swamp"),
        ("fish", "complete -c swamp"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion"),
    ];
    for (shell, marker) in shells {
        let out = run(std::process::Command::new(bin()).args(["completion", shell]));
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout_of(&out);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for word in ["datastore", "versions", "lock-timeout"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = run(std::process::Command::new(bin()).args(["completion", "tcsh"]));
    assert_eq!(code_of(&out), 2);
}

#[test]
fn quiet_keeps_answers_and_errors_and_drops_reports() {
    let repo = init_repo();
    let input = repo.path().join("in.txt");
    std::fs::write(&input, "hello").unwrap();
    let out = run(swamp(repo.path())
        .args(["-q", "data", "put", "greeting", "--file"])
        .arg(&input));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    // An answer is what was asked for: kept.
    let out = run(swamp(repo.path()).args(["-q", "data", "get", "greeting"]));
    assert_eq!(out.stdout, b"hello");
    let out = run(swamp(repo.path()).args(["--quiet", "data", "list"]));
    assert!(stdout_of(&out).contains("greeting"));
    // JSON was asked for too.
    let out = run(swamp(repo.path()).args(["-q", "--json", "data", "rm", "greeting"]));
    assert_eq!(json_of(&out)["name"], "greeting");
    // Errors still say what to do.
    let out = run(swamp(repo.path()).args(["-q", "data", "get", "greeting"]));
    let line = assert_text_error(&out, 1);
    assert!(line.contains("greeting"), "{line}");
    // -q and -v contradict each other.
    let out = run(swamp(repo.path()).args(["-q", "-v", "data", "list"]));
    assert_eq!(code_of(&out), 2);
}

#[test]
fn verbose_shows_the_guards_steps_and_the_default_shows_none() {
    let repo = init_repo();
    let quiet = run(swamp(repo.path())
        .env_remove("SWAMP_LOG")
        .args(["exec", "--", "true"]));
    assert!(quiet.status.success());
    assert!(quiet.stderr.is_empty(), "{}", stderr(&quiet));
    let loud = run(swamp(repo.path())
        .env_remove("SWAMP_LOG")
        .env("NO_COLOR", "1")
        .args(["-vv", "exec", "--", "true"]));
    assert!(loud.status.success());
    let text = stderr(&loud);
    assert!(text.contains("datastore lock held"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour off a terminal: {text:?}"
    );
}

#[test]
fn exec_json_keeps_the_childs_stdout_out_of_the_document() {
    let repo = init_repo();
    let out = run(swamp(repo.path()).args([
        "--json",
        "exec",
        "--",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exit 3",
    ]));
    assert_eq!(code_of(&out), 3);
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["exitCode"], 3);
    let err = stderr(&out);
    assert!(
        err.contains("to-stdout") && err.contains("to-stderr"),
        "{err}"
    );
    // Without --json the child's stdout is swamp's stdout.
    let out = run(swamp(repo.path()).args(["exec", "--", "echo", "plain"]));
    assert_eq!(out.stdout, b"plain\n");
}
