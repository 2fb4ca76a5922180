//! The datastore model: configuration, naming rules, exclude patterns, path
//! resolution and the distributed-lock contract. Nothing here does I/O except
//! reading the clock.

pub mod bucket_name;
pub mod config;
pub mod item_name;
pub mod lease_clock;
pub mod lock;
pub mod part_checksums;
pub mod path_resolver;
pub mod pattern_matcher;
pub mod relative_path;
pub mod sha256;
pub mod sorted_map;
pub mod sync_index;
