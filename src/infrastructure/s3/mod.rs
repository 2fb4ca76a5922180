//! The S3 backend: an object store with conditional writes (`store`), the
//! client and its error messages (`client`), the lock (`lock`), and the local
//! cache with index-based sync (`cache`, `sync`).

pub mod cache;
pub mod client;
pub mod lock;
#[cfg(test)]
pub mod memory_store;
pub mod migrate;
pub mod probe;
pub mod store;
pub mod sync;
