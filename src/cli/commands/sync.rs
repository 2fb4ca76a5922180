//! `swamp datastore sync [--pull | --push]`: an explicit pull and/or push of an
//! S3 datastore under its lock, with a progress bar on a terminal.

use crate::cli::context::{RepoContext, Stderr};
use crate::cli::error::CliError;
use crate::cli::output::{human_bytes, Render};
use crate::infrastructure::datastore::{Direction, SyncReport, Transfer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::io::{self, IsTerminal, Write};
use std::sync::Arc;

/// Result of `datastore sync`.
pub struct SyncResult {
    remote: Option<String>,
    direction: Direction,
    pulled: SyncReport,
    pushed: SyncReport,
}

fn progress_bar(hidden: bool) -> ProgressBar {
    if hidden || !io::stderr().is_terminal() {
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
pub async fn sync(
    ctx: &RepoContext,
    direction: Direction,
    concurrency: Option<usize>,
) -> Result<SyncResult, CliError> {
    let json = ctx.settings.json;
    // The JSON report lists conflicts and unsynced files itself.
    let mut datastore = ctx
        .datastore
        .reporting_to(Arc::new(Stderr::new(!json, json || ctx.settings.quiet)));
    if let Some(n) = concurrency {
        datastore = datastore.with_concurrency(n);
    }
    let bar = progress_bar(json || ctx.settings.quiet);
    let outcome = datastore.sync(direction, bar.clone()).await;
    bar.finish_and_clear();
    let transfer = outcome?;
    let remote = transfer
        .is_some()
        .then(|| ctx.datastore.backend().describe());
    let Transfer { pulled, pushed } = transfer.unwrap_or_default();
    Ok(SyncResult {
        remote,
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
