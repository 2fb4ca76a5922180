//! Backends and services that touch disks, processes and networks: the
//! filesystem lock, the lock coordinator (the guard every command runs in),
//! data-item storage, audit log, migration, and repo files.

pub(crate) mod atomic_file;
pub(crate) mod audit;
pub(crate) mod blocking;
pub(crate) mod child_group;
pub(crate) mod coordinator;
pub(crate) mod data_store;
pub(crate) mod datastore;
pub(crate) mod file_lock;
pub mod hashing;
pub(crate) mod migration;
pub(crate) mod read_only_view;
pub(crate) mod repo_files;
pub mod s3;
pub(crate) mod scoped_lock;
pub(crate) mod stop;
pub(crate) mod working_copy;
