//! Command implementations: plain functions that take a context and typed
//! options, call the datastore (`ctx.datastore.guard(..)`, `.reader(..)`,
//! `.sync(..)`, `.migrate_to(..)`, ...) and return typed results; rendering
//! lives beside each result type.

pub mod data;
pub mod exec;
pub mod lock;
pub mod repair;
pub mod repo;
pub mod setup;
pub mod status;
pub mod sync;
