//! `swamp datastore setup filesystem --path P [--skip-migration]`: verify the
//! target, copy and verify every datastore file under the source's lock,
//! switch `.swamp.yaml` atomically, and only then remove the migrated source files.

use crate::cli::commands::with_guard;
use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::{human_bytes, Render};
use crate::domain::config::{datastore_yaml, Backend};
use crate::infrastructure::migration::{
    copy_verified, datastore_files, prepare_target, remove_sources, MigrationReport,
};
use crate::infrastructure::repo_files::save_document;
use serde_json::{json, Value};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Options of `setup filesystem`.
pub struct SetupFilesystem {
    /// Target directory (made absolute against the current directory).
    pub path: PathBuf,
    /// Only switch the config.
    pub skip_migration: bool,
}

/// Result of a setup.
pub struct SetupResult {
    from: Backend,
    to: Backend,
    migration: Option<MigrationReport>,
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

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    if path.as_os_str().is_empty() {
        return Err(CliError::Validation("--path is empty".into()));
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
    // Lexically drop `.` and resolve `..` so the stored path is clean.
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

/// Moves the datastore to a filesystem directory.
pub async fn setup_filesystem(
    ctx: &RepoContext,
    opts: SetupFilesystem,
) -> Result<SetupResult, CliError> {
    let target = absolute(&opts.path)?;
    let to = Backend::Filesystem {
        path: target.clone(),
    };
    let from = ctx.datastore.backend.clone();
    let Backend::Filesystem { path: source_root } = &from else {
        return Err(CliError::Validation(
            "migrating from an S3 datastore is not supported by this build".into(),
        ));
    };
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    if canonical(source_root) == canonical(&target) {
        return Err(CliError::Validation(format!(
            "the datastore already is {}; nothing to do",
            target.display()
        )));
    }
    prepare_target(&target)?;
    let target_canonical = canonical(&target);
    let source_canonical = canonical(source_root);
    if ctx
        .datastore
        .directories
        .iter()
        .any(|d| target_canonical.starts_with(source_canonical.join(d)))
    {
        return Err(CliError::Validation(format!(
            "target {} is inside the current datastore's directories",
            target.display()
        )));
    }
    if opts.skip_migration {
        switch_config(ctx, &to)?;
        return Ok(SetupResult {
            from,
            to,
            migration: None,
        });
    }
    let source_root = source_root.clone();
    let report = with_guard(ctx, |fence, _stop| async move {
        let files = datastore_files(&ctx.resolver)?;
        let report = copy_verified(files, &target, &fence)?;
        fence.check()?;
        switch_config(ctx, &to)?;
        remove_sources(&report, &source_root)?;
        Ok(report)
    })
    .await?;
    Ok(SetupResult {
        from,
        to: Backend::Filesystem {
            path: absolute(&opts.path)?,
        },
        migration: Some(report),
    })
}

impl Render for SetupResult {
    fn to_json(&self) -> Value {
        json!({
            "from": self.from.describe(),
            "to": self.to.describe(),
            "type": self.to.type_name(),
            "migrated": self.migration.is_some(),
            "migration": self.migration,
        })
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
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
