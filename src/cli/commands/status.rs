//! `swamp datastore status`: which datastore is in use and why, whether it is
//! healthy (with latency; for S3 also whether the store honours the
//! conditional writes the lock relies on), its directories and excludes, and
//! who holds its lock. It never takes the lock.

use crate::cli::commands::lock::{observation_json, observation_text};
use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::Render;
use crate::domain::config::{Backend, ConfigSource};
use crate::domain::lock::LockObservation;
use crate::infrastructure::datastore::{ConditionalSupport, Health, HealthReport, CONFLICTS_DIR};
use serde_json::{json, Value};
use std::io::{self, Write};

/// Result of `datastore status`.
pub struct StatusResult {
    backend: Backend,
    local_root: std::path::PathBuf,
    source: ConfigSource,
    repo_id: uuid::Uuid,
    health: Health,
    directories: Vec<String>,
    exclude: Vec<String>,
    lock: Option<LockObservation>,
    conditional_writes: Option<ConditionalSupport>,
    conflicts: Vec<String>,
}

/// Reports the datastore in use.
pub async fn status(ctx: &RepoContext) -> Result<StatusResult, CliError> {
    let datastore = &ctx.datastore;
    let HealthReport {
        health,
        conditional_writes,
    } = datastore.health().await;
    // An unreachable store has no readable lock; the health line says why.
    let lock = if health.healthy {
        datastore.lock_status().await?.1
    } else {
        None
    };
    let resolved = datastore.resolved();
    Ok(StatusResult {
        backend: resolved.backend.clone(),
        local_root: datastore.root().to_path_buf(),
        source: resolved.source,
        repo_id: ctx.config.repo_id,
        health,
        directories: resolved.directories.clone(),
        exclude: resolved.exclude.clone(),
        lock,
        conditional_writes,
        conflicts: datastore.conflicts(),
    })
}

impl Render for StatusResult {
    fn to_json(&self) -> Value {
        let mut doc = json!({
            "type": self.backend.type_name(),
            "datastore": self.backend.describe(),
            "source": self.source,
            "repoId": self.repo_id,
            "health": self.health,
            "directories": self.directories,
            "exclude": self.exclude,
            "lock": observation_json(&self.lock),
        });
        match &self.backend {
            Backend::Filesystem { path } => doc["path"] = json!(path),
            Backend::S3(s3) => {
                doc["s3"] = json!(s3);
                doc["cachePath"] = json!(self.local_root);
                doc["conditionalWrites"] = json!(self.conditional_writes);
                doc["conflicts"] = json!(self.conflicts);
            }
        }
        doc
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Datastore:   {}", self.backend.describe())?;
        writeln!(out, "Type:        {}", self.backend.type_name())?;
        writeln!(out, "Source:      {}", self.source)?;
        if let Backend::S3(_) = &self.backend {
            writeln!(out, "Cache:       {}", self.local_root.display())?;
        }
        writeln!(
            out,
            "Health:      {} ({}, {:.1} ms)",
            if self.health.healthy {
                "healthy"
            } else {
                "UNHEALTHY"
            },
            self.health.message,
            self.health.latency_ms
        )?;
        if let Some(c) = &self.conditional_writes {
            let missing = c.missing();
            writeln!(
                out,
                "Conditions:  {}",
                if missing.is_empty() {
                    "conditional writes honoured (create, update, delete)".to_string()
                } else {
                    format!("ignored: {}", missing.join(", "))
                }
            )?;
        }
        if !self.conflicts.is_empty() {
            writeln!(
                out,
                "Conflicts:   {} local versions kept under {}: {} (remove each once resolved)",
                self.conflicts.len(),
                self.local_root.join(CONFLICTS_DIR).display(),
                self.conflicts.join(", ")
            )?;
        }
        writeln!(out, "Directories: {}", self.directories.join(", "))?;
        if !self.exclude.is_empty() {
            writeln!(out, "Exclude:     {}", self.exclude.join(", "))?;
        }
        writeln!(out, "Lock:        {}", observation_text(&self.lock))
    }
}
