//! `swamp datastore setup filesystem|s3`: refuses under an override, then
//! hands the move to `Datastore::migrate_to` (verify the target, copy and
//! verify under both locks, switch `.swamp.yaml`, clean the source) and
//! renders what it did.

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::{human_bytes, Render};
use crate::domain::config::{Backend, ConfigSource, DATASTORE_ENV};
use crate::infrastructure::datastore::{ConditionalSupport, MigrateOptions};
use crate::infrastructure::migration::MigrationReport;
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

/// Setup moves the datastore that `.swamp.yaml` names. Under an override the
/// datastore in use is another one, so a setup would migrate out of the
/// override and leave the configured datastore unreferenced.
fn refuse_under_override(ctx: &RepoContext) -> Result<(), CliError> {
    let how = match ctx.datastore.resolved().source {
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
    options: MigrateOptions,
) -> Result<SetupResult, CliError> {
    refuse_under_override(ctx)?;
    let source = &ctx.datastore;
    let target_store = source.target(target.clone()).await?;
    let outcome = source
        .migrate_to(&target_store, options, &ctx.repo_dir, &ctx.config)
        .await?;
    Ok(SetupResult {
        from: source.backend().clone(),
        to: target,
        migration: outcome.report,
        conditional_writes: outcome.conditional_writes,
    })
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
