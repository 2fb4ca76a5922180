//! The per-command context: the repo, its config, the resolved datastore, the
//! path resolver and the lock, built once from the global options.

use crate::cli::error::CliError;
use crate::domain::config::{
    resolve_datastore, Backend, RepoConfig, ResolvedDatastore, DATASTORE_ENV, LOCAL_DIR,
};
use crate::domain::lock::{DistributedLock, DEFAULT_TTL};
use crate::domain::path_resolver::DatastorePathResolver;
use crate::domain::pattern_matcher::ExcludeMatcher;
use crate::infrastructure::coordinator::LockTiming;
use crate::infrastructure::file_lock::FileLock;
use crate::infrastructure::repo_files::load_config;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Environment variable overriding the lock TTL in milliseconds.
pub const LOCK_TTL_ENV: &str = "SWAMP_LOCK_TTL_MS";

/// Options every command takes.
#[derive(Debug, Clone)]
pub struct GlobalOptions {
    /// Render JSON.
    pub json: bool,
    /// The repo directory.
    pub repo_dir: PathBuf,
    /// `--datastore` value.
    pub datastore: Option<String>,
    /// Longest wait for the lock.
    pub lock_timeout: Duration,
}

/// An opened repo with its resolved datastore.
pub struct RepoContext {
    /// Global options.
    pub globals: GlobalOptions,
    /// The repo directory.
    pub repo_dir: PathBuf,
    /// `.swamp.yaml`.
    pub config: RepoConfig,
    /// The datastore in use.
    pub datastore: ResolvedDatastore,
    /// Where files go.
    pub resolver: DatastorePathResolver,
    /// Lock TTL and wait.
    pub timing: LockTiming,
}

impl RepoContext {
    /// Opens the repo named by `globals` and resolves its datastore.
    pub fn open(globals: &GlobalOptions) -> Result<Self, CliError> {
        let repo_dir = globals.repo_dir.clone();
        let config = load_config(&repo_dir)?;
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        let env_value = std::env::var(DATASTORE_ENV).ok();
        let datastore = resolve_datastore(
            env_value.as_deref(),
            globals.datastore.as_deref(),
            &config,
            &repo_dir,
        )?;
        let timing = LockTiming {
            ttl: lock_ttl()?,
            timeout: globals.lock_timeout,
        };
        let resolver = resolver_for(&datastore, &repo_dir)?;
        Ok(Self {
            globals: globals.clone(),
            repo_dir,
            config,
            datastore,
            resolver,
            timing,
        })
    }

    /// The lock of the datastore in use.
    pub fn lock(&self) -> Result<Arc<dyn DistributedLock>, CliError> {
        lock_for(&self.datastore.backend, self.timing.ttl)
    }

    /// `user@host` for audit entries.
    pub fn actor(&self) -> String {
        crate::domain::lock::LockInfo::for_this_process(self.timing.ttl).holder
    }
}

/// The path resolver of a datastore.
pub fn resolver_for(
    datastore: &ResolvedDatastore,
    repo_dir: &std::path::Path,
) -> Result<DatastorePathResolver, CliError> {
    let root = match &datastore.backend {
        Backend::Filesystem { path } => path.clone(),
        Backend::S3(_) => return Err(s3_unavailable()),
    };
    Ok(DatastorePathResolver::new(
        root,
        repo_dir.join(LOCAL_DIR),
        datastore.directories.clone(),
        ExcludeMatcher::new(&datastore.exclude)
            .map_err(crate::domain::config::ConfigError::from)?,
    ))
}

/// The lock of a backend.
pub fn lock_for(backend: &Backend, ttl: Duration) -> Result<Arc<dyn DistributedLock>, CliError> {
    match backend {
        Backend::Filesystem { path } => Ok(Arc::new(FileLock::new(path, ttl))),
        Backend::S3(_) => Err(s3_unavailable()),
    }
}

fn s3_unavailable() -> CliError {
    CliError::Validation(
        "S3 datastores are configured but this build supports only filesystem datastores".into(),
    )
}

/// The lock TTL: `SWAMP_LOCK_TTL_MS` or 30 s.
pub fn lock_ttl() -> Result<Duration, CliError> {
    match std::env::var(LOCK_TTL_ENV) {
        Err(_) => Ok(DEFAULT_TTL),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms >= 100 => Ok(Duration::from_millis(ms)),
            _ => Err(CliError::Validation(format!(
                "invalid {LOCK_TTL_ENV} '{v}': expected milliseconds, at least 100"
            ))),
        },
    }
}
