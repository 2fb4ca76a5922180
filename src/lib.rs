//! swamp datastore: configurable storage for a swamp repo's runtime data (`.swamp/`).
//!
//! `domain` holds the pure model (configuration, lock contract, path rules),
//! `infrastructure` the backends that touch disks and networks, and `cli` the
//! command-line edge that parses, calls plain functions and renders results.

pub mod cli;
pub mod domain;
pub mod infrastructure;
