//! Migration into and out of a bucket.
//!
//! Into: list what the prefix already holds; an object with the same size and
//! recorded SHA-256 is reused, any other object at a migrating path is a
//! conflict that stops everything before the first upload. Each upload is
//! verified by a HEAD (size and recorded SHA-256), and the index — merged with
//! any index already there and written conditionally — lists only verified
//! objects. Out of: delete the migrated objects and then the index, after the
//! config names the new location.

use crate::domain::sync_index::{object_key, IndexEntry, RemoteIndex};
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::migration::{
    paths_and_parents, MigrationError, MigrationReport, SourceFile,
};
use crate::infrastructure::s3::index_store::{IndexRead, IndexStore, IndexWrite};
use crate::infrastructure::s3::store::{datastore_objects, ObjectStore, PutMode, StoreError};
use futures::stream::{self, StreamExt};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// Uploads `files` under `prefix`, verifying each, then writes the index,
/// recording `owner` (this repo's repoId) as its repo. A prefix another repo
/// owns is refused before anything is sent.
pub async fn upload_verified(
    files: Vec<SourceFile>,
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    owner: &str,
    fence: &LeaseFence,
    concurrency: usize,
) -> Result<MigrationReport, MigrationError> {
    let index_store = IndexStore::new(store.as_ref(), prefix);
    let (mut index, index_etag, base) = match index_store.read(None, None).await? {
        IndexRead::Found(loaded) => (loaded.index, Some(loaded.etag), loaded.root),
        IndexRead::NotModified | IndexRead::Absent => (RemoteIndex::empty(), None, None),
    };
    index.check_owner(&store.url(prefix), owner)?;
    index.repo_id = Some(owner.to_string());
    // Uploads carry the generation of the index this migration writes.
    let generation = index.generation + 1;
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let existing: HashSet<String> = store
        .list(&list_prefix)
        .await?
        .into_iter()
        .map(|l| l.key)
        .collect();
    let mut report = MigrationReport::default();
    let mut conflicts = Vec::new();
    let mut to_upload = Vec::new();
    for file in files {
        let key = object_key(prefix, file.rel.as_str());
        let listed_differently = index
            .files
            .get(file.rel.as_str())
            .is_some_and(|e| e.sha256 != file.digest.sha256);
        if !existing.contains(&key) && !listed_differently {
            to_upload.push(file);
            continue;
        }
        match store.head(&key).await? {
            Some(head) if head.holds(file.digest.size, &file.digest.sha256) => {
                report.already_present += 1;
                report.record(file);
            }
            None if !listed_differently => to_upload.push(file),
            _ => conflicts.push(file.rel.to_string()),
        }
    }
    if !conflicts.is_empty() {
        return Err(MigrationError::Conflicts(conflicts));
    }
    fence.check()?;
    let uploads: Vec<_> = stream::iter(to_upload)
        .map(|file| async move {
            let key = object_key(prefix, file.rel.as_str());
            let outcome = async {
                store
                    .put_file(&key, &file.path, &file.digest, generation, None)
                    .await?;
                match store.head(&key).await? {
                    Some(head) if head.holds(file.digest.size, &file.digest.sha256) => Ok(()),
                    other => Err(MigrationError::Verify {
                        path: key.clone().into(),
                        reason: format!(
                            "expected {} bytes sha256 {}, the bucket reports {other:?}",
                            file.digest.size, file.digest.sha256
                        ),
                    }),
                }
            }
            .await;
            (file, outcome)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut failure = None;
    for (file, outcome) in uploads {
        match outcome {
            Ok(()) => report.record(file),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    for file in &report.migrated {
        index.files.insert(
            file.rel.to_string(),
            IndexEntry {
                size: file.digest.size,
                sha256: file.digest.sha256,
                parts: file.digest.parts.clone(),
            },
        );
    }
    fence.check()?;
    let mode = match index_etag {
        Some(etag) => PutMode::Update(etag),
        None => PutMode::Create,
    };
    let write = IndexWrite::whole(
        &index.files,
        index.repo_id.clone(),
        generation,
        base.as_ref(),
    );
    index_store.write_once(write, mode, fence).await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// The files the datastore under `prefix` holds (its index entries and its
/// objects; not the lock, the index or temp objects) that are not among `files`.
pub async fn foreign_objects(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    files: &[SourceFile],
) -> Result<Vec<String>, MigrationError> {
    let ours = paths_and_parents(files);
    let mut foreign = BTreeSet::new();
    match IndexStore::new(store.as_ref(), prefix)
        .read(None, None)
        .await?
    {
        IndexRead::Found(loaded) => {
            let index = loaded.index;
            foreign.extend(
                index
                    .files
                    .keys()
                    .filter(|k| !ours.contains(k.as_str()))
                    .cloned(),
            );
        }
        IndexRead::NotModified | IndexRead::Absent => {}
    }
    for rel in datastore_objects(store.as_ref(), prefix).await? {
        if !ours.contains(rel.as_str()) {
            foreign.insert(rel);
        }
    }
    Ok(foreign.into_iter().collect())
}

/// Deletes the migrated objects under `prefix`, then the index (root and shards).
pub async fn delete_remote_sources(
    report: &MigrationReport,
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    concurrency: usize,
) -> Result<(), MigrationError> {
    let results: Vec<_> = stream::iter(&report.migrated)
        .map(|file| async move {
            match store
                .delete(&object_key(prefix, file.rel.as_str()), None)
                .await
            {
                Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        return Err(e);
    }
    Ok(IndexStore::new(store.as_ref(), prefix).delete_all().await?)
}
