//! Backends and services that touch disks, processes and networks: the
//! filesystem lock, the lock coordinator (the guard every command runs in),
//! data-item storage, audit log, migration, and repo files.

pub mod atomic_file;
pub mod audit;
pub(crate) mod blocking;
pub(crate) mod child_group;
pub mod coordinator;
pub mod data_store;
pub mod datastore;
pub mod file_lock;
pub mod hashing;
pub mod migration;
pub mod repo_files;
pub mod s3;
