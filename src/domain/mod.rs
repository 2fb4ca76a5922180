//! The datastore model: configuration, naming rules, exclude patterns, path
//! resolution and the distributed-lock contract. Nothing here does I/O except
//! reading the clock.

pub(crate) mod bucket_name;
pub mod config;
pub(crate) mod data_read;
pub mod index_shards;
pub(crate) mod item_name;
pub(crate) mod lease_clock;
pub mod lock;
pub(crate) mod lock_scope;
pub mod part_checksums;
pub(crate) mod path_resolver;
pub(crate) mod pattern_matcher;
pub mod relative_path;
pub mod sha256;
pub(crate) mod sorted_map;
pub mod sync_index;
