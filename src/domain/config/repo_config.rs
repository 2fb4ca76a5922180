//! The `.swamp.yaml` file: the repo identity (`swampVersion`, `initializedAt`,
//! `repoId`) and an optional `datastore:` section (`type` with its location
//! fields, `directories`, `exclude`).
//!
//! Parsing keeps the raw document next to the typed fields, so a rewrite
//! (`datastore setup`) replaces only the `datastore:` section and keeps every
//! other key, known or not, in its order (YAML comments are lost). Unknown
//! keys only warn; wrong values of known keys fail.

use super::error::ConfigError;
use super::spec::{absolute_path, normalize_prefix, Backend, S3Config, SpecError};
use crate::domain::bucket_name::validate_bucket_name;
use crate::domain::path_resolver::DATASTORE_DIRS;
use crate::domain::pattern_matcher::ExcludeMatcher;
use serde_yaml::{Mapping, Value};
use std::path::Path;
use uuid::Uuid;

/// The repo config file name.
pub const CONFIG_FILE: &str = ".swamp.yaml";

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
    /// The raw document, kept so rewriting preserves unknown keys and order.
    pub document: Mapping,
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
        // Unquoted versions such as `swampVersion: 1.0` arrive as numbers.
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
        // Checked for their type; nothing reads them (they identify the
        // repo to people and to upstream swamp).
        text_field("swampVersion")?;
        text_field("initializedAt")?;
        Ok(Self {
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
    let spec_err = |field: &str, e: SpecError| field_err(field, e.to_string());
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
    // No `type` is valid: the section may only set directories or exclude.
    let backend = match text("type")?.as_deref() {
        None => None,
        Some("filesystem") => {
            let raw = text("path")?
                .ok_or_else(|| field_err("path", "required for type 'filesystem'".into()))?;
            Some(Backend::Filesystem {
                path: absolute_path(&raw).map_err(|e| spec_err("path", e))?,
            })
        }
        Some("s3") => {
            let bucket = text("bucket")?
                .ok_or_else(|| field_err("bucket", "required for type 's3'".into()))?;
            validate_bucket_name(&bucket)?;
            Some(Backend::S3(S3Config {
                bucket,
                prefix: normalize_prefix(&text("prefix")?.unwrap_or_default())
                    .map_err(|e| spec_err("prefix", e))?,
                region: text("region")?,
                endpoint: text("endpoint")?,
            }))
        }
        Some(other) => return Err(spec_err("type", SpecError::UnknownType(other.to_string()))),
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
    // Compiled only to fail early; the resolver compiles its own.
    ExcludeMatcher::new(&exclude)?;
    Ok(DatastoreSection {
        backend,
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

    use crate::domain::config::test_config::{config, ID};

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
}
