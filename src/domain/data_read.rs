//! Which datastore files a data-item read needs, chosen from the paths a
//! remote index lists, so a cold cache fetches only those (lazy hydration).
//!
//! Layout (see `infrastructure/data_store.rs`): item `app/config` keeps
//! version N as `data/app/config/@versions/N.json` (metadata, the commit
//! point) and `N.bin` (content). `data get` needs one version's two files,
//! `data versions` every metadata file of one item, `data list` the newest
//! metadata file of every item. `@` cannot occur in item names, so the
//! versions directory is found unambiguously.

use std::collections::{BTreeMap, HashSet};

/// The directory of an item's versions.
pub const VERSIONS_DIR: &str = "@versions";

/// A part of the datastore a reader needs.
pub trait ReadScope: Send + Sync {
    /// Of the `listed` paths, those the read needs.
    fn needs(&self, listed: &mut dyn Iterator<Item = &str>) -> HashSet<String>;
    /// The index groups (`index_shards::group_of`) that hold every path the
    /// read may need, so a sharded index is read only there; `None`: all.
    fn index_groups(&self) -> Option<Vec<String>> {
        None
    }
}

/// A read of data items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataRead {
    /// One version of an item (the newest when `None`).
    Get {
        /// The item name.
        item: String,
        /// The version.
        version: Option<u64>,
    },
    /// Every version's metadata of an item.
    Versions {
        /// The item name.
        item: String,
    },
    /// The newest version's metadata of every item.
    List,
}

/// A version file: its item, version number and whether it is the metadata.
fn version_file(path: &str) -> Option<(&str, u64, bool)> {
    let (item, file) = path
        .strip_prefix("data/")?
        .split_once(&format!("/{VERSIONS_DIR}/"))?;
    let (number, extension) = file.split_once('.')?;
    let version = number.parse().ok()?;
    match extension {
        "json" => Some((item, version, true)),
        "bin" => Some((item, version, false)),
        _ => None,
    }
}

fn meta_path(item: &str, version: u64) -> String {
    format!("data/{item}/{VERSIONS_DIR}/{version}.json")
}

fn content_path(item: &str, version: u64) -> String {
    format!("data/{item}/{VERSIONS_DIR}/{version}.bin")
}

impl ReadScope for DataRead {
    fn index_groups(&self) -> Option<Vec<String>> {
        match self {
            DataRead::Get { item, .. } | DataRead::Versions { item } => {
                Some(vec![format!("data/{item}/{VERSIONS_DIR}")])
            }
            DataRead::List => None,
        }
    }

    fn needs(&self, listed: &mut dyn Iterator<Item = &str>) -> HashSet<String> {
        // Committed versions (those with metadata) by item.
        let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (item, version, meta) in listed.filter_map(version_file) {
            if meta {
                versions.entry(item).or_default().push(version);
            }
        }
        let newest = |item: &str| versions.get(item).and_then(|v| v.iter().max().copied());
        match self {
            DataRead::Get { item, version } => {
                let chosen = match version {
                    Some(v) => versions
                        .get(item.as_str())
                        .filter(|listed| listed.contains(v))
                        .map(|_| *v),
                    None => newest(item),
                };
                chosen
                    .map(|v| [meta_path(item, v), content_path(item, v)].into())
                    .unwrap_or_default()
            }
            DataRead::Versions { item } => versions
                .get(item.as_str())
                .into_iter()
                .flatten()
                .map(|v| meta_path(item, *v))
                .collect(),
            DataRead::List => versions
                .iter()
                .filter_map(|(item, v)| v.iter().max().map(|max| meta_path(item, *max)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTED: [&str; 9] = [
        "data/app/config/@versions/1.json",
        "data/app/config/@versions/1.bin",
        "data/app/config/@versions/2.json",
        "data/app/config/@versions/2.bin",
        // Version 3 has no metadata yet: not committed.
        "data/app/config/@versions/3.bin",
        "data/app/config/child/@versions/7.json",
        "data/app/config/child/@versions/7.bin",
        "audit/2026-12-01.jsonl",
        "outputs/report",
    ];

    fn needs(read: DataRead) -> Vec<String> {
        let mut got: Vec<String> = read
            .needs(&mut LISTED.iter().copied())
            .into_iter()
            .collect();
        got.sort();
        got
    }

    #[test]
    fn each_read_needs_only_its_files() {
        let rows: [(DataRead, &[&str]); 6] = [
            (
                DataRead::Get {
                    item: "app/config".into(),
                    version: None,
                },
                &[
                    "data/app/config/@versions/2.bin",
                    "data/app/config/@versions/2.json",
                ],
            ),
            (
                DataRead::Get {
                    item: "app/config".into(),
                    version: Some(1),
                },
                &[
                    "data/app/config/@versions/1.bin",
                    "data/app/config/@versions/1.json",
                ],
            ),
            (
                DataRead::Get {
                    item: "app/config".into(),
                    version: Some(3),
                },
                &[],
            ),
            (
                DataRead::Get {
                    item: "absent".into(),
                    version: None,
                },
                &[],
            ),
            (
                DataRead::Versions {
                    item: "app/config".into(),
                },
                &[
                    "data/app/config/@versions/1.json",
                    "data/app/config/@versions/2.json",
                ],
            ),
            (
                DataRead::List,
                &[
                    "data/app/config/@versions/2.json",
                    "data/app/config/child/@versions/7.json",
                ],
            ),
        ];
        for (read, want) in rows {
            assert_eq!(needs(read.clone()), want, "{read:?}");
        }
    }
}
