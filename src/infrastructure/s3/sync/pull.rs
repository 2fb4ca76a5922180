//! The pull: the remote index to the cache.
//!
//! One conditional GET of the index (`If-None-Match` on the ETag last seen;
//! 304 means nothing to do). Otherwise, three ways — agreed, local, remote —
//! per path: deletions first (a locally changed file becomes a conflict
//! copy), then whatever stands in the way of a download is moved aside, then
//! every file whose remote hash differs from the agreed one is downloaded,
//! verified (`verify.rs`) and renamed into place; one `syncfs` before the
//! state that vouches for the files is saved.
//!
//! A pull for reading (`pull_for_reading`) runs without the datastore lock,
//! under the cache lock only, while a writer elsewhere may be mid-push. It
//! never heals: an object that does not match the index it read, an indexed
//! object that is gone, or objects without an index are what a concurrent
//! push looks like from outside, so it reports `ChangedWhileReading` and the
//! reader retries (or waits for the lock, where the normal rules apply).
//! Given a `ReadScope`, it fetches only the files the read needs (a cold
//! cache stays cold elsewhere) and keeps the index ETag it had: the cache is
//! not current, so the next full pull fetches the index again and downloads
//! the rest, and a push (which needs a current cache) never takes a file
//! that was not downloaded for one that was deleted.

use super::verify::{verify_download, Verified};
use super::{compare_with_state, conflicts};
use super::{io_err, CacheSync, ConflictCopy, SyncError, SyncReport};
use crate::domain::data_read::ReadScope;
use crate::domain::lock_scope::LockScope;
use crate::domain::relative_path::SafeRelativePath;
use crate::domain::sync_index::{IndexEntry, IndexError, RemoteIndex};
use crate::infrastructure::atomic_file::temp_path_for;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::hashing::{digest_file_off_runtime, CheckKind};
use crate::infrastructure::s3::cache::{mtime_ns, safe_cache_path, SyncState, SyncedFile};
use crate::infrastructure::s3::index_store::{IndexIoError, IndexRead, IndexWrite};
use crate::infrastructure::s3::store::{PutMode, StoreError};
use crate::infrastructure::s3::sync_times::{SyncTimes, Synced};
use futures::stream::{self, StreamExt};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Whether a pull may take an object newer than its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heal {
    /// Under the lock: an interrupted push's upload is taken.
    Interrupted,
    /// Without it: the push may still be running.
    Never,
}

/// How one download ended.
enum Arrival {
    /// The file is in place.
    Landed(SyncedFile),
}

impl CacheSync {
    /// A cache last synced with another remote is cleared before use, unless
    /// it holds changes that never reached that remote.
    fn adopt_cache(&self) -> Result<(), SyncError> {
        if self.shared.is_some() {
            // A shared cache is another process's too, so it is never taken
            // over: `load_shared_state` found it ours (and holds the state),
            // and under the shared cache lock nobody can change that.
            return Ok(());
        }
        let Some(previous) = SyncState::load_raw(self.cache()) else {
            return Ok(());
        };
        if previous.remote == self.remote_name() {
            self.keep_state(previous);
            return Ok(());
        }
        let local = self.scan()?.files;
        let (unpushed, _) = compare_with_state(&local, &previous.files);
        if !unpushed.is_empty() {
            let spec = previous
                .remote
                .strip_prefix("s3://")
                .map(|r| format!("s3:{}", r.trim_end_matches('/')))
                .unwrap_or_else(|| previous.remote.clone());
            return Err(SyncError::ForeignCache {
                cache: self.cache().to_path_buf(),
                other: previous.remote,
                spec,
            });
        }
        for rel in local.keys() {
            let path = self.cache().join(rel);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        let _ = std::fs::remove_file(
            self.cache()
                .join(crate::infrastructure::s3::cache::STATE_FILE),
        );
        Ok(())
    }

    /// Brings the cache up to date with the bucket.
    pub async fn pull(&self, fence: &LeaseFence) -> Result<SyncReport, SyncError> {
        self.pull_with(fence, Heal::Interrupted, None).await
    }

    /// Brings the cache up to date with one committed index, without the
    /// datastore lock (the caller holds the cache lock).
    /// `scope`, when given, limits it to the files a read needs.
    pub(crate) async fn pull_for_reading(
        &self,
        scope: Option<&dyn ReadScope>,
    ) -> Result<SyncReport, SyncError> {
        let unfenced = LeaseFence::without_lease();
        match self.pull_with(&unfenced, Heal::Never, scope).await {
            Err(
                e @ (SyncError::Integrity { .. }
                | SyncError::MissingObject { .. }
                | SyncError::Unindexed { .. }
                | SyncError::Index(IndexError::MissingShard(_))),
            ) => Err(SyncError::ChangedWhileReading(Box::new(e))),
            other => other,
        }
    }

    /// Brings `scope` up to date with the bucket, for a writer holding its
    /// lock (`scoped.rs`): the index and the files inside the scope only;
    /// an interrupted push inside it is healed as under the whole lock.
    pub(crate) async fn pull_scope(
        &self,
        fence: &LeaseFence,
        scope: &LockScope,
    ) -> Result<SyncReport, SyncError> {
        self.pull_with(fence, Heal::Interrupted, Some(scope)).await
    }

    /// `pull_inner`, noting its success for `datastore status`.
    async fn pull_with(
        &self,
        fence: &LeaseFence,
        heal: Heal,
        scope: Option<&dyn ReadScope>,
    ) -> Result<SyncReport, SyncError> {
        let pulled = self.pull_inner(fence, heal, scope).await;
        if pulled.is_ok() {
            SyncTimes::record(self.cache(), Synced::Pull);
        }
        pulled
    }

    async fn pull_inner(
        &self,
        fence: &LeaseFence,
        heal: Heal,
        scope: Option<&dyn ReadScope>,
    ) -> Result<SyncReport, SyncError> {
        std::fs::create_dir_all(self.cache()).map_err(io_err(self.cache()))?;
        self.adopt_cache()?;
        let mut state = self.take_state().await?;
        // Under the lock, the listing that acquired it may already show the
        // index unchanged: no GET.
        let listed = match heal {
            Heal::Interrupted => self.index_seen.as_ref().and_then(|seen| seen.take()),
            Heal::Never => None,
        };
        tracing::debug!(listed = ?listed, agreed = ?state.index_etag, "index ETag before the pull");
        let listed_unchanged = listed.is_some_and(|seen| state.index_etag.as_ref() == Some(&seen));
        // A read of a few items needs only their shards.
        let groups = scope.and_then(|s| s.index_groups());
        let fetched = match listed_unchanged {
            true => IndexRead::NotModified,
            false => {
                self.index_store()
                    .read(state.index_etag.as_ref(), groups.as_deref())
                    .await?
            }
        };
        let loaded = match fetched {
            IndexRead::NotModified => {
                self.mark_current();
                self.keep_state(state);
                return Ok(SyncReport::default());
            }
            IndexRead::Found(loaded) => {
                if let Some(ours) = &self.owner {
                    loaded.index.check_owner(&self.remote_name(), ours)?;
                }
                *loaded
            }
            IndexRead::Absent => {
                // No index and no objects: nothing remote. Keep local files;
                // forgetting the agreed state makes the next push upload them
                // again. Objects without an index are refused, not emptied.
                self.refuse_unindexed_objects().await?;
                if state.index_etag.is_some() || !state.files.is_empty() {
                    state.index_etag = None;
                    state.index_root = None;
                    state.generation = 0;
                    state.files.clear();
                    state.foreign.clear();
                    self.save(&mut state).await?;
                }
                self.mark_current();
                self.keep_state(state);
                return Ok(SyncReport::default());
            }
        };
        let remote = &loaded.index;
        let needed = scope.map(|s| s.needs(&mut remote.files.keys().map(String::as_str)));
        let mut report = SyncReport::default();
        let mut wanted = Vec::new();
        // What this machine's settings leave out is another machine's:
        // remembered, carried into our index writes, never downloaded.
        // Entries of shards this read did not load stay as last seen.
        state.foreign.retain(|rel, _| !loaded.covers(rel));
        state.files.retain(|rel, _| self.owns(rel));
        for (rel_text, entry) in &remote.files {
            let rel = SafeRelativePath::parse(rel_text)
                .map_err(|e| SyncError::Index(IndexError::UnsafeKey(e.to_string())))?;
            if !self.resolver.is_datastore_path(&rel) {
                state.foreign.insert(rel_text.clone(), entry.clone());
                continue;
            }
            if needed.as_ref().is_some_and(|n| !n.contains(rel_text)) {
                continue;
            }
            if let Some(agreed) = state
                .files
                .get_mut(rel_text)
                .filter(|f| f.sha256 == entry.sha256)
            {
                // Same content; keep the index's part checksums (an index
                // written by an older swamp may lack them) for the next push.
                agreed.parts.clone_from(&entry.parts);
                continue;
            }
            // A local copy with the same content (e.g. left by a migration) needs no download.
            if let Some((_, meta, digest)) = self.cached_copy(&rel, entry).await {
                state.files.insert(
                    rel_text.clone(),
                    SyncedFile {
                        size: entry.size,
                        mtime_ns: mtime_ns(&meta),
                        sha256: digest.sha256,
                        parts: digest.parts,
                    },
                );
                continue;
            }
            let path = rel.under(self.cache());
            wanted.push((rel, path, entry.clone()));
        }
        // In a shared cache, only paths of this writer's scope: the others'
        // may be mid-change by their writers.
        let ours = match (&self.shared, scope) {
            (Some(_), Some(scope)) => {
                Some(scope.needs(&mut state.files.keys().map(String::as_str)))
            }
            _ => None,
        };
        let gone: Vec<String> = state
            .files
            .keys()
            .filter(|k| loaded.covers(k) && !remote.files.contains_key(*k))
            .filter(|k| ours.as_ref().is_none_or(|ours| ours.contains(*k)))
            .cloned()
            .collect();
        fence.check()?;
        for rel_text in gone {
            if let Ok(rel) = SafeRelativePath::parse(&rel_text) {
                // Replaced here by a directory or a link (or a link on its
                // way): the file the remote deleted is already gone, and
                // what took its place is not ours to remove.
                let path = match safe_cache_path(self.cache(), &rel) {
                    Ok(path) if !std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) => {
                        path
                    }
                    _ => {
                        state.files.remove(&rel_text);
                        continue;
                    }
                };
                if self
                    .changed_locally(&path, state.files.get(&rel_text))
                    .await
                {
                    self.keep_conflict(&rel, &path, "deleted", &mut report)?;
                    state.files.remove(&rel_text);
                    continue;
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => report.deleted_local += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
                // In a shared cache a parent may be another writer's
                // fresh directory: leave empty ones (they do not sync).
                if self.shared.is_none() {
                    crate::infrastructure::data_store::prune_empty_parents(
                        &path,
                        &[self.cache().to_path_buf()],
                    );
                }
            }
            state.files.remove(&rel_text);
        }
        let generation = remote.generation;
        let mut seen_dirs = HashSet::new();
        for (rel, path, _) in &wanted {
            let agreed = state.files.get(rel.as_str());
            self.clear_the_way(rel, path, agreed, &mut seen_dirs, &mut report)
                .await?;
        }
        let _bar = self.start_progress("pull", wanted.len() as u64);
        let made_dirs = Mutex::new(HashSet::new());
        let made_dirs = &made_dirs;
        let results: Vec<_> = stream::iter(wanted)
            .map(|(rel, path, entry)| async move {
                let outcome = self
                    .download(&rel, &path, &entry, generation, heal, made_dirs)
                    .await;
                self.tick();
                (rel, entry, outcome)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut failures = Vec::new();
        for (rel, entry, outcome) in results {
            match outcome {
                Ok(Arrival::Landed(file)) => {
                    report.downloaded += 1;
                    report.downloaded_bytes += entry.size;
                    state.files.insert(rel.to_string(), file);
                }
                Err(e) => failures.push(e),
            }
        }
        if report.downloaded > 0 {
            // Make every downloaded file durable before the state claims it:
            // one syncfs instead of an fsync per file.
            self.sync_filesystem().await?;
        }
        if let Some(first) = failures.into_iter().next() {
            // Keep the old index ETag so the next pull fetches the index again.
            self.save(&mut state).await?;
            return Err(first);
        }
        if needed.is_some() && !(loaded.is_complete() && Self::agrees_with(&state, remote)) {
            // Only part of this index is here: not current. A scoped writer
            // commits onto the index it read (`scoped.rs`).
            self.save(&mut state).await?;
            self.keep_state(state);
            if let Ok(mut base) = self.scoped_base.lock() {
                *base = Some(loaded);
            }
            return Ok(report);
        }
        state.index_etag = Some(loaded.etag.clone());
        state.generation = generation;
        state.index_root = loaded.root.clone();
        self.save(&mut state).await?;
        if heal == Heal::Interrupted && scope.is_none() && loaded.root.is_none() {
            // A failed migration costs nothing: the next whole pull retries.
            match self.migrate_index(&mut state, fence).await {
                Ok(()) => self.save(&mut state).await?,
                Err(e) => {
                    tracing::warn!(error = %e, "could not move the remote index to the sharded format; the next command tries again")
                }
            }
        }
        if let Some(root) = &loaded.root {
            self.index_store().prune_local(root);
        }
        self.mark_current();
        self.keep_state(state);
        Ok(report)
    }

    /// Rewrites a format-1 index (every file in one object) as a sharded
    /// one, under the whole-datastore lock, conditional on the index just
    /// pulled. It writes what the cache now agrees on — the index as pulled,
    /// with any interrupted push's objects the pull took (healing) — so no
    /// other machine meets those as late uploads. A swamp from before the
    /// sharded format refuses it ("upgrade swamp") rather than reading it as
    /// empty.
    async fn migrate_index(
        &self,
        state: &mut SyncState,
        fence: &LeaseFence,
    ) -> Result<(), SyncError> {
        let Some(etag) = state.index_etag.clone() else {
            return Ok(());
        };
        let files = super::index_write::index_files(state);
        let generation = state.generation + 1;
        let write = IndexWrite::whole(&files, self.owner.clone(), generation, None);
        let (etag, root) = self
            .index_store()
            .write_once(write, PutMode::Update(etag), fence)
            .await
            .map_err(|e| match e {
                IndexIoError::Store(StoreError::Precondition(target)) => {
                    SyncError::IndexConflict(target)
                }
                e => e.into(),
            })?;
        tracing::info!(
            files = files.len(),
            shards = root.named().len(),
            "moved the remote index to the sharded format"
        );
        state.index_etag = Some(etag);
        state.generation = generation;
        state.index_root = Some(root);
        Ok(())
    }

    /// Whether the agreed state lists exactly the files `remote` lists for
    /// this machine, with the same content: then a partial pull left the
    /// cache as current as a full one.
    fn agrees_with(state: &SyncState, remote: &RemoteIndex) -> bool {
        let mut ours = remote
            .files
            .iter()
            .filter(|(rel, _)| !state.foreign.contains_key(*rel));
        let mut agreed = state.files.iter();
        loop {
            match (ours.next(), agreed.next()) {
                (None, None) => return true,
                (Some((a, remote)), Some((b, local)))
                    if a == b && remote.sha256 == local.sha256 => {}
                _ => return false,
            }
        }
    }

    /// The cache's file at `rel` if it is a regular file (reached through no
    /// link) holding exactly `entry`'s content, with its metadata and digest.
    pub(super) async fn cached_copy(
        &self,
        rel: &SafeRelativePath,
        entry: &IndexEntry,
    ) -> Option<(
        std::path::PathBuf,
        std::fs::Metadata,
        crate::infrastructure::hashing::FileDigest,
    )> {
        let path = safe_cache_path(self.cache(), rel).ok()?;
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.len() != entry.size {
            return None;
        }
        let digest = digest_file_off_runtime(path.clone()).await.ok()?;
        (digest.sha256 == entry.sha256).then_some((path, meta, digest))
    }

    /// Whether the local file at `path` holds a change no index recorded: it
    /// exists and either no agreed version is known or its content is not the
    /// agreed one (hashed only when size or mtime moved).
    async fn changed_locally(&self, path: &Path, agreed: Option<&SyncedFile>) -> bool {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return false;
        };
        if !meta.is_file() {
            return false;
        }
        let Some(agreed) = agreed else {
            return true;
        };
        if meta.len() == agreed.size && mtime_ns(&meta) == agreed.mtime_ns {
            return false;
        }
        match digest_file_off_runtime(path.to_path_buf()).await {
            Ok(digest) => digest.sha256 != agreed.sha256,
            // Unreadable: keep it rather than overwrite what we cannot check.
            Err(_) => true,
        }
    }

    /// Makes room for the download of `rel` at `path`: whatever local state
    /// no index recorded stands in the way — a file where the remote has a
    /// directory, a directory or link where it has a file, or a file changed
    /// since `agreed` — is moved aside as a conflict copy. A link where the
    /// remote has a directory is an error naming it.
    /// `seen_dirs` holds the ancestors this pass already found to be
    /// directories: a pull of many files in few directories looks at each
    /// directory once, not once per file.
    async fn clear_the_way(
        &self,
        rel: &SafeRelativePath,
        path: &Path,
        agreed: Option<&SyncedFile>,
        seen_dirs: &mut HashSet<String>,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let mut above = String::new();
        let segments: Vec<&str> = rel.as_str().split('/').collect();
        for segment in &segments[..segments.len() - 1] {
            if !above.is_empty() {
                above.push('/');
            }
            above.push_str(segment);
            if seen_dirs.contains(&above) {
                continue;
            }
            let Ok(ancestor) = SafeRelativePath::parse(&above) else {
                return Ok(());
            };
            let at = ancestor.under(self.cache());
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.is_dir() => {
                    seen_dirs.insert(above.clone());
                }
                // Agreed files may sit behind a link: moving it aside would
                // make them look deleted, so the user decides.
                Ok(meta) if meta.is_symlink() => {
                    return Err(SyncError::SymlinkInTheWay {
                        link: at,
                        rel: rel.to_string(),
                    })
                }
                Ok(_) => return self.keep_conflict(&ancestor, &at, "directory", report),
                Err(_) => return Ok(()),
            }
        }
        let in_the_way = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() => self.changed_locally(path, agreed).await,
            Ok(_) => true,
            Err(_) => false,
        };
        if in_the_way {
            self.keep_conflict(rel, path, "changed", report)?;
        }
        Ok(())
    }

    /// Moves the local file at `path` aside as a conflict copy.
    fn keep_conflict(
        &self,
        rel: &SafeRelativePath,
        path: &Path,
        remote_did: &'static str,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let copy = conflicts::keep_as_conflict(self.cache(), rel, path).map_err(io_err(path))?;
        tracing::info!(path = %rel, copy = %copy.display(), "kept a local change as a conflict copy");
        report.conflicts.push(ConflictCopy {
            path: rel.to_string(),
            copy,
            remote: remote_did,
        });
        Ok(())
    }

    /// Flushes the cache's filesystem, on a blocking thread (it may wait on
    /// the disk for a while after a large pull).
    async fn sync_filesystem(&self) -> Result<(), SyncError> {
        let dir = std::fs::File::open(self.cache()).map_err(io_err(self.cache()))?;
        let synced = crate::infrastructure::blocking::run(move || {
            use std::os::fd::AsRawFd;
            nix::unistd::syncfs(dir.as_raw_fd()).map_err(std::io::Error::from)
        })
        .await;
        synced.map_err(io_err(self.cache()))
    }

    /// Downloads `rel` into `path`. `made_dirs` holds the parents this pull
    /// already created and checked: the first file of a directory makes it
    /// and checks the way to it, the others only write into it.
    async fn download(
        &self,
        rel: &SafeRelativePath,
        path: &Path,
        entry: &IndexEntry,
        index_generation: u64,
        heal: Heal,
        made_dirs: &Mutex<HashSet<PathBuf>>,
    ) -> Result<Arrival, SyncError> {
        let parent = path.parent().unwrap_or(self.cache());
        let known = made_dirs.lock().is_ok_and(|dirs| dirs.contains(parent));
        if !known {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            // Re-check after creating directories: a symlink may not sit in
            // the way. Later files of this directory skip the walk: the way
            // to it was checked, and their temp names are created new.
            safe_cache_path(self.cache(), rel).map_err(io_err(path))?;
            if let Ok(mut dirs) = made_dirs.lock() {
                dirs.insert(parent.to_path_buf());
            }
        }
        let temp = temp_path_for(path);
        let key = self.key(rel.as_str());
        let check = match &entry.parts {
            Some(parts) => CheckKind::PartCrc32 {
                part_size: parts.part_size,
            },
            None => CheckKind::Sha256,
        };
        let got = match self.store.get_to_file(&key, &temp, check).await {
            Ok(got) => got,
            Err(StoreError::NotFound(_)) => {
                // Listed but gone. A push records deletions in the index
                // before it deletes objects, so this is damage (a stray
                // delete, a lifecycle rule), never a deletion to mirror: the
                // copies other caches hold are what can repair it.
                let _ = std::fs::remove_file(&temp);
                return Err(SyncError::MissingObject { key });
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e.into());
            }
        };
        let verified = if got.is_small() {
            // A mismatch re-reads the file: for a small one, a matter of
            // microseconds, less than a handoff to a blocking thread.
            verify_download(&temp, entry, got.size, got.checked)
        } else {
            let (temp, entry) = (temp.clone(), entry.clone());
            // Off the runtime: a mismatch re-reads the whole file.
            crate::infrastructure::blocking::run(move || {
                verify_download(&temp, &entry, got.size, got.checked)
            })
            .await
        };
        let digest = match verified {
            Ok(Verified::AsIndexed(digest)) => digest,
            Ok(Verified::Differs(digest)) => {
                // An object whose content matches the hash its uploader
                // recorded, uploaded for an index newer than this one, is a
                // push interrupted before its index write: take it. One
                // uploaded for this index or an older one is a late upload
                // of a push that lost the lock to the index's writer: the
                // index wins. Anything else is corruption or another tool.
                let interrupted_push = heal == Heal::Interrupted
                    && got.recorded.sha256 == Some(digest.sha256)
                    && got
                        .recorded
                        .generation
                        .is_some_and(|g| g > index_generation);
                if !interrupted_push {
                    let _ = std::fs::remove_file(&temp);
                    return Err(SyncError::Integrity {
                        key,
                        expected: entry.sha256,
                        actual: digest.sha256,
                    });
                }
                tracing::warn!(%key, "object is newer than the index (interrupted push); taking the object");
                digest
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(io_err(&temp)(e));
            }
        };
        std::fs::rename(&temp, path).map_err(io_err(path))?;
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        Ok(Arrival::Landed(SyncedFile {
            size: digest.size,
            mtime_ns: mtime_ns(&meta),
            sha256: digest.sha256,
            parts: digest.parts,
        }))
    }
}
