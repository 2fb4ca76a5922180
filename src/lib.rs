//! swamp datastore: configurable storage for a swamp repo's runtime data (`.swamp/`).
//!
//! `domain` holds the pure model (configuration, lock contract, path rules),
//! `infrastructure` the backends that touch disks and networks, and `cli` the
//! command-line edge that parses, calls plain functions and renders results.
//! Only what the binary, the black-box tests and the fuzz targets use is
//! public; everything else is `pub(crate)`, so the compiler finds dead code.

mod cli;
pub mod domain;
pub mod infrastructure;

pub use cli::run;
