//! The audit log: one JSON line per data change.
//!
//! Model: on a filesystem datastore every writer appends to the day's file,
//! `audit/{YYYY-MM-DD}.jsonl` (single `O_APPEND` writes do not interleave).
//! On S3 writers of different items run at once from different caches and
//! each index commit merges only the writer's own paths, so a shared day
//! file would lose lines; there each command writes a file of its own,
//! `audit/{YYYY-MM-DD}/{writer}.jsonl` (the day the command started), which
//! no other writer touches.

use crate::domain::path_resolver::DatastorePathResolver;
use crate::domain::relative_path::SafeRelativePath;
use serde::Serialize;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};

/// One audit entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry<'a> {
    /// ISO-8601 time.
    pub time: String,
    /// `put`, `rm`, ...
    pub action: &'a str,
    /// The data item.
    pub name: &'a str,
    /// The version written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `user@host` of the writer.
    pub actor: &'a str,
}

/// Which file a command's audit lines go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditFile {
    /// The day's file, shared by every writer.
    Daily,
    /// This command's own file.
    Own(SafeRelativePath),
}

impl AuditFile {
    /// A file of this command's own, named by `writer` (unique per command).
    pub fn own(writer: &str) -> Self {
        let day = chrono::Utc::now().format("%Y-%m-%d");
        match SafeRelativePath::parse(&format!("audit/{day}/{writer}.jsonl")) {
            Ok(rel) => AuditFile::Own(rel),
            // Not a safe name (never, for the ids swamp makes): share the day's.
            Err(_) => AuditFile::Daily,
        }
    }

    /// The datastore path lines go to now.
    pub fn path(&self) -> io::Result<SafeRelativePath> {
        match self {
            AuditFile::Own(rel) => Ok(rel.clone()),
            AuditFile::Daily => {
                let day = chrono::Utc::now().format("%Y-%m-%d");
                SafeRelativePath::parse(&format!("audit/{day}.jsonl"))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
            }
        }
    }
}

/// Appends `entry` as one line to `file`; a single `write` of a short line
/// under O_APPEND keeps concurrent appenders from interleaving.
pub fn append(
    resolver: &DatastorePathResolver,
    file: &AuditFile,
    entry: &AuditEntry<'_>,
) -> io::Result<()> {
    let path = resolver.resolve(&file.path()?);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    file.write_all(&line)?;
    file.sync_data()
}
