//! Which datastore a command uses. Decided here and nowhere else, in this
//! order: the `SWAMP_DATASTORE` environment variable, the `--datastore` flag,
//! the `datastore:` section of `.swamp.yaml`, and finally `{repo}/.swamp/`.
//!
//! The environment wins so a CI job can redirect every command without
//! touching `.swamp.yaml`. An empty `SWAMP_DATASTORE` counts as unset.

use super::error::ConfigError;
use super::repo_config::RepoConfig;
use super::spec::{parse_datastore_spec, Backend};
use crate::domain::path_resolver::DATASTORE_DIRS;
use serde::Serialize;
use std::fmt;
use std::path::Path;

/// The local runtime-data directory name.
pub const LOCAL_DIR: &str = ".swamp";
/// The environment variable that overrides the datastore.
pub const DATASTORE_ENV: &str = "SWAMP_DATASTORE";

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
    // Only the backend can be overridden: directories and exclude patterns
    // always come from `.swamp.yaml`.
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::config::test_config::config;

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
}
