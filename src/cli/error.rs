//! The one place where failures become exit codes, JSON error codes and
//! one-line messages.
//!
//! Exit codes (as upstream swamp documents them): 0 ok, 1 failure, 2 usage or
//! configuration error, 75 (EX_TEMPFAIL) lock not acquired in time or lost —
//! retry with backoff —, 128+N stopped by signal N; `exec` passes its child's
//! code through (127/126 when the command cannot be found/run).

use crate::domain::config::ConfigError;
use crate::domain::item_name::ItemNameError;
use crate::domain::lock::LockError;
use crate::infrastructure::data_store::DataError;
use crate::infrastructure::datastore::{SetupError, StoreError, SyncError, ViewError};
use crate::infrastructure::migration::MigrationError;
use thiserror::Error;

/// Any failure of a command.
#[derive(Debug, Error)]
pub enum CliError {
    /// Configuration problems.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad user input that is not configuration.
    #[error("{0}")]
    Validation(String),
    /// Lock problems.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Data-item problems.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Migration problems.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// S3 sync problems.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A command that refuses without an explicit flag.
    #[error("{0}")]
    Refused(String),
    /// `exec` could not start its command.
    #[error("cannot run '{program}': {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        reason: String,
        /// 127 not found, 126 not executable.
        code: i32,
    },
    /// A setup refused its target (the failures it shares with other
    /// commands become those commands' variants).
    #[error(transparent)]
    Setup(SetupError),
    /// `exec --read-only`'s command changed its view (changes discarded).
    #[error(
        "'{program}' changed its read-only view of the datastore ({}) and exited {exit_code}; the changes were discarded and nothing was pushed: run it without --read-only to change the datastore",
        list_paths(changed)
    )]
    ReadOnlyChanged {
        /// The program.
        program: String,
        /// The paths it added, removed or changed.
        changed: Vec<String>,
        /// Its exit code.
        exit_code: i32,
    },
    /// `exec --scope`'s command changed paths outside its scope.
    #[error(
        "'{program}' changed {} outside its scope ({scope}) and exited {exit_code}; nothing was applied or pushed: rerun with a --scope that covers them, or without --scope",
        list_paths(changed)
    )]
    OutsideScope {
        /// The program.
        program: String,
        /// The scope's paths, joined.
        scope: String,
        /// The paths it changed outside the scope.
        changed: Vec<String>,
        /// Its exit code.
        exit_code: i32,
    },
    /// `exec --scope`'s command left links or other non-files in its scope.
    #[error(
        "'{program}' left {} in its scope that are neither files nor directories and exited {exit_code}; swamp stores regular files only, so nothing was applied or pushed: replace them with regular files and rerun",
        list_paths(paths)
    )]
    NotFilesInScope {
        /// The program.
        program: String,
        /// The entries.
        paths: Vec<String>,
        /// Its exit code.
        exit_code: i32,
    },
    /// The read-only view could not be made, checked or removed.
    #[error(transparent)]
    View(#[from] ViewError),
    /// Other I/O failures.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// "N paths: a, b, c, …" (at most five named).
fn list_paths(paths: &[String]) -> String {
    const NAMED: usize = 5;
    let mut named = paths
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > NAMED {
        named.push_str(", …");
    }
    let noun = if paths.len() == 1 { "path" } else { "paths" };
    format!("{} {noun}: {named}", paths.len())
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Sync(SyncError::Store(e))
    }
}

impl From<SetupError> for CliError {
    fn from(e: SetupError) -> Self {
        match e {
            SetupError::Migration(e) => CliError::Migration(e),
            SetupError::Sync(e) => CliError::Sync(e),
            SetupError::Store(e) => e.into(),
            SetupError::Config(e) => CliError::Config(e),
            SetupError::Lock(e) => CliError::Lock(e),
            refused => CliError::Setup(refused),
        }
    }
}

impl From<ItemNameError> for CliError {
    fn from(e: ItemNameError) -> Self {
        CliError::Validation(e.to_string())
    }
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Config(_)
            | CliError::Validation(_)
            | CliError::Refused(_)
            | CliError::Setup(SetupError::SameDatastore(_))
            | CliError::Setup(SetupError::TargetInside(_))
            | CliError::Setup(SetupError::ConfigChanged) => 2,
            CliError::Lock(e)
            | CliError::Data(DataError::Lock(e))
            | CliError::Migration(MigrationError::Lock(e))
            | CliError::Sync(SyncError::Lock(e)) => lock_exit_code(e),
            CliError::Spawn { code, .. } => *code,
            CliError::Data(_)
            | CliError::Migration(_)
            | CliError::Sync(_)
            | CliError::Setup(_)
            | CliError::ReadOnlyChanged { .. }
            | CliError::OutsideScope { .. }
            | CliError::NotFilesInScope { .. }
            | CliError::View(_)
            | CliError::Io { .. } => 1,
        }
    }

    /// The snake_case code in `{"error": {"code": ...}}`.
    pub fn code(&self) -> &'static str {
        match self {
            CliError::Config(ConfigError::NotARepo(_)) => "not_a_repo",
            CliError::Config(_) => "config_invalid",
            CliError::Validation(_) => "validation_failed",
            CliError::Refused(_) => "refused",
            CliError::Lock(e)
            | CliError::Data(DataError::Lock(e))
            | CliError::Migration(MigrationError::Lock(e))
            | CliError::Sync(SyncError::Lock(e)) => lock_code(e),
            CliError::Data(DataError::NotFound(_))
            | CliError::Data(DataError::VersionNotFound { .. }) => "not_found",
            CliError::Data(DataError::Corrupt { .. }) => "corrupt_data",
            CliError::Data(DataError::Io { .. }) | CliError::Io { .. } | CliError::View(_) => {
                "io_error"
            }
            CliError::ReadOnlyChanged { .. } => "read_only_changed",
            CliError::OutsideScope { .. } => "outside_scope",
            CliError::NotFilesInScope { .. } => "not_a_file",
            CliError::Migration(MigrationError::Conflicts(_)) => "migration_conflict",
            CliError::Migration(MigrationError::Occupied { .. }) => "target_occupied",
            CliError::Migration(MigrationError::Store(_)) => "s3_error",
            CliError::Migration(MigrationError::Index(_)) => "remote_index_invalid",
            CliError::Migration(MigrationError::ForeignRepo(_)) => "foreign_repo",
            CliError::Migration(_) => "migration_failed",
            CliError::Spawn { .. } => "spawn_failed",
            CliError::Setup(SetupError::SameDatastore(_))
            | CliError::Setup(SetupError::TargetInside(_)) => "validation_failed",
            CliError::Setup(SetupError::ConfigChanged) => "refused",
            CliError::Setup(SetupError::UnsafeStore { .. }) => "conditional_writes_unsupported",
            CliError::Setup(_) => "migration_failed",
            CliError::Sync(SyncError::Index(_)) => "remote_index_invalid",
            CliError::Sync(SyncError::ForeignRepo(_)) => "foreign_repo",
            CliError::Sync(SyncError::Store(_)) => "s3_error",
            CliError::Sync(_) => "sync_failed",
        }
    }
}

fn lock_exit_code(e: &LockError) -> i32 {
    match e {
        LockError::Timeout { .. } | LockError::Lost(_) => 75,
        LockError::Interrupted { signal } => 128 + signal,
        LockError::Store { .. } | LockError::Backend { .. } => 1,
    }
}

fn lock_code(e: &LockError) -> &'static str {
    match e {
        LockError::Timeout { .. } => "lock_timeout",
        LockError::Lost(_) => "lock_lost",
        LockError::Interrupted { .. } => "interrupted",
        LockError::Store { .. } | LockError::Backend { .. } => "lock_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_json_error_code_is_listed_in_the_readme() {
        let source = include_str!("error.rs");
        let readme = include_str!("../../README.md");
        let body = &source[..source.find("#[cfg(test)]").unwrap()];
        let codes: std::collections::BTreeSet<&str> = body
            .split("=> \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|code| code.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert!(codes.len() > 20, "{codes:?}");
        for code in codes {
            assert!(
                readme.contains(&format!("`{code}`")),
                "README lists no `{code}`"
            );
        }
    }

    #[test]
    fn lock_failures_map_to_tempfail() {
        let t = CliError::Lock(LockError::Timeout {
            location: "/x/.datastore.lock".into(),
            waited: Duration::from_secs(1),
            holder: "x".into(),
        });
        assert_eq!((t.exit_code(), t.code()), (75, "lock_timeout"));
        let l = CliError::Data(DataError::Lock(LockError::Lost("gone".into())));
        assert_eq!((l.exit_code(), l.code()), (75, "lock_lost"));
        let i = CliError::Lock(LockError::Interrupted { signal: 2 });
        assert_eq!(i.exit_code(), 130);
    }

    /// A setup's failures keep their kind: an S3 failure mid-migration is
    /// an `s3_error`, a pull's failure a sync failure, a refused target a
    /// usage error.
    #[test]
    fn setup_failures_map_to_the_code_of_their_source() {
        let store = || StoreError::Failed {
            op: "PutObject",
            target: "s3://b/k".into(),
            message: "AccessDenied".into(),
        };
        let rows: [(SetupError, i32, &str); 6] = [
            (
                SetupError::Migration(MigrationError::Store(store())),
                1,
                "s3_error",
            ),
            (SetupError::Store(store()), 1, "s3_error"),
            (
                SetupError::Sync(SyncError::Behind("s3:b".into())),
                1,
                "sync_failed",
            ),
            (
                SetupError::SameDatastore("s3:b".into()),
                2,
                "validation_failed",
            ),
            (SetupError::ConfigChanged, 2, "refused"),
            (
                SetupError::UnsafeStore {
                    target: "s3://b/".into(),
                    missing: vec!["If-Match on PUT"],
                },
                1,
                "conditional_writes_unsupported",
            ),
        ];
        for (setup, exit, code) in rows {
            let shown = setup.to_string();
            let e = CliError::from(setup);
            assert_eq!((e.exit_code(), e.code()), (exit, code), "{shown}");
            assert_eq!(e.to_string(), shown);
        }
    }

    #[test]
    fn config_and_not_found_codes() {
        let e = CliError::Config(ConfigError::NotARepo("/x".into()));
        assert_eq!((e.exit_code(), e.code()), (2, "not_a_repo"));
        let e = CliError::Data(DataError::NotFound("a".into()));
        assert_eq!((e.exit_code(), e.code()), (1, "not_found"));
    }
}
