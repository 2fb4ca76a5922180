//! The per-command context: the settings, the repo's config and its opened
//! datastore, built once before the command runs.

use crate::cli::error::CliError;
use crate::cli::settings::Settings;
use crate::domain::config::{resolve_datastore, RepoConfig};
use crate::infrastructure::coordinator::LockTiming;
use crate::infrastructure::datastore::{
    Datastore, DatastoreSettings, LockWait, Notice, Reporter, S3Settings, TransferBars,
};
use crate::infrastructure::repo_files::load_config;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// An opened repo with its datastore.
pub struct RepoContext {
    /// What the command runs with.
    pub settings: Settings,
    /// The repo directory.
    pub repo_dir: PathBuf,
    /// `.swamp.yaml`.
    pub config: RepoConfig,
    /// The datastore in use.
    pub datastore: Datastore,
}

impl RepoContext {
    /// Opens the repo `settings` name and its datastore.
    pub async fn open(settings: &Settings) -> Result<Self, CliError> {
        let repo_dir = settings.repo_dir.clone();
        let config = load_config(&repo_dir)?;
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        let resolved = resolve_datastore(
            settings.datastore_env.as_deref(),
            settings.datastore_flag.as_deref(),
            &config,
            &repo_dir,
        )?;
        let datastore = Datastore::open(
            &DatastoreSettings {
                resolved,
                repo_dir: repo_dir.clone(),
                repo_id: config.repo_id,
                swamp_home: settings.swamp_home.clone(),
                timing: LockTiming {
                    ttl: settings.lock_ttl,
                    timeout: settings.lock_timeout,
                },
                concurrency: settings.concurrency,
                s3: S3Settings {
                    part_downloads: settings.part_downloads,
                    attempt_timeout: settings.s3_timeout,
                    fallback_endpoint: settings.aws_endpoint.clone(),
                },
            },
            Arc::new(Stderr::new(true, settings.json || settings.quiet)),
        )
        .await?;
        Ok(Self {
            settings: settings.clone(),
            repo_dir,
            config,
            datastore,
        })
    }

    /// `user@host` for audit entries.
    pub fn actor(&self) -> String {
        crate::domain::lock::current_holder()
    }
}

/// Notices as `warning:` lines on stderr; a second signal exits at once;
/// a busy lock as one `waiting for the lock held by ...` line, then (on a
/// terminal) a spinner with the time waited, cleared when the wait is over.
pub struct Stderr {
    /// Whether conflict copies and unsynced files get a line (a command
    /// that renders its sync report in JSON leaves them to the report).
    pub sync_reports: bool,
    /// `--json` or `-q`: no waiting line, no spinner, no progress bars.
    pub silent_wait: bool,
    /// The wait being shown, if any (its spinner, when on a terminal).
    waiting: Mutex<Option<Option<ProgressBar>>>,
}

impl Stderr {
    /// A reporter; `silent_wait` for `--json` and `-q`.
    pub fn new(sync_reports: bool, silent_wait: bool) -> Self {
        Self {
            sync_reports,
            silent_wait,
            waiting: Mutex::new(None),
        }
    }
}

/// How long a transfer runs before its bar is drawn: a quick one never
/// flickers a bar across the screen.
const BAR_DELAY: Duration = Duration::from_secs(1);

/// A transfer phase's bar, drawn on stderr once the phase has run for
/// `BAR_DELAY` (a thread of its own waits; a phase over by then was never
/// drawn).
fn delayed_bar(what: &'static str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{msg:>5} [{bar:30}] {pos}/{len} files {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what);
    let shown = bar.clone();
    let _ = std::thread::Builder::new()
        .name("swamp-progress".into())
        .spawn(move || {
            std::thread::sleep(BAR_DELAY);
            if !shown.is_finished() {
                shown.set_draw_target(ProgressDrawTarget::stderr());
            }
        });
    bar
}

/// `12 s`, `3 min 4 s`, `2 h 5 min`.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

impl Reporter for Stderr {
    fn notice(&self, notice: Notice) {
        if self.sync_reports || !notice.is_sync_report() {
            eprintln!("warning: {notice}");
        }
    }

    fn lock_wait(&self, wait: &LockWait) {
        if self.silent_wait {
            return;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match wait {
            LockWait::Busy {
                holder, held_for, ..
            } => {
                if waiting.is_some() {
                    return;
                }
                let held = held_for
                    .map(|d| format!(" for {}", human_duration(d)))
                    .unwrap_or_default();
                eprintln!("waiting for the lock held by {holder}{held}…");
                let spinner = std::io::stderr().is_terminal().then(|| {
                    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} waiting {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                *waiting = Some(spinner);
            }
            LockWait::Over => {
                if let Some(Some(spinner)) = waiting.take() {
                    spinner.finish_and_clear();
                }
            }
        }
    }

    fn transfer_bars(&self) -> Option<TransferBars> {
        if self.silent_wait || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(delayed_bar))
    }

    fn second_signal(&self, signal: i32) {
        eprintln!("swamp: second signal, exiting now");
        std::process::exit(128 + signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        let cases = [
            (0, "0 s"),
            (12, "12 s"),
            (64, "1 min 4 s"),
            (7500, "2 h 5 min"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want);
        }
    }
}
