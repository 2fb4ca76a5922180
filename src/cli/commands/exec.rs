//! `swamp exec -- CMD ARGS...`: runs any command inside the guard, with
//! `SWAMP_DATASTORE_DIR` naming the datastore directory. The child's exit code
//! passes through. The child runs in a process group of its own
//! (`infrastructure::child_group`): if the lock is lost the whole group is
//! killed at once (nothing may write without the lock); on SIGINT/SIGTERM/SIGHUP
//! the signal is forwarded to the group, which gets a short grace period before
//! it is killed; and whatever the child left running when it exited is killed
//! before the push and the release.

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::Render;
use crate::infrastructure::child_group::ChildGroup;
use crate::infrastructure::coordinator::StopReason;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

/// How long a signalled child may take to exit before it is killed.
const CHILD_GRACE: Duration = Duration::from_millis(2000);

/// Result of `exec`.
pub struct ExecResult {
    /// The child's exit code (128+N if killed by signal N).
    pub exit_code: i32,
}

/// Runs `argv` inside the guard.
pub async fn exec(ctx: &RepoContext, argv: &[String]) -> Result<ExecResult, CliError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| CliError::Validation("exec needs a command to run".into()))?;
    let datastore_dir = ctx.datastore.root().to_path_buf();
    ctx.datastore
        .guard(|_fence, mut stop| async move {
            let mut command = tokio::process::Command::new(program);
            command
                .args(args)
                .env("SWAMP_DATASTORE_DIR", &datastore_dir)
                .env("SWAMP_REPO_DIR", &ctx.repo_dir);
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
                    return Err(crate::infrastructure::coordinator::stop_error(&reason).into());
                }
            };
            let status = status.map_err(|source| CliError::Io {
                context: format!("waiting for '{program}'"),
                source,
            })?;
            let exit_code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1);
            Ok(ExecResult { exit_code })
        })
        .await
}

impl Render for ExecResult {
    fn to_json(&self) -> Value {
        json!({ "exitCode": self.exit_code })
    }

    fn write_text(&self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}
