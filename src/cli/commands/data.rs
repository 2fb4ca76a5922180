//! `swamp data put|get|list|versions|rm`. Writers run inside the guard of
//! their item's scope (`LockScope::item`: on a filesystem datastore writers
//! of different items do not wait for each other);
//! readers take no datastore lock (`Datastore::reader`) and name what they
//! read (`DataRead`), so a cold S3 cache fetches only that.

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::{human_bytes, Render};
use crate::domain::data_read::DataRead;
use crate::domain::item_name::ItemName;
use crate::domain::lock_scope::LockScope;
use crate::infrastructure::data_store::{DataError, DataStore, ItemSummary, VersionMeta};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::path::Path;

/// Where `data put` reads content from.
pub enum PutSource<'a> {
    /// A file.
    File(&'a Path),
    /// Standard input.
    Stdin,
}

/// Result of `data put`.
pub struct PutResult(VersionMeta);

/// Stores a new version of `name`.
pub async fn put(
    ctx: &RepoContext,
    name: &str,
    source: PutSource<'_>,
) -> Result<PutResult, CliError> {
    let name = ItemName::parse(name)?;
    // Read the input before taking the lock, so a slow pipe never holds it.
    let content = match source {
        PutSource::File(path) => std::fs::read(path).map_err(|source| CliError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })?,
        PutSource::Stdin => {
            let mut buf = Vec::new();
            io::stdin()
                .read_to_end(&mut buf)
                .map_err(|source| CliError::Io {
                    context: "cannot read standard input".into(),
                    source,
                })?;
            buf
        }
    };
    let actor = ctx.actor();
    ctx.datastore
        .guard_scope(&LockScope::item(&name), |fence, _stop| async move {
            let store =
                DataStore::new(ctx.datastore.resolver()).auditing_to(ctx.datastore.audit_file());
            Ok(PutResult(store.put(
                &name,
                &mut &content[..],
                &fence,
                &actor,
            )?))
        })
        .await
}

impl Render for PutResult {
    fn to_json(&self) -> Value {
        json!(self.0)
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "Stored {} version {} ({}, sha256 {})",
            self.0.name,
            self.0.version,
            human_bytes(self.0.size),
            &self.0.sha256.to_hex()[..12]
        )
    }
}

/// Result of `data get`.
pub struct GetResult {
    meta: VersionMeta,
    content: Vec<u8>,
}

/// Reads a version of `name` (the newest by default).
pub async fn get(
    ctx: &RepoContext,
    name: &str,
    version: Option<u64>,
) -> Result<GetResult, CliError> {
    let name = ItemName::parse(name)?;
    let read = DataRead::Get {
        item: name.to_string(),
        version,
    };
    ctx.datastore
        .reader(Some(&read), |resolver| async move {
            let (meta, path) = DataStore::new(&resolver).get(&name, version)?;
            let content = std::fs::read(&path).map_err(|source| match source.kind() {
                // Removed by a concurrent `rm` (readers take no lock).
                std::io::ErrorKind::NotFound => DataError::NotFound(name.to_string()).into(),
                _ => CliError::Io {
                    context: format!("cannot read {}", path.display()),
                    source,
                },
            })?;
            Ok(GetResult { meta, content })
        })
        .await
}

impl Render for GetResult {
    fn is_answer(&self) -> bool {
        true
    }

    fn to_json(&self) -> Value {
        let mut doc = json!(self.meta);
        match std::str::from_utf8(&self.content) {
            Ok(text) => doc["content"] = json!(text),
            Err(_) => doc["contentHex"] = json!(hex::encode(&self.content)),
        }
        doc
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.content)
    }
}

/// Result of `data list`.
pub struct ListResult(Vec<ItemSummary>);

/// Lists every item with its newest version.
pub async fn list(ctx: &RepoContext) -> Result<ListResult, CliError> {
    ctx.datastore
        .reader(Some(&DataRead::List), |resolver| async move {
            Ok(ListResult(DataStore::new(&resolver).list()?))
        })
        .await
}

impl Render for ListResult {
    fn is_answer(&self) -> bool {
        true
    }

    fn to_json(&self) -> Value {
        json!({ "items": self.0 })
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.0.is_empty() {
            return writeln!(out, "No data items");
        }
        writeln!(
            out,
            "{:<40} {:>7} {:>10}  UPDATED",
            "NAME", "VERSION", "SIZE"
        )?;
        for item in &self.0 {
            writeln!(
                out,
                "{:<40} {:>7} {:>10}  {}",
                item.name,
                item.latest_version,
                human_bytes(item.size),
                item.updated_at.format("%Y-%m-%d %H:%M:%S")
            )?;
        }
        Ok(())
    }
}

/// Result of `data versions`.
pub struct VersionsResult {
    name: String,
    versions: Vec<VersionMeta>,
}

/// Lists every version of `name`.
pub async fn versions(ctx: &RepoContext, name: &str) -> Result<VersionsResult, CliError> {
    let item = ItemName::parse(name)?;
    let read = DataRead::Versions {
        item: item.to_string(),
    };
    ctx.datastore
        .reader(Some(&read), |resolver| async move {
            Ok(VersionsResult {
                name: item.to_string(),
                versions: DataStore::new(&resolver).versions(&item)?,
            })
        })
        .await
}

impl Render for VersionsResult {
    fn is_answer(&self) -> bool {
        true
    }

    fn to_json(&self) -> Value {
        json!({ "name": self.name, "versions": self.versions })
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{:>7} {:>10}  {:<64}  CREATED",
            "VERSION", "SIZE", "SHA256"
        )?;
        for v in &self.versions {
            writeln!(
                out,
                "{:>7} {:>10}  {:<64}  {}",
                v.version,
                human_bytes(v.size),
                v.sha256,
                v.created_at.format("%Y-%m-%d %H:%M:%S")
            )?;
        }
        Ok(())
    }
}

/// Result of `data rm`.
pub struct RemoveResult {
    name: String,
    versions: u64,
}

/// Removes `name` with all its versions.
pub async fn remove(ctx: &RepoContext, name: &str) -> Result<RemoveResult, CliError> {
    let item = ItemName::parse(name)?;
    let actor = ctx.actor();
    ctx.datastore
        .guard_scope(&LockScope::item(&item), |fence, _stop| async move {
            let versions = DataStore::new(ctx.datastore.resolver())
                .auditing_to(ctx.datastore.audit_file())
                .remove(&item, &fence, &actor)?;
            Ok(RemoveResult {
                name: item.to_string(),
                versions,
            })
        })
        .await
}

impl Render for RemoveResult {
    fn to_json(&self) -> Value {
        json!({ "name": self.name, "removedVersions": self.versions })
    }

    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Removed {} ({} versions)", self.name, self.versions)
    }
}
