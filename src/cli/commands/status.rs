//! `swamp datastore status`: which datastore is in use and why, whether it is
//! healthy (with latency; for S3 also whether the store honours the
//! conditional writes the lock relies on), its directories and excludes, and
//! who holds its lock. It never takes the lock.

use crate::cli::commands::lock::{observation_json, observation_text};
use crate::cli::context::{Connected, RepoContext};
use crate::cli::error::CliError;
use crate::cli::output::Render;
use crate::domain::config::{Backend, ConfigSource};
use crate::domain::lock::LockObservation;
use crate::infrastructure::s3::probe::{probe_prefix, ConditionalSupport};
use crate::infrastructure::s3::store::ObjectStore;
use crate::infrastructure::s3::sync::{list_conflicts, CONFLICTS_DIR};
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
    conditional_writes: Option<ConditionalSupport>,
    conflicts: Vec<String>,
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
    let mut conditional_writes = None;
    let mut health = match &ctx.connected {
        Connected::Filesystem(path) => filesystem_health(path),
        Connected::S3 { store, .. } => s3_health(store.as_ref()).await,
    };
    if let (Connected::S3 { store, config }, true) = (&ctx.connected, health.healthy) {
        // A store that ignores conditional writes answers, but its lock
        // cannot keep two writers apart: that is not healthy.
        match probe_prefix(store.as_ref(), &config.prefix).await {
            Ok(support) => {
                if !support.is_sufficient() {
                    health.healthy = false;
                    health.message = format!(
                        "bucket reachable, but it ignores {}: the lock cannot keep writers apart",
                        support.missing().join(" and ")
                    );
                }
                conditional_writes = Some(support);
            }
            // Credentials that may only read (common in CI) cannot probe:
            // say so, without calling the store unhealthy.
            Err(e) => {
                health.message = format!("{}; conditional writes not probed ({e})", health.message);
            }
        }
    }
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
        conditional_writes,
        conflicts: match &ctx.connected {
            Connected::S3 { .. } => list_conflicts(ctx.resolver.datastore_root()),
            Connected::Filesystem(_) => Vec::new(),
        },
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
