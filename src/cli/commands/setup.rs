//! `swamp datastore setup filesystem|s3`: verify the target, copy and verify
//! every datastore file under the source's and the target's lock, switch
//! `.swamp.yaml` atomically, and only then remove the migrated source files. Works between
//! any two backends (filesystem ↔ S3, S3 → another prefix); an S3 source is
//! pulled into its cache first, so the files migrated are complete.

use crate::cli::commands::with_locks;
use crate::cli::context::{Connected, RepoContext};
use crate::cli::error::CliError;
use crate::cli::output::{human_bytes, Render};
use crate::domain::config::S3Config;
use crate::domain::config::{datastore_yaml, Backend, ConfigSource, DATASTORE_ENV};
use crate::infrastructure::migration::{
    copy_verified, datastore_files, foreign_files, prepare_target, remove_sources, MigrationError,
    MigrationReport, SourceFile,
};
use crate::infrastructure::repo_files::{load_config, save_document};
use crate::infrastructure::s3::cache::STATE_FILE;
use crate::infrastructure::s3::migrate::{delete_remote_sources, foreign_objects, upload_verified};
use crate::infrastructure::s3::probe::{probe_prefix, ConditionalSupport};
use serde_json::{json, Value};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Result of a setup.
pub struct SetupResult {
    from: Backend,
    to: Backend,
    migration: Option<MigrationReport>,
    conditional_writes: Option<ConditionalSupport>,
}

/// Writes `backend` into `.swamp.yaml`, keeping every other key.
fn switch_config(ctx: &RepoContext, backend: &Backend) -> Result<(), CliError> {
    let mut doc = ctx.config.document.clone();
    let previous = doc.get("datastore").cloned();
    doc.insert(
        "datastore".into(),
        datastore_yaml(backend, previous.as_ref()),
    );
    save_document(&ctx.repo_dir, &doc)?;
    Ok(())
}

/// Makes `path` absolute against the current directory, lexically cleaned.
pub fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    if path.as_os_str().is_empty() {
        return Err(CliError::Validation("the path is empty".into()));
    }
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|source| CliError::Io {
                context: "reading the current directory".into(),
                source,
            })?
            .join(path)
    };
    let mut clean = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    Ok(clean)
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

/// Checks that the target is usable and is not the source; for an S3
/// target, what the conditional-write probe found.
async fn verify_target(
    ctx: &RepoContext,
    target: &Connected,
) -> Result<Option<ConditionalSupport>, CliError> {
    let same = match (&ctx.connected, target) {
        (Connected::Filesystem(a), Connected::Filesystem(b)) => canonical(a) == canonical(b),
        (Connected::S3 { config: a, .. }, Connected::S3 { config: b, .. }) => {
            a.bucket == b.bucket && a.prefix == b.prefix
        }
        _ => false,
    };
    if same {
        return Err(CliError::Validation(format!(
            "the datastore already is {}; nothing to do",
            ctx.datastore.backend.describe()
        )));
    }
    match target {
        Connected::Filesystem(path) => {
            // Judge containment before creating anything.
            let source_root = canonical(ctx.resolver.datastore_root());
            let target = canonical(path);
            if ctx
                .datastore
                .directories
                .iter()
                .any(|d| target.starts_with(source_root.join(d)))
            {
                return Err(CliError::Validation(format!(
                    "target {} is inside the current datastore's directories",
                    path.display()
                )));
            }
            prepare_target(path)?;
            Ok(None)
        }
        Connected::S3 { config, store } => {
            store.head_bucket().await?;
            // Prove we may write there, and that the store honours the
            // conditions the lock relies on, before moving anything.
            let support = probe_prefix(store.as_ref(), &config.prefix).await?;
            if !support.is_sufficient() {
                return Err(CliError::UnsafeStore {
                    target: target_url(config),
                    missing: support.missing(),
                });
            }
            Ok(Some(support))
        }
    }
}

/// `s3://bucket/prefix` of an S3 config.
fn target_url(config: &S3Config) -> String {
    format!("s3://{}/{}", config.bucket, config.prefix)
}

/// Setup moves the datastore that `.swamp.yaml` names. Under an override the
/// datastore in use is another one, so a setup would migrate out of the
/// override and leave the configured datastore unreferenced.
fn refuse_under_override(ctx: &RepoContext) -> Result<(), CliError> {
    let how = match ctx.datastore.source {
        ConfigSource::Env => format!("{DATASTORE_ENV} is set"),
        ConfigSource::Flag => "--datastore is given".to_string(),
        ConfigSource::RepoConfig | ConfigSource::Default => return Ok(()),
    };
    Err(CliError::Validation(format!(
        "refusing to set up a datastore while {how}: setup moves the datastore .swamp.yaml names, not the override; unset {DATASTORE_ENV} and drop --datastore, then rerun"
    )))
}

/// Moves the datastore to `target` (or only switches the config).
pub async fn setup(
    ctx: &RepoContext,
    target: Backend,
    skip_migration: bool,
    merge: bool,
) -> Result<SetupResult, CliError> {
    refuse_under_override(ctx)?;
    let from = ctx.datastore.backend.clone();
    let target_conn = Connected::connect(&target).await?;
    let conditional_writes = verify_target(ctx, &target_conn).await?;
    if skip_migration {
        switch_config(ctx, &target)?;
        return Ok(SetupResult {
            from,
            to: target,
            migration: None,
            conditional_writes,
        });
    }
    let concurrency = ctx.concurrency;
    let new_backend = target.clone();
    // The target's lock too: a machine already using the target must not
    // write into it while files arrive (and its push would then fail).
    let target_lock = target_conn.lock(ctx.timing.ttl);
    let report = with_locks(ctx, vec![target_lock], |fence, _stop| async move {
        refuse_changed_config(ctx)?;
        if let Some(sync) = ctx.sync() {
            sync.pull(&fence).await?;
            // A narrower machine would move only its own part and report success.
            let left_out = sync.paths_left_out();
            if let Some(example) = left_out.first() {
                return Err(MigrationError::PartialSource {
                    count: left_out.len(),
                    example: example.clone(),
                }
                .into());
            }
        }
        let resolver = ctx.resolver.clone();
        let mut files = off_runtime(move || datastore_files(&resolver)).await?;
        if !merge {
            files = refuse_occupied(&target_conn, &new_backend, ctx, files).await?;
        }
        let report = match &target_conn {
            Connected::Filesystem(path) => {
                let (path, fence) = (path.clone(), fence.clone());
                off_runtime(move || copy_verified(files, &path, &fence)).await?
            }
            Connected::S3 { config, store } => {
                let owner = ctx.config.repo_id.to_string();
                upload_verified(files, store, &config.prefix, &owner, &fence, concurrency).await?
            }
        };
        fence.check()?;
        switch_config(ctx, &new_backend)?;
        // The config now names the verified target: clean the source.
        let cache = ctx.resolver.datastore_root();
        match &ctx.connected {
            Connected::Filesystem(root) => {
                let (done, root) = (report.clone(), root.clone());
                off_runtime(move || remove_sources(&done, &root)).await?
            }
            Connected::S3 { config, store } => {
                delete_remote_sources(&report, store, &config.prefix, concurrency).await?;
                let (done, root) = (report.clone(), cache.to_path_buf());
                off_runtime(move || remove_sources(&done, &root)).await?;
                let _ = std::fs::remove_file(cache.join(STATE_FILE));
            }
        }
        Ok::<_, CliError>(report)
    })
    .await?;
    Ok(SetupResult {
        from,
        to: target,
        migration: Some(report),
        conditional_writes,
    })
}

/// A setup that waited for the lock while another one ran would migrate out
/// of a datastore the config no longer names: refuse when `.swamp.yaml`
/// changed since this command read it.
fn refuse_changed_config(ctx: &RepoContext) -> Result<(), CliError> {
    let now = load_config(&ctx.repo_dir)?;
    if now.document != ctx.config.document {
        return Err(CliError::Refused(
            ".swamp.yaml changed while this setup waited for the lock (another setup ran first); check 'swamp datastore status' and rerun if still needed".into(),
        ));
    }
    Ok(())
}

/// Refuses a target that already holds files of another datastore (files
/// this one does not have): a migration would merge the two silently.
/// Returns `files` for the migration.
async fn refuse_occupied(
    target: &Connected,
    backend: &Backend,
    ctx: &RepoContext,
    files: Vec<SourceFile>,
) -> Result<Vec<SourceFile>, CliError> {
    let (files, foreign) = match target {
        Connected::Filesystem(path) => {
            let (path, directories) = (path.clone(), ctx.datastore.directories.clone());
            off_runtime(move || {
                let foreign = foreign_files(&path, &directories, &files)?;
                Ok((files, foreign))
            })
            .await?
        }
        Connected::S3 { config, store } => {
            let foreign = foreign_objects(store, &config.prefix, &files).await?;
            (files, foreign)
        }
    };
    if foreign.is_empty() {
        return Ok(files);
    }
    Err(MigrationError::Occupied {
        target: backend.describe(),
        foreign,
    }
    .into())
}

/// Runs blocking migration work (hashing, copying) on a blocking thread, so
/// the runtime, and with it the lock's heartbeat, keeps running.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MigrationError> + Send + 'static,
) -> Result<T, CliError> {
    crate::infrastructure::blocking::run(work)
        .await
        .map_err(CliError::from)
}

impl Render for SetupResult {
    fn to_json(&self) -> Value {
        let mut doc = json!({
            "from": self.from.describe(),
            "to": self.to.describe(),
            "type": self.to.type_name(),
            "migrated": self.migration.is_some(),
            "migration": self.migration,
        });
        if let Some(support) = &self.conditional_writes {
            doc["conditionalWrites"] = json!(support);
        }
        doc
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.conditional_writes.is_some_and(|c| !c.delete) {
            writeln!(
                out,
                "note: this store ignores If-Match on DELETE; releasing the lock still compares its token first (see design/datastores.md)"
            )?;
        }
        match &self.migration {
            None => writeln!(
                out,
                "Datastore switched to {} (no data migrated)",
                self.to.describe()
            ),
            Some(r) => {
                writeln!(
                    out,
                    "Migrated {} files ({}) in {} from {} to {}",
                    r.files,
                    human_bytes(r.bytes),
                    if r.directories.is_empty() {
                        "no directories".to_string()
                    } else {
                        r.directories.join(", ")
                    },
                    self.from.describe(),
                    self.to.describe()
                )?;
                if r.already_present > 0 {
                    writeln!(
                        out,
                        "{} files were already present and identical",
                        r.already_present
                    )?;
                }
                writeln!(out, "Datastore is now {}", self.to.describe())
            }
        }
    }
}
