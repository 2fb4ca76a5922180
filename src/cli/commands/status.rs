//! `swamp datastore status`: which datastore is in use and why, whether it is
//! healthy (with latency), its directories and excludes, and who holds its lock.
//! It never takes the lock.

use crate::cli::commands::lock::{observation_json, observation_text};
use crate::cli::context::{Connected, RepoContext};
use crate::cli::error::CliError;
use crate::cli::output::Render;
use crate::domain::config::{Backend, ConfigSource};
use crate::domain::lock::LockObservation;
use crate::infrastructure::s3::store::ObjectStore;
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

/// Whether the datastore answered, and how fast.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Reachable and writable.
    pub healthy: bool,
    /// Time the check took.
    pub latency_ms: f64,
    /// What was found.
    pub message: String,
}

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
}

/// Checks a filesystem datastore directory: exists, is a directory, writable.
pub fn filesystem_health(path: &Path) -> Health {
    let started = Instant::now();
    let outcome = (|| -> Result<String, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot access: {e}"))?;
        if !meta.is_dir() {
            return Err("not a directory".into());
        }
        let probe = path.join(format!(
            ".swamp-tmp-health-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&probe, b"ok").map_err(|e| format!("not writable: {e}"))?;
        let _ = std::fs::remove_file(&probe);
        Ok("reachable and writable".into())
    })();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(message) => Health {
            healthy: true,
            latency_ms,
            message,
        },
        Err(message) => Health {
            healthy: false,
            latency_ms,
            message,
        },
    }
}

/// Checks an S3 datastore: HeadBucket, timed.
pub async fn s3_health(store: &dyn ObjectStore) -> Health {
    let started = Instant::now();
    let outcome = store.head_bucket().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(()) => Health {
            healthy: true,
            latency_ms,
            message: "bucket reachable".into(),
        },
        Err(e) => Health {
            healthy: false,
            latency_ms,
            message: e.to_string(),
        },
    }
}

/// Reports the datastore in use.
pub async fn status(ctx: &RepoContext) -> Result<StatusResult, CliError> {
    let health = match &ctx.connected {
        Connected::Filesystem(path) => filesystem_health(path),
        Connected::S3 { store, .. } => s3_health(store.as_ref()).await,
    };
    // An unreachable store has no readable lock; the health line says why.
    let lock = if health.healthy {
        ctx.lock().inspect().await?
    } else {
        None
    };
    Ok(StatusResult {
        backend: ctx.datastore.backend.clone(),
        local_root: ctx.resolver.datastore_root().to_path_buf(),
        source: ctx.datastore.source,
        repo_id: ctx.config.repo_id,
        health,
        directories: ctx.datastore.directories.clone(),
        exclude: ctx.datastore.exclude.clone(),
        lock,
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
        writeln!(out, "Directories: {}", self.directories.join(", "))?;
        if !self.exclude.is_empty() {
            writeln!(out, "Exclude:     {}", self.exclude.join(", "))?;
        }
        writeln!(out, "Lock:        {}", observation_text(&self.lock))
    }
}
