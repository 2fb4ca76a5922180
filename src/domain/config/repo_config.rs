//! The `.swamp.yaml` file: the repo identity (`swampVersion`, `initializedAt`,
//! `repoId`) and an optional `datastore:` section (`type` with its location
//! fields, `directories`, `exclude`).
//!
//! `.swamp.yaml` is committed and shared, so a filesystem `datastore.path`
//! may be written so that it works on every teammate's machine: relative
//! (to the repo, the directory holding the file), with `~` (the home) and
//! `$VAR` / `${VAR}` (the environment, via `shellexpand`); an unset variable
//! is an error naming it. A setup writes a path inside the repo relative to
//! it, and the default (`{repo}/.swamp`) as no `type` at all.
//!
//! Parsing keeps the raw document next to the typed fields, so a rewrite
//! (`datastore setup`) replaces only the `datastore:` section and keeps every
//! other key, known or not, in its order (YAML comments are lost). Unknown
//! keys only warn; wrong values of known keys fail.

use super::error::ConfigError;
use super::spec::{normalize_prefix, Backend, S3Config, SpecError};
use super::LOCAL_DIR;
use crate::domain::bucket_name::validate_bucket_name;
use crate::domain::path_resolver::DATASTORE_DIRS;
use crate::domain::pattern_matcher::ExcludeMatcher;
use serde_yaml::{Mapping, Value};
use std::path::{Component, Path, PathBuf};
use uuid::Uuid;

/// Looks up an environment variable (for `$VAR` in a datastore path).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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
    /// Parses the text of `file`; `vars` expands `$VAR` in a datastore path.
    pub fn parse(file: &Path, text: &str, vars: EnvLookup) -> Result<Self, ConfigError> {
        let value: Value = serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map(|l| {
                // A duplicate key is reported where its mapping starts: point
                // at the duplicate itself.
                duplicate_key_line(text, &e.to_string(), l.line(), l.column()).unwrap_or(l.line())
            });
            ConfigError::Yaml {
                file: file.to_path_buf(),
                location: line.map(|l| format!("line {l}: ")).unwrap_or_default(),
                message: e.to_string(),
            }
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
        // Random (v4) only, as `repo init` writes: the nil UUID or a
        // hand-made one could be shared by unrelated repos, whose caches
        // (named by it) would then mix.
        if repo_id.get_version() != Some(uuid::Version::Random) {
            return Err(field_err(
                "repoId",
                &format!("'{repo_id_text}' is not a random (version 4) UUID; run 'swamp repo init' in a fresh clone to get one"),
            ));
        }
        let datastore = match document.get("datastore") {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(section)) => {
                warnings.extend(unknown_keys(section, &DATASTORE_KEYS, "datastore."));
                Some(parse_section(file, section, vars)?)
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

/// The line of the second `key:` in the mapping that starts at `line`,
/// `column` (both 1-based), when `message` is serde_yaml's duplicate-key
/// error.
fn duplicate_key_line(text: &str, message: &str, line: usize, column: usize) -> Option<usize> {
    let key = message
        .split("duplicate entry with key \"")
        .nth(1)?
        .split('"')
        .next()?;
    let indent = column.saturating_sub(1);
    let starts_entry = |l: &str| {
        let (lead, rest) = l.split_at(l.len() - l.trim_start().len());
        lead.len() == indent
            && [
                format!("{key}:"),
                format!("\"{key}\":"),
                format!("'{key}':"),
            ]
            .iter()
            .any(|p| rest.starts_with(p.as_str()))
    };
    text.lines()
        .enumerate()
        .skip(line.saturating_sub(1))
        .filter(|(_, l)| starts_entry(l))
        .nth(1)
        .map(|(i, _)| i + 1)
}

fn unknown_keys(map: &Mapping, known: &[&str], prefix: &str) -> Vec<String> {
    map.keys()
        .filter_map(|k| k.as_str())
        .filter(|k| !known.contains(k))
        .map(|k| format!("unknown key '{prefix}{k}' in .swamp.yaml (ignored)"))
        .collect()
}

/// The datastore directory `raw` names, `~` and `$VAR` expanded, relative
/// to `repo_dir`, lexically cleaned.
fn datastore_path(raw: &str, repo_dir: &Path, vars: EnvLookup) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err(SpecError::EmptyPath.to_string());
    }
    let expanded = shellexpand::full_with_context(
        raw,
        || vars("HOME"),
        |name| match vars(name) {
            Some(value) => Ok(Some(value)),
            None => Err(format!("${name} is not set")),
        },
    )
    .map_err(|e| format!("'{raw}': {}", e.cause))?;
    if expanded.trim().is_empty() {
        return Err(format!("'{raw}' expands to an empty path"));
    }
    let path = repo_dir.join(expanded.as_ref());
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    Ok(clean)
}

fn parse_section(
    file: &Path,
    section: &Mapping,
    vars: EnvLookup,
) -> Result<DatastoreSection, ConfigError> {
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
            let repo_dir = file.parent().unwrap_or(Path::new("/"));
            Some(Backend::Filesystem {
                path: datastore_path(&raw, repo_dir, vars).map_err(|e| field_err("path", e))?,
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

/// Builds the YAML `datastore:` mapping for `backend` in the repo
/// `repo_dir`, keeping `directories` and `exclude` from `previous`; `None`
/// when nothing is left to say (the default datastore, nothing kept).
pub fn datastore_yaml(
    backend: &Backend,
    previous: Option<&Value>,
    repo_dir: &Path,
) -> Option<Value> {
    let mut map = Mapping::new();
    match backend {
        // The default: what a fresh clone uses without being told.
        Backend::Filesystem { path } if *path == repo_dir.join(LOCAL_DIR) => {}
        Backend::Filesystem { path } => {
            map.insert("type".into(), "filesystem".into());
            // Inside the repo: relative, so it holds on every clone.
            let written = match path.strip_prefix(repo_dir) {
                Ok(inside) if !inside.as_os_str().is_empty() => inside.to_path_buf(),
                _ => path.clone(),
            };
            map.insert("path".into(), written.display().to_string().into());
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
    (!map.is_empty()).then_some(Value::Mapping(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::config::test_config::{config, ID};

    fn no_vars(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let err = RepoConfig::parse(
            Path::new("/r/.swamp.yaml"),
            "repoId: x\n  bad: [\n",
            &no_vars,
        )
        .unwrap_err();
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
        let err = RepoConfig::parse(Path::new("/r/.swamp.yaml"), &text, &no_vars).unwrap_err();
        assert!(err.to_string().contains("unknown datastore type 'ftp'"));
    }

    #[test]
    fn invalid_repo_id_and_directories_fail() {
        let err = RepoConfig::parse(Path::new("/f"), "repoId: nope\n", &no_vars).unwrap_err();
        assert!(err.to_string().contains("not a UUID"));
        let text = format!("repoId: {ID}\ndatastore:\n  directories: [data, nope]\n");
        let err = RepoConfig::parse(Path::new("/f"), &text, &no_vars).unwrap_err();
        assert!(err.to_string().contains("unknown directory 'nope'"));
    }

    #[test]
    fn datastore_paths_expand_home_and_variables_and_resolve_against_the_repo() {
        let vars = |name: &str| match name {
            "HOME" => Some("/home/ana".to_string()),
            "SHARED" => Some("/mnt/team".to_string()),
            _ => None,
        };
        let repo = Path::new("/src/infra");
        let cases = [
            ("/abs/ds", Ok("/abs/ds")),
            ("shared/ds", Ok("/src/infra/shared/ds")),
            ("./.swamp", Ok("/src/infra/.swamp")),
            ("../sibling/ds", Ok("/src/sibling/ds")),
            ("~/swamp", Ok("/home/ana/swamp")),
            ("$SHARED/ds", Ok("/mnt/team/ds")),
            ("${SHARED}/x/../ds", Ok("/mnt/team/ds")),
            ("$NOPE/ds", Err("$NOPE is not set")),
            ("  ", Err("empty")),
        ];
        for (raw, want) in cases {
            let got = datastore_path(raw, repo, &vars);
            match want {
                Ok(path) => assert_eq!(got.as_deref(), Ok(Path::new(path)), "{raw}"),
                Err(part) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(part)),
                    "{raw}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn a_setup_writes_the_default_as_nothing_and_a_path_inside_the_repo_relative() {
        let repo = Path::new("/src/infra");
        let fs = |p: &str| Backend::Filesystem { path: p.into() };
        assert_eq!(datastore_yaml(&fs("/src/infra/.swamp"), None, repo), None);
        let kept: Value =
            serde_yaml::from_str("type: s3\nbucket: b\nexclude: [\"logs/\"]\n").unwrap();
        let back = datastore_yaml(&fs("/src/infra/.swamp"), Some(&kept), repo).unwrap();
        assert_eq!(serde_yaml::to_string(&back).unwrap(), "exclude:\n- logs/\n");
        let inside = datastore_yaml(&fs("/src/infra/shared/ds"), None, repo).unwrap();
        assert_eq!(inside["path"], "shared/ds");
        let outside = datastore_yaml(&fs("/mnt/team/ds"), None, repo).unwrap();
        assert_eq!(outside["path"], "/mnt/team/ds");
    }

    #[test]
    fn a_duplicate_key_is_reported_at_its_own_line() {
        let cases = [
            (
                format!("repoId: {ID}\nswampVersion: '1'\nrepoId: {ID}\n"),
                "line 3: ",
            ),
            (
                format!("repoId: {ID}\ndatastore:\n  type: filesystem\n  path: /x\n  type: s3\n"),
                "line 5: ",
            ),
        ];
        for (text, want) in cases {
            let err = RepoConfig::parse(Path::new("/r/.swamp.yaml"), &text, &no_vars).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn only_random_uuids_are_repo_ids() {
        for id in [
            "00000000-0000-0000-0000-000000000000",
            "6f1c3d1e-2b7a-1c1e-9b1a-1d2e3f4a5b6c",
        ] {
            let err = RepoConfig::parse(Path::new("/f"), &format!("repoId: {id}\n"), &no_vars)
                .unwrap_err();
            assert!(err.to_string().contains("version 4"), "{err}");
        }
    }
}
