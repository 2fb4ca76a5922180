//! `swamp exec [--read-only | --scope PATH...] -- CMD ARGS...`: runs any
//! command with `SWAMP_DATASTORE_DIR` naming the datastore directory. The
//! child's exit code passes through.
//!
//! By default the child runs inside the guard (acquire → pull → run → push
//! → release) on the datastore itself. With `--read-only` it runs on a
//! private read-only copy of one committed state (`Datastore::read_only`):
//! no datastore lock on S3, nothing pushed, and a child that changed its
//! copy anyway (root ignores file modes) fails with the paths named. With
//! `--scope` it holds only those paths' lock and runs on a private writable
//! copy (`Datastore::in_working_copy`): its changes under the paths are
//! applied (and pushed on S3); a change anywhere else fails the command
//! with the paths named, and nothing is applied.
//!
//! With `--json`, stdout carries the one JSON document only: the child's
//! stdout goes to swamp's stderr (with the child's stderr), so a caller
//! parses stdout and still sees everything the child printed.
//!
//! The child runs in a process group of its own
//! (`infrastructure::child_group`): if the lock is lost the whole group is
//! killed at once (nothing may write without the lock); on SIGINT/SIGTERM/SIGHUP
//! the signal is forwarded to the group, which gets a short grace period before
//! it is killed; and whatever the child left running when it exited is killed
//! before the push and the release (or the removal of its read-only copy).

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::Render;
use crate::domain::lock_scope::LockScope;
use crate::infrastructure::child_group::ChildGroup;
use crate::infrastructure::coordinator::{stop_error, StopReason, StopSignal};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

/// How long a signalled child may take to exit before it is killed.
const CHILD_GRACE: Duration = Duration::from_millis(2000);

/// How `exec` runs its command.
pub enum Mode {
    /// On the datastore, inside the whole-datastore guard.
    Guarded,
    /// On a private read-only copy (`--read-only`).
    ReadOnly,
    /// On a private copy, keeping only changes under these paths (`--scope`).
    Scoped(Vec<String>),
}

/// Result of `exec`.
pub struct ExecResult {
    /// The child's exit code (128+N if killed by signal N).
    pub exit_code: i32,
    /// Whether it ran on a read-only copy.
    pub read_only: bool,
    /// The paths it was scoped to (`--scope`), with the changes kept.
    pub scoped: Option<(Vec<String>, Vec<String>)>,
}

/// Runs `argv` as `mode` says.
pub async fn exec(ctx: &RepoContext, argv: &[String], mode: Mode) -> Result<ExecResult, CliError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| CliError::Validation("exec needs a command to run".into()))?;
    let child = Child {
        program,
        args,
        repo_dir: &ctx.repo_dir,
        read_only: matches!(mode, Mode::ReadOnly),
        stdout_to_stderr: ctx.settings.json,
    };
    let paths = match mode {
        Mode::Guarded => {
            let datastore_dir = ctx.datastore.root().to_path_buf();
            let exit_code = ctx
                .datastore
                .guard(|_fence, stop| child.run(&datastore_dir, stop))
                .await?;
            return Ok(ExecResult {
                exit_code,
                read_only: false,
                scoped: None,
            });
        }
        Mode::Scoped(paths) => paths,
        Mode::ReadOnly => return read_only(ctx, child).await,
    };
    let scope = scope_of(ctx, &paths)?;
    let run = ctx
        .datastore
        .in_working_copy(
            &scope,
            |copy, stop| async move { child.run(&copy, stop).await },
        )
        .await?;
    let scope_text = scope.paths().join(", ");
    if !run.outside.is_empty() {
        return Err(CliError::OutsideScope {
            program: program.clone(),
            scope: scope_text,
            changed: run.outside,
            exit_code: run.value,
        });
    }
    if !run.unsupported.is_empty() {
        return Err(CliError::NotFilesInScope {
            program: program.clone(),
            paths: run.unsupported,
            exit_code: run.value,
        });
    }
    Ok(ExecResult {
        exit_code: run.value,
        read_only: false,
        scoped: Some((scope.paths().to_vec(), run.applied)),
    })
}

/// The scope `--scope` names: each a datastore path (inside one of this
/// machine's datastore directories), trailing `/` ignored.
fn scope_of(ctx: &RepoContext, raw: &[String]) -> Result<LockScope, CliError> {
    let mut paths = Vec::new();
    for (safe, path) in super::lock::scope_paths(raw)?.into_iter().zip(raw) {
        if !ctx.datastore.resolver().is_datastore_path(&safe) {
            return Err(CliError::Validation(format!(
                "--scope {path:?} is not inside a datastore directory ({}); name a path such as data/NAME or outputs/NAME",
                ctx.datastore.resolver().directories().join(", ")
            )));
        }
        paths.push(safe.into_string());
    }
    Ok(LockScope::Paths(paths))
}

/// `exec --read-only`.
async fn read_only(ctx: &RepoContext, child: Child<'_>) -> Result<ExecResult, CliError> {
    let program = child.program;
    let run = ctx
        .datastore
        .read_only(|view, stop| async move { child.run(&view, stop).await })
        .await?;
    if !run.changed.is_empty() {
        return Err(CliError::ReadOnlyChanged {
            program: program.clone(),
            changed: run.changed,
            exit_code: run.value,
        });
    }
    Ok(ExecResult {
        exit_code: run.value,
        read_only: true,
        scoped: None,
    })
}

/// The command `exec` runs.
#[derive(Clone, Copy)]
struct Child<'a> {
    program: &'a String,
    args: &'a [String],
    repo_dir: &'a Path,
    read_only: bool,
    /// `--json`: keep stdout for the document.
    stdout_to_stderr: bool,
}

impl Child<'_> {
    /// Runs the child on `datastore_dir` until it exits or `stop` says so;
    /// returns its exit code.
    async fn run(self, datastore_dir: &Path, mut stop: StopSignal) -> Result<i32, CliError> {
        let program = self.program;
        let mut command = tokio::process::Command::new(program);
        command
            .args(self.args)
            .env("SWAMP_DATASTORE_DIR", datastore_dir)
            .env("SWAMP_REPO_DIR", self.repo_dir);
        if self.read_only {
            command.env("SWAMP_READ_ONLY", "1");
        }
        if self.stdout_to_stderr {
            command.stdout(io::stderr());
        }
        let mut child = ChildGroup::spawn(command).map_err(|e| CliError::Spawn {
            program: program.clone(),
            code: if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            },
            reason: e.to_string(),
        })?;
        let status = tokio::select! {
            status = child.wait() => status,
            reason = stop.wait() => {
                match reason {
                    StopReason::Lost(_) => child.kill().await,
                    StopReason::Signal(sig) => {
                        if let Ok(signal) = Signal::try_from(sig) {
                            child.signal(signal);
                        }
                        if tokio::time::timeout(CHILD_GRACE, child.wait()).await.is_err() {
                            child.kill().await;
                        }
                    }
                }
                return Err(stop_error(&reason).into());
            }
        };
        let status = status.map_err(|source| CliError::Io {
            context: format!("waiting for '{program}'"),
            source,
        })?;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(1))
    }
}

impl Render for ExecResult {
    fn to_json(&self) -> Value {
        let mut doc = json!({ "exitCode": self.exit_code, "readOnly": self.read_only });
        if let Some((scope, applied)) = &self.scoped {
            doc["scope"] = json!(scope);
            doc["changed"] = json!(applied);
        }
        doc
    }

    fn write_text(&self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}
