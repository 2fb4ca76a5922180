//! `swamp exec [--read-only] -- CMD ARGS...`: runs any command with
//! `SWAMP_DATASTORE_DIR` naming the datastore directory. The child's exit
//! code passes through.
//!
//! Without `--read-only` the child runs inside the guard (acquire → pull →
//! run → push → release) on the datastore itself. With it, the child runs
//! on a private read-only copy of one committed state (`Datastore::read_only`):
//! no datastore lock on S3, nothing pushed, and a child that changed its
//! copy anyway (root ignores file modes) fails with the paths named.
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

/// Result of `exec`.
pub struct ExecResult {
    /// The child's exit code (128+N if killed by signal N).
    pub exit_code: i32,
    /// Whether it ran on a read-only copy.
    pub read_only: bool,
}

/// Runs `argv` inside the guard, or on a read-only copy with `read_only`.
pub async fn exec(
    ctx: &RepoContext,
    argv: &[String],
    read_only: bool,
) -> Result<ExecResult, CliError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| CliError::Validation("exec needs a command to run".into()))?;
    let child = Child {
        program,
        args,
        repo_dir: &ctx.repo_dir,
        read_only,
    };
    if !read_only {
        let datastore_dir = ctx.datastore.root().to_path_buf();
        let exit_code = ctx
            .datastore
            .guard(|_fence, stop| child.run(&datastore_dir, stop))
            .await?;
        return Ok(ExecResult {
            exit_code,
            read_only,
        });
    }
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
        read_only,
    })
}

/// The command `exec` runs.
#[derive(Clone, Copy)]
struct Child<'a> {
    program: &'a String,
    args: &'a [String],
    repo_dir: &'a Path,
    read_only: bool,
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
        json!({ "exitCode": self.exit_code, "readOnly": self.read_only })
    }

    fn write_text(&self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}
