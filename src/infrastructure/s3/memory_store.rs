//! An in-memory `ObjectStore` with real conditional semantics (check and
//! write under one lock, as S3 makes them atomic) and injectable failures —
//! failed uploads, lost replies, 409 conflicts — for unit tests of the lock and
//! sync logic in addition to (never instead of) the tests against a real S3
//! server.
//!
//! Model of a request: it travels to the store, then takes effect at one
//! instant (no await inside, so a conditional write checks and writes under
//! one lock acquisition, as S3 makes them atomic). By default the trip is
//! instant, so a request never lets another task run. `interleave(seed)`
//! makes each trip yield to the runtime a seeded-random number of times, so
//! concurrent callers really overlap (two takers both read a stale lock
//! before either writes), and each seed is one reproducible interleaving.

use crate::domain::sha256::Sha256;
use crate::infrastructure::hashing::{CheckKind, ContentChecker, FileDigest};
use crate::infrastructure::s3::store::{
    Downloaded, ETag, Fetched, Head, Listed, ObjectMeta, ObjectStore, PutMode, Recorded, StoreError,
};
use async_trait::async_trait;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

/// Most yields of one interleaved request's trip.
const MAX_YIELDS: u32 = 3;

#[derive(Clone)]
struct Object {
    bytes: Vec<u8>,
    etag: ETag,
    modified: SystemTime,
    sha: Option<Sha256>,
    generation: Option<u64>,
}

/// Objects in memory; keys in `fail_uploads` fail their uploads.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Object>>,
    /// Keys whose `put_file` fails.
    pub fail_uploads: Mutex<HashSet<String>>,
    /// Number of requests served.
    pub requests: Mutex<u64>,
    /// The next this many `put_bytes` land, lose their reply and are retried,
    /// as an SDK does: the caller sees the retry's answer.
    pub lost_put_replies: Mutex<u32>,
    /// The next `put_bytes` to each of these keys lands, loses its reply
    /// and is retried (`lost_put_replies` for one key).
    pub lost_replies_for: Mutex<HashSet<String>>,
    /// The next this many `put_bytes` are refused with `Conflict` unwritten.
    pub put_conflicts: Mutex<u32>,
    /// The next this many `put_bytes` are refused with `Precondition`
    /// unwritten, as if another writer had just changed the object.
    pub put_refusals: Mutex<u32>,
    /// Conditional writes refused because the object had changed (412s
    /// the store decided, not injected ones).
    pub stale_writes: Mutex<u32>,
    counter: Mutex<u64>,
    /// The next `get_bytes` of each of these keys answers these bytes (what
    /// a reader saw before a write it raced with).
    stale_reads: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Draws each trip's yields; `None`: requests take effect at once.
    interleaving: Mutex<Option<StdRng>>,
}

impl MemoryStore {
    fn next_etag(&self) -> ETag {
        let mut c = self.counter.lock().unwrap();
        *c += 1;
        ETag::new(format!("\"etag-{c}\""))
    }

    fn count(&self) {
        *self.requests.lock().unwrap() += 1;
    }

    /// Lets requests overlap from now on, in the interleaving `seed` picks.
    pub fn interleave(&self, seed: u64) {
        *self.interleaving.lock().unwrap() = Some(StdRng::seed_from_u64(seed));
    }

    /// A request's trip to the store: counts it and yields as often as the
    /// interleaving says. Each request calls it first, then takes effect
    /// without awaiting anything.
    async fn arrive(&self) {
        self.count();
        let yields = match self.interleaving.lock().unwrap().as_mut() {
            Some(rng) => rng.gen_range(0..=MAX_YIELDS),
            None => 0,
        };
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
    }

    /// Every key, for assertions.
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    /// The content of `key`, if it exists.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|o| o.bytes.clone())
    }

    /// Plants an object behind the code's back.
    pub fn plant(&self, key: &str, bytes: &[u8]) {
        let etag = self.next_etag();
        self.objects.lock().unwrap().insert(
            key.to_string(),
            Object {
                bytes: bytes.to_vec(),
                etag,
                modified: SystemTime::now(),
                sha: None,
                generation: None,
            },
        );
    }

    /// The whole index under `prefix`, in either format (shards assembled).
    pub fn index(&self, prefix: &str) -> crate::domain::sync_index::RemoteIndex {
        use crate::domain::index_shards::{parse_shard, shard_rel};
        use crate::domain::sync_index::{object_key, IndexDocument, RemoteIndex, INDEX_KEY};
        let bytes = self
            .object(&object_key(prefix, INDEX_KEY))
            .expect("an index");
        match IndexDocument::parse(&bytes).expect("a readable index") {
            IndexDocument::Whole(index) => index,
            IndexDocument::Root(root) => {
                let mut files = std::collections::BTreeMap::new();
                for (slot, hash) in root.shards.iter().enumerate() {
                    if hash.is_empty() {
                        continue;
                    }
                    let body = self
                        .object(&object_key(prefix, &shard_rel(hash)))
                        .expect("every named shard");
                    files.extend(parse_shard(&body, hash, slot, root.shard_bits).unwrap());
                }
                RemoteIndex {
                    format: root.format,
                    repo_id: root.repo_id,
                    generation: root.generation,
                    files,
                }
            }
        }
    }

    /// Makes the next read of `key` answer `bytes`, as a read from just
    /// before the last write would have.
    pub fn serve_once(&self, key: &str, bytes: Vec<u8>) {
        self.stale_reads.lock().unwrap().insert(key.into(), bytes);
    }

    /// Makes an object look written `age` ago.
    pub fn age(&self, key: &str, age: std::time::Duration) {
        if let Some(o) = self.objects.lock().unwrap().get_mut(key) {
            o.modified = SystemTime::now() - age;
        }
    }

    fn write(
        &self,
        key: &str,
        bytes: Vec<u8>,
        mode: Option<PutMode>,
        sha: Option<Sha256>,
    ) -> Result<ETag, StoreError> {
        let mut objects = self.objects.lock().unwrap();
        let stale = match (&mode, objects.get(key)) {
            (Some(PutMode::Create), Some(_)) => true,
            (Some(PutMode::Update(_)), None) => return Err(StoreError::NotFound(key.into())),
            (Some(PutMode::Update(want)), Some(o)) => &o.etag != want,
            _ => false,
        };
        if stale {
            *self.stale_writes.lock().unwrap() += 1;
            return Err(StoreError::Precondition(key.into()));
        }
        let etag = self.next_etag();
        objects.insert(
            key.to_string(),
            Object {
                bytes,
                etag: etag.clone(),
                modified: SystemTime::now(),
                sha,
                generation: None,
            },
        );
        Ok(etag)
    }
}

/// Takes one from a countdown; whether there was one.
fn take_one(counter: &Mutex<u32>) -> bool {
    let mut n = counter.lock().unwrap();
    if *n == 0 {
        return false;
    }
    *n -= 1;
    true
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn url(&self, key: &str) -> String {
        format!("mem://{key}")
    }

    async fn head_bucket(&self) -> Result<(), StoreError> {
        self.arrive().await;
        Ok(())
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<ETag, StoreError> {
        self.arrive().await;
        if key.contains(crate::domain::index_shards::SHARDS_DIR) {
            // Faults are aimed at the root and the locks, not the shards.
            return self.write(key, bytes, Some(mode), None);
        }
        if take_one(&self.put_conflicts) {
            return Err(StoreError::Conflict(key.into()));
        }
        if take_one(&self.put_refusals) {
            return Err(StoreError::Precondition(key.into()));
        }
        if take_one(&self.lost_put_replies) || self.lost_replies_for.lock().unwrap().remove(key) {
            // The first attempt lands; its reply is lost; the retry answers.
            self.write(key, bytes.clone(), Some(mode.clone()), None)?;
            self.count();
        }
        self.write(key, bytes, Some(mode), None)
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        digest: &FileDigest,
        generation: u64,
        content: Option<bytes::Bytes>,
    ) -> Result<ETag, StoreError> {
        self.arrive().await;
        if self.fail_uploads.lock().unwrap().contains(key) {
            return Err(StoreError::Failed {
                op: "upload",
                target: key.into(),
                message: "injected failure".into(),
            });
        }
        let bytes = match content {
            Some(bytes) => bytes.to_vec(),
            None => std::fs::read(path).map_err(|e| StoreError::Failed {
                op: "read",
                target: path.display().to_string(),
                message: e.to_string(),
            })?,
        };
        // As S3 does with the checksum a put carries: content that changed
        // after it was hashed is refused.
        if FileDigest::of_bytes(&bytes) != *digest {
            return Err(StoreError::Failed {
                op: "upload",
                target: key.into(),
                message: "checksum mismatch".into(),
            });
        }
        let etag = self.write(key, bytes, None, Some(digest.sha256))?;
        if let Some(object) = self.objects.lock().unwrap().get_mut(key) {
            object.generation = Some(generation);
        }
        Ok(etag)
    }

    async fn get_bytes(
        &self,
        key: &str,
        if_none_match: Option<&ETag>,
    ) -> Result<Fetched, StoreError> {
        self.arrive().await;
        if let Some(bytes) = self.stale_reads.lock().unwrap().remove(key) {
            return Ok(Fetched::Object(
                bytes,
                ObjectMeta {
                    etag: ETag::new("\"stale\""),
                    last_modified: Some(SystemTime::now()),
                    server_time: Some(SystemTime::now()),
                },
            ));
        }
        let objects = self.objects.lock().unwrap();
        let o = objects
            .get(key)
            .ok_or_else(|| StoreError::NotFound(key.into()))?;
        if if_none_match == Some(&o.etag) {
            return Ok(Fetched::NotModified);
        }
        Ok(Fetched::Object(
            o.bytes.clone(),
            ObjectMeta {
                etag: o.etag.clone(),
                last_modified: Some(o.modified),
                server_time: Some(SystemTime::now()),
            },
        ))
    }

    async fn get_to_file(
        &self,
        key: &str,
        dest: &Path,
        check: CheckKind,
    ) -> Result<Downloaded, StoreError> {
        self.arrive().await;
        let (bytes, sha256, generation) = self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|o| (o.bytes.clone(), o.sha, o.generation))
            .ok_or_else(|| StoreError::NotFound(key.into()))?;
        std::fs::write(dest, &bytes).map_err(|e| StoreError::Failed {
            op: "write",
            target: dest.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Downloaded {
            size: bytes.len() as u64,
            checked: {
                let mut checker = ContentChecker::new(check);
                checker.update(&bytes);
                checker.finish()
            },
            recorded: Recorded { sha256, generation },
        })
    }

    async fn head(&self, key: &str) -> Result<Option<Head>, StoreError> {
        self.arrive().await;
        Ok(self.objects.lock().unwrap().get(key).map(|o| Head {
            size: o.bytes.len() as u64,
            recorded: Recorded {
                sha256: o.sha,
                generation: o.generation,
            },
        }))
    }

    async fn delete(&self, key: &str, if_match: Option<&ETag>) -> Result<(), StoreError> {
        self.arrive().await;
        let mut objects = self.objects.lock().unwrap();
        match (objects.get(key), if_match) {
            (None, _) => Err(StoreError::NotFound(key.into())),
            (Some(o), Some(want)) if &o.etag != want => Err(StoreError::Precondition(key.into())),
            _ => {
                objects.remove(key);
                Ok(())
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        self.arrive().await;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| Listed {
                key: k.clone(),
                etag: Some(o.etag.clone()),
            })
            .collect())
    }
}
