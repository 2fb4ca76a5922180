//! Settings: every global flag and `SWAMP_*` variable, read once into typed
//! values before any command runs, so a bad value fails the same way
//! wherever it would be used — one line naming the flag or variable and the
//! value, exit 2 — and never after work has started.
//!
//! No variable is wired through clap's `env =`: a clap fallback loses to its
//! flag, while `SWAMP_DATASTORE` must win over `--datastore`, and the tuning
//! variables have no flag (or, like `SWAMP_SYNC_CONCURRENCY`, apply to every
//! command while their flag belongs to one).

use crate::cli::error::CliError;
use crate::domain::config::DATASTORE_ENV;
use crate::domain::lock::DEFAULT_TTL;
use crate::infrastructure::datastore::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CONCURRENCY, DEFAULT_PART_DOWNLOADS,
};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Environment variable overriding the lock TTL in milliseconds.
pub const LOCK_TTL_ENV: &str = "SWAMP_LOCK_TTL_MS";
/// Environment variable setting the number of concurrent S3 transfers.
pub const CONCURRENCY_ENV: &str = "SWAMP_SYNC_CONCURRENCY";
/// Environment variable setting the parts of one large file downloaded at once.
pub const PART_DOWNLOADS_ENV: &str = "SWAMP_PART_DOWNLOADS";
/// Environment variable bounding one S3 request attempt, in seconds.
pub const S3_TIMEOUT_ENV: &str = "SWAMP_S3_TIMEOUT_SECS";
/// Environment variable moving `~/.swamp` (where S3 caches live).
pub const SWAMP_HOME_ENV: &str = "SWAMP_HOME";

/// The longest `--lock-timeout` accepted: a year is "wait as long as it takes".
const MAX_LOCK_TIMEOUT_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// What every command runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Render JSON.
    pub json: bool,
    /// `-q`: no normal output (no progress, no summaries).
    pub quiet: bool,
    /// The repo directory, absolute.
    pub repo_dir: PathBuf,
    /// `SWAMP_DATASTORE` (empty counts as unset).
    pub datastore_env: Option<String>,
    /// `--datastore`.
    pub datastore_flag: Option<String>,
    /// `--lock-timeout`: the longest wait for the lock.
    pub lock_timeout: Duration,
    /// `SWAMP_LOCK_TTL_MS`, or 30 s.
    pub lock_ttl: Duration,
    /// `SWAMP_SYNC_CONCURRENCY` (or `sync --concurrency`), or 64.
    pub concurrency: usize,
    /// `SWAMP_PART_DOWNLOADS`, or 4.
    pub part_downloads: usize,
    /// `SWAMP_HOME` (empty counts as unset), or `~/.swamp`: where S3 caches live.
    pub swamp_home: PathBuf,
    /// `SWAMP_S3_TIMEOUT_SECS`, or 60 s: the bound on one S3 request attempt.
    pub s3_timeout: Duration,
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`: the S3 endpoint when
    /// the datastore names none (read here too because it turns on
    /// path-style addressing).
    pub aws_endpoint: Option<String>,
}

/// The global flags, as parsed.
pub struct GlobalFlags<'a> {
    /// `--json`.
    pub json: bool,
    /// `-q/--quiet`.
    pub quiet: bool,
    /// `--repo-dir`.
    pub repo_dir: Option<&'a std::path::Path>,
    /// `--datastore`.
    pub datastore: Option<&'a str>,
    /// `--lock-timeout` in seconds.
    pub lock_timeout: f64,
}

impl Settings {
    /// Resolves `flags` and the variables `env` returns (`std::env::var` in the binary).
    pub fn resolve(
        flags: GlobalFlags<'_>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CliError> {
        let repo_dir = match flags.repo_dir {
            Some(dir) => crate::cli::commands::setup::absolute(dir)?,
            None => std::env::current_dir().map_err(|source| CliError::Io {
                context: "reading the current directory".into(),
                source,
            })?,
        };
        Ok(Self {
            json: flags.json,
            quiet: flags.quiet,
            repo_dir,
            datastore_env: env(DATASTORE_ENV).filter(|v| !v.is_empty()),
            datastore_flag: flags.datastore.map(str::to_string),
            lock_timeout: lock_timeout(flags.lock_timeout)?,
            lock_ttl: from_env(
                &env,
                LOCK_TTL_ENV,
                "milliseconds, at least 100",
                |ms: u64| ms >= 100,
            )?
            .map_or(DEFAULT_TTL, Duration::from_millis),
            concurrency: from_env(&env, CONCURRENCY_ENV, "a number from 1 to 1024", |n| {
                (1..=1024).contains(&n)
            })?
            .unwrap_or(DEFAULT_CONCURRENCY),
            part_downloads: from_env(&env, PART_DOWNLOADS_ENV, "a number from 1 to 64", |n| {
                (1..=64).contains(&n)
            })?
            .unwrap_or(DEFAULT_PART_DOWNLOADS),
            s3_timeout: from_env(&env, S3_TIMEOUT_ENV, "seconds, more than 0", |s: f64| {
                s.is_finite() && s > 0.0
            })?
            .map_or(DEFAULT_ATTEMPT_TIMEOUT, Duration::from_secs_f64),
            aws_endpoint: ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .into_iter()
                .find_map(|name| env(name).filter(|v| !v.is_empty())),
            swamp_home: match env(SWAMP_HOME_ENV).filter(|v| !v.is_empty()) {
                Some(home) => PathBuf::from(home),
                None => env("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/tmp"))
                    .join(".swamp"),
            },
        })
    }
}

/// The value of `name` parsed as a `T` that `accept`s, `None` when unset.
fn from_env<T: FromStr + Copy>(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
    expected: &str,
    accept: impl Fn(T) -> bool,
) -> Result<Option<T>, CliError> {
    let Some(raw) = env(name) else {
        return Ok(None);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if accept(value) => Ok(Some(value)),
        _ => Err(CliError::Validation(format!(
            "invalid {name} '{raw}': expected {expected}"
        ))),
    }
}

/// `--lock-timeout` as a duration: finite, non-negative, at most a year.
fn lock_timeout(seconds: f64) -> Result<Duration, CliError> {
    if seconds.is_finite() && (0.0..=MAX_LOCK_TIMEOUT_SECS).contains(&seconds) {
        return Ok(Duration::from_secs_f64(seconds));
    }
    Err(CliError::Validation(format!(
        "--lock-timeout must be a number of seconds from 0 to {MAX_LOCK_TIMEOUT_SECS} (one year), not {seconds}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(vars: &[(&str, &str)]) -> Result<Settings, CliError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(
            GlobalFlags {
                json: false,
                quiet: false,
                repo_dir: Some(std::path::Path::new("/repo")),
                datastore: None,
                lock_timeout: 60.0,
            },
            |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        )
    }

    #[test]
    fn unset_variables_take_their_defaults() {
        let s = resolve(&[]).unwrap();
        assert_eq!(
            (s.lock_ttl, s.concurrency, s.part_downloads),
            (DEFAULT_TTL, DEFAULT_CONCURRENCY, DEFAULT_PART_DOWNLOADS)
        );
        assert_eq!(s.datastore_env, None);
        assert_eq!(resolve(&[(DATASTORE_ENV, "")]).unwrap().datastore_env, None);
        assert_eq!(s.swamp_home, PathBuf::from("/tmp/.swamp"));
        let home = resolve(&[("HOME", "/home/u"), (SWAMP_HOME_ENV, "")]).unwrap();
        assert_eq!(home.swamp_home, PathBuf::from("/home/u/.swamp"));
        let moved = resolve(&[("HOME", "/home/u"), (SWAMP_HOME_ENV, "/cache")]).unwrap();
        assert_eq!(moved.swamp_home, PathBuf::from("/cache"));
    }

    #[test]
    fn good_values_are_taken() {
        let s = resolve(&[
            (LOCK_TTL_ENV, " 5000 "),
            (CONCURRENCY_ENV, "1024"),
            (PART_DOWNLOADS_ENV, "1"),
            (DATASTORE_ENV, "s3:b"),
        ])
        .unwrap();
        assert_eq!(s.lock_ttl, Duration::from_millis(5000));
        assert_eq!((s.concurrency, s.part_downloads), (1024, 1));
        assert_eq!(s.datastore_env.as_deref(), Some("s3:b"));
        let s = resolve(&[(S3_TIMEOUT_ENV, "0.5"), ("AWS_ENDPOINT_URL", "http://x")]).unwrap();
        assert_eq!(s.s3_timeout, Duration::from_millis(500));
        assert_eq!(s.aws_endpoint.as_deref(), Some("http://x"));
        let s = resolve(&[
            ("AWS_ENDPOINT_URL_S3", "http://s3"),
            ("AWS_ENDPOINT_URL", "http://x"),
        ])
        .unwrap();
        assert_eq!(s.aws_endpoint.as_deref(), Some("http://s3"));
    }

    /// One row per bad value: the variable and value must both be named.
    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let rows = [
            (LOCK_TTL_ENV, "99"),
            (LOCK_TTL_ENV, "abc"),
            (LOCK_TTL_ENV, ""),
            (CONCURRENCY_ENV, "0"),
            (CONCURRENCY_ENV, "1025"),
            (CONCURRENCY_ENV, "-1"),
            (PART_DOWNLOADS_ENV, "65"),
            (PART_DOWNLOADS_ENV, "1.5"),
            (S3_TIMEOUT_ENV, "0"),
            (S3_TIMEOUT_ENV, "-3"),
            (S3_TIMEOUT_ENV, "inf"),
            (S3_TIMEOUT_ENV, "soon"),
        ];
        for (name, value) in rows {
            let message = match resolve(&[(name, value)]) {
                Err(CliError::Validation(m)) => m,
                other => panic!("{name}={value:?}: {other:?}"),
            };
            assert!(
                message.starts_with(&format!("invalid {name} '{value}': expected ")),
                "{message}"
            );
        }
    }

    #[test]
    fn lock_timeouts_beyond_a_year_or_not_finite_are_refused() {
        for bad in [-1.0, f64::NAN, f64::INFINITY, MAX_LOCK_TIMEOUT_SECS + 1.0] {
            assert!(lock_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(lock_timeout(0.5).unwrap(), Duration::from_millis(500));
    }
}
