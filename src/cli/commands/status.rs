//! `swamp datastore status`: which datastore is in use and why, whether it is
//! healthy (with latency; for S3 also whether the store honours the
//! conditional writes the lock relies on), its directories and excludes, and
//! who holds its lock and every scoped lock; on S3 also the cache (path,
//! files, bytes), its last successful pull and push, what the next push
//! would look at, and its conflict copies. It never takes the lock, and it
//! exits 1 when the datastore is unhealthy.

use crate::cli::commands::lock::{observation_json, observation_text, scoped_json};
use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::human_bytes;
use crate::cli::output::Render;
use crate::domain::config::{Backend, ConfigSource};
use crate::domain::lock::LockObservation;
use crate::infrastructure::datastore::{
    ConditionalSupport, Health, HealthReport, Pending, SyncTimes, CONFLICTS_DIR,
};
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
    scoped: Vec<(String, LockObservation)>,
    /// S3: files and bytes in the cache.
    cache_size: Option<(u64, u64)>,
    sync_times: Option<SyncTimes>,
    pending: Option<Pending>,
}

impl StatusResult {
    /// 0 when healthy, else 1 (the report still renders).
    pub fn exit_code(&self) -> i32 {
        if self.health.healthy {
            0
        } else {
            1
        }
    }
}

/// Reports the datastore in use.
pub async fn status(ctx: &RepoContext) -> Result<StatusResult, CliError> {
    let datastore = &ctx.datastore;
    let HealthReport {
        health,
        conditional_writes,
    } = datastore.health().await;
    // An unreachable store has no readable lock; the health line says why.
    let (lock, scoped) = if health.healthy {
        (
            datastore.lock_status().await?.1,
            datastore.scoped_locks().await?,
        )
    } else {
        (None, Vec::new())
    };
    let pending = match datastore.pending_push() {
        Some(Ok(pending)) => Some(pending),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "could not scan the cache for unpushed changes");
            None
        }
        None => None,
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
        scoped,
        cache_size: datastore.cache_size(),
        sync_times: datastore.sync_times(),
        pending,
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
            "scoped": scoped_json(&self.scoped),
        });
        match &self.backend {
            Backend::Filesystem { path } => doc["path"] = json!(path),
            Backend::S3(s3) => {
                doc["s3"] = json!(s3);
                doc["cachePath"] = json!(self.local_root);
                doc["conditionalWrites"] = json!(self.conditional_writes);
                doc["conflicts"] = json!(self.conflicts);
                let (files, bytes) = self.cache_size.unwrap_or_default();
                doc["cache"] = json!({ "path": self.local_root, "files": files, "bytes": bytes });
                let times = self.sync_times.clone().unwrap_or_default();
                doc["lastPull"] = json!(times.last_pull);
                doc["lastPush"] = json!(times.last_push);
                doc["pending"] = json!(self.pending);
            }
        }
        doc
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Datastore:   {}", self.backend.describe())?;
        writeln!(out, "Type:        {}", self.backend.type_name())?;
        writeln!(out, "Source:      {}", self.source)?;
        if let Backend::S3(_) = &self.backend {
            let (files, bytes) = self.cache_size.unwrap_or_default();
            writeln!(
                out,
                "Cache:       {} ({files} files, {})",
                self.local_root.display(),
                human_bytes(bytes)
            )?;
            let times = self.sync_times.clone().unwrap_or_default();
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("never".to_string(), |t| {
                    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                })
            };
            writeln!(out, "Last pull:   {}", when(times.last_pull))?;
            writeln!(out, "Last push:   {}", when(times.last_push))?;
            if let Some(p) = &self.pending {
                writeln!(
                    out,
                    "Unpushed:    {} changed, {} deleted{}",
                    p.changed,
                    p.deleted,
                    if p.unsyncable > 0 {
                        format!(", {} that cannot sync", p.unsyncable)
                    } else {
                        String::new()
                    }
                )?;
            }
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
        writeln!(out, "Lock:        {}", observation_text(&self.lock))?;
        for (location, obs) in &self.scoped {
            writeln!(
                out,
                "Scoped lock: {} ({location})",
                observation_text(&Some(obs.clone()))
            )?;
        }
        Ok(())
    }
}
