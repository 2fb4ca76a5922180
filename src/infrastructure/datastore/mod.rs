//! The datastore a command uses, opened once: the one seam between the CLI
//! and the backends.
//!
//! Model: a `Datastore` is the resolved choice (`ResolvedDatastore`), the
//! path resolver over its local root, the lock timing, and a `Place` — a
//! closed enum, filesystem directory or S3 bucket with its client. Only this
//! module and its children match on `Place`; callers ask for what they need:
//! `lock()`, `health()`, `guard(op)` (acquire → pull → op → push → release),
//! `reader(op)`, `read_only(op)`, `locked(op)`, `sync`, `repair`, `migrate_to(&target)`.
//! What a caller should tell the user on the way (conflict copies, files not
//! synced, a release that failed) goes to its `Reporter`; the datastore never
//! prints.

mod guard;
mod health;
mod migrate;
mod report;
mod transfer;
mod view;

pub use crate::infrastructure::read_only_view::ViewError;
pub use crate::infrastructure::s3::client::{
    resolve_region, S3Settings, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_PART_DOWNLOADS,
};
pub use crate::infrastructure::s3::probe::ConditionalSupport;
pub use crate::infrastructure::s3::store::StoreError;
pub use crate::infrastructure::s3::sync::{
    Pending, RepairReport, SyncError, SyncReport, CONFLICTS_DIR, DEFAULT_CONCURRENCY,
};
pub use crate::infrastructure::s3::sync_times::SyncTimes;
pub use health::{Health, HealthReport};
pub use migrate::{MigrateOptions, SetupError};
pub use report::{LockWait, Notice, Reporter, TransferBars};
pub use transfer::{Direction, Transfer};

use crate::domain::config::{Backend, ConfigError, ResolvedDatastore, S3Config, LOCAL_DIR};
use crate::domain::lock::{DistributedLock, LockError, LockObservation};
use crate::domain::lock_scope::LockScope;
use crate::domain::path_resolver::DatastorePathResolver;
use crate::domain::pattern_matcher::ExcludeMatcher;
use crate::domain::sync_index::{object_key, LOCK_KEY};
use crate::infrastructure::audit::AuditFile;
use crate::infrastructure::coordinator::LockTiming;
use crate::infrastructure::file_lock::{FileLock, FileScopedRecords};
use crate::infrastructure::s3::cache::cache_dir;
use crate::infrastructure::s3::client::S3Store;
use crate::infrastructure::s3::lock::S3Lock;
use crate::infrastructure::s3::probe_record;
use crate::infrastructure::s3::scoped_records::{IndexSeen, S3ScopedRecords};
use crate::infrastructure::s3::store::ObjectStore;
use crate::infrastructure::s3::sync::CacheSync;
use crate::infrastructure::scoped_lock::{DrainingLock, ScopedLock, ScopedRecords};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

/// Everything needed to open a datastore, resolved once by the caller.
#[derive(Debug, Clone)]
pub struct DatastoreSettings {
    /// Which datastore, and why.
    pub resolved: ResolvedDatastore,
    /// The repo directory (its `.swamp/` keeps excluded files).
    pub repo_dir: PathBuf,
    /// The repo's id: owner of an S3 prefix, name of its cache.
    pub repo_id: Uuid,
    /// Where S3 caches live (`{swamp_home}/repos/{repo_id}`).
    pub swamp_home: PathBuf,
    /// Lock TTL and the longest wait for it.
    pub timing: LockTiming,
    /// Concurrent S3 transfers.
    pub concurrency: usize,
    /// How the S3 client connects.
    pub s3: S3Settings,
}

/// Where the files are: a directory, or a bucket with its client.
#[derive(Clone)]
enum Place {
    /// A filesystem datastore directory.
    Filesystem(PathBuf),
    /// An S3 datastore with its client.
    S3 {
        /// Bucket settings.
        config: S3Config,
        /// The client (one per command, shared by lock and sync).
        store: Arc<dyn ObjectStore>,
        /// The index ETag the lock's last listing showed, for the pull after it.
        index_seen: Arc<IndexSeen>,
    },
}

impl Place {
    /// Connects to `backend` (builds the S3 client; no request is made).
    async fn connect(backend: &Backend, s3: &S3Settings) -> Self {
        match backend {
            Backend::Filesystem { path } => Place::Filesystem(path.clone()),
            Backend::S3(config) => Place::S3 {
                config: config.clone(),
                store: Arc::new(S3Store::connect(config, s3).await),
                index_seen: Arc::default(),
            },
        }
    }

    /// The lock every whole-datastore command takes: announced, then the
    /// scoped locks drained.
    fn lock(&self, timing: LockTiming, cache: &Path) -> Arc<dyn DistributedLock> {
        Arc::new(DrainingLock::new(
            self.whole_lock(timing, cache),
            self.scoped_records(timing, cache),
        ))
    }

    /// The whole-datastore lock record; `cache` holds what this machine's
    /// probes learned of the store.
    fn whole_lock(&self, timing: LockTiming, cache: &Path) -> Arc<dyn DistributedLock> {
        match self {
            Place::Filesystem(path) => Arc::new(FileLock::new(path, timing.ttl)),
            Place::S3 { config, store, .. } => Arc::new(
                S3Lock::new(
                    store.clone(),
                    object_key(&config.prefix, LOCK_KEY),
                    timing.ttl,
                )
                .trusting_conditional_delete(trusts_conditional_delete(cache, config)),
            ),
        }
    }

    /// Where scoped lock records live.
    fn scoped_records(&self, timing: LockTiming, cache: &Path) -> Arc<dyn ScopedRecords> {
        match self {
            Place::Filesystem(path) => Arc::new(FileScopedRecords::new(path, timing.ttl)),
            Place::S3 {
                config,
                store,
                index_seen,
            } => Arc::new(S3ScopedRecords::new(
                store.clone(),
                config.prefix.clone(),
                timing.ttl,
                trusts_conditional_delete(cache, config),
                index_seen.clone(),
            )),
        }
    }
}

/// Whether this machine's probe found `If-Match` on DELETE honoured by
/// the store of `config` (`probe_record.rs`).
fn trusts_conditional_delete(cache: &Path, config: &S3Config) -> bool {
    probe_record::remembered(cache, config).is_some_and(|s| s.delete)
}

/// An opened datastore.
#[derive(Clone)]
pub struct Datastore {
    settings: DatastoreSettings,
    resolver: DatastorePathResolver,
    place: Place,
    reporter: Arc<dyn Reporter>,
    audit_file: AuditFile,
}

impl Datastore {
    /// Opens the datastore `settings` name (no request is made yet).
    pub async fn open(
        settings: &DatastoreSettings,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Self, ConfigError> {
        let place = Place::connect(&settings.resolved.backend, &settings.s3).await;
        Self::with_place(settings, place, reporter)
    }

    fn with_place(
        settings: &DatastoreSettings,
        place: Place,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Self, ConfigError> {
        let root = match &place {
            Place::Filesystem(path) => path.clone(),
            Place::S3 { .. } => cache_dir(&settings.swamp_home, &settings.repo_id),
        };
        let resolver = DatastorePathResolver::new(
            root,
            settings.repo_dir.join(LOCAL_DIR),
            settings.resolved.directories.clone(),
            ExcludeMatcher::new(&settings.resolved.exclude)?,
        );
        // On S3 concurrent item writers merge their index commits, so each
        // command audits to a file of its own (`audit.rs`).
        let audit_file = match &place {
            Place::Filesystem(_) => AuditFile::Daily,
            Place::S3 { .. } => AuditFile::own(&Uuid::new_v4().simple().to_string()),
        };
        Ok(Self {
            settings: settings.clone(),
            resolver,
            place,
            reporter,
            audit_file,
        })
    }

    /// The same datastore, reporting to `reporter` instead.
    pub fn reporting_to(&self, reporter: Arc<dyn Reporter>) -> Self {
        Self {
            reporter,
            ..self.clone()
        }
    }

    /// The same datastore with `concurrency` transfers at once.
    pub fn with_concurrency(&self, concurrency: usize) -> Self {
        let mut ds = self.clone();
        ds.settings.concurrency = concurrency;
        ds
    }

    /// Which datastore this is, and why.
    pub fn resolved(&self) -> &ResolvedDatastore {
        &self.settings.resolved
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.settings.resolved.backend
    }

    /// Where the files are read and written: the datastore directory, or the S3 cache.
    pub fn resolver(&self) -> &DatastorePathResolver {
        &self.resolver
    }

    /// Where this command's audit lines go.
    pub(crate) fn audit_file(&self) -> AuditFile {
        self.audit_file.clone()
    }

    /// The local root (`resolver().datastore_root()`).
    pub fn root(&self) -> &Path {
        self.resolver.datastore_root()
    }

    /// The datastore's lock.
    pub fn lock(&self) -> Arc<dyn DistributedLock> {
        self.place.lock(self.settings.timing, self.root())
    }

    /// The lock a writer of `scope` takes: a scoped lock for a scope of
    /// paths, the whole-datastore lock otherwise.
    pub(crate) fn lock_for(&self, scope: &LockScope) -> Arc<dyn DistributedLock> {
        let timing = self.settings.timing;
        match scope {
            LockScope::Paths(paths) => Arc::new(ScopedLock::new(
                self.place.whole_lock(timing, self.root()),
                self.place.scoped_records(timing, self.root()),
                paths.clone(),
            )),
            LockScope::Whole => self.lock(),
        }
    }

    /// The scoped lock records there are now, by location.
    pub async fn scoped_locks(&self) -> Result<Vec<(String, LockObservation)>, LockError> {
        let records = self.place.scoped_records(self.settings.timing, self.root());
        let mut listed: Vec<(String, LockObservation)> = records
            .list()
            .await?
            .into_iter()
            .map(|(lock, obs)| (lock.location(), obs))
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listed)
    }

    /// Removes the scoped lock records whose scope conflicts with `scope`
    /// (breakglass); returns what was removed.
    pub async fn force_release_scoped(
        &self,
        scope: &LockScope,
    ) -> Result<Vec<(String, LockObservation)>, LockError> {
        let records = self.place.scoped_records(self.settings.timing, self.root());
        let mut removed = Vec::new();
        for (lock, obs) in records.list().await? {
            if LockScope::held_by(&obs).conflicts(scope) {
                if let Some(gone) = lock.force_release().await? {
                    removed.push((lock.location(), gone));
                }
            }
        }
        removed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(removed)
    }

    /// Who holds the lock (without taking it): its location and what it holds.
    pub async fn lock_status(
        &self,
    ) -> Result<(String, Option<LockObservation>), crate::domain::lock::LockError> {
        let lock = self.lock();
        Ok((lock.location(), lock.inspect().await?))
    }

    /// What the next push of this cache would look at (S3 only).
    pub fn pending_push(&self) -> Option<Result<Pending, SyncError>> {
        self.cache_sync().map(|sync| sync.pending())
    }

    /// When this cache last pulled and pushed successfully (S3 only).
    pub fn sync_times(&self) -> Option<SyncTimes> {
        match self.place {
            Place::S3 { .. } => Some(SyncTimes::load(self.root())),
            Place::Filesystem(_) => None,
        }
    }

    /// The files and bytes under the cache (S3 only), swamp's own included.
    pub fn cache_size(&self) -> Option<(u64, u64)> {
        let Place::S3 { .. } = self.place else {
            return None;
        };
        let (mut files, mut bytes) = (0, 0);
        for entry in walkdir::WalkDir::new(self.root()).into_iter().flatten() {
            if let Ok(meta) = entry.metadata() {
                if meta.is_file() {
                    files += 1;
                    bytes += meta.len();
                }
            }
        }
        Some((files, bytes))
    }

    /// Local versions pulls kept as conflict copies (S3 only; remove each once resolved).
    pub fn conflicts(&self) -> Vec<String> {
        match self.place {
            Place::S3 { .. } => crate::infrastructure::s3::sync::list_conflicts(self.root()),
            Place::Filesystem(_) => Vec::new(),
        }
    }

    /// The cache sync of an S3 datastore (`None` for a filesystem one).
    fn cache_sync(&self) -> Option<CacheSync> {
        match &self.place {
            Place::S3 {
                config,
                store,
                index_seen,
            } => Some(
                self.sync_into(config, store, &self.resolver)
                    .seeing_index(index_seen.clone())
                    .with_transfer_bars(self.reporter.transfer_bars()),
            ),
            Place::Filesystem(_) => None,
        }
    }

    /// The sync of the S3 datastore `config` on `store` into the directory
    /// `resolver` roots (this machine's cache, or a private one).
    fn sync_into(
        &self,
        config: &S3Config,
        store: &Arc<dyn ObjectStore>,
        resolver: &DatastorePathResolver,
    ) -> CacheSync {
        CacheSync::new(
            store.clone(),
            config.prefix.clone(),
            resolver.clone(),
            self.settings.concurrency,
        )
        .owned_by(self.settings.repo_id.to_string())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Datastores over the in-memory store, for unit tests.

    use super::*;
    use crate::domain::config::ConfigSource;
    use crate::domain::path_resolver::DATASTORE_DIRS;
    use std::time::Duration;

    /// A reporter that keeps what it is told.
    #[derive(Default)]
    pub(crate) struct Kept(pub(crate) std::sync::Mutex<Vec<String>>);

    impl Reporter for Kept {
        fn notice(&self, notice: Notice) {
            if let Ok(mut kept) = self.0.lock() {
                kept.push(notice.to_string());
            }
        }

        fn second_signal(&self, _signal: i32) {}
    }

    /// Settings for `backend` in `repo_dir`, with a short TTL.
    pub(crate) fn settings(backend: Backend, repo_dir: &Path) -> DatastoreSettings {
        DatastoreSettings {
            resolved: ResolvedDatastore {
                backend,
                source: ConfigSource::RepoConfig,
                directories: DATASTORE_DIRS.iter().map(|d| d.to_string()).collect(),
                exclude: Vec::new(),
            },
            repo_dir: repo_dir.to_path_buf(),
            repo_id: Uuid::new_v4(),
            swamp_home: repo_dir.join("home"),
            timing: LockTiming {
                ttl: Duration::from_secs(30),
                timeout: Duration::from_secs(10),
            },
            concurrency: 4,
            s3: S3Settings::default(),
        }
    }

    /// A filesystem datastore at `root`.
    pub(crate) fn filesystem(settings: &DatastoreSettings, root: &Path) -> Datastore {
        Datastore::with_place(
            settings,
            Place::Filesystem(root.to_path_buf()),
            Arc::new(Kept::default()),
        )
        .unwrap()
    }

    /// An S3 datastore on `store` under `prefix`, its caches under `swamp_home`.
    pub(crate) fn s3(
        settings: &DatastoreSettings,
        store: Arc<dyn ObjectStore>,
        bucket: &str,
        prefix: &str,
        swamp_home: &Path,
    ) -> Datastore {
        let config = S3Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: None,
            endpoint: None,
        };
        let mut settings = settings.clone();
        settings.resolved.backend = Backend::S3(config.clone());
        settings.swamp_home = swamp_home.to_path_buf();
        Datastore::with_place(
            &settings,
            Place::S3 {
                config,
                store,
                index_seen: Arc::default(),
            },
            Arc::new(Kept::default()),
        )
        .unwrap()
    }
}
