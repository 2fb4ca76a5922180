//! Moving a datastore to another backend (`swamp datastore setup`), in four
//! steps that read top to bottom in `migrate_to`:
//!
//! 1. verify the target: not the source, not inside it, usable — for S3,
//!    reachable and honouring the conditional writes the lock relies on;
//! 2. under the source's and the target's lock, copy (filesystem) or upload
//!    (S3) every datastore file with verification; an S3 source is pulled
//!    first, so the files moved are complete;
//! 3. switch `.swamp.yaml` atomically to the verified target;
//! 4. only then remove the migrated source files.
//!
//! At every instant one complete copy is the one the config names. Works
//! between any two backends (filesystem ↔ S3, S3 → another prefix).

use super::{Datastore, Place};
use crate::domain::config::{datastore_yaml, Backend, ConfigError, RepoConfig, ResolvedDatastore};
use crate::domain::lock::LockError;
use crate::infrastructure::migration::{
    copy_verified, datastore_files, foreign_files, prepare_target, remove_sources, MigrationError,
    MigrationReport, SourceFile,
};
use crate::infrastructure::repo_files::{load_config, save_document};
use crate::infrastructure::s3::cache::STATE_FILE;
use crate::infrastructure::s3::migrate::{delete_remote_sources, foreign_objects, upload_verified};
use crate::infrastructure::s3::probe::{probe_prefix, ConditionalSupport};
use crate::infrastructure::s3::probe_record;
use crate::infrastructure::s3::store::StoreError;
use crate::infrastructure::s3::sync::SyncError;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// How to migrate.
#[derive(Debug, Clone, Copy, Default)]
pub struct MigrateOptions {
    /// Only switch `.swamp.yaml`; move no data.
    pub skip_migration: bool,
    /// Combine with a datastore the target already holds.
    pub merge: bool,
}

/// What a setup did.
#[derive(Debug, Clone)]
pub struct MigrationOutcome {
    /// What moved (`None` when only the config was switched).
    pub report: Option<MigrationReport>,
    /// What the target's conditional-write probe found (S3 targets).
    pub conditional_writes: Option<ConditionalSupport>,
}

/// Why a setup did not happen (or did not finish).
#[derive(Debug, Error)]
pub enum SetupError {
    /// The target is the datastore in use.
    #[error("the datastore already is {0}; nothing to do")]
    SameDatastore(String),
    /// The target lies inside the source's directories.
    #[error("target {} is inside the current datastore's directories", .0.display())]
    TargetInside(PathBuf),
    /// The target store ignores conditions the lock depends on.
    #[error("{target} does not honour conditional writes (it ignored {}), so its lock could not keep two writers apart; use a store that supports S3 conditional writes (AWS S3, MinIO, SeaweedFS, Ceph RGW)", missing.join(" and "))]
    UnsafeStore {
        /// `s3://bucket/prefix`.
        target: String,
        /// The conditions it ignored.
        missing: Vec<&'static str>,
    },
    /// Another setup switched the config while this one waited for the lock.
    #[error(".swamp.yaml changed while this setup waited for the lock (another setup ran first); check 'swamp datastore status' and rerun if still needed")]
    ConfigChanged,
    /// Moving the files failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// Pulling the S3 source failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The target store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or switching `.swamp.yaml` failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The lock was not acquired, or lost.
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl Datastore {
    /// `backend` opened as a migration target of this datastore (same repo,
    /// directories, excludes and lock timing).
    pub async fn target(&self, backend: Backend) -> Result<Datastore, ConfigError> {
        let place = Place::connect(&backend, &self.settings.s3).await;
        let mut settings = self.settings.clone();
        settings.resolved = ResolvedDatastore {
            backend,
            ..settings.resolved
        };
        Datastore::with_place(&settings, place, self.reporter.clone())
    }

    /// Moves this datastore to `target` (or, with `skip_migration`, only
    /// switches the config `repo_dir`'s `.swamp.yaml`, read as `config`).
    pub async fn migrate_to(
        &self,
        target: &Datastore,
        options: MigrateOptions,
        repo_dir: &Path,
        config: &RepoConfig,
    ) -> Result<MigrationOutcome, SetupError> {
        let conditional_writes = self.verify_target(target).await?;
        if options.skip_migration {
            switch_config(repo_dir, config, target.backend())?;
            return Ok(MigrationOutcome {
                report: None,
                conditional_writes,
            });
        }
        // The target's lock too: a machine already using the target must not
        // write into it while files arrive (and its push would then fail).
        let report = self
            .locked_by(
                vec![self.lock(), target.lock()],
                |fence, _stop| async move {
                    refuse_changed_config(repo_dir, config)?;
                    let files = self.files_to_migrate(&fence).await?;
                    let files = if options.merge {
                        files
                    } else {
                        target.refuse_occupied(files).await?
                    };
                    let report = target
                        .receive(files, &fence, &self.settings.repo_id)
                        .await?;
                    fence.check()?;
                    switch_config(repo_dir, config, target.backend())?;
                    // The config now names the verified target: clean the source.
                    self.remove_migrated(&report).await?;
                    Ok::<_, SetupError>(report)
                },
            )
            .await?;
        Ok(MigrationOutcome {
            report: Some(report),
            conditional_writes,
        })
    }

    /// Checks that `target` is usable and is not this datastore; for an S3
    /// target, what the conditional-write probe found.
    async fn verify_target(
        &self,
        target: &Datastore,
    ) -> Result<Option<ConditionalSupport>, SetupError> {
        let same = match (&self.place, &target.place) {
            (Place::Filesystem(a), Place::Filesystem(b)) => canonical(a) == canonical(b),
            (Place::S3 { config: a, .. }, Place::S3 { config: b, .. }) => {
                a.bucket == b.bucket && a.prefix == b.prefix
            }
            _ => false,
        };
        if same {
            return Err(SetupError::SameDatastore(self.backend().describe()));
        }
        match &target.place {
            Place::Filesystem(path) => {
                // Judge containment before creating anything.
                let source_root = canonical(self.root());
                let inside = canonical(path);
                if self
                    .settings
                    .resolved
                    .directories
                    .iter()
                    .any(|d| inside.starts_with(source_root.join(d)))
                {
                    return Err(SetupError::TargetInside(path.clone()));
                }
                prepare_target(path)?;
                Ok(None)
            }
            Place::S3 { config, store, .. } => {
                store.head_bucket().await?;
                // Prove we may write there, and that the store honours the
                // conditions the lock relies on, before moving anything.
                let support = probe_prefix(store.as_ref(), &config.prefix).await?;
                probe_record::remember(target.root(), config, support);
                if !support.is_sufficient() {
                    return Err(SetupError::UnsafeStore {
                        target: format!("s3://{}/{}", config.bucket, config.prefix),
                        missing: support.missing(),
                    });
                }
                Ok(Some(support))
            }
        }
    }

    /// Every file this datastore holds, complete: an S3 source is pulled
    /// first, and one whose settings leave out some of its files is refused
    /// (a narrower machine would move only its own part and report success).
    async fn files_to_migrate(
        &self,
        fence: &crate::infrastructure::coordinator::LeaseFence,
    ) -> Result<Vec<SourceFile>, SetupError> {
        if let Some(sync) = self.cache_sync() {
            sync.pull(fence).await?;
            let left_out = sync.paths_left_out();
            if let Some(example) = left_out.first() {
                return Err(MigrationError::PartialSource {
                    count: left_out.len(),
                    example: example.clone(),
                }
                .into());
            }
        }
        let resolver = self.resolver.clone();
        Ok(off_runtime(move || datastore_files(&resolver)).await?)
    }

    /// Refuses a target that already holds files of another datastore (files
    /// the migrating one does not have): a migration would merge the two
    /// silently. Returns `files` for the migration.
    async fn refuse_occupied(
        &self,
        files: Vec<SourceFile>,
    ) -> Result<Vec<SourceFile>, MigrationError> {
        let (files, foreign) = match &self.place {
            Place::Filesystem(path) => {
                let (path, directories) =
                    (path.clone(), self.settings.resolved.directories.clone());
                off_runtime(move || {
                    let foreign = foreign_files(&path, &directories, &files)?;
                    Ok((files, foreign))
                })
                .await?
            }
            Place::S3 { config, store, .. } => {
                let foreign = foreign_objects(store, &config.prefix, &files).await?;
                (files, foreign)
            }
        };
        if foreign.is_empty() {
            return Ok(files);
        }
        Err(MigrationError::Occupied {
            target: self.backend().describe(),
            foreign,
        })
    }

    /// Copies or uploads `files` into this (target) datastore, verifying each.
    async fn receive(
        &self,
        files: Vec<SourceFile>,
        fence: &std::sync::Arc<crate::infrastructure::coordinator::LeaseFence>,
        owner: &uuid::Uuid,
    ) -> Result<MigrationReport, MigrationError> {
        match &self.place {
            Place::Filesystem(path) => {
                let (path, fence) = (path.clone(), fence.clone());
                off_runtime(move || copy_verified(files, &path, &fence)).await
            }
            Place::S3 { config, store, .. } => {
                upload_verified(
                    files,
                    store,
                    &config.prefix,
                    &owner.to_string(),
                    fence,
                    self.settings.concurrency,
                )
                .await
            }
        }
    }

    /// Removes what `report` migrated from this (source) datastore.
    async fn remove_migrated(&self, report: &MigrationReport) -> Result<(), MigrationError> {
        let (done, root) = (report.clone(), self.root().to_path_buf());
        match &self.place {
            Place::Filesystem(_) => off_runtime(move || remove_sources(&done, &root)).await,
            Place::S3 { config, store, .. } => {
                delete_remote_sources(report, store, &config.prefix, self.settings.concurrency)
                    .await?;
                let state = root.join(STATE_FILE);
                off_runtime(move || remove_sources(&done, &root)).await?;
                // The cache no longer mirrors anything; a missing state is fine.
                let _ = std::fs::remove_file(state);
                Ok(())
            }
        }
    }
}

/// Writes `backend` into `.swamp.yaml`, keeping every other key.
fn switch_config(
    repo_dir: &Path,
    config: &RepoConfig,
    backend: &Backend,
) -> Result<(), ConfigError> {
    let mut doc = config.document.clone();
    let previous = doc.get("datastore").cloned();
    match datastore_yaml(backend, previous.as_ref(), repo_dir) {
        Some(section) => doc.insert("datastore".into(), section),
        None => doc.remove("datastore"),
    };
    save_document(repo_dir, &doc)
}

/// A setup that waited for the lock while another one ran would migrate out
/// of a datastore the config no longer names: refuse when `.swamp.yaml`
/// changed since this command read it.
fn refuse_changed_config(repo_dir: &Path, config: &RepoConfig) -> Result<(), SetupError> {
    if load_config(repo_dir)?.document != config.document {
        return Err(SetupError::ConfigChanged);
    }
    Ok(())
}

/// `p` with symlinks resolved as far as it exists (the rest appended as is).
fn canonical(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// Runs blocking migration work (hashing, copying) on a blocking thread, so
/// the runtime, and with it the lock's heartbeat, keeps running.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MigrationError> + Send + 'static,
) -> Result<T, MigrationError> {
    crate::infrastructure::blocking::run(work).await
}

#[cfg(test)]
mod tests;
