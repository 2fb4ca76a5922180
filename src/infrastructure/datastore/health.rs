//! Whether a datastore can be used now, and how fast it answered.
//!
//! A filesystem datastore is healthy when its directory exists and takes a
//! write. An S3 datastore is healthy when HeadBucket answers and the store
//! honours the conditional writes the lock relies on: a store that ignores
//! them answers, but its lock cannot keep two writers apart. Credentials
//! that may only read (common in CI) cannot probe; that is said, without
//! calling the store unhealthy.

use super::{Datastore, Place};
use crate::infrastructure::s3::probe::{probe_prefix, ConditionalSupport};
use crate::infrastructure::s3::probe_record;
use crate::infrastructure::s3::store::ObjectStore;
use serde::Serialize;
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

/// A health check with, for S3, what the conditional-write probe found.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// The verdict.
    pub health: Health,
    /// Which conditions the store honoured (S3, when probed).
    pub conditional_writes: Option<ConditionalSupport>,
}

impl Datastore {
    /// Checks the datastore (never takes the lock).
    pub async fn health(&self) -> HealthReport {
        match &self.place {
            Place::Filesystem(path) => HealthReport {
                health: filesystem_health(path),
                conditional_writes: None,
            },
            Place::S3 { config, store, .. } => {
                let report = s3_health(store.as_ref(), &config.prefix).await;
                if let Some(support) = report.conditional_writes {
                    probe_record::remember(self.root(), config, support);
                }
                report
            }
        }
    }
}

/// Times `check`, turning its outcome into a `Health`.
fn timed(check: impl FnOnce() -> Result<String, String>) -> Health {
    let started = Instant::now();
    let outcome = check();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (healthy, message) = match outcome {
        Ok(message) => (true, message),
        Err(message) => (false, message),
    };
    Health {
        healthy,
        latency_ms,
        message,
    }
}

/// Checks a filesystem datastore directory: exists, is a directory, writable.
fn filesystem_health(path: &Path) -> Health {
    timed(|| {
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
    })
}

/// Checks an S3 datastore: HeadBucket (timed), then the conditional-write probe.
async fn s3_health(store: &dyn ObjectStore, prefix: &str) -> HealthReport {
    let started = Instant::now();
    let outcome = store.head_bucket().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut health = match outcome {
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
    };
    if !health.healthy {
        return HealthReport {
            health,
            conditional_writes: None,
        };
    }
    let conditional_writes = match probe_prefix(store, prefix).await {
        Ok(support) => {
            if !support.is_sufficient() {
                health.healthy = false;
                health.message = format!(
                    "bucket reachable, but it ignores {}: the lock cannot keep writers apart",
                    support.missing().join(" and ")
                );
            }
            Some(support)
        }
        Err(e) => {
            health.message = format!("{}; conditional writes not probed ({e})", health.message);
            None
        }
    };
    HealthReport {
        health,
        conditional_writes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filesystem_datastore_is_healthy_when_it_takes_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let health = filesystem_health(dir.path());
        assert!(health.healthy, "{health:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = filesystem_health(&dir.path().join("absent"));
        assert!(!missing.healthy);
        assert!(missing.message.starts_with("cannot access"), "{missing:?}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(filesystem_health(&file).message, "not a directory");
    }
}
