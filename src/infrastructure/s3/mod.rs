//! The S3 backend: an object store with conditional writes (`store`), the
//! client and its error messages (`client`), the lock (`lock`), and the local
//! cache with index-based sync (`cache`, `sync`).

pub(crate) mod cache;
pub(crate) mod cache_lock;
pub mod client;
pub(crate) mod index_store;
pub(crate) mod lock;
#[cfg(test)]
pub(crate) mod memory_store;
pub(crate) mod migrate;
pub(crate) mod probe;
pub(crate) mod probe_record;
pub(crate) mod scoped_records;
pub(crate) mod shared_state;
pub mod store;
pub(crate) mod sync;
pub(crate) mod sync_times;
