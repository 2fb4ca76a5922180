//! What a datastore tells its caller on the way, without printing: the CLI
//! edge implements `Reporter` and decides how (and whether) each notice is
//! shown. A notice never changes the outcome; it is what the user must know
//! about a command that otherwise goes on (or already failed).

use crate::domain::lock::LockError;
pub use crate::infrastructure::coordinator::LockWait;
pub use crate::infrastructure::s3::sync::TransferBars;
use crate::infrastructure::s3::sync::{ConflictCopy, SyncError, Unsyncable};
use std::fmt;

/// One thing the user should be told.
#[derive(Debug)]
pub enum Notice {
    /// A pull kept a local change as a conflict copy.
    Conflict(ConflictCopy),
    /// A push could not sync this cache entry.
    Unsyncable(Unsyncable),
    /// The push after a failed command failed too (the command's error stands).
    PushAfterFailure(SyncError),
    /// The lock could not be released; it expires after its TTL.
    Release(LockError),
}

impl Notice {
    /// Whether this notice restates part of a sync report (which a caller
    /// rendering that report may show instead).
    pub fn is_sync_report(&self) -> bool {
        matches!(self, Notice::Conflict(_) | Notice::Unsyncable(_))
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Conflict(c) => {
                let clash = match c.remote {
                    "deleted" => "was changed here and deleted remotely; the deletion stands",
                    "directory" => {
                        "is a file here and a directory remotely; the remote's files took its place"
                    }
                    _ => "was changed here and remotely; the remote version took its place",
                };
                write!(
                    f,
                    "{} {clash} and yours is kept at {}",
                    c.path,
                    c.copy.display()
                )
            }
            Notice::Unsyncable(u) => write!(f, "{} is not synced: {}", u.path, u.reason),
            Notice::PushAfterFailure(e) => {
                write!(f, "the push after the failed command failed too: {e}")
            }
            Notice::Release(e) => write!(f, "{e}"),
        }
    }
}

/// The caller's side of a datastore: where notices go, and what a second
/// signal does (the first one stops the command gracefully).
pub trait Reporter: Send + Sync {
    /// Tells the user `notice`.
    fn notice(&self, notice: Notice);

    /// A lock this command needs is busy (or the wait for it is over).
    fn lock_wait(&self, _wait: &LockWait) {}

    /// What draws the guard's own transfers (`None`: nothing does).
    fn transfer_bars(&self) -> Option<TransferBars> {
        None
    }

    /// A second SIGINT/SIGTERM/SIGHUP arrived while a command wound down;
    /// the command's process group has already been stopped.
    fn second_signal(&self, signal: i32);
}
