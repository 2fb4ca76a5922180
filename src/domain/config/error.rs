//! The one error type of configuration. The three concerns share it because a
//! command reports "your configuration is wrong" the same way (code
//! `config_invalid`, exit 2) whichever of them found the problem.

use super::resolution::ConfigSource;
use super::spec::SpecError;
use crate::domain::bucket_name::BucketNameError;
use crate::domain::pattern_matcher::PatternError;
use std::path::PathBuf;
use thiserror::Error;

/// Everything that can be wrong with configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The directory has no `.swamp.yaml`.
    #[error(
        "Not a swamp repository: {0}. Run 'swamp repo init' in it first (or pass --repo-dir)."
    )]
    NotARepo(PathBuf),
    /// `.swamp.yaml` is not valid YAML.
    #[error("{file}: {location}{message}")]
    Yaml {
        /// The config file.
        file: PathBuf,
        /// "line N: " when known.
        location: String,
        /// The parser's message.
        message: String,
    },
    /// A field has a wrong type or value.
    #[error("{file}: {field}: {reason}")]
    Field {
        /// The config file.
        file: PathBuf,
        /// Dotted field name.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A `SWAMP_DATASTORE` / `--datastore` value is malformed.
    #[error("invalid datastore '{value}' from {origin}: {reason} (expected 'filesystem:/abs/path' or 's3:bucket[/prefix]')")]
    Spec {
        /// Where the value came from.
        origin: ConfigSource,
        /// The value as given.
        value: String,
        /// What is wrong.
        reason: SpecError,
    },
    /// A bucket name breaks the S3 rules.
    #[error(transparent)]
    Bucket(#[from] BucketNameError),
    /// An exclude pattern does not compile.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// The config file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
