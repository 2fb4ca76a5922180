//! The repo on disk: `.swamp.yaml` (read, create, rewrite atomically) and the
//! local `.swamp/` directory.

use crate::domain::config::{ConfigError, RepoConfig, CONFIG_FILE, LOCAL_DIR};
use crate::infrastructure::atomic_file::write_atomic;
use serde_yaml::{Mapping, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// This binary's version, written as `swampVersion`.
pub const SWAMP_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Path of `.swamp.yaml` in `repo_dir`.
pub fn config_path(repo_dir: &Path) -> PathBuf {
    repo_dir.join(CONFIG_FILE)
}

/// Loads `.swamp.yaml` from `repo_dir`, or `NotARepo`.
pub fn load_config(repo_dir: &Path) -> Result<RepoConfig, ConfigError> {
    let path = config_path(repo_dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotARepo(repo_dir.to_path_buf()))
        }
        Err(e) => return Err(ConfigError::Io { path, source: e }),
    };
    // `$VAR` in a datastore path is the config's own syntax: read here.
    RepoConfig::parse(&path, &text, &|name| std::env::var(name).ok())
}

/// Writes `document` as `.swamp.yaml` atomically (temp + rename).
pub fn save_document(repo_dir: &Path, document: &Mapping) -> Result<(), ConfigError> {
    let path = config_path(repo_dir);
    let text = serde_yaml::to_string(&Value::Mapping(document.clone())).map_err(|e| {
        ConfigError::Field {
            file: path.clone(),
            field: "(document)".into(),
            reason: e.to_string(),
        }
    })?;
    write_atomic(&path, text.as_bytes()).map_err(|source| ConfigError::Io { path, source })
}

/// Outcome of `repo init`.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    /// The repo's id.
    pub repo_id: uuid::Uuid,
    /// Whether `.swamp.yaml` already existed.
    pub already_initialized: bool,
}

/// Creates `.swamp.yaml` and `.swamp/`, or keeps an existing repo as it is.
pub fn init_repo(repo_dir: &Path) -> Result<InitOutcome, ConfigError> {
    fs::create_dir_all(repo_dir).map_err(|source| ConfigError::Io {
        path: repo_dir.to_path_buf(),
        source,
    })?;
    let local = repo_dir.join(LOCAL_DIR);
    fs::create_dir_all(&local).map_err(|source| ConfigError::Io {
        path: local.clone(),
        source,
    })?;
    match load_config(repo_dir) {
        Ok(existing) => Ok(InitOutcome {
            repo_id: existing.repo_id,
            already_initialized: true,
        }),
        Err(ConfigError::NotARepo(_)) => {
            let repo_id = uuid::Uuid::new_v4();
            let mut doc = Mapping::new();
            doc.insert("swampVersion".into(), SWAMP_VERSION.into());
            doc.insert(
                "initializedAt".into(),
                chrono::Utc::now()
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string()
                    .into(),
            );
            doc.insert("repoId".into(), repo_id.to_string().into());
            save_document(repo_dir, &doc)?;
            Ok(InitOutcome {
                repo_id,
                already_initialized: false,
            })
        }
        Err(other) => Err(other),
    }
}
