//! `swamp datastore lock status` (the whole-datastore lock and every scoped
//! one) and `swamp datastore lock release --force [--scope PATH...]`.

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::Render;
use crate::domain::lock::LockObservation;
use crate::domain::lock_scope::LockScope;
use crate::domain::relative_path::SafeRelativePath;
use serde_json::{json, Value};
use std::io::{self, Write};

/// Result of `lock status`.
pub struct LockStatus {
    location: String,
    observation: Option<LockObservation>,
    scoped: Vec<(String, LockObservation)>,
}

/// Reads the locks of the datastore in use (without taking them): the
/// whole-datastore lock and every scoped one.
pub async fn status(ctx: &RepoContext) -> Result<LockStatus, CliError> {
    let (location, observation) = ctx.datastore.lock_status().await?;
    let scoped = ctx.datastore.scoped_locks().await?;
    Ok(LockStatus {
        location,
        observation,
        scoped,
    })
}

/// JSON of scoped records: location, scope and the observation.
pub fn scoped_json(records: &[(String, LockObservation)]) -> Value {
    records
        .iter()
        .map(|(location, obs)| {
            let mut doc = observation_json(&Some(obs.clone()));
            doc["location"] = json!(location);
            doc["scope"] = json!(obs.info.as_ref().and_then(|i| i.scope.clone()));
            doc
        })
        .collect()
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
            "scoped": scoped_json(&self.scoped),
        })
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", observation_text(&self.observation))?;
        writeln!(out, "lock: {}", self.location)?;
        for (location, obs) in &self.scoped {
            let held = observation_text(&Some(obs.clone()));
            writeln!(out, "scoped lock {held}")?;
            writeln!(out, "  record: {location}")?;
        }
        Ok(())
    }
}

/// Result of `lock release --force`.
pub struct ReleaseResult {
    removed: Option<LockObservation>,
    /// With `--scope`: the scoped records removed.
    scoped: Option<Vec<(String, LockObservation)>>,
}

/// Removes the lock whoever holds it — the whole-datastore lock, or with
/// `scope` the scoped locks conflicting with those paths; refuses without
/// `force`.
pub async fn release(
    ctx: &RepoContext,
    force: bool,
    scope: &[String],
) -> Result<ReleaseResult, CliError> {
    if !scope.is_empty() {
        return release_scoped(ctx, force, scope).await;
    }
    let lock = ctx.datastore.lock();
    if !force {
        let current = lock.inspect().await?;
        return match current {
            None => Ok(ReleaseResult {
                removed: None,
                scoped: None,
            }),
            Some(obs) => Err(CliError::Refused(format!(
                "refusing to release the lock {} without --force: a running command may hold it, and releasing it lets another command write at the same time; if that process is gone, rerun with --force",
                observation_text(&Some(obs))
            ))),
        };
    }
    Ok(ReleaseResult {
        removed: lock.force_release().await?,
        scoped: None,
    })
}

/// The paths of `--scope` arguments, each a safe datastore-relative path
/// (a trailing `/` ignored).
pub(crate) fn scope_paths(raw: &[String]) -> Result<Vec<SafeRelativePath>, CliError> {
    raw.iter()
        .map(|path| {
            SafeRelativePath::parse(path.trim_end_matches('/'))
                .map_err(|e| CliError::Validation(format!("--scope {path:?}: {e}")))
        })
        .collect()
}

async fn release_scoped(
    ctx: &RepoContext,
    force: bool,
    raw: &[String],
) -> Result<ReleaseResult, CliError> {
    let scope = LockScope::Paths(
        scope_paths(raw)?
            .into_iter()
            .map(SafeRelativePath::into_string)
            .collect(),
    );
    if !force {
        let held: Vec<String> = ctx
            .datastore
            .scoped_locks()
            .await?
            .iter()
            .filter(|(_, obs)| LockScope::held_by(obs).conflicts(&scope))
            .map(|(_, obs)| observation_text(&Some(obs.clone())))
            .collect();
        if held.is_empty() {
            return Ok(ReleaseResult {
                removed: None,
                scoped: Some(Vec::new()),
            });
        }
        return Err(CliError::Refused(format!(
            "refusing to release the scoped locks {} without --force: a running command may hold them, and releasing them lets another command write the same paths at the same time; if those processes are gone, rerun with --force",
            held.join("; ")
        )));
    }
    Ok(ReleaseResult {
        removed: None,
        scoped: Some(ctx.datastore.force_release_scoped(&scope).await?),
    })
}

impl Render for ReleaseResult {
    fn to_json(&self) -> Value {
        match &self.scoped {
            None => json!({
                "released": self.removed.is_some(),
                "lock": observation_json(&self.removed),
            }),
            Some(records) => json!({
                "released": !records.is_empty(),
                "scoped": scoped_json(records),
            }),
        }
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        match (&self.scoped, &self.removed) {
            (Some(records), _) if records.is_empty() => {
                writeln!(out, "no scoped lock held there; nothing released")
            }
            (Some(records), _) => {
                for (_, obs) in records {
                    writeln!(out, "Released the scoped lock held by {}", obs.describe())?;
                }
                Ok(())
            }
            (None, None) => writeln!(out, "no lock held; nothing released"),
            (None, Some(obs)) => writeln!(out, "Released the lock held by {}", obs.describe()),
        }
    }
}
