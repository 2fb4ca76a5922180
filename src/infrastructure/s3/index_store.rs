//! Reading and writing the remote index in either format (the sharded
//! format is `domain/index_shards.rs`).
//!
//! Model: a read GETs the root (conditionally when the caller knows an
//! ETag), then the shards it needs — those of the wanted groups, or all.
//! A shard this machine already holds in its shard cache
//! (`{cache}/.swamp-index-shards/{hash}.json`, content-addressed, so a copy
//! is good when its bytes hash to its name) is taken from there instead and
//! counts as loaded, so a warm cache fetches only the shards that changed
//! and usually ends with the whole index. A shard the root names but the
//! bucket lacks means the root was replaced meanwhile (its writer deletes the
//! shards it stopped naming): the root is read again, a bounded number of
//! times; the same root naming a missing shard twice is damage.
//!
//! A write uploads the shards whose content changed, under new names
//! (every other one is already there, named by the root the write is
//! conditional on), then the root with the caller's condition, then the
//! garbage the root cleared (one DeleteObjects). A refused root write is
//! read back: our own root there means the reply was lost; another's means
//! no root names the shards we uploaded, so a retry may reuse them
//! (`PendingShards`) and a writer that gives up deletes them. A shard left
//! behind by a crash is harmless, and `repair` sweeps it.

use crate::domain::index_shards::{
    bits_to_write, build_root, parse_shard, shard_rel, slot_of_group, EncodedShard, IndexRoot,
    SHARDS_DIR,
};
use crate::domain::lock::LockError;
use crate::domain::sync_index::{
    object_key, refuse_path_conflicts, IndexDocument, IndexEntry, IndexError, RemoteIndex,
    INDEX_KEY,
};
use crate::infrastructure::atomic_file::write_atomic;
use crate::infrastructure::coordinator::LeaseFence;
use crate::infrastructure::s3::store::{ETag, Fetched, ObjectStore, PutMode, StoreError};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The shard cache directory in a cache root (outside every datastore directory).
pub(crate) const LOCAL_SHARDS_DIR: &str = ".swamp-index-shards";
/// Root reads a read makes before a missing shard counts as damage.
const ROOT_READS: u32 = 4;
/// Shard transfers at once.
const SHARD_CONCURRENCY: usize = 32;

/// Index reads and writes that failed.
#[derive(Debug, Error)]
pub(crate) enum IndexIoError {
    /// The store failed (a refused root write is `Precondition`).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index is unusable.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The lease ended before the root write.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// An index as read: all of it, or the slots a partial read loaded.
#[derive(Debug, Clone)]
pub(crate) struct LoadedIndex {
    /// The files of the loaded slots (every file when complete).
    pub(crate) index: RemoteIndex,
    /// The root's (or single object's) ETag.
    pub(crate) etag: ETag,
    /// The root; `None` for a format-1 index.
    pub(crate) root: Option<IndexRoot>,
    /// Per slot, whether `index` holds it; `None` when it holds all.
    loaded: Option<Vec<bool>>,
}

impl LoadedIndex {
    /// A complete index known without reading it (the agreed state's).
    pub(crate) fn whole(index: RemoteIndex, etag: ETag, root: Option<IndexRoot>) -> Self {
        Self {
            index,
            etag,
            root,
            loaded: None,
        }
    }

    /// Whether every file of the index is here.
    pub(crate) fn is_complete(&self) -> bool {
        self.loaded.is_none()
    }

    /// Whether the entry of `path`, or its absence, is known here.
    pub(crate) fn covers(&self, path: &str) -> bool {
        match (&self.loaded, &self.root) {
            (Some(loaded), Some(root)) => loaded
                .get(crate::domain::index_shards::slot_of(path, root.shard_bits))
                .copied()
                .unwrap_or(false),
            _ => true,
        }
    }

    /// The slots loaded, when not all of them.
    pub(crate) fn covered(&self) -> Option<&[bool]> {
        self.loaded.as_deref()
    }
}

/// What repair can still read of an index with a shard missing or damaged.
pub(crate) struct SalvagedIndex {
    /// The root's fields, and the files of every good shard.
    pub(crate) index: RemoteIndex,
    /// `log2` of the root's slots.
    pub(crate) shard_bits: u8,
    /// Per slot: whether its shard was lost (gone, or failed its checks).
    pub(crate) lost: Vec<bool>,
}

/// What a read found.
pub(crate) enum IndexRead {
    /// The root still has the ETag the caller gave.
    NotModified,
    /// There is no index.
    Absent,
    /// The index (or the part asked for).
    Found(Box<LoadedIndex>),
}

/// The root found after a refused write.
enum ReadBack {
    /// Exactly the one we sent.
    Ours(ETag),
    /// Another writer's, with its ETag (`None`: not a sharded root, or gone).
    Theirs(Option<(IndexRoot, ETag)>),
}

/// What one writer's refused attempts left: the shards it uploaded that no
/// root names (by content hash), and the root it found instead. Only one
/// root of each generation is ever written, so a shard uploaded for an
/// attempt refused by a root of the same generation is named by no root
/// unless this writer names it later (`after_refusal` keeps only those).
#[derive(Debug, Default)]
pub(crate) struct PendingShards {
    uploaded: std::collections::HashMap<String, String>,
    found: Option<(IndexRoot, ETag)>,
}

impl PendingShards {
    /// The root a refused write found there, with its ETag.
    pub(crate) fn found(&self) -> Option<&(IndexRoot, ETag)> {
        self.found.as_ref()
    }
}

/// One index write: the files and what they are written onto.
pub(crate) struct IndexWrite<'a> {
    /// The files (of the covered slots only, when `covered` is given).
    pub(crate) files: &'a BTreeMap<String, IndexEntry>,
    /// The repo recorded as the owner.
    pub(crate) repo_id: Option<String>,
    /// The generation the root records.
    pub(crate) generation: u64,
    /// The root this write replaces, when sharded: its shards are there.
    pub(crate) base: Option<&'a IndexRoot>,
    /// The slots `files` is complete for; the rest keep `base`'s shards.
    pub(crate) covered: Option<&'a [bool]>,
    /// Whether the write may change the number of slots (a whole-datastore
    /// writer's; a scoped one keeps the base's).
    pub(crate) may_reshard: bool,
}

impl<'a> IndexWrite<'a> {
    /// The whole index `files` written onto `base` by a whole-datastore
    /// writer (a push, a repair, a migration), which may reshard.
    pub(crate) fn whole(
        files: &'a BTreeMap<String, IndexEntry>,
        repo_id: Option<String>,
        generation: u64,
        base: Option<&'a IndexRoot>,
    ) -> Self {
        Self {
            files,
            repo_id,
            generation,
            base,
            covered: None,
            may_reshard: true,
        }
    }
}

/// The index of one prefix in one store.
pub(crate) struct IndexStore<'a> {
    store: &'a dyn ObjectStore,
    prefix: &'a str,
    local: Option<PathBuf>,
}

impl<'a> IndexStore<'a> {
    /// The index under `prefix` in `store`, without a shard cache.
    pub(crate) fn new(store: &'a dyn ObjectStore, prefix: &'a str) -> Self {
        Self {
            store,
            prefix,
            local: None,
        }
    }

    /// Keeps shards in the cache root `cache` (see the module doc).
    pub(crate) fn with_shard_cache(mut self, cache: &Path) -> Self {
        self.local = Some(cache.join(LOCAL_SHARDS_DIR));
        self
    }

    fn root_key(&self) -> String {
        object_key(self.prefix, INDEX_KEY)
    }

    /// Reads the index: the root (`NotModified` when its ETag is
    /// `if_none_match`) and the shards of `groups`, or every shard.
    pub(crate) async fn read(
        &self,
        if_none_match: Option<&ETag>,
        groups: Option<&[String]>,
    ) -> Result<IndexRead, IndexIoError> {
        let mut condition = if_none_match;
        let mut missing_under: Option<ETag> = None;
        let mut attempt = 1;
        loop {
            let (bytes, etag) = match self.store.get_bytes(&self.root_key(), condition).await {
                Ok(Fetched::NotModified) => return Ok(IndexRead::NotModified),
                Ok(Fetched::Object(bytes, meta)) => (bytes, meta.etag),
                Err(StoreError::NotFound(_)) => return Ok(IndexRead::Absent),
                Err(e) => return Err(e.into()),
            };
            let root = match IndexDocument::parse(&bytes)? {
                IndexDocument::Whole(index) => {
                    return Ok(IndexRead::Found(Box::new(LoadedIndex::whole(
                        index, etag, None,
                    ))))
                }
                IndexDocument::Root(root) => root,
            };
            match self.assemble(root, etag.clone(), groups).await? {
                Ok(loaded) => return Ok(IndexRead::Found(Box::new(loaded))),
                Err(missing) => {
                    if missing_under.as_ref() == Some(&etag) || attempt == ROOT_READS {
                        return Err(IndexError::MissingShard(missing).into());
                    }
                    tracing::debug!(shard = %missing, "a shard is gone: the root changed; reading it again");
                    missing_under = Some(etag);
                    condition = None;
                    attempt += 1;
                }
            }
        }
    }

    /// `read` when the root is already known (a refused write read it back):
    /// only its shards are fetched; if one is gone meanwhile, a full `read`.
    pub(crate) async fn read_known(
        &self,
        root: IndexRoot,
        etag: ETag,
        groups: Option<&[String]>,
    ) -> Result<IndexRead, IndexIoError> {
        match self.assemble(root, etag, groups).await? {
            Ok(loaded) => Ok(IndexRead::Found(Box::new(loaded))),
            Err(_) => self.read(None, groups).await,
        }
    }

    /// The whole index the root-key object `bytes` (ETag `etag`) stands
    /// for: every shard it names must be there.
    pub(crate) async fn complete(
        &self,
        bytes: &[u8],
        etag: ETag,
    ) -> Result<LoadedIndex, IndexIoError> {
        let root = match IndexDocument::parse(bytes)? {
            IndexDocument::Whole(index) => return Ok(LoadedIndex::whole(index, etag, None)),
            IndexDocument::Root(root) => root,
        };
        match self.assemble(root, etag, None).await? {
            Ok(loaded) => Ok(loaded),
            Err(missing) => Err(IndexError::MissingShard(missing).into()),
        }
    }

    /// What can still be read of the root-key object `bytes` when it is a
    /// root (`None` for anything else): every shard it names is fetched from
    /// the bucket, and one that is gone or fails its checks marks its slot
    /// lost instead of failing the read (for repair).
    pub(crate) async fn salvage(
        &self,
        bytes: &[u8],
    ) -> Result<Option<SalvagedIndex>, IndexIoError> {
        let Ok(IndexDocument::Root(root)) = IndexDocument::parse(bytes) else {
            return Ok(None);
        };
        let bits = root.shard_bits;
        let named = root
            .shards
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty());
        let fetched: Vec<_> = stream::iter(named)
            .map(|(slot, hash)| async move { (slot, self.fetch_shard(hash, slot, bits).await) })
            .buffer_unordered(SHARD_CONCURRENCY)
            .collect()
            .await;
        let mut lost = vec![false; root.shards.len()];
        let mut files = BTreeMap::new();
        for (slot, outcome) in fetched {
            match outcome {
                Ok(Some(entries)) => files.extend(entries),
                Ok(None) | Err(IndexIoError::Index(_)) => lost[slot] = true,
                Err(e) => return Err(e),
            }
        }
        let index = RemoteIndex {
            format: root.format,
            repo_id: root.repo_id,
            generation: root.generation,
            files,
        };
        Ok(Some(SalvagedIndex {
            index,
            shard_bits: bits,
            lost,
        }))
    }

    /// The index `root` names, from the shards of `groups` (all when
    /// `None`) and any cached here; `Err(name)` for a shard the bucket lacks.
    async fn assemble(
        &self,
        root: IndexRoot,
        etag: ETag,
        groups: Option<&[String]>,
    ) -> Result<Result<LoadedIndex, String>, IndexIoError> {
        let (files, loaded) = match self.load_shards(&root, groups).await? {
            Ok(found) => found,
            Err(missing) => return Ok(Err(missing)),
        };
        if loaded.is_none() {
            refuse_path_conflicts(&files)?;
        }
        let index = RemoteIndex {
            format: root.format,
            repo_id: root.repo_id.clone(),
            generation: root.generation,
            files,
        };
        Ok(Ok(LoadedIndex {
            index,
            etag,
            root: Some(root),
            loaded,
        }))
    }

    /// The files of the wanted slots plus every slot cached here, and which
    /// slots they are (`None`: all); `Err(hash)` for a shard the bucket lacks.
    #[allow(clippy::type_complexity)]
    async fn load_shards(
        &self,
        root: &IndexRoot,
        groups: Option<&[String]>,
    ) -> Result<Result<(BTreeMap<String, IndexEntry>, Option<Vec<bool>>), String>, IndexIoError>
    {
        let bits = root.shard_bits;
        let slots = root.shards.len();
        let wanted = match groups {
            None => vec![true; slots],
            Some(groups) => {
                let mut wanted = vec![false; slots];
                for group in groups {
                    wanted[slot_of_group(group, bits)] = true;
                }
                wanted
            }
        };
        let mut loaded = vec![false; slots];
        let mut parts = Vec::new();
        let mut fetch = Vec::new();
        for (slot, hash) in root.shards.iter().enumerate() {
            if hash.is_empty() {
                loaded[slot] = true;
            } else if let Some(entries) = self.cached_shard(hash, slot, bits) {
                parts.push(entries);
                loaded[slot] = true;
            } else if wanted[slot] {
                fetch.push((slot, hash.as_str()));
            }
        }
        let fetched: Vec<_> =
            stream::iter(fetch)
                .map(|(slot, hash)| async move {
                    (slot, hash, self.fetch_shard(hash, slot, bits).await)
                })
                .buffer_unordered(SHARD_CONCURRENCY)
                .collect()
                .await;
        for (slot, hash, outcome) in fetched {
            match outcome? {
                Some(entries) => {
                    parts.push(entries);
                    loaded[slot] = true;
                }
                None => return Ok(Err(hash.to_string())),
            }
        }
        let mut files = BTreeMap::new();
        for part in parts {
            files.extend(part);
        }
        let complete = loaded.iter().all(|l| *l);
        Ok(Ok((files, (!complete).then_some(loaded))))
    }

    /// A shard from the shard cache, if it is there and good.
    fn cached_shard(
        &self,
        hash: &str,
        slot: usize,
        bits: u8,
    ) -> Option<BTreeMap<String, IndexEntry>> {
        let path = self.local.as_ref()?.join(format!("{hash}.json"));
        let bytes = std::fs::read(&path).ok()?;
        match parse_shard(&bytes, hash, slot, bits) {
            Ok(entries) => Some(entries),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cached index shard is damaged; fetching it again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// A shard from the bucket (`None` if it is not there), kept in the
    /// shard cache.
    async fn fetch_shard(
        &self,
        hash: &str,
        slot: usize,
        bits: u8,
    ) -> Result<Option<BTreeMap<String, IndexEntry>>, IndexIoError> {
        let key = object_key(self.prefix, &shard_rel(hash));
        let bytes = match self.store.get_bytes(&key, None).await {
            Ok(Fetched::Object(bytes, _)) => bytes,
            Ok(Fetched::NotModified) | Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let entries = parse_shard(&bytes, hash, slot, bits)?;
        self.keep_locally(hash, &bytes);
        Ok(Some(entries))
    }

    /// Keeps a good shard in the shard cache; failing to is only a cost.
    fn keep_locally(&self, hash: &str, bytes: &[u8]) {
        if let Some(dir) = &self.local {
            let kept = std::fs::create_dir_all(dir)
                .and_then(|()| write_atomic(&dir.join(format!("{hash}.json")), bytes));
            if let Err(e) = kept {
                tracing::debug!(error = %e, "could not keep an index shard locally");
            }
        }
    }

    /// Writes the index `write` describes with `mode` on the root: the new
    /// shards, then (the lease checked) the root, then the garbage it
    /// cleared. Returns the root's ETag and the root. A root write refused
    /// for another writer's root is `Store(Precondition)`; `pending` then
    /// keeps the shards this write uploaded and the root found there, so a
    /// retry reuses both (see `PendingShards`), and `abandon` deletes them
    /// when there is no retry.
    pub(crate) async fn write(
        &self,
        write: IndexWrite<'_>,
        mode: PutMode,
        fence: &LeaseFence,
        pending: &mut PendingShards,
    ) -> Result<(ETag, IndexRoot), IndexIoError> {
        let bits = match (write.covered, write.base) {
            (Some(_), Some(base)) => base.shard_bits,
            // Writing part of an index without the root it is part of would
            // drop every slot it did not load.
            (Some(_), None) => {
                return Err(IndexError::Corrupt(
                    "a partial index write without its base root (a swamp bug): nothing was written; run 'swamp datastore sync'".into(),
                )
                .into())
            }
            (None, _) => bits_to_write(write.files.len(), write.base, write.may_reshard),
        };
        let covered = write.covered;
        let mut built = build_root(
            write.files,
            bits,
            write.base,
            covered,
            write.repo_id,
            write.generation,
        );
        // A body this writer already uploaded for a refused attempt is
        // there under that attempt's name: no root names it yet, so naming
        // it now is as safe as a new name, and it costs no upload.
        let mut fresh = Vec::new();
        for body in std::mem::take(&mut built.bodies) {
            let hash = body.hash.clone();
            match pending.uploaded.get(&hash) {
                Some(earlier) => {
                    for slot in built.root.shards.iter_mut().filter(|n| **n == body.name) {
                        slot.clone_from(earlier);
                    }
                }
                None => fresh.push((hash, body)),
            }
        }
        fence.check()?;
        let sent: Vec<Result<(String, String), StoreError>> = stream::iter(&fresh)
            .map(|(hash, body)| async move {
                self.put_shard(body).await?;
                Ok((hash.clone(), body.name.clone()))
            })
            .buffer_unordered(SHARD_CONCURRENCY)
            .collect()
            .await;
        let mut failure = None;
        for outcome in sent {
            match outcome {
                Ok((hash, name)) => {
                    pending.uploaded.insert(hash, name);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
        fence.check()?;
        let bytes = built.root.to_json();
        let etag = match self
            .store
            .put_bytes(&self.root_key(), bytes.clone(), mode)
            .await
        {
            Ok(etag) => etag,
            Err(StoreError::Precondition(target)) => match self.read_back(&bytes).await {
                ReadBack::Ours(etag) => etag,
                ReadBack::Theirs(current) => {
                    self.after_refusal(pending, current, built.root.generation, fence)
                        .await;
                    return Err(StoreError::Precondition(target).into());
                }
            },
            Err(e) => {
                // The root may have landed: its shards are not ours to
                // delete or to reuse any more.
                pending.uploaded.clear();
                return Err(e.into());
            }
        };
        // What earlier attempts uploaded and this root does not name is
        // named by no root, ever: delete it with the garbage.
        let named = built.root.named();
        let mut gone: Vec<String> = pending
            .uploaded
            .drain()
            .map(|(_, name)| name)
            .filter(|name| !named.contains(name.as_str()))
            .collect();
        gone.extend(built.collect.iter().cloned());
        self.delete_shards(&gone, fence).await;
        self.prune_local(&built.root);
        Ok((etag, built.root))
    }

    /// Sorts out `pending` after our root of `generation` was refused and
    /// `current` (another writer's) stands there. If `current` has our
    /// generation, it is the one root of that generation, so ours never
    /// landed: our shards stay ours to reuse (less any it names: identical
    /// bodies it wrote too). If it is newer, ours may have landed and been
    /// replaced since, so nothing is reused; what `current` does not name,
    /// no root after it can name, and it is deleted.
    async fn after_refusal(
        &self,
        pending: &mut PendingShards,
        current: Option<(IndexRoot, ETag)>,
        generation: u64,
        fence: &LeaseFence,
    ) {
        match &current {
            Some((root, _)) if root.generation == generation => {
                let named = root.named();
                pending
                    .uploaded
                    .retain(|_, name| !named.contains(name.as_str()));
            }
            Some((root, _)) => {
                let named = root.named();
                let unused: Vec<String> = pending
                    .uploaded
                    .drain()
                    .map(|(_, name)| name)
                    .filter(|name| !named.contains(name.as_str()))
                    .collect();
                self.delete_shards(&unused, fence).await;
            }
            None => pending.uploaded.clear(),
        }
        pending.found = current;
    }

    /// `write` for a writer that does not retry: a refusal leaves nothing.
    pub(crate) async fn write_once(
        &self,
        write: IndexWrite<'_>,
        mode: PutMode,
        fence: &LeaseFence,
    ) -> Result<(ETag, IndexRoot), IndexIoError> {
        let mut pending = PendingShards::default();
        let written = self.write(write, mode, fence, &mut pending).await;
        if written.is_err() {
            self.abandon(pending, fence).await;
        }
        written
    }

    /// After a refused write with no retry: deletes what `pending` still
    /// holds (shards no root names; see `after_refusal`).
    pub(crate) async fn abandon(&self, pending: PendingShards, fence: &LeaseFence) {
        let unused: Vec<String> = pending.uploaded.into_values().collect();
        self.delete_shards(&unused, fence).await;
    }

    /// Uploads one shard (its name is new: nothing is there to keep).
    async fn put_shard(&self, body: &EncodedShard) -> Result<(), StoreError> {
        let key = object_key(self.prefix, &shard_rel(&body.name));
        self.store
            .put_bytes(&key, body.bytes.clone(), PutMode::Overwrite)
            .await?;
        self.keep_locally(&body.name, &body.bytes);
        Ok(())
    }

    /// The root there after a refused write of `sent`: ours (the reply was
    /// lost and the SDK's retry met it), or another writer's, with its ETag.
    async fn read_back(&self, sent: &[u8]) -> ReadBack {
        match self.store.get_bytes(&self.root_key(), None).await {
            Ok(Fetched::Object(bytes, meta)) if bytes == sent => ReadBack::Ours(meta.etag),
            Ok(Fetched::Object(bytes, meta)) => {
                ReadBack::Theirs(IndexRoot::parse(&bytes).ok().map(|root| (root, meta.etag)))
            }
            _ => ReadBack::Theirs(None),
        }
    }

    /// Deletes shards while the lease holds. Best effort: a shard left
    /// behind costs only space (`repair` sweeps them).
    async fn delete_shards(&self, names: &[String], fence: &LeaseFence) {
        if names.is_empty() || fence.check().is_err() {
            return;
        }
        let keys: Vec<String> = names
            .iter()
            .map(|name| object_key(self.prefix, &shard_rel(name)))
            .collect();
        if let Err(e) = self.store.delete_many(&keys).await {
            tracing::debug!(error = %e, "could not delete old index shards");
        }
    }

    /// Deletes every shard under the prefix that `root` does not name (a
    /// repair's sweep under the whole lock: garbage and the leftovers of
    /// failed writes).
    pub(crate) async fn drop_orphans(
        &self,
        root: &IndexRoot,
        fence: &LeaseFence,
    ) -> Result<(), StoreError> {
        let keep = root.named();
        let dir = object_key(self.prefix, &format!("{SHARDS_DIR}/"));
        let listed = self.store.list(&dir).await?;
        let orphans: Vec<String> = listed
            .iter()
            .filter_map(|l| {
                let name = l.key.strip_prefix(&dir)?.strip_suffix(".json")?;
                (!keep.contains(name)).then(|| name.to_string())
            })
            .collect();
        self.delete_shards(&orphans, fence).await;
        self.prune_local(root);
        Ok(())
    }

    /// Removes shard cache files `root` does not name.
    pub(crate) fn prune_local(&self, root: &IndexRoot) {
        let Some(dir) = &self.local else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let keep = root.named();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let hash = name.strip_suffix(".json").unwrap_or(&name);
            if !keep.contains(hash) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Deletes the root and every shard under the prefix (leaving a bucket
    /// prefix a migration moved away from).
    pub(crate) async fn delete_all(&self) -> Result<(), StoreError> {
        match self.store.delete(&self.root_key(), None).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let shards = object_key(self.prefix, &format!("{SHARDS_DIR}/"));
        for listed in self.store.list(&shards).await? {
            match self.store.delete(&listed.key, None).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
