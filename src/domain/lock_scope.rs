//! What a lock holds: the whole datastore, or a set of paths in it.
//!
//! Model: a scope is a list of `/`-joined datastore paths, each standing for
//! itself and everything under it. Two scopes conflict when a path of one
//! equals, or lies under, a path of the other (at segment boundaries:
//! `data/app` covers `data/app/config` but not `data/apple`). The whole
//! datastore conflicts with everything. A data item's writers hold its
//! versions directory, so writers of different items never conflict; see
//! design/datastores.md (Scoped locks) for the protocol built on this.

use crate::domain::data_read::{ReadScope, VERSIONS_DIR};
use crate::domain::item_name::ItemName;
use crate::domain::lock::LockObservation;
use std::collections::HashSet;

/// What a lock holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockScope {
    /// The whole datastore.
    Whole,
    /// These paths and everything under them.
    Paths(Vec<String>),
}

impl LockScope {
    /// The scope of a data item's writers: its versions directory.
    pub fn item(name: &ItemName) -> Self {
        LockScope::Paths(vec![format!("data/{name}/{VERSIONS_DIR}")])
    }

    /// The scope the record `obs` holds: its paths, or — a record without
    /// any, or one that cannot be read — the whole datastore.
    pub fn held_by(obs: &LockObservation) -> Self {
        match obs.info.as_ref().and_then(|i| i.scope.as_ref()) {
            Some(paths) => LockScope::Paths(paths.clone()),
            None => LockScope::Whole,
        }
    }

    /// The paths (none for the whole datastore).
    pub fn paths(&self) -> &[String] {
        match self {
            LockScope::Whole => &[],
            LockScope::Paths(paths) => paths,
        }
    }

    /// Whether the datastore path `path` lies inside this scope.
    pub fn contains(&self, path: &str) -> bool {
        match self {
            LockScope::Whole => true,
            LockScope::Paths(paths) => paths.iter().any(|p| covers(p, path)),
        }
    }

    /// Of the changed datastore paths `changed`, those outside this scope:
    /// neither inside it nor a directory on the way to it (creating
    /// `data/new/@versions` changes `data` and `data/new` too; "." is the
    /// datastore root).
    pub fn outside(&self, changed: &[String]) -> Vec<String> {
        let on_the_way =
            |path: &str| path == "." || self.paths().iter().any(|p| p != path && covers(path, p));
        changed
            .iter()
            .filter(|path| !self.contains(path) && !on_the_way(path))
            .cloned()
            .collect()
    }

    /// Whether a holder of `self` and a holder of `other` may not both proceed.
    pub fn conflicts(&self, other: &LockScope) -> bool {
        match (self, other) {
            (LockScope::Whole, _) | (_, LockScope::Whole) => true,
            (LockScope::Paths(ours), LockScope::Paths(theirs)) => ours
                .iter()
                .any(|a| theirs.iter().any(|b| covers(a, b) || covers(b, a))),
        }
    }
}

/// A scoped writer's pull needs what its scope holds.
impl ReadScope for LockScope {
    /// An item's versions directory is one group, and so is a command's own
    /// audit file (which the guard adds to an item writer's scope); a commit
    /// must also see the directories on the way to them, in case one is
    /// listed as a file. Any other path may hold files of every group.
    fn index_groups(&self) -> Option<Vec<String>> {
        let mut groups = Vec::new();
        for path in self.paths() {
            groups.extend(groups_holding(path)?);
        }
        (!groups.is_empty()).then_some(groups)
    }

    fn needs(&self, listed: &mut dyn Iterator<Item = &str>) -> HashSet<String> {
        listed
            .filter(|path| self.contains(path))
            .map(str::to_string)
            .collect()
    }
}

/// The index groups that hold every file at or under `path`, and every
/// directory above them (one listed as a file would make the index
/// unreadable): `path`'s group when it lies in an item's versions directory
/// or is a command's own audit file; `None` (any group) otherwise.
pub(crate) fn groups_holding(path: &str) -> Option<Vec<String>> {
    let group = crate::domain::index_shards::group_of(path);
    if !group.ends_with(&format!("/{VERSIONS_DIR}")) && !is_own_audit_file(path) {
        return None;
    }
    let mut groups = vec![group.to_string()];
    let mut above = group;
    while let Some((up, _)) = above.rsplit_once('/') {
        groups.push(up.to_string());
        above = up;
    }
    Some(groups)
}

/// Whether `path` is a command's own audit file, `audit/{day}/{writer}.jsonl`
/// (`infrastructure/audit.rs`): a file, never a directory, so one group.
pub(crate) fn is_own_audit_file(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    segments.len() == 3 && segments[0] == "audit" && segments[2].ends_with(".jsonl")
}

/// Whether `outer` is `inner` or a directory above it.
fn covers(outer: &str, inner: &str) -> bool {
    match inner.strip_prefix(outer) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> LockScope {
        LockScope::Paths(p.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn scopes_conflict_when_one_path_covers_another() {
        let rows: [(LockScope, LockScope, bool); 9] = [
            (LockScope::Whole, LockScope::Whole, true),
            (LockScope::Whole, paths(&["data/a"]), true),
            (paths(&["data/a"]), paths(&["data/a"]), true),
            (paths(&["data/a"]), paths(&["data/a/b"]), true),
            (paths(&["data/a/b"]), paths(&["data/a"]), true),
            (paths(&["data/a"]), paths(&["data/ab"]), false),
            (paths(&["data/a"]), paths(&["data/b", "outputs"]), false),
            (paths(&["data/a", "outputs/x"]), paths(&["outputs"]), true),
            (paths(&[]), paths(&["data"]), false),
        ];
        for (a, b, conflict) in rows {
            assert_eq!(a.conflicts(&b), conflict, "{a:?} vs {b:?}");
            assert_eq!(b.conflicts(&a), conflict, "{b:?} vs {a:?} (symmetric)");
        }
    }

    #[test]
    fn items_hold_their_versions_directory_only() {
        let item = |n: &str| LockScope::item(&ItemName::parse(n).unwrap());
        assert_eq!(item("app/config"), paths(&["data/app/config/@versions"]));
        // `app` and `app/config` are different items with different versions
        // directories: their writers never wait for each other.
        assert!(!item("app").conflicts(&item("app/config")));
        assert!(item("app").conflicts(&paths(&["data/app"])));
    }

    #[test]
    fn changes_outside_a_scope_are_those_neither_inside_nor_on_the_way() {
        let scope = paths(&["data/app/@versions", "outputs/report"]);
        let changed: Vec<String> = [
            ".",
            "data",
            "data/app",
            "data/app/@versions/1.bin",
            "data/apple",
            "outputs/report",
            "outputs/report.txt",
            "outputs/report/x",
            "secrets/key",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            scope.outside(&changed),
            ["data/apple", "outputs/report.txt", "secrets/key"]
        );
    }

    #[test]
    fn a_scope_contains_the_paths_under_its_own() {
        let scope = paths(&["data/a/@versions", "audit/d/w.jsonl"]);
        let listed = [
            "data/a/@versions/1.bin",
            "data/a/@versions",
            "data/ab/@versions/1.bin",
            "data/a/b/@versions/1.bin",
            "audit/d/w.jsonl",
            "audit/d/w.jsonl2",
        ];
        let mut needed: Vec<String> = scope.needs(&mut listed.into_iter()).into_iter().collect();
        needed.sort();
        assert_eq!(
            needed,
            [
                "audit/d/w.jsonl",
                "data/a/@versions",
                "data/a/@versions/1.bin"
            ]
        );
        assert!(LockScope::Whole.contains("anything"));
    }

    #[test]
    fn an_item_writers_scope_reads_only_its_index_groups() {
        let item = paths(&["data/app/config/@versions", "audit/2026-12-01/w1.jsonl"]);
        let groups = item.index_groups().expect("a partial read");
        for group in [
            "data/app/config/@versions",
            "data/app/config",
            "data/app",
            "data",
            "audit/2026-12-01/w1.jsonl",
            "audit/2026-12-01",
            "audit",
        ] {
            assert!(groups.contains(&group.to_string()), "{group}: {groups:?}");
        }
        // Any other path may hold files of every group.
        for whole in [
            paths(&["outputs"]),
            paths(&["data/app/config/@versions", "outputs/x"]),
            LockScope::Whole,
        ] {
            assert_eq!(whole.index_groups(), None, "{whole:?}");
        }
        assert!(!is_own_audit_file("audit/2026-12-01.jsonl"));
    }
}
