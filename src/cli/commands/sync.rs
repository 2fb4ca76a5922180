//! `swamp datastore sync [--pull | --push]`: an explicit pull and/or push of an
//! S3 datastore under its lock, with a progress bar on a terminal.

use crate::cli::commands::{warn_conflicts, warn_unsyncable, with_lock};
use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::{human_bytes, Render};
use crate::infrastructure::s3::sync::SyncReport;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::io::{self, IsTerminal, Write};

/// Which directions to sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Pull then push.
    Both,
    /// Pull only.
    Pull,
    /// Push only.
    Push,
}

/// Result of `datastore sync`.
pub struct SyncResult {
    remote: Option<String>,
    direction: Direction,
    pulled: SyncReport,
    pushed: SyncReport,
}

fn progress_bar(json: bool) -> ProgressBar {
    if json || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:>5} [{bar:30}] {pos}/{len} files {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Syncs the S3 cache with the bucket.
pub async fn sync(ctx: &RepoContext, direction: Direction) -> Result<SyncResult, CliError> {
    let Some(sync) = ctx.sync() else {
        return Ok(SyncResult {
            remote: None,
            direction,
            pulled: SyncReport::default(),
            pushed: SyncReport::default(),
        });
    };
    let bar = progress_bar(ctx.globals.json);
    let sync = sync.with_progress(bar.clone());
    let remote = ctx.datastore.backend.describe();
    let outcome = with_lock(ctx, |fence, _stop| async move {
        let pulled = if direction != Direction::Push {
            let pulled = sync.pull(&fence).await?;
            if !ctx.globals.json {
                warn_conflicts(&pulled.conflicts);
            }
            pulled
        } else {
            SyncReport::default()
        };
        let pushed = if direction != Direction::Pull {
            let pushed = sync.push(&fence).await?;
            if !ctx.globals.json {
                warn_unsyncable(&pushed.unsyncable);
            }
            pushed
        } else {
            SyncReport::default()
        };
        Ok((pulled, pushed))
    })
    .await;
    bar.finish_and_clear();
    let (pulled, pushed) = outcome?;
    Ok(SyncResult {
        remote: Some(remote),
        direction,
        pulled,
        pushed,
    })
}

impl Render for SyncResult {
    fn to_json(&self) -> Value {
        json!({
            "remote": self.remote,
            "direction": match self.direction { Direction::Both => "both", Direction::Pull => "pull", Direction::Push => "push" },
            "pulled": self.pulled,
            "pushed": self.pushed,
        })
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let Some(remote) = &self.remote else {
            return writeln!(
                out,
                "Nothing to sync: the datastore is a filesystem directory"
            );
        };
        if self.direction != Direction::Push {
            writeln!(
                out,
                "Pulled from {remote}: {} files ({}), {} local files removed",
                self.pulled.downloaded,
                human_bytes(self.pulled.downloaded_bytes),
                self.pulled.deleted_local
            )?;
        }
        if self.direction != Direction::Pull {
            writeln!(
                out,
                "Pushed to {remote}: {} files ({}), {} remote objects removed",
                self.pushed.uploaded,
                human_bytes(self.pushed.uploaded_bytes),
                self.pushed.deleted_remote
            )?;
        }
        Ok(())
    }
}
