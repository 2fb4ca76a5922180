//! The sync state of a cache that several scoped writers of one machine use
//! at once (`cache_lock.rs`, shared mode).
//!
//! Model: each writer keeps the state it loaded (its base) beside the one it
//! works on. A save holds the state lock and looks at the file: if it is
//! still the one this writer loaded or saved last (the same inode: every
//! save renames a new file into place, and the writer keeps its file open,
//! so no later file can be given that inode), the writer's state is
//! written as it is; otherwise another writer saved meanwhile, and what this
//! one changed since its base — file entries added, changed or removed, and
//! the index it agrees on — is applied to the file's state, which is then
//! written and becomes this writer's state and base. Entries of the other
//! writers' scopes are never this writer's changes, so none is lost; the
//! index ETag moves only if nobody else moved it (an older ETag only makes
//! the next pull read the index again).

use crate::domain::lock::LockError;
use crate::infrastructure::s3::cache::{SyncState, STATE_FILE};
use crate::infrastructure::s3::cache_lock::StateLock;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Why the shared state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    /// The state lock stayed busy.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Writing the state failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process of this machine uses the cache for another datastore.
    #[error("the cache {} is in use by another swamp process for {other}; rerun once it ends", cache.display())]
    OtherRemote {
        /// The cache directory.
        cache: PathBuf,
        /// The remote the other process syncs.
        other: String,
    },
}

/// The state file as this writer last read or wrote it, kept open so its
/// inode number cannot be reused while we compare against it.
struct Seen(std::fs::File);

impl Seen {
    fn open(cache: &Path) -> Option<Seen> {
        std::fs::File::open(cache.join(STATE_FILE)).ok().map(Seen)
    }

    /// Whether the file at the path is still this one.
    fn is_current(seen: Option<&Seen>, cache: &Path) -> bool {
        let now = std::fs::metadata(cache.join(STATE_FILE)).ok();
        match (seen.and_then(|s| s.0.metadata().ok()), now) {
            (Some(then), Some(now)) => (then.dev(), then.ino()) == (now.dev(), now.ino()),
            (None, None) => true,
            _ => false,
        }
    }
}

/// The state as this writer last loaded or saved it, and from which file.
struct Base {
    state: SyncState,
    file: Option<Seen>,
}

/// A cache's sync state, shared with the other scoped writers of its machine.
pub(crate) struct SharedState {
    cache: PathBuf,
    /// How long a save waits for the state lock.
    timeout: Duration,
    base: Mutex<Option<Base>>,
}

impl SharedState {
    /// The shared state of `cache`; saves wait up to `timeout` for the lock.
    pub(crate) fn new(cache: &Path, timeout: Duration) -> Self {
        Self {
            cache: cache.to_path_buf(),
            timeout,
            base: Mutex::new(None),
        }
    }

    /// How long a writer waits for the state's locks.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Loads the state for `remote` (remembered as this writer's base),
    /// claiming a fresh cache for it; a cache whose state belongs to another
    /// remote is refused.
    pub(crate) async fn load(&self, remote: &str) -> Result<SyncState, SharedStateError> {
        let _held = StateLock::acquire(&self.cache, self.timeout).await?;
        let mut file = Seen::open(&self.cache);
        let state = SyncState::load_unless_other(&self.cache, remote).map_err(|other| {
            SharedStateError::OtherRemote {
                cache: self.cache.clone(),
                other,
            }
        })?;
        if file.is_none() {
            // Claimed before anything lands in the cache: a writer for
            // another remote that comes next finds the cache taken and waits
            // for the exclusive lock (then adopts the cache), instead of
            // pulling its files in beside ours, where no state would track
            // them once its save failed.
            file = self.write(&state)?;
        } else if state.is_empty() && SyncState::load_raw(&self.cache).is_none() {
            // Unreadable: whose it is cannot be told, so only an exclusive
            // holder may replace it.
            return Err(SharedStateError::OtherRemote {
                cache: self.cache.clone(),
                other: "an unreadable sync state".into(),
            });
        }
        *self.base.lock().unwrap_or_else(|e| e.into_inner()) = Some(Base {
            state: state.clone(),
            file,
        });
        Ok(state)
    }

    /// Saves `state`, merged with what other writers saved since this one's
    /// base; `state` becomes what was saved.
    pub(crate) async fn save(&self, state: &mut SyncState) -> Result<(), SharedStateError> {
        let _held = StateLock::acquire(&self.cache, self.timeout).await?;
        let mut base = self.base.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(base) = base
            .as_ref()
            .filter(|b| !Seen::is_current(b.file.as_ref(), &self.cache))
        {
            let mut disk = match SyncState::load_raw(&self.cache) {
                Some(disk) if disk.remote != state.remote => {
                    return Err(SharedStateError::OtherRemote {
                        cache: self.cache.clone(),
                        other: disk.remote,
                    })
                }
                Some(disk) => disk,
                None => SyncState {
                    remote: state.remote.clone(),
                    ..SyncState::default()
                },
            };
            apply_changes(&mut disk, &base.state, state);
            *state = disk;
        }
        let file = self.write(state)?;
        *base = Some(Base {
            state: state.clone(),
            file,
        });
        Ok(())
    }

    /// Writes `state` (the state lock held); the file it is now.
    fn write(&self, state: &SyncState) -> Result<Option<Seen>, SharedStateError> {
        state
            .save(&self.cache)
            .map_err(|source| SharedStateError::Io {
                path: self.cache.join(STATE_FILE),
                source,
            })?;
        Ok(Seen::open(&self.cache))
    }
}

/// Applies to `disk` what changed from `base` to `ours`.
///
/// File entries: each writer changes only its own scope's, so they merge
/// entry by entry. Foreign entries (other machines' settings) are nobody's
/// scope: each writer mirrors them from the index it read, so they go with
/// the index ETag — ours are taken only with our ETag move, or when neither
/// the ETag nor the foreign entries moved on disk; otherwise the disk's stay
/// (they match the disk's ETag, while ours may be from an older index, and
/// an older entry under a newer ETag would never be fetched again).
fn apply_changes(disk: &mut SyncState, base: &SyncState, ours: &SyncState) {
    apply_map(&mut disk.files, &base.files, &ours.files);
    let moved = (&ours.index_etag, ours.generation) != (&base.index_etag, base.generation);
    let untouched = (&disk.index_etag, disk.generation) == (&base.index_etag, base.generation);
    let foreign_untouched = disk.foreign == base.foreign;
    if untouched && (moved || foreign_untouched) {
        apply_map(&mut disk.foreign, &base.foreign, &ours.foreign);
    }
    if moved && untouched {
        disk.index_etag.clone_from(&ours.index_etag);
        disk.generation = ours.generation;
        disk.index_root.clone_from(&ours.index_root);
    }
}

fn apply_map<V: Clone + PartialEq>(
    disk: &mut BTreeMap<String, V>,
    base: &BTreeMap<String, V>,
    ours: &BTreeMap<String, V>,
) {
    for (key, value) in ours {
        if base.get(key) != Some(value) {
            disk.insert(key.clone(), value.clone());
        }
    }
    for key in base.keys() {
        if !ours.contains_key(key) {
            disk.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infrastructure::s3::cache::SyncedFile;
    use crate::infrastructure::s3::store::ETag;

    const REMOTE: &str = "s3://b/p/";

    fn file(tag: u8) -> SyncedFile {
        SyncedFile {
            size: u64::from(tag),
            mtime_ns: i128::from(tag),
            sha256: crate::domain::sha256::Sha256::from_bytes([tag; 32]),
            parts: None,
        }
    }

    fn seeded(dir: &Path) {
        let mut state = SyncState {
            remote: REMOTE.into(),
            index_etag: Some(ETag::new("\"e0\"")),
            generation: 1,
            ..SyncState::default()
        };
        state.files.insert("data/a/1".into(), file(1));
        state.files.insert("data/b/1".into(), file(2));
        state.files.insert("outputs/x".into(), file(3));
        state.save(dir).unwrap();
    }

    /// Two writers of the seeded cache `dir`, each with the state it loaded.
    async fn two_writers(dir: &Path) -> (SharedState, SyncState, SharedState, SyncState) {
        seeded(dir);
        let (a, b) = (
            SharedState::new(dir, Duration::from_secs(5)),
            SharedState::new(dir, Duration::from_secs(5)),
        );
        let (sa, sb) = (a.load(REMOTE).await.unwrap(), b.load(REMOTE).await.unwrap());
        (a, sa, b, sb)
    }

    #[tokio::test]
    async fn two_writers_saving_in_turn_keep_each_others_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (a, mut sa, b, mut sb) = two_writers(dir.path()).await;
        sa.files.insert("data/a/2".into(), file(4));
        sa.files.remove("data/a/1");
        sb.files.insert("data/b/1".into(), file(5));
        sb.index_etag = Some(ETag::new("\"e1\""));
        sb.generation = 2;
        b.save(&mut sb).await.unwrap();
        a.save(&mut sa).await.unwrap();
        let disk = SyncState::load(dir.path(), REMOTE);
        assert_eq!(disk, sa, "the writer's state is what it saved");
        let paths: Vec<&str> = disk.files.keys().map(String::as_str).collect();
        assert_eq!(paths, ["data/a/2", "data/b/1", "outputs/x"]);
        assert_eq!(disk.files["data/b/1"], file(5));
        // b moved the index ETag and a did not: b's stands.
        assert_eq!(
            (disk.index_etag, disk.generation),
            (Some(ETag::new("\"e1\"")), 2)
        );
        // a saves again with nothing new from anyone: written as it is.
        sa.files.insert("data/a/3".into(), file(6));
        a.save(&mut sa).await.unwrap();
        assert!(SyncState::load(dir.path(), REMOTE)
            .files
            .contains_key("data/b/1"));
    }

    #[tokio::test]
    async fn an_etag_moved_by_another_writer_is_not_moved_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, mut sa, b, mut sb) = two_writers(dir.path()).await;
        sb.index_etag = Some(ETag::new("\"e1\""));
        sb.generation = 2;
        b.save(&mut sb).await.unwrap();
        sa.index_etag = Some(ETag::new("\"e2\""));
        sa.generation = 3;
        a.save(&mut sa).await.unwrap();
        let disk = SyncState::load(dir.path(), REMOTE);
        assert_eq!(disk.index_etag, Some(ETag::new("\"e1\"")));
    }

    #[tokio::test]
    async fn a_cache_another_remote_took_meanwhile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        seeded(dir.path());
        let a = SharedState::new(dir.path(), Duration::from_secs(5));
        let mut sa = a.load(REMOTE).await.unwrap();
        SyncState {
            remote: "s3://other/".into(),
            ..SyncState::default()
        }
        .save(dir.path())
        .unwrap();
        sa.files.insert("data/a/2".into(), file(4));
        let err = a.save(&mut sa).await.unwrap_err();
        assert!(matches!(err, SharedStateError::OtherRemote { .. }), "{err}");
    }

    /// The first writer of a fresh cache claims it before its pull: the
    /// next writer for another remote is refused at once (and so waits for
    /// the exclusive lock) instead of pulling into the cache beside it.
    #[tokio::test]
    async fn a_fresh_cache_is_claimed_by_its_first_writer() {
        let dir = tempfile::tempdir().unwrap();
        let a = SharedState::new(dir.path(), Duration::from_secs(5));
        let mut sa = a.load(REMOTE).await.unwrap();
        let b = SharedState::new(dir.path(), Duration::from_secs(5));
        let err = b.load("s3://other/").await.unwrap_err();
        assert!(
            matches!(err, SharedStateError::OtherRemote { ref other, .. } if other == REMOTE),
            "{err}"
        );
        // The claim is the first writer's base: its save needs no merge.
        sa.files.insert("data/a/1".into(), file(1));
        a.save(&mut sa).await.unwrap();
        assert_eq!(SyncState::load(dir.path(), REMOTE), sa);
    }

    /// An unreadable state file is nobody's to claim under the shared lock:
    /// refused, so the writer takes the cache exclusively (and rebuilds).
    #[tokio::test]
    async fn an_unreadable_state_is_left_to_an_exclusive_holder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{garbage").unwrap();
        let a = SharedState::new(dir.path(), Duration::from_secs(5));
        let err = a.load(REMOTE).await.unwrap_err();
        assert!(matches!(err, SharedStateError::OtherRemote { .. }), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join(STATE_FILE)).unwrap(),
            b"{garbage",
            "left as it was"
        );
    }

    #[tokio::test]
    async fn foreign_entries_go_with_the_index_etag_they_were_read_with() {
        use crate::domain::sync_index::IndexEntry;
        let entry = |tag: u8| IndexEntry {
            size: u64::from(tag),
            sha256: crate::domain::sha256::Sha256::from_bytes([tag; 32]),
            parts: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let (a, mut sa, b, mut sb) = two_writers(dir.path()).await;
        // b read an older index (foreign X = v1) than a (X = v2, agreed: its
        // ETag moved); b saves last, with no ETag move of its own.
        sb.foreign.insert("logs/x".into(), entry(1));
        sa.foreign.insert("logs/x".into(), entry(2));
        sa.index_etag = Some(ETag::new("\"e2\""));
        sa.generation = 3;
        a.save(&mut sa).await.unwrap();
        b.save(&mut sb).await.unwrap();
        let disk = SyncState::load(dir.path(), REMOTE);
        assert_eq!(disk.index_etag, Some(ETag::new("\"e2\"")));
        assert_eq!(disk.foreign["logs/x"], entry(2), "not rolled back under e2");
    }
}
