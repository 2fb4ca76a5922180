//! `FileLock`: the lock of a filesystem datastore, the file
//! `{datastore}/.datastore.lock`.
//!
//! Model: the record is written to a temp file and hard-linked to the lock path,
//! which is an atomic create-if-absent that never exposes a half-written record.
//! Every change to an existing record goes through `move_aside_if`: rename the
//! file at the lock path to a unique name (atomic; only one renamer gets a given
//! file), check that what was moved is the record we meant (its version — inode,
//! mtime and content hash — or its token), and otherwise link it straight back.
//! So a stale takeover can only ever remove the exact stale record it judged, a
//! release only our own record, and two takers cannot both win: after removal
//! they race on the same create-if-absent.
//!
//! Every change to a record (takeover, renewal, release) is also made under an
//! exclusive `flock` of the directory's mutex file, held for the few syscalls
//! of the change. Without it, a taker that had judged a stale record could move
//! aside the *fresh* record another taker had just created, and a third
//! process could create its own before the record was linked back: two
//! holders (seen with 6 processes racing on a busy 2-core machine). Under the
//! mutex a taker judges the record it then moves, and nothing else changes it
//! in between. See design/datastores.md for the residual windows.

use crate::domain::lock::{
    is_stale, Attempt, DistributedLock, Lease, LockError, LockInfo, LockObservation, LockVersion,
};
use crate::infrastructure::atomic_file::TEMP_MARKER;
use crate::infrastructure::hashing::sha256_bytes;
use crate::infrastructure::scoped_lock::ScopedRecords;
use async_trait::async_trait;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The lock file name inside the datastore directory.
pub const LOCK_FILE: &str = ".datastore.lock";

/// The directory of scoped lock records inside the datastore directory.
pub const SCOPED_DIR: &str = ".locks";

/// The file in a lock's directory whose `flock` serializes every change to a
/// record there (its content is never read).
pub const MUTEX_FILE: &str = ".swamp-lock-mutex";

/// How long a change waits for another process's change to finish: changes
/// take microseconds, so only a process stopped in the middle of one holds
/// the mutex this long.
const MUTEX_WAIT: Duration = Duration::from_secs(5);

/// How one change to a record is serialized (`FileLock::changing`).
enum Changing {
    /// The directory's mutex, held until this is dropped.
    Held(#[allow(dead_code)] Flock<fs::File>),
    /// No mutex: the directory does not exist (so it holds no record), or
    /// its filesystem has no working `flock`.
    Without,
    /// Another process has held the mutex (at this path) for `MUTEX_WAIT`:
    /// one stopped in the middle of a change.
    HeldUp(PathBuf),
}

impl Changing {
    /// The error of a change that could not wait any longer.
    fn held_up(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{p} is held by a swamp stopped in the middle of a lock change: find it with `fuser -v {p}`, resume it (kill -CONT) or end it, then retry",
                p = path.display()
            ),
        )
    }
}

/// Opens (or creates) the mutex file. Created readable and writable by all
/// (less the umask), so teammates sharing a group-writable datastore can
/// all open it; one made by another user is opened for reading, which a
/// local `flock` accepts as well.
fn open_mutex(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(path);
    match opened {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            OpenOptions::new().read(true).open(path)
        }
        other => other,
    }
}

/// What `move_aside_if` found.
enum MoveOutcome {
    /// The expected record was removed.
    Removed(LockObservation),
    /// Another record was there; it was put back (or its owner will find it gone).
    Mismatch(LockObservation),
    /// No record was there.
    Absent,
}

/// The lock of a filesystem datastore.
#[derive(Debug, Clone)]
pub struct FileLock {
    path: PathBuf,
    default_ttl: Duration,
    /// What fresh records say they hold (`LockInfo::scope`, `priority`).
    scope: Option<(Vec<String>, u64)>,
}

impl FileLock {
    /// The lock of the datastore at `dir`; `default_ttl` judges unreadable records.
    pub fn new(dir: &Path, default_ttl: Duration) -> Self {
        Self::at(dir.join(LOCK_FILE), default_ttl)
    }

    /// A lock whose record is the file `path` (a scoped lock's record).
    pub fn at(path: PathBuf, default_ttl: Duration) -> Self {
        Self {
            path,
            default_ttl,
            scope: None,
        }
    }

    /// The same lock, its records naming `scope` with `priority`.
    pub fn recording(mut self, scope: Vec<String>, priority: u64) -> Self {
        self.scope = Some((scope, priority));
        self
    }

    fn lock_path(&self) -> PathBuf {
        self.path.clone()
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn side_path(&self, tag: &str) -> PathBuf {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| LOCK_FILE.into());
        self.dir()
            .join(format!("{name}.{tag}{TEMP_MARKER}{}", &unique[..12]))
    }

    /// A fresh record for this process, naming this lock's scope.
    fn fresh_info(&self, ttl: Duration) -> LockInfo {
        LockInfo::for_this_process_holding(ttl, self.scope.as_ref())
    }

    /// Takes the directory's mutex for one change to a record (see the
    /// module doc), waiting up to `MUTEX_WAIT` for another process's change
    /// to finish. `create_dir`: the change may create the directory (an
    /// acquire); otherwise a missing directory holds no record to change.
    async fn changing(&self, create_dir: bool) -> io::Result<Changing> {
        if create_dir {
            fs::create_dir_all(self.dir())?;
        }
        let path = self.dir().join(MUTEX_FILE);
        let mut file = match open_mutex(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create_dir => {
                return Ok(Changing::Without)
            }
            Err(e) => return Err(e),
        };
        let deadline = Instant::now() + MUTEX_WAIT;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(held) => return Ok(Changing::Held(held)),
                Err((back, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((_, Errno::EWOULDBLOCK)) => return Ok(Changing::HeldUp(path)),
                // A mount without a lock manager (NFS without lockd, some
                // FUSE filesystems): rename and link alone, as before the
                // mutex, rather than no lock at all.
                Err((_, Errno::ENOLCK | Errno::EOPNOTSUPP | Errno::ENOSYS | Errno::EINVAL)) => {
                    tracing::debug!(mutex = %path.display(), "no flock on this filesystem");
                    return Ok(Changing::Without);
                }
                Err((_, errno)) => return Err(errno.into()),
            }
        }
    }

    fn store_err(&self, e: io::Error) -> LockError {
        LockError::Backend {
            location: self.lock_path().display().to_string(),
            source: Box::new(e),
        }
    }

    /// Reads the record at `path`, if any.
    fn observe(&self, path: &Path) -> io::Result<Option<LockObservation>> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(self.observation_from(&bytes, &meta)))
    }

    fn observation_from(&self, bytes: &[u8], meta: &fs::Metadata) -> LockObservation {
        let version = LockVersion(format!(
            "{}:{}:{}.{}:{}",
            meta.dev(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            &sha256_bytes(bytes).to_hex()[..16]
        ));
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or(Duration::ZERO);
        let (info, corrupt) = match LockInfo::from_json(bytes) {
            Ok(info) => (Some(info), None),
            Err(why) => (None, Some(why)),
        };
        let ttl = info.as_ref().map(|i| i.ttl()).unwrap_or(self.default_ttl);
        LockObservation {
            info,
            corrupt,
            age,
            stale: is_stale(age, ttl),
            version,
        }
    }

    /// Writes `info` to a temp file; returns its path.
    fn write_temp(&self, info: &LockInfo) -> io::Result<PathBuf> {
        let temp = self.side_path("new");
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        // No fsync: a lock only matters while its holder lives, and a crash of
        // the machine ends every holder on it (its TTL covers other hosts).
        file.write_all(&info.to_json())?;
        Ok(temp)
    }

    /// Atomically creates the lock file with `info` if no lock file exists.
    fn create(&self, info: &LockInfo) -> io::Result<bool> {
        fs::create_dir_all(self.dir())?;
        let temp = self.write_temp(info)?;
        let linked = fs::hard_link(&temp, self.lock_path());
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Renames the lock file aside, keeps it removed if `expected` holds for
    /// it, and links it back otherwise.
    fn move_aside_if(
        &self,
        tag: &str,
        expected: impl Fn(&LockObservation) -> bool,
    ) -> io::Result<MoveOutcome> {
        let aside = self.side_path(tag);
        match fs::rename(self.lock_path(), &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(MoveOutcome::Absent),
            Err(e) => return Err(e),
        }
        let Some(moved) = self.observe(&aside)? else {
            return Ok(MoveOutcome::Absent);
        };
        if expected(&moved) {
            fs::remove_file(&aside)?;
            return Ok(MoveOutcome::Removed(moved));
        }
        // Not what we meant to remove: put it back unless someone already
        // created a new lock, in which case its owner finds its token gone.
        let _ = fs::hard_link(&aside, self.lock_path());
        fs::remove_file(&aside)?;
        Ok(MoveOutcome::Mismatch(moved))
    }

    fn try_acquire_sync(&self, ttl: Duration) -> io::Result<Attempt> {
        let mut last = None;
        for _ in 0..4 {
            let info = self.fresh_info(ttl);
            if self.create(&info)? {
                let version = self
                    .observe(&self.lock_path())?
                    .map(|o| o.version)
                    .unwrap_or_else(|| LockVersion(String::new()));
                return Ok(Attempt::Acquired(Lease { info, version }));
            }
            let Some(current) = self.observe(&self.lock_path())? else {
                continue;
            };
            if !current.stale {
                return Ok(Attempt::Busy(current));
            }
            let stale_version = current.version.clone();
            tracing::info!(holder = %current.describe(), "taking over a stale lock");
            self.move_aside_if("stale", |moved| moved.version == stale_version)?;
            last = Some(current);
        }
        match self.observe(&self.lock_path())? {
            Some(obs) => Ok(Attempt::Busy(obs)),
            None => Ok(Attempt::Busy(last.unwrap_or_else(|| LockObservation {
                info: None,
                corrupt: Some("contended".into()),
                age: Duration::ZERO,
                stale: false,
                version: LockVersion(String::new()),
            }))),
        }
    }

    fn renew_sync(&self, lease: &Lease) -> Result<Option<Lease>, LockError> {
        let current = self
            .observe(&self.lock_path())
            .map_err(|e| self.store_err(e))?;
        let Some(current) = current else {
            return Ok(None);
        };
        if current.info.as_ref().map(|i| i.token.as_str()) != Some(lease.info.token.as_str()) {
            return Err(LockError::Lost(format!(
                "the lock is now held by {}",
                current.describe()
            )));
        }
        let mut info = lease.info.clone();
        info.renewed_at = Some(chrono::Utc::now());
        let temp = self.write_temp(&info).map_err(|e| self.store_err(e))?;
        let result = fs::rename(&temp, self.lock_path());
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(self.store_err(e));
        }
        let version = self
            .observe(&self.lock_path())
            .map_err(|e| self.store_err(e))?
            .map(|o| o.version)
            .unwrap_or_else(|| lease.version.clone());
        Ok(Some(Lease { info, version }))
    }
}

/// The scoped lock records of a filesystem datastore: `.locks/{id}.lock`.
pub struct FileScopedRecords {
    dir: PathBuf,
    default_ttl: Duration,
}

impl FileScopedRecords {
    /// The records of the datastore at `datastore`.
    pub fn new(datastore: &Path, default_ttl: Duration) -> Self {
        Self {
            dir: datastore.join(SCOPED_DIR),
            default_ttl,
        }
    }
}

#[async_trait]
impl ScopedRecords for FileScopedRecords {
    fn record(&self, id: &str, scope: &[String], priority: u64) -> Arc<dyn DistributedLock> {
        let path = self.dir.join(format!("{id}.lock"));
        Arc::new(FileLock::at(path, self.default_ttl).recording(scope.to_vec(), priority))
    }

    async fn list(&self) -> Result<Vec<(Arc<dyn DistributedLock>, LockObservation)>, LockError> {
        let failed = |e: io::Error| LockError::Backend {
            location: self.dir.display().to_string(),
            source: Box::new(e),
        };
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(failed(e)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry.map_err(failed)?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if !name.is_some_and(|n| n.ends_with(".lock") && !n.contains(TEMP_MARKER)) {
                continue;
            }
            let lock = FileLock::at(path.clone(), self.default_ttl);
            if let Some(obs) = lock.observe(&path).map_err(failed)? {
                records.push((Arc::new(lock) as Arc<dyn DistributedLock>, obs));
            }
        }
        Ok(records)
    }
}

#[async_trait]
impl DistributedLock for FileLock {
    fn location(&self) -> String {
        self.lock_path().display().to_string()
    }

    async fn try_acquire(&self, ttl: Duration) -> Result<Attempt, LockError> {
        let changing = self.changing(true).await.map_err(|e| self.store_err(e))?;
        if let Changing::HeldUp(path) = &changing {
            // Busy, not failed: the command keeps waiting up to its lock
            // timeout, which then names the record's holder or the mutex.
            let observed = self.observe(&self.lock_path());
            return match observed.map_err(|e| self.store_err(e))? {
                Some(obs) if !obs.stale => Ok(Attempt::Busy(obs)),
                _ => Ok(Attempt::Busy(LockObservation {
                    info: None,
                    corrupt: Some(Changing::held_up(path).to_string()),
                    age: Duration::ZERO,
                    stale: false,
                    version: LockVersion(String::new()),
                })),
            };
        }
        self.try_acquire_sync(ttl).map_err(|e| self.store_err(e))
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, LockError> {
        // An older swamp's move-aside (made without the mutex) empties the
        // lock path for a moment; look again before concluding it is gone.
        for _ in 0..5 {
            let changing = self.changing(false).await.map_err(|e| self.store_err(e))?;
            if let Changing::HeldUp(path) = &changing {
                return Err(self.store_err(Changing::held_up(path)));
            }
            if let Some(renewed) = self.renew_sync(lease)? {
                return Ok(renewed);
            }
            drop(changing);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(LockError::Lost(
            "the lock file was removed (force-released?)".into(),
        ))
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        let changing = self.changing(false).await.map_err(|e| self.store_err(e))?;
        if let Changing::HeldUp(path) = &changing {
            return Err(self.store_err(Changing::held_up(path)));
        }
        let token = lease.info.token.clone();
        self.move_aside_if("release", |moved| {
            moved.info.as_ref().map(|i| &i.token) == Some(&token)
        })
        .map(|_| ())
        .map_err(|e| self.store_err(e))
    }

    async fn inspect(&self) -> Result<Option<LockObservation>, LockError> {
        self.observe(&self.lock_path())
            .map_err(|e| self.store_err(e))
    }

    async fn force_release(&self) -> Result<Option<LockObservation>, LockError> {
        // Forced: after the wait it goes ahead without the mutex, so it also
        // clears a lock whose mutex a stopped process holds.
        let _changing = self.changing(false).await.map_err(|e| self.store_err(e))?;
        match self
            .move_aside_if("forced", |_| true)
            .map_err(|e| self.store_err(e))?
        {
            MoveOutcome::Removed(obs) | MoveOutcome::Mismatch(obs) => Ok(Some(obs)),
            MoveOutcome::Absent => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquire(lock: &FileLock, ttl: Duration) -> Attempt {
        lock.try_acquire_sync(ttl).unwrap()
    }

    #[tokio::test]
    async fn second_acquirer_is_busy_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::new(dir.path(), Duration::from_secs(30));
        let Attempt::Acquired(lease) = acquire(&lock, Duration::from_secs(30)) else {
            panic!("first acquire failed")
        };
        let Attempt::Busy(obs) = acquire(&lock, Duration::from_secs(30)) else {
            panic!("second acquire succeeded")
        };
        assert_eq!(obs.info.unwrap().token, lease.info.token);
        lock.release(&lease).await.unwrap();
        assert!(matches!(
            acquire(&lock, Duration::from_secs(30)),
            Attempt::Acquired(_)
        ));
    }

    #[tokio::test]
    async fn renew_after_takeover_reports_lost_and_release_leaves_successor() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::new(dir.path(), Duration::from_millis(50));
        let Attempt::Acquired(old) = acquire(&lock, Duration::from_millis(50)) else {
            panic!()
        };
        // Wait (on a condition) until the record is stale, then take it over.
        while !lock.inspect().await.unwrap().unwrap().stale {
            std::thread::sleep(Duration::from_millis(10));
        }
        let Attempt::Acquired(new) = acquire(&lock, Duration::from_secs(30)) else {
            panic!("stale lock was not taken over")
        };
        assert!(matches!(lock.renew(&old).await, Err(LockError::Lost(_))));
        lock.release(&old).await.unwrap();
        let still = lock.inspect().await.unwrap().unwrap();
        assert_eq!(still.info.unwrap().token, new.info.token);
    }

    #[tokio::test]
    async fn takeover_never_removes_a_record_other_than_the_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::new(dir.path(), Duration::from_secs(30));
        let Attempt::Acquired(fresh) = acquire(&lock, Duration::from_secs(30)) else {
            panic!()
        };
        let stale_version = LockVersion("some-other-record".into());
        let outcome = lock
            .move_aside_if("stale", |moved| moved.version == stale_version)
            .unwrap();
        assert!(matches!(outcome, MoveOutcome::Mismatch(_)));
        let now = lock.inspect().await.unwrap().unwrap();
        assert_eq!(now.info.unwrap().token, fresh.info.token);
        assert!(lock.renew(&fresh).await.is_ok());
    }

    /// Holds the mutex of `dir` as another process would (its own open file).
    fn hold_mutex(dir: &Path) -> Flock<fs::File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(MUTEX_FILE))
            .unwrap();
        Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap()
    }

    #[tokio::test]
    async fn no_record_changes_while_another_process_changes_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LOCK_FILE), b"garbage").unwrap();
        let lock = FileLock::new(dir.path(), Duration::from_millis(50));
        while !lock.inspect().await.unwrap().unwrap().stale {
            std::thread::sleep(Duration::from_millis(10));
        }
        let held = hold_mutex(dir.path());
        // Without the mutex the takeover takes microseconds.
        let waiting = tokio::time::timeout(
            Duration::from_millis(300),
            lock.try_acquire(Duration::from_secs(30)),
        )
        .await;
        assert!(waiting.is_err(), "took over while another change was made");
        assert_eq!(fs::read(dir.path().join(LOCK_FILE)).unwrap(), b"garbage");
        drop(held);
        let Attempt::Acquired(lease) = lock.try_acquire(Duration::from_secs(30)).await.unwrap()
        else {
            panic!("not taken over once the change ended")
        };
        // Renewal and release wait the same way.
        let held = hold_mutex(dir.path());
        let renewing = tokio::time::timeout(Duration::from_millis(300), lock.renew(&lease)).await;
        assert!(renewing.is_err(), "renewed while another change was made");
        let releasing =
            tokio::time::timeout(Duration::from_millis(300), lock.release(&lease)).await;
        assert!(releasing.is_err(), "released while another change was made");
        assert!(lock.inspect().await.unwrap().is_some());
        drop(held);
        lock.release(&lease).await.unwrap();
        assert!(lock.inspect().await.unwrap().is_none());
    }

    /// A process stopped inside a change: an acquirer is busy (it keeps
    /// waiting, up to its lock timeout) with the mutex named, a renewal
    /// fails naming it, and a forced release goes ahead without it.
    #[tokio::test]
    async fn a_change_held_up_past_the_wait_is_busy_or_fails_naming_the_mutex() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::new(dir.path(), Duration::from_secs(30));
        let Attempt::Acquired(lease) = acquire(&lock, Duration::from_secs(30)) else {
            panic!()
        };
        let other = FileLock::new(dir.path(), Duration::from_secs(30));
        let held = hold_mutex(dir.path());
        let Attempt::Busy(obs) = other.try_acquire(Duration::from_secs(30)).await.unwrap() else {
            panic!("acquired while the lock was held")
        };
        assert_eq!(obs.info.unwrap().token, lease.info.token);
        let Err(LockError::Backend { source, .. }) = lock.renew(&lease).await else {
            panic!("renewed while the mutex was held")
        };
        assert!(source.to_string().contains(MUTEX_FILE), "{source}");
        assert!(source.to_string().contains("fuser -v"), "{source}");
        let forced = lock.force_release().await.unwrap();
        assert_eq!(forced.unwrap().info.unwrap().token, lease.info.token);
        assert!(lock.inspect().await.unwrap().is_none());
        // No record at all: the acquirer is busy with the mutex named.
        let Attempt::Busy(obs) = other.try_acquire(Duration::from_secs(30)).await.unwrap() else {
            panic!("acquired while the mutex was held")
        };
        assert!(obs.corrupt.unwrap().contains(MUTEX_FILE));
        drop(held);
        assert!(matches!(
            other.try_acquire(Duration::from_secs(30)).await.unwrap(),
            Attempt::Acquired(_)
        ));
    }

    #[tokio::test]
    async fn changes_in_a_directory_that_does_not_exist_create_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not-here");
        let lock = FileLock::new(&missing, Duration::from_secs(30));
        assert!(lock.force_release().await.unwrap().is_none());
        assert!(!missing.exists());
    }

    #[tokio::test]
    async fn corrupt_record_is_busy_while_fresh_and_taken_over_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LOCK_FILE), b"garbage").unwrap();
        let lock = FileLock::new(dir.path(), Duration::from_millis(50));
        let obs = lock.inspect().await.unwrap().unwrap();
        assert!(obs.info.is_none() && obs.corrupt.is_some());
        while !lock.inspect().await.unwrap().unwrap().stale {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(matches!(
            acquire(&lock, Duration::from_secs(1)),
            Attempt::Acquired(_)
        ));
    }

    #[tokio::test]
    async fn force_release_returns_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::new(dir.path(), Duration::from_secs(30));
        let Attempt::Acquired(lease) = acquire(&lock, Duration::from_secs(30)) else {
            panic!()
        };
        let removed = lock.force_release().await.unwrap().unwrap();
        assert_eq!(removed.info.unwrap().token, lease.info.token);
        assert!(lock.inspect().await.unwrap().is_none());
        assert!(lock.force_release().await.unwrap().is_none());
    }
}
