//! Where a runtime-data file lives. Every relative path under `.swamp/` resolves
//! either to the datastore (the configured backend's directory or cache) or, when
//! its top directory is not a datastore directory or it matches an exclude
//! pattern, to the repo's local `.swamp/`.

use crate::domain::pattern_matcher::ExcludeMatcher;
use crate::domain::relative_path::SafeRelativePath;
use std::path::{Path, PathBuf};

/// The runtime-data directories a datastore holds (as upstream swamp).
pub const DATASTORE_DIRS: [&str; 12] = [
    "data",
    "outputs",
    "workflow-runs",
    "secrets",
    "bundles",
    "vault-bundles",
    "audit",
    "telemetry",
    "logs",
    "files",
    "definitions-evaluated",
    "workflows-evaluated",
];

/// Routes relative runtime-data paths to the datastore or to local `.swamp/`.
#[derive(Debug, Clone)]
pub struct DatastorePathResolver {
    datastore_root: PathBuf,
    local_root: PathBuf,
    directories: Vec<String>,
    exclude: ExcludeMatcher,
}

impl DatastorePathResolver {
    /// A resolver for a datastore at `datastore_root` with local data at `local_root`.
    pub fn new(
        datastore_root: PathBuf,
        local_root: PathBuf,
        directories: Vec<String>,
        exclude: ExcludeMatcher,
    ) -> Self {
        Self {
            datastore_root,
            local_root,
            directories,
            exclude,
        }
    }

    /// The same routing with the datastore directory at `root` (a private
    /// copy read instead of a busy cache).
    pub fn rooted_at(&self, root: PathBuf) -> Self {
        Self {
            datastore_root: root,
            ..self.clone()
        }
    }

    /// The datastore directory (filesystem path or S3 cache).
    pub fn datastore_root(&self) -> &Path {
        &self.datastore_root
    }

    /// The datastore directories in use.
    pub fn directories(&self) -> &[String] {
        &self.directories
    }

    /// Whether `rel` belongs in the datastore (as opposed to local `.swamp/`).
    pub fn is_datastore_path(&self, rel: &SafeRelativePath) -> bool {
        self.directories.iter().any(|d| d == rel.top_dir())
            && !self.exclude.is_excluded(rel.as_str())
    }

    /// The absolute path where `rel` lives.
    pub fn resolve(&self, rel: &SafeRelativePath) -> PathBuf {
        if self.is_datastore_path(rel) {
            rel.under(&self.datastore_root)
        } else {
            rel.under(&self.local_root)
        }
    }

    /// The distinct roots a directory's files may be spread over.
    pub fn roots_for(&self, dir: &str) -> Vec<PathBuf> {
        let mut roots = Vec::new();
        if self.directories.iter().any(|d| d == dir) {
            roots.push(self.datastore_root.join(dir));
        }
        let local = self.local_root.join(dir);
        if !roots.contains(&local) {
            roots.push(local);
        }
        roots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(exclude: &[&str]) -> DatastorePathResolver {
        DatastorePathResolver::new(
            PathBuf::from("/ds"),
            PathBuf::from("/repo/.swamp"),
            vec!["data".into(), "logs".into()],
            ExcludeMatcher::new(&exclude.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap(),
        )
    }

    fn rel(s: &str) -> SafeRelativePath {
        SafeRelativePath::parse(s).unwrap()
    }

    #[test]
    fn datastore_dirs_go_to_the_datastore() {
        let r = resolver(&[]);
        assert_eq!(r.resolve(&rel("data/a/b")), PathBuf::from("/ds/data/a/b"));
    }

    #[test]
    fn other_dirs_and_excludes_stay_local() {
        let r = resolver(&["logs/debug/"]);
        assert_eq!(
            r.resolve(&rel("outputs/x")),
            PathBuf::from("/repo/.swamp/outputs/x")
        );
        assert_eq!(
            r.resolve(&rel("logs/debug/1.log")),
            PathBuf::from("/repo/.swamp/logs/debug/1.log")
        );
        assert_eq!(
            r.resolve(&rel("logs/1.log")),
            PathBuf::from("/ds/logs/1.log")
        );
    }

    #[test]
    fn roots_for_lists_both_when_they_differ() {
        let r = resolver(&[]);
        assert_eq!(
            r.roots_for("data"),
            vec![
                PathBuf::from("/ds/data"),
                PathBuf::from("/repo/.swamp/data")
            ]
        );
    }
}
