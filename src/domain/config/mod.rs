//! Repository and datastore configuration.
//!
//! Three concerns, one file each:
//! - `repo_config`: the `.swamp.yaml` file, which holds the repo identity
//!   (`swampVersion`, `initializedAt`, `repoId`) and an optional `datastore:`
//!   section, and is rewritten without losing keys it does not know;
//! - `spec`: a datastore location ([`Backend`]) and the one-line grammar
//!   `filesystem:/abs/path` or `s3:bucket[/prefix]` that the environment and
//!   the `--datastore` flag use;
//! - `resolution`: which datastore a command uses, decided in one place:
//!   `SWAMP_DATASTORE`, then `--datastore`, then `.swamp.yaml`, then the
//!   default `{repo}/.swamp/`.
//!
//! [`ConfigError`] (`error.rs`) is shared by all three. Everything is re-exported here, so
//! callers name `crate::domain::config::X` whichever file `X` lives in.

mod error;
mod repo_config;
mod resolution;
mod spec;

pub use error::ConfigError;
pub use repo_config::{datastore_yaml, RepoConfig, CONFIG_FILE};
pub use resolution::{
    resolve_datastore, ConfigSource, ResolvedDatastore, DATASTORE_ENV, LOCAL_DIR,
};
pub use spec::{normalize_prefix, Backend, S3Config};

#[cfg(test)]
pub(crate) mod test_config {
    //! A parsed `.swamp.yaml` for unit tests.

    use super::RepoConfig;
    use std::path::Path;

    /// The repoId of `config`.
    pub(crate) const ID: &str = "0b5c8a4e-9d1e-4f7a-8a57-0d3f2b1c6e11";

    /// `.swamp.yaml` of repo `/r` with identity keys and `extra`.
    pub(crate) fn config(extra: &str) -> RepoConfig {
        let text = format!("swampVersion: 0.1.0\nrepoId: {ID}\n{extra}");
        RepoConfig::parse(Path::new("/r/.swamp.yaml"), &text, &|_| None).unwrap()
    }
}
