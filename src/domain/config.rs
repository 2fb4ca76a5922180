//! Repository and datastore configuration.
//!
//! `.swamp.yaml` holds the repo identity (`swampVersion`, `initializedAt`,
//! `repoId`) and an optional `datastore:` section. Which datastore a command uses
//! is resolved in one place, in this order: the `SWAMP_DATASTORE` environment
//! variable, the `--datastore` flag, `.swamp.yaml`, and finally the default
//! `{repo}/.swamp/`. Env and flag use the grammar `filesystem:/abs/path` or
//! `s3:bucket[/prefix]`.

use crate::domain::bucket_name::{validate_bucket_name, BucketNameError};
use crate::domain::path_resolver::DATASTORE_DIRS;
use crate::domain::pattern_matcher::{ExcludeMatcher, PatternError};
use serde::Serialize;
use serde_yaml::{Mapping, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;
use uuid::Uuid;

/// The repo config file name.
pub const CONFIG_FILE: &str = ".swamp.yaml";
/// The local runtime-data directory name.
pub const LOCAL_DIR: &str = ".swamp";
/// The environment variable that overrides the datastore.
pub const DATASTORE_ENV: &str = "SWAMP_DATASTORE";

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
        reason: String,
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

/// Where the datastore choice came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConfigSource {
    /// `SWAMP_DATASTORE`.
    Env,
    /// `--datastore`.
    Flag,
    /// `.swamp.yaml`.
    RepoConfig,
    /// Nothing configured: `{repo}/.swamp/`.
    Default,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigSource::Env => "SWAMP_DATASTORE",
            ConfigSource::Flag => "--datastore",
            ConfigSource::RepoConfig => ".swamp.yaml",
            ConfigSource::Default => "default",
        })
    }
}

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

/// The `datastore:` section of `.swamp.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreSection {
    /// The backend, if `type` was given.
    pub backend: Option<Backend>,
    /// Datastore directories (default: all of `DATASTORE_DIRS`).
    pub directories: Option<Vec<String>>,
    /// Exclude patterns that keep files in local `.swamp/`.
    pub exclude: Vec<String>,
}

/// A parsed `.swamp.yaml`.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// The file it came from.
    pub file: PathBuf,
    /// The raw document, kept so rewriting preserves unknown keys and order.
    pub document: Mapping,
    /// `swampVersion`.
    pub swamp_version: String,
    /// `initializedAt`.
    pub initialized_at: String,
    /// `repoId`: names the S3 cache directory.
    pub repo_id: Uuid,
    /// `datastore`, if present.
    pub datastore: Option<DatastoreSection>,
    /// Warnings about unknown keys.
    pub warnings: Vec<String>,
}

const TOP_KEYS: [&str; 4] = ["swampVersion", "initializedAt", "repoId", "datastore"];
const DATASTORE_KEYS: [&str; 8] = [
    "type",
    "path",
    "bucket",
    "prefix",
    "region",
    "endpoint",
    "directories",
    "exclude",
];

impl RepoConfig {
    /// Parses the text of `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
            file: file.to_path_buf(),
            location: e
                .location()
                .map(|l| format!("line {}: ", l.line()))
                .unwrap_or_default(),
            message: e.to_string(),
        })?;
        let field_err = |field: &str, reason: &str| ConfigError::Field {
            file: file.to_path_buf(),
            field: field.to_string(),
            reason: reason.to_string(),
        };
        let document = match value {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => return Err(field_err("(top level)", "expected a mapping of keys")),
        };
        let mut warnings = unknown_keys(&document, &TOP_KEYS, "");
        let text_field = |key: &str| -> Result<Option<String>, ConfigError> {
            match document.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(field_err(key, "expected a string")),
            }
        };
        let repo_id_text = text_field("repoId")?
            .ok_or_else(|| field_err("repoId", "missing (run 'swamp repo init')"))?;
        let repo_id = Uuid::parse_str(&repo_id_text)
            .map_err(|_| field_err("repoId", &format!("'{repo_id_text}' is not a UUID")))?;
        let datastore = match document.get("datastore") {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(section)) => {
                warnings.extend(unknown_keys(section, &DATASTORE_KEYS, "datastore."));
                Some(parse_section(file, section)?)
            }
            Some(_) => return Err(field_err("datastore", "expected a mapping")),
        };
        Ok(Self {
            file: file.to_path_buf(),
            swamp_version: text_field("swampVersion")?.unwrap_or_default(),
            initialized_at: text_field("initializedAt")?.unwrap_or_default(),
            repo_id,
            datastore,
            warnings,
            document,
        })
    }
}

fn unknown_keys(map: &Mapping, known: &[&str], prefix: &str) -> Vec<String> {
    map.keys()
        .filter_map(|k| k.as_str())
        .filter(|k| !known.contains(k))
        .map(|k| format!("unknown key '{prefix}{k}' in .swamp.yaml (ignored)"))
        .collect()
}

fn parse_section(file: &Path, section: &Mapping) -> Result<DatastoreSection, ConfigError> {
    let field_err = |field: &str, reason: String| ConfigError::Field {
        file: file.to_path_buf(),
        field: format!("datastore.{field}"),
        reason,
    };
    let text = |key: &str| -> Result<Option<String>, ConfigError> {
        match section.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(field_err(key, "expected a string".into())),
        }
    };
    let list = |key: &str| -> Result<Option<Vec<String>>, ConfigError> {
        match section.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| field_err(key, "expected a list of strings".into()))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(field_err(key, "expected a list of strings".into())),
        }
    };
    let backend = match text("type")?.as_deref() {
        None => None,
        Some("filesystem") => {
            let raw = text("path")?
                .ok_or_else(|| field_err("path", "required for type 'filesystem'".into()))?;
            Some(Backend::Filesystem {
                path: absolute_path(&raw).map_err(|reason| field_err("path", reason))?,
            })
        }
        Some("s3") => {
            let bucket = text("bucket")?
                .ok_or_else(|| field_err("bucket", "required for type 's3'".into()))?;
            validate_bucket_name(&bucket)?;
            Some(Backend::S3(S3Config {
                bucket,
                prefix: normalize_prefix(&text("prefix")?.unwrap_or_default())
                    .map_err(|reason| field_err("prefix", reason))?,
                region: text("region")?,
                endpoint: text("endpoint")?,
            }))
        }
        Some(other) => {
            return Err(field_err(
                "type",
                format!("unknown datastore type '{other}' (expected 'filesystem' or 's3')"),
            ))
        }
    };
    let directories = list("directories")?;
    if let Some(dirs) = &directories {
        if let Some(bad) = dirs.iter().find(|d| !DATASTORE_DIRS.contains(&d.as_str())) {
            return Err(field_err(
                "directories",
                format!(
                    "unknown directory '{bad}' (known: {})",
                    DATASTORE_DIRS.join(", ")
                ),
            ));
        }
    }
    let exclude = list("exclude")?.unwrap_or_default();
    ExcludeMatcher::new(&exclude)?;
    Ok(DatastoreSection {
        backend,
        directories,
        exclude,
    })
}

/// Checks that a filesystem datastore path is non-empty and absolute.
pub fn absolute_path(raw: &str) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("path is empty".into());
    }
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(format!("path '{raw}' is not absolute"));
    }
    Ok(path)
}

/// Strips surrounding `/` from a key prefix and rejects unsafe segments.
pub fn normalize_prefix(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    crate::domain::relative_path::SafeRelativePath::parse(trimmed)
        .map(|p| p.as_str().to_string())
        .map_err(|e| e.reason.to_string())
}

/// Parses a `filesystem:/path` or `s3:bucket[/prefix]` value.
pub fn parse_datastore_spec(value: &str, origin: ConfigSource) -> Result<Backend, ConfigError> {
    let spec_err = |reason: String| ConfigError::Spec {
        origin,
        value: value.to_string(),
        reason,
    };
    let (kind, rest) = value
        .split_once(':')
        .ok_or_else(|| spec_err("missing ':' after the type".into()))?;
    match kind {
        "filesystem" => Ok(Backend::Filesystem {
            path: absolute_path(rest).map_err(spec_err)?,
        }),
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(spec_err("bucket is empty".into()));
            }
            validate_bucket_name(bucket).map_err(|e| spec_err(e.to_string()))?;
            Ok(Backend::S3(S3Config {
                bucket: bucket.to_string(),
                prefix: normalize_prefix(prefix).map_err(spec_err)?,
                region: None,
                endpoint: None,
            }))
        }
        other => Err(spec_err(format!(
            "unknown datastore type '{other}' (expected 'filesystem' or 's3')"
        ))),
    }
}

/// The datastore a command will use, with where that choice came from.
#[derive(Debug, Clone)]
pub struct ResolvedDatastore {
    /// The backend.
    pub backend: Backend,
    /// Which source won.
    pub source: ConfigSource,
    /// Datastore directories in use.
    pub directories: Vec<String>,
    /// Exclude patterns in use.
    pub exclude: Vec<String>,
}

/// Applies the resolution order: env > flag > `.swamp.yaml` > default.
pub fn resolve_datastore(
    env_value: Option<&str>,
    flag_value: Option<&str>,
    config: &RepoConfig,
    repo_dir: &Path,
) -> Result<ResolvedDatastore, ConfigError> {
    let section = config.datastore.clone();
    let directories = section
        .as_ref()
        .and_then(|s| s.directories.clone())
        .unwrap_or_else(|| DATASTORE_DIRS.iter().map(|d| d.to_string()).collect());
    let exclude = section
        .as_ref()
        .map(|s| s.exclude.clone())
        .unwrap_or_default();
    let configured = section.and_then(|s| s.backend);
    let (backend, source) = if let Some(v) = env_value.filter(|v| !v.is_empty()) {
        (
            parse_datastore_spec(v, ConfigSource::Env)?,
            ConfigSource::Env,
        )
    } else if let Some(v) = flag_value {
        (
            parse_datastore_spec(v, ConfigSource::Flag)?,
            ConfigSource::Flag,
        )
    } else if let Some(b) = configured.clone() {
        (b, ConfigSource::RepoConfig)
    } else {
        (
            Backend::Filesystem {
                path: repo_dir.join(LOCAL_DIR),
            },
            ConfigSource::Default,
        )
    };
    // An override that names the configured bucket keeps its region/endpoint.
    let backend = match (backend, configured) {
        (Backend::S3(mut over), Some(Backend::S3(conf)))
            if over.bucket == conf.bucket && source != ConfigSource::RepoConfig =>
        {
            over.region = over.region.or(conf.region);
            over.endpoint = over.endpoint.or(conf.endpoint);
            Backend::S3(over)
        }
        (b, _) => b,
    };
    Ok(ResolvedDatastore {
        backend,
        source,
        directories,
        exclude,
    })
}

/// Builds the YAML `datastore:` mapping for `backend`, keeping `directories`
/// and `exclude` from `previous`.
pub fn datastore_yaml(backend: &Backend, previous: Option<&Value>) -> Value {
    let mut map = Mapping::new();
    match backend {
        Backend::Filesystem { path } => {
            map.insert("type".into(), "filesystem".into());
            map.insert("path".into(), path.display().to_string().into());
        }
        Backend::S3(s3) => {
            map.insert("type".into(), "s3".into());
            map.insert("bucket".into(), s3.bucket.clone().into());
            if !s3.prefix.is_empty() {
                map.insert("prefix".into(), s3.prefix.clone().into());
            }
            if let Some(r) = &s3.region {
                map.insert("region".into(), r.clone().into());
            }
            if let Some(e) = &s3.endpoint {
                map.insert("endpoint".into(), e.clone().into());
            }
        }
    }
    if let Some(Value::Mapping(prev)) = previous {
        for key in ["directories", "exclude"] {
            if let Some(v) = prev.get(key) {
                map.insert(key.into(), v.clone());
            }
        }
    }
    Value::Mapping(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b5c8a4e-9d1e-4f7a-8a57-0d3f2b1c6e11";

    fn config(extra: &str) -> RepoConfig {
        let text = format!("swampVersion: 0.1.0\nrepoId: {ID}\n{extra}");
        RepoConfig::parse(Path::new("/r/.swamp.yaml"), &text).unwrap()
    }

    #[test]
    fn default_is_repo_local_dir() {
        let r = resolve_datastore(None, None, &config(""), Path::new("/r")).unwrap();
        assert_eq!(r.source, ConfigSource::Default);
        assert_eq!(
            r.backend,
            Backend::Filesystem {
                path: "/r/.swamp".into()
            }
        );
        assert_eq!(r.directories.len(), DATASTORE_DIRS.len());
    }

    #[test]
    fn env_beats_flag_beats_file() {
        let cfg = config("datastore:\n  type: filesystem\n  path: /from/file\n");
        let r = resolve_datastore(None, None, &cfg, Path::new("/r")).unwrap();
        assert_eq!(r.source, ConfigSource::RepoConfig);
        let r =
            resolve_datastore(None, Some("filesystem:/from/flag"), &cfg, Path::new("/r")).unwrap();
        assert_eq!(r.source, ConfigSource::Flag);
        let r = resolve_datastore(
            Some("s3:my-bucket/a/b/"),
            Some("filesystem:/from/flag"),
            &cfg,
            Path::new("/r"),
        )
        .unwrap();
        assert_eq!(r.source, ConfigSource::Env);
        assert_eq!(r.backend.describe(), "s3:my-bucket/a/b");
    }

    #[test]
    fn override_of_same_bucket_keeps_endpoint() {
        let cfg =
            config("datastore:\n  type: s3\n  bucket: my-bucket\n  endpoint: http://127.0.0.1:1\n");
        let r = resolve_datastore(Some("s3:my-bucket/p"), None, &cfg, Path::new("/r")).unwrap();
        match r.backend {
            Backend::S3(s3) => assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:1")),
            other => panic!("{other:?}"),
        }
    }

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

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let err =
            RepoConfig::parse(Path::new("/r/.swamp.yaml"), "repoId: x\n  bad: [\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/r/.swamp.yaml") && msg.contains("line"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_keys_warn_and_unknown_type_fails() {
        let cfg = config("extra: 1\ndatastore:\n  type: filesystem\n  path: /x\n  colour: red\n");
        assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
        let text = format!("repoId: {ID}\ndatastore:\n  type: ftp\n");
        let err = RepoConfig::parse(Path::new("/r/.swamp.yaml"), &text).unwrap_err();
        assert!(err.to_string().contains("unknown datastore type 'ftp'"));
    }

    #[test]
    fn invalid_repo_id_and_directories_fail() {
        let err = RepoConfig::parse(Path::new("/f"), "repoId: nope\n").unwrap_err();
        assert!(err.to_string().contains("not a UUID"));
        let text = format!("repoId: {ID}\ndatastore:\n  directories: [data, nope]\n");
        let err = RepoConfig::parse(Path::new("/f"), &text).unwrap_err();
        assert!(err.to_string().contains("unknown directory 'nope'"));
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
