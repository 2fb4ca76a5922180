//! `swamp datastore lock status` and `swamp datastore lock release --force`.

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::Render;
use crate::domain::lock::LockObservation;
use serde_json::{json, Value};
use std::io::{self, Write};

/// Result of `lock status`.
pub struct LockStatus {
    location: String,
    observation: Option<LockObservation>,
}

/// Reads the lock of the datastore in use (without taking it).
pub async fn status(ctx: &RepoContext) -> Result<LockStatus, CliError> {
    let (location, observation) = ctx.datastore.lock_status().await?;
    Ok(LockStatus {
        location,
        observation,
    })
}

/// JSON of a lock observation (shared with `datastore status`).
pub fn observation_json(obs: &Option<LockObservation>) -> Value {
    match obs {
        None => Value::Null,
        Some(o) => {
            let mut doc = json!(o);
            if let Some(info) = &o.info {
                let expires = info.ttl().saturating_sub(o.age).as_millis();
                doc["expiresInMs"] = json!(u64::try_from(expires).unwrap_or(u64::MAX));
            }
            doc
        }
    }
}

/// One line describing a lock observation.
pub fn observation_text(obs: &Option<LockObservation>) -> String {
    match obs {
        None => "no lock held".into(),
        Some(o) => {
            let state = if o.stale {
                "STALE (TTL passed; the next command takes it over)".to_string()
            } else {
                match &o.info {
                    Some(info) => format!(
                        "TTL {}s, last written {:.1}s ago",
                        info.ttl().as_secs_f64(),
                        o.age.as_secs_f64()
                    ),
                    None => format!("last written {:.1}s ago", o.age.as_secs_f64()),
                }
            };
            format!("held by {}; {state}", o.describe())
        }
    }
}

impl Render for LockStatus {
    fn to_json(&self) -> Value {
        json!({
            "location": self.location,
            "held": self.observation.is_some(),
            "lock": observation_json(&self.observation),
        })
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", observation_text(&self.observation))?;
        writeln!(out, "lock: {}", self.location)
    }
}

/// Result of `lock release --force`.
pub struct ReleaseResult {
    removed: Option<LockObservation>,
}

/// Removes the lock whoever holds it; refuses without `force`.
pub async fn release(ctx: &RepoContext, force: bool) -> Result<ReleaseResult, CliError> {
    let lock = ctx.datastore.lock();
    if !force {
        let current = lock.inspect().await?;
        return match current {
            None => Ok(ReleaseResult { removed: None }),
            Some(obs) => Err(CliError::Refused(format!(
                "refusing to release the lock {} without --force: a running command may hold it, and releasing it lets another command write at the same time; if that process is gone, rerun with --force",
                observation_text(&Some(obs))
            ))),
        };
    }
    Ok(ReleaseResult {
        removed: lock.force_release().await?,
    })
}

impl Render for ReleaseResult {
    fn to_json(&self) -> Value {
        json!({
            "released": self.removed.is_some(),
            "lock": observation_json(&self.removed),
        })
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        match &self.removed {
            None => writeln!(out, "no lock held; nothing released"),
            Some(obs) => writeln!(out, "Released the lock held by {}", obs.describe()),
        }
    }
}
