//! The distributed-lock contract shared by every backend.
//!
//! Model: a lock is one record (`LockInfo`) at a well-known place in the
//! datastore. Acquiring creates it only if absent (or replaces a record whose
//! TTL has passed, conditioned on exactly the stale record observed). Every
//! later write of the record — renewal, release — is conditional on the record
//! still being ours (`LockVersion`), so a holder that lost its lock can never
//! overwrite or delete its successor's. The acquisition token identifies one
//! acquisition, not one process.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// Default lock time-to-live.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The record stored in the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    /// `user@host` of the holder.
    pub holder: String,
    /// Host name of the holder.
    pub hostname: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When this acquisition happened.
    pub acquired_at: DateTime<Utc>,
    /// When the holder last renewed the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<DateTime<Utc>>,
    /// The holder's TTL in milliseconds.
    pub ttl_ms: u64,
    /// Random token unique to this acquisition.
    pub token: String,
    /// The paths a scoped lock holds (`domain/lock_scope.rs`); absent for
    /// the whole datastore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
    /// A scoped acquirer's priority: among conflicting ones, the highest
    /// never yields (drawn once per command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
}

impl LockInfo {
    /// A fresh record for this process with a new random token.
    pub fn for_this_process(ttl: Duration) -> Self {
        let hostname = this_hostname();
        Self {
            holder: this_holder(&hostname),
            hostname,
            pid: std::process::id(),
            acquired_at: Utc::now(),
            renewed_at: None,
            ttl_ms: ttl.as_millis() as u64,
            token: uuid::Uuid::new_v4().simple().to_string(),
            scope: None,
            priority: None,
        }
    }

    /// A fresh record for this process holding `scope` (paths and
    /// priority) when given, the whole datastore otherwise.
    pub fn for_this_process_holding(ttl: Duration, scope: Option<&(Vec<String>, u64)>) -> Self {
        let mut info = Self::for_this_process(ttl);
        if let Some((paths, priority)) = scope {
            info.scope = Some(paths.clone());
            info.priority = Some(*priority);
        }
        info
    }

    /// The holder's TTL.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// One line naming the holder, for messages.
    pub fn describe(&self) -> String {
        let scope = match &self.scope {
            Some(paths) => format!(" on {}", paths.join(", ")),
            None => String::new(),
        };
        format!(
            "{} (pid {}){scope} since {}",
            self.holder,
            self.pid,
            self.acquired_at.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }

    /// Parses a stored record.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let info: LockInfo = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if info.token.is_empty() {
            return Err("empty token".into());
        }
        Ok(info)
    }

    /// Serializes the record for storage.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and numbers always serializes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// This machine's host name.
fn this_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// `user@host` of this process on `hostname`.
fn this_holder(hostname: &str) -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "unknown".to_string());
    format!("{user}@{hostname}")
}

/// `user@host` of this process, as lock records and audit entries name it.
pub fn current_holder() -> String {
    this_holder(&this_hostname())
}

/// A backend-specific version of the lock record (an S3 ETag, a file identity):
/// the condition every later write of the record is made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockVersion(pub String);

/// A lock held by this process.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The record as last written by us.
    pub info: LockInfo,
    /// Its version in the store.
    pub version: LockVersion,
}

/// What the store holds at the lock's place.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockObservation {
    /// The parsed record, or `None` when the record is corrupt.
    pub info: Option<LockInfo>,
    /// Why the record could not be parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
    /// Time since the record was last written, by the store's clock.
    #[serde(serialize_with = "as_millis", rename = "ageMs")]
    pub age: Duration,
    /// Whether the TTL has passed since the last write.
    pub stale: bool,
    #[serde(skip)]
    /// The record's version, for a conditional takeover.
    pub version: LockVersion,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl LockObservation {
    /// One line naming the holder (or the corruption), for messages.
    /// Who holds the lock, for a waiting line: `user@host (pid N)` and its
    /// scope, without the time.
    pub fn holder_brief(&self) -> String {
        match &self.info {
            Some(info) => {
                let scope = match &info.scope {
                    Some(paths) => format!(" on {}", paths.join(", ")),
                    None => String::new(),
                };
                format!("{} (pid {}){scope}", info.holder, info.pid)
            }
            None => self.describe(),
        }
    }

    /// How long the holder has held the lock, by its own clock (`None` when
    /// unknown or in the future).
    pub fn held_for(&self) -> Option<Duration> {
        let info = self.info.as_ref()?;
        (chrono::Utc::now() - info.acquired_at).to_std().ok()
    }

    pub fn describe(&self) -> String {
        match (&self.info, &self.corrupt) {
            (Some(info), _) => info.describe(),
            (None, Some(why)) => format!("an unreadable lock record ({why})"),
            (None, None) => "an unknown holder".into(),
        }
    }
}

/// Whether a record last written `age` ago with `ttl` has expired.
pub fn is_stale(age: Duration, ttl: Duration) -> bool {
    age > ttl
}

/// The result of one acquisition attempt.
#[derive(Debug)]
pub enum Attempt {
    /// We hold the lock.
    Acquired(Lease),
    /// Someone else holds it.
    Busy(LockObservation),
}

/// Lock failures.
#[derive(Debug, Error)]
pub enum LockError {
    /// The lock was not acquired before the deadline.
    #[error("timed out after {}s waiting for the lock {location} held by {holder}; retry later, or if that process is gone release it with 'swamp datastore lock release --force' on that datastore (with '--scope PATH' for a lock held on PATH)", waited.as_secs())]
    Timeout {
        /// The lock waited for (file path or `s3://bucket/key`).
        location: String,
        /// How long we waited.
        waited: Duration,
        /// Who holds it.
        holder: String,
    },
    /// The lock is no longer ours.
    #[error("lock lost: {0}; the command was stopped before writing further")]
    Lost(String),
    /// The lock store failed with this error.
    #[error("lock store error at {location}: {source}")]
    Backend {
        /// File path or S3 key.
        location: String,
        /// The store's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lock store did not do what it should.
    #[error("lock store error at {location}: {message}")]
    Store {
        /// File path or S3 key.
        location: String,
        /// What went wrong.
        message: String,
    },
    /// A signal stopped the command; the lock was released.
    #[error("interrupted by signal {signal}")]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
}

/// A distributed lock on one datastore.
#[async_trait]
pub trait DistributedLock: Send + Sync {
    /// Where the lock lives (file path or `s3://bucket/key`).
    fn location(&self) -> String;
    /// Tries once to acquire (including a conditional takeover of a stale lock).
    async fn try_acquire(&self, ttl: Duration) -> Result<Attempt, LockError>;
    /// Renews our lease; `LockError::Lost` when the record is no longer ours.
    async fn renew(&self, lease: &Lease) -> Result<Lease, LockError>;
    /// Releases our lease if the record is still ours; a record that is not ours is left alone.
    async fn release(&self, lease: &Lease) -> Result<(), LockError>;
    /// Reads the current record, if any.
    async fn inspect(&self) -> Result<Option<LockObservation>, LockError>;
    /// Removes whatever record is there and returns it.
    async fn force_release(&self) -> Result<Option<LockObservation>, LockError>;
    /// Gives up an acquisition that did not succeed: removes any record an
    /// unfinished attempt left standing (a scoped or draining lock's).
    async fn abandon(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_per_acquisition() {
        let a = LockInfo::for_this_process(DEFAULT_TTL);
        let b = LockInfo::for_this_process(DEFAULT_TTL);
        assert_ne!(a.token, b.token);
        assert_eq!(a.pid, b.pid);
        assert_eq!(a.ttl_ms, 30_000);
        assert!(a.holder.contains('@'));
    }

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let a = LockInfo::for_this_process(Duration::from_millis(1500));
        let back = LockInfo::from_json(&a.to_json()).unwrap();
        assert_eq!(a, back);
        assert!(LockInfo::from_json(b"{not json").is_err());
        let mut empty = a.clone();
        empty.token.clear();
        assert!(LockInfo::from_json(&empty.to_json()).is_err());
        let text = String::from_utf8(a.to_json()).unwrap();
        for key in ["holder", "hostname", "pid", "acquiredAt", "ttlMs", "token"] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn staleness_is_strictly_after_ttl() {
        let ttl = Duration::from_secs(30);
        assert!(!is_stale(Duration::from_secs(30), ttl));
        assert!(is_stale(Duration::from_millis(30_001), ttl));
    }

    mod properties {
        use super::*;
        use chrono::TimeZone;
        use proptest::prelude::*;

        fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
            (0i64..4_102_444_800, 0u32..1_000_000_000)
                .prop_map(|(s, ns)| Utc.timestamp_opt(s, ns).single().unwrap_or_default())
        }

        fn any_info() -> impl Strategy<Value = LockInfo> {
            let whole = (
                ".*",
                ".*",
                any::<u32>(),
                any_time(),
                proptest::option::of(any_time()),
                any::<u64>(),
                ".+",
            )
                .prop_map(
                    |(holder, hostname, pid, acquired_at, renewed_at, ttl_ms, token)| LockInfo {
                        holder,
                        hostname,
                        pid,
                        acquired_at,
                        renewed_at,
                        ttl_ms,
                        token,
                        scope: None,
                        priority: None,
                    },
                );
            let scope = proptest::option::of(proptest::collection::vec(".*", 0..3));
            (whole, scope, proptest::option::of(any::<u64>())).prop_map(
                |(info, scope, priority)| LockInfo {
                    scope,
                    priority,
                    ..info
                },
            )
        }

        proptest! {
            /// What a holder writes, every reader reads back exactly: lost-reply
            /// adoption compares records for equality.
            #[test]
            fn every_record_round_trips_exactly(info in any_info()) {
                prop_assert_eq!(LockInfo::from_json(&info.to_json()), Ok(info));
            }

            /// Whatever another machine (or a corrupt store) left there, reading
            /// it never panics, and a record it accepts has a token.
            #[test]
            fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(info) = LockInfo::from_json(&bytes) {
                    prop_assert!(!info.token.is_empty());
                }
            }

            /// Staleness is monotonic in age: once stale, older is stale too.
            #[test]
            fn staleness_is_monotonic(age in any::<u64>(), more in any::<u32>(), ttl in any::<u64>()) {
                let (age, ttl) = (Duration::from_millis(age), Duration::from_millis(ttl));
                if is_stale(age, ttl) {
                    prop_assert!(is_stale(age + Duration::from_millis(more.into()), ttl));
                }
            }
        }
    }
}
