//! The audit log: one JSON line per data change, appended to
//! `audit/{YYYY-MM-DD}.jsonl` in the datastore.

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

/// Appends `entry` as one line; a single `write` of a short line under
/// O_APPEND keeps concurrent appenders from interleaving.
pub fn append(resolver: &DatastorePathResolver, entry: &AuditEntry<'_>) -> io::Result<()> {
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let rel = SafeRelativePath::parse(&format!("audit/{day}.jsonl"))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let path = resolver.resolve(&rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    file.write_all(&line)?;
    file.sync_data()
}
