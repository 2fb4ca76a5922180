//! The per-command context: the settings, the repo's config and its opened
//! datastore, built once before the command runs.

use crate::cli::error::CliError;
use crate::cli::settings::Settings;
use crate::domain::config::{resolve_datastore, RepoConfig};
use crate::infrastructure::coordinator::LockTiming;
use crate::infrastructure::datastore::{
    Datastore, DatastoreSettings, Notice, Reporter, S3Settings,
};
use crate::infrastructure::repo_files::load_config;
use std::path::PathBuf;
use std::sync::Arc;

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
            Arc::new(Stderr { sync_reports: true }),
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

/// Notices as `warning:` lines on stderr; a second signal exits at once.
pub struct Stderr {
    /// Whether conflict copies and unsynced files get a line (a command
    /// that renders its sync report in JSON leaves them to the report).
    pub sync_reports: bool,
}

impl Reporter for Stderr {
    fn notice(&self, notice: Notice) {
        if self.sync_reports || !notice.is_sync_report() {
            eprintln!("warning: {notice}");
        }
    }

    fn second_signal(&self, signal: i32) {
        eprintln!("swamp: second signal, exiting now");
        std::process::exit(128 + signal);
    }
}
