//! The per-command context: the repo, its config, the resolved datastore, the
//! path resolver and the lock, built once from the global options.

use crate::cli::error::CliError;
use crate::domain::config::{
    resolve_datastore, Backend, RepoConfig, ResolvedDatastore, DATASTORE_ENV, LOCAL_DIR,
};
use crate::domain::lock::{DistributedLock, DEFAULT_TTL};
use crate::domain::path_resolver::DatastorePathResolver;
use crate::domain::pattern_matcher::ExcludeMatcher;
use crate::domain::sync_index::{object_key, LOCK_KEY};
use crate::infrastructure::coordinator::LockTiming;
use crate::infrastructure::file_lock::FileLock;
use crate::infrastructure::repo_files::load_config;
use crate::infrastructure::s3::cache::cache_dir;
use crate::infrastructure::s3::client::S3Store;
use crate::infrastructure::s3::lock::S3Lock;
use crate::infrastructure::s3::store::ObjectStore;
use crate::infrastructure::s3::sync::{CacheSync, DEFAULT_CONCURRENCY};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Environment variable overriding the lock TTL in milliseconds.
pub const LOCK_TTL_ENV: &str = "SWAMP_LOCK_TTL_MS";
/// Environment variable setting the number of concurrent S3 transfers.
pub const CONCURRENCY_ENV: &str = "SWAMP_SYNC_CONCURRENCY";
/// Environment variable setting the parts of one large file downloaded at once.
pub const PART_DOWNLOADS_ENV: &str = "SWAMP_PART_DOWNLOADS";

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
    /// The backend, connected (one S3 client per command, shared by lock and sync).
    pub connected: Connected,
    /// Concurrent transfers for S3 sync.
    pub concurrency: usize,
}

impl RepoContext {
    /// Opens the repo named by `globals` and resolves its datastore.
    pub async fn open(globals: &GlobalOptions) -> Result<Self, CliError> {
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
        let resolver = resolver_for(&datastore, &repo_dir, &config.repo_id)?;
        let connected = Connected::connect(&datastore.backend).await?;
        Ok(Self {
            globals: globals.clone(),
            repo_dir,
            config,
            datastore,
            resolver,
            timing,
            connected,
            concurrency: concurrency()?,
        })
    }

    /// The lock of the datastore in use.
    pub fn lock(&self) -> Arc<dyn DistributedLock> {
        self.connected.lock(self.timing.ttl)
    }

    /// The cache sync of an S3 datastore (`None` for a filesystem one).
    pub fn sync(&self) -> Option<CacheSync> {
        let Connected::S3 { config, store } = &self.connected else {
            return None;
        };
        Some(
            CacheSync::new(
                store.clone(),
                config.prefix.clone(),
                self.resolver.clone(),
                self.concurrency,
            )
            .owned_by(self.config.repo_id.to_string()),
        )
    }

    /// `user@host` for audit entries.
    pub fn actor(&self) -> String {
        crate::domain::lock::current_holder()
    }
}

/// A backend ready for use: a directory, or a bucket with its client.
#[derive(Clone)]
pub enum Connected {
    /// A filesystem datastore directory.
    Filesystem(PathBuf),
    /// An S3 datastore with its client.
    S3 {
        /// Bucket settings.
        config: crate::domain::config::S3Config,
        /// The client.
        store: Arc<dyn ObjectStore>,
    },
}

impl Connected {
    /// Connects to `backend` (builds the S3 client; no request is made).
    pub async fn connect(backend: &Backend) -> Result<Self, CliError> {
        Ok(match backend {
            Backend::Filesystem { path } => Connected::Filesystem(path.clone()),
            Backend::S3(s3) => {
                // Read before the SDK loads its configuration, so a bad value
                // fails at once and alone.
                let parts = part_downloads()?;
                Connected::S3 {
                    config: s3.clone(),
                    store: Arc::new(S3Store::connect(s3).await.with_part_downloads(parts)),
                }
            }
        })
    }

    /// The backend's lock.
    pub fn lock(&self, ttl: Duration) -> Arc<dyn DistributedLock> {
        match self {
            Connected::Filesystem(path) => Arc::new(FileLock::new(path, ttl)),
            Connected::S3 { config, store } => Arc::new(S3Lock::new(
                store.clone(),
                object_key(&config.prefix, LOCK_KEY),
                ttl,
            )),
        }
    }
}

/// The directory that holds a backend's files locally: the datastore itself,
/// or the S3 cache.
pub fn local_root(backend: &Backend, repo_id: &uuid::Uuid) -> PathBuf {
    match backend {
        Backend::Filesystem { path } => path.clone(),
        Backend::S3(_) => cache_dir(repo_id),
    }
}

/// The path resolver of a datastore.
pub fn resolver_for(
    datastore: &ResolvedDatastore,
    repo_dir: &std::path::Path,
    repo_id: &uuid::Uuid,
) -> Result<DatastorePathResolver, CliError> {
    let root = local_root(&datastore.backend, repo_id);
    Ok(DatastorePathResolver::new(
        root,
        repo_dir.join(LOCAL_DIR),
        datastore.directories.clone(),
        ExcludeMatcher::new(&datastore.exclude)
            .map_err(crate::domain::config::ConfigError::from)?,
    ))
}

/// Concurrent S3 transfers: `SWAMP_SYNC_CONCURRENCY` or 32.
pub fn concurrency() -> Result<usize, CliError> {
    match std::env::var(CONCURRENCY_ENV) {
        Err(_) => Ok(DEFAULT_CONCURRENCY),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err(CliError::Validation(format!(
                "invalid {CONCURRENCY_ENV} '{v}': expected a number from 1 to 1024"
            ))),
        },
    }
}

/// Parts of one large file downloaded at once: `SWAMP_PART_DOWNLOADS` or 4.
pub fn part_downloads() -> Result<usize, CliError> {
    match std::env::var(PART_DOWNLOADS_ENV) {
        Err(_) => Ok(crate::infrastructure::s3::client::DEFAULT_PART_DOWNLOADS),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => Ok(n),
            _ => Err(CliError::Validation(format!(
                "invalid {PART_DOWNLOADS_ENV} '{v}': expected a number from 1 to 64"
            ))),
        },
    }
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
