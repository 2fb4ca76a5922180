//! `swamp datastore repair`: rebuild an S3 datastore's index from what the
//! bucket holds and put back what this cache can, under the datastore lock
//! (no automatic pull or push around it).

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::Render;
use crate::infrastructure::datastore::RepairReport;
use serde_json::{json, Value};
use std::io::{self, Write};

/// Result of `datastore repair`.
pub struct RepairResult {
    remote: Option<String>,
    report: RepairReport,
}

/// Repairs the S3 datastore in use; a filesystem datastore has no index.
pub async fn repair(ctx: &RepoContext, accept_bucket: bool) -> Result<RepairResult, CliError> {
    let report = ctx.datastore.repair(accept_bucket).await?;
    Ok(RepairResult {
        remote: report.is_some().then(|| ctx.datastore.backend().describe()),
        report: report.unwrap_or_default(),
    })
}

impl RepairResult {
    /// Whether some files could not be repaired from this cache.
    pub fn left_unresolved(&self) -> bool {
        !self.report.unresolved.is_empty()
    }
}

impl Render for RepairResult {
    fn to_json(&self) -> Value {
        let mut doc = json!({ "remote": self.remote });
        if self.remote.is_some() {
            doc["repair"] = json!(self.report);
        }
        doc
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let Some(remote) = &self.remote else {
            return writeln!(
                out,
                "Nothing to repair: the datastore is a filesystem directory (no index)"
            );
        };
        let r = &self.report;
        writeln!(out, "Repaired {remote}: the index was {}", r.index_was)?;
        let lines: [(&str, &Vec<String>); 7] = [
            ("re-uploaded from this cache", &r.restored),
            ("now listed with the bucket's content (no copy here)", &r.relisted),
            ("objects the index lacked, added", &r.added),
            ("lost (no object, no copy here), unlisted", &r.lost),
            ("missing or damaged in the bucket with no copy here, left listed: run repair on a machine whose cache holds them, or rerun with --accept-bucket to index what the bucket holds", &r.unresolved),
            ("objects the index does not list, left as they are", &r.orphans),
            ("skipped", &r.skipped),
        ];
        for (what, paths) in lines {
            if !paths.is_empty() {
                let shown: Vec<&str> = paths.iter().take(10).map(String::as_str).collect();
                let more = paths.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                writeln!(out, "  {} {what}: {}{more}", paths.len(), shown.join(", "))?;
            }
        }
        writeln!(out, "The index now lists {} files.", r.indexed)
    }
}
