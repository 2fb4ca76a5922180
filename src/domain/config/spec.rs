//! Where a datastore lives ([`Backend`]) and the one-line spelling of it that
//! `SWAMP_DATASTORE` and `--datastore` take: `filesystem:/abs/path` or
//! `s3:bucket[/prefix]`. [`Backend::describe`] writes the same grammar back.
//!
//! The path and prefix rules are shared with the `datastore:` section of
//! `.swamp.yaml`, so a location is valid or not whichever way it was given.

use super::error::ConfigError;
use super::resolution::ConfigSource;
use crate::domain::bucket_name::{validate_bucket_name, BucketNameError};
use crate::domain::relative_path::{SafeRelativePath, UnsafePathError};
use serde::Serialize;
use std::path::PathBuf;
use thiserror::Error;

/// Connection settings of an S3 datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Config {
    /// Bucket name (validated).
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Region, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint URL for S3-compatible stores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Which backend holds the datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A directory on a (possibly shared) filesystem.
    Filesystem {
        /// Absolute path of the datastore directory.
        path: PathBuf,
    },
    /// An S3 bucket with a local cache.
    S3(S3Config),
}

impl Backend {
    /// `filesystem` or `s3`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Backend::Filesystem { .. } => "filesystem",
            Backend::S3(_) => "s3",
        }
    }

    /// A short human description (`filesystem:/x`, `s3:bucket/prefix`).
    pub fn describe(&self) -> String {
        match self {
            Backend::Filesystem { path } => format!("filesystem:{}", path.display()),
            Backend::S3(s3) if s3.prefix.is_empty() => format!("s3:{}", s3.bucket),
            Backend::S3(s3) => format!("s3:{}/{}", s3.bucket, s3.prefix),
        }
    }
}

/// Why a datastore location is not valid. The messages are phrased to follow
/// "invalid datastore '...': " or "datastore.<field>: ", which say where.
#[derive(Debug, Error)]
pub enum SpecError {
    /// No `type:` in front of the location.
    #[error("missing ':' after the type")]
    MissingType,
    /// A type other than `filesystem` or `s3`.
    #[error("unknown datastore type '{0}' (expected 'filesystem' or 's3')")]
    UnknownType(String),
    /// An empty (or all-blank) filesystem path.
    #[error("path is empty")]
    EmptyPath,
    /// A relative filesystem path: it would depend on the working directory.
    #[error("path '{0}' is not absolute")]
    RelativePath(String),
    /// `s3:` with nothing, or only a prefix, after it.
    #[error("bucket is empty")]
    EmptyBucket,
    /// A bucket name that breaks the S3 rules.
    #[error(transparent)]
    Bucket(#[from] BucketNameError),
    /// A key prefix with an unsafe segment. Only the rule is shown: the
    /// surrounding message already quotes the whole value.
    #[error("{}", .0.reason)]
    UnsafePrefix(UnsafePathError),
}

/// Checks that a filesystem datastore path is non-empty and absolute.
pub fn absolute_path(raw: &str) -> Result<PathBuf, SpecError> {
    if raw.trim().is_empty() {
        return Err(SpecError::EmptyPath);
    }
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(SpecError::RelativePath(raw.to_string()));
    }
    Ok(path)
}

/// Strips surrounding `/` from a key prefix and rejects unsafe segments.
pub fn normalize_prefix(raw: &str) -> Result<String, SpecError> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    SafeRelativePath::parse(trimmed)
        .map(|p| p.as_str().to_string())
        .map_err(SpecError::UnsafePrefix)
}

/// Parses a `filesystem:/path` or `s3:bucket[/prefix]` value.
pub fn parse_datastore_spec(value: &str, origin: ConfigSource) -> Result<Backend, ConfigError> {
    parse_spec(value).map_err(|reason| ConfigError::Spec {
        origin,
        value: value.to_string(),
        reason,
    })
}

fn parse_spec(value: &str) -> Result<Backend, SpecError> {
    let (kind, rest) = value.split_once(':').ok_or(SpecError::MissingType)?;
    match kind {
        "filesystem" => Ok(Backend::Filesystem {
            path: absolute_path(rest)?,
        }),
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(SpecError::EmptyBucket);
            }
            validate_bucket_name(bucket)?;
            Ok(Backend::S3(S3Config {
                bucket: bucket.to_string(),
                prefix: normalize_prefix(prefix)?,
                region: None,
                endpoint: None,
            }))
        }
        other => Err(SpecError::UnknownType(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_specs_are_rejected_with_reasons() {
        let cases = [
            ("filesystem", "missing ':'"),
            ("filesystem:", "empty"),
            ("filesystem:rel/path", "not absolute"),
            ("ftp:/x", "unknown datastore type"),
            ("s3:", "bucket is empty"),
            ("s3:Bad_Bucket", "lowercase"),
            ("s3:ok-bucket/../x", "'..'"),
        ];
        for (value, why) in cases {
            let err = parse_datastore_spec(value, ConfigSource::Env).unwrap_err();
            assert!(err.to_string().contains(why), "{value}: {err}");
        }
    }

    /// The exact text of each reason, which users and scripts may match on.
    #[test]
    fn messages_are_exact() {
        let cases = [
            ("bogus", "missing ':' after the type"),
            (
                "ftp:/x",
                "unknown datastore type 'ftp' (expected 'filesystem' or 's3')",
            ),
            ("filesystem: ", "path is empty"),
            ("filesystem:rel/p", "path 'rel/p' is not absolute"),
            ("s3:/p", "bucket is empty"),
            (
                "s3:ab",
                "invalid S3 bucket name 'ab': must be 3 to 63 characters long",
            ),
            (
                "s3:ok-bucket/a/../b",
                "'.' and '..' segments are not allowed",
            ),
        ];
        for (value, reason) in cases {
            let err = parse_datastore_spec(value, ConfigSource::Flag).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid datastore '{value}' from --datastore: {reason} (expected 'filesystem:/abs/path' or 's3:bucket[/prefix]')")
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A spec from a variable or a flag never panics the parser.
            #[test]
            fn any_spec_parses_or_fails_without_panicking(value in ".*") {
                let _ = parse_datastore_spec(&value, ConfigSource::Env);
            }

            /// Whatever an S3 spec says, the prefix it yields is a safe
            /// relative key prefix: no leading '/', no '.' or '..' segment.
            #[test]
            fn s3_prefixes_are_always_safe(rest in "[a-z0-9./-]{0,40}") {
                if let Ok(Backend::S3(s3)) = parse_datastore_spec(&format!("s3:{rest}"), ConfigSource::Flag) {
                    prop_assert!(!s3.prefix.starts_with('/') && !s3.prefix.ends_with('/'));
                    prop_assert!(s3.prefix.is_empty() || s3.prefix.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
                }
            }

            /// A valid bucket and prefix survive parsing unchanged.
            #[test]
            fn valid_s3_specs_round_trip(
                bucket in "[a-z0-9][a-z0-9-]{1,30}[a-z0-9]",
                segments in proptest::collection::vec("[A-Za-z0-9_-]{1,8}", 0..4),
            ) {
                // S3 reserves these shapes; the bucket-name tests cover them.
                prop_assume!(!bucket.starts_with("xn--") && !bucket.starts_with("sthree-"));
                prop_assume!(!bucket.ends_with("-s3alias") && !bucket.ends_with("--ol-s3"));
                let prefix = segments.join("/");
                let spec = if prefix.is_empty() { format!("s3:{bucket}") } else { format!("s3:{bucket}/{prefix}") };
                let parsed = parse_datastore_spec(&spec, ConfigSource::Env);
                match parsed {
                    Ok(Backend::S3(s3)) => {
                        prop_assert_eq!(s3.bucket, bucket);
                        prop_assert_eq!(s3.prefix, prefix);
                    }
                    other => prop_assert!(false, "{spec}: {other:?}"),
                }
            }

            /// A filesystem spec that parses names an absolute path.
            #[test]
            fn filesystem_specs_are_absolute(rest in ".*") {
                if let Ok(Backend::Filesystem { path }) = parse_datastore_spec(&format!("filesystem:{rest}"), ConfigSource::Env) {
                    prop_assert!(path.is_absolute());
                }
            }
        }
    }
}
