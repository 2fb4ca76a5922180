//! Downloads into a new file, checked while they are written.
//!
//! A file whose index entry has part CRC32s comes down part by part: ranged
//! GETs, four in flight by default (`SWAMP_PART_DOWNLOADS`), each written at its offset (`pwrite`) by a
//! blocking thread that computes that part's CRC32 as the bytes pass. One
//! connection to S3 rarely carries more than ~100 MB/s; parts in parallel are
//! how the AWS CLI and rclone reach the link's speed. Parts after the first
//! are asked for `If-Match` the first one's ETag, so a file is never stitched
//! from two versions of an object. Any other file is one GET, streamed and
//! hashed with SHA-256; so is a large file when part downloads are set to 1
//! (then checked by its part CRC32s as it streams). Some servers serve a
//! ranged GET in time proportional to the whole object (moto copies it for
//! each range), which makes parts far slower there than one stream.
//!
//! A small body (`store::is_small`) is received whole and written on the
//! runtime's thread instead: for a pull of many small files the handoffs to
//! blocking threads cost more than the writes.
//!
//! Writes are not fsynced here: the pull makes the whole cache durable with
//! one `syncfs` before its state records the files. Each writer asks the
//! kernel to start writing back every few MiB so that syncfs finds little left.

use super::{recorded, S3Store};
use crate::infrastructure::hashing::{CheckKind, Checked, ContentChecker};
use crate::infrastructure::s3::store::{is_small, Downloaded, ObjectStore, StoreError};
use aws_sdk_s3::primitives::ByteStream;
use futures::stream::{self, StreamExt, TryStreamExt};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Bytes a writer writes before asking the kernel to start writing them out.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

/// Streams `key` into `dest` (created here; it must not exist), computing `check`.
pub(super) async fn get_to_file(
    store: &S3Store,
    key: &str,
    dest: &Path,
    check: CheckKind,
) -> Result<Downloaded, StoreError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(write_failed(dest))?;
    let file = Arc::new(file);
    match check {
        CheckKind::PartCrc32 { part_size } if part_size > 0 && store.part_downloads > 1 => {
            get_in_parts(store, key, dest, file, part_size).await
        }
        _ => get_whole(store, key, dest, file, check).await,
    }
}

/// One GET of the whole object.
async fn get_whole(
    store: &S3Store,
    key: &str,
    dest: &Path,
    file: Arc<File>,
    check: CheckKind,
) -> Result<Downloaded, StoreError> {
    let out = store
        .client
        .get_object()
        .bucket(&store.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| store.fail("download", key, e))?;
    let recorded = recorded(out.metadata());
    let small = out
        .content_length()
        .and_then(|len| u64::try_from(len).ok())
        .is_some_and(is_small);
    let (checked, size) = match small {
        true => write_small_body(store, key, dest, out.body, &file, check).await?,
        false => write_body(store, key, dest, out.body, file, 0, check).await?,
    };
    Ok(Downloaded {
        size,
        checked,
        recorded,
    })
}

/// Ranged GETs of `part_size` pieces, `store.part_downloads` at a time.
async fn get_in_parts(
    store: &S3Store,
    key: &str,
    dest: &Path,
    file: Arc<File>,
    part_size: u64,
) -> Result<Downloaded, StoreError> {
    let check = CheckKind::PartCrc32 { part_size };
    // The first part also tells the object's size, ETag and metadata.
    let first = match store
        .client
        .get_object()
        .bucket(&store.bucket)
        .key(key)
        .range(byte_range(0, part_size))
        .send()
        .await
    {
        Ok(out) => out,
        // An empty object has no byte 0: fetch it whole.
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(416) => {
            return get_whole(store, key, dest, file, check).await;
        }
        Err(e) => return Err(store.fail("download", key, e)),
    };
    let recorded = recorded(first.metadata());
    let Some(total) = first.content_range().and_then(range_total) else {
        // The server ignored the range and sent the whole object.
        let (checked, size) = write_body(store, key, dest, first.body, file, 0, check).await?;
        return Ok(Downloaded {
            size,
            checked,
            recorded,
        });
    };
    let etag = first.e_tag().map(str::to_string);
    let mut first_body = Some(first.body);
    let count = total.div_ceil(part_size).max(1);
    let per_part: Vec<Vec<u32>> = stream::iter(0..count)
        .map(|i| {
            let body = if i == 0 { first_body.take() } else { None };
            let (file, etag) = (file.clone(), etag.clone());
            async move {
                let offset = i * part_size;
                let length = part_size.min(total - offset);
                let body = match body {
                    Some(body) => body,
                    None => {
                        let mut req = store
                            .client
                            .get_object()
                            .bucket(&store.bucket)
                            .key(key)
                            .range(byte_range(offset, length));
                        if let Some(etag) = etag {
                            req = req.if_match(etag);
                        }
                        req.send()
                            .await
                            .map_err(|e| match store.fail("download", key, e) {
                                StoreError::Precondition(target) => StoreError::Failed {
                                    op: "download",
                                    target,
                                    message: "the object changed during the download".into(),
                                },
                                other => other,
                            })?
                            .body
                    }
                };
                let (checked, written) =
                    write_body(store, key, dest, body, file, offset, check).await?;
                if written != length {
                    return Err(StoreError::Failed {
                        op: "download",
                        target: store.url(key),
                        message: format!(
                            "bytes {offset}+{length}: the server sent {written} bytes"
                        ),
                    });
                }
                Ok(match checked {
                    Checked::PartCrc32(parts) => parts.crc32,
                    Checked::Sha256(_) => Vec::new(),
                })
            }
        })
        .buffered(store.part_downloads)
        .try_collect()
        .await?;
    Ok(Downloaded {
        size: total,
        checked: Checked::PartCrc32(crate::domain::part_checksums::PartChecksums {
            part_size,
            crc32: per_part.into_iter().flatten().collect(),
        }),
        recorded,
    })
}

/// Writes `body` into `file` from `offset` on a blocking thread while this
/// task keeps receiving, computing `check` over it; returns what it computed
/// and the bytes written.
async fn write_body(
    store: &S3Store,
    key: &str,
    dest: &Path,
    mut body: ByteStream,
    file: Arc<File>,
    offset: u64,
    check: CheckKind,
) -> Result<(Checked, u64), StoreError> {
    let (chunks, mut arriving) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    // Started now, fed below: `blocking::run` spawns at once.
    let writer = crate::infrastructure::blocking::run(move || {
        use std::os::unix::fs::FileExt;
        let mut checker = ContentChecker::new(check);
        let mut written = 0u64;
        let mut flushed = 0u64;
        while let Some(chunk) = arriving.blocking_recv() {
            checker.update(&chunk);
            file.write_all_at(&chunk, offset + written)?;
            written += chunk.len() as u64;
            if written - flushed >= WRITEBACK_STEP {
                start_writeback(&file, offset + flushed, written - flushed);
                flushed = written;
            }
        }
        Ok::<_, std::io::Error>((checker.finish(), written))
    });
    let mut received = Ok(());
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => {
                if chunks.send(chunk).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Ok(None) => break,
            Err(e) => {
                received = Err(body_failed(store, key, e));
                break;
            }
        }
    }
    drop(chunks);
    let written = writer.await;
    received?;
    written.map_err(write_failed(dest))
}

/// Receives a small body whole, then hashes and writes it on this thread:
/// a write of this size into the page cache takes microseconds, while
/// handing it to a blocking thread costs context switches that dominate a
/// pull of many small files.
async fn write_small_body(
    store: &S3Store,
    key: &str,
    dest: &Path,
    body: ByteStream,
    file: &File,
    check: CheckKind,
) -> Result<(Checked, u64), StoreError> {
    use std::os::unix::fs::FileExt;
    let bytes = body
        .collect()
        .await
        .map_err(|e| body_failed(store, key, e))?
        .into_bytes();
    let mut checker = ContentChecker::new(check);
    checker.update(&bytes);
    file.write_all_at(&bytes, 0).map_err(write_failed(dest))?;
    Ok((checker.finish(), bytes.len() as u64))
}

/// `Range` header value for `length` bytes (at least one) from `offset`.
fn byte_range(offset: u64, length: u64) -> String {
    format!("bytes={offset}-{}", offset + length.max(1) - 1)
}

/// The object size in a `Content-Range` value (`bytes 0-99/1234`).
fn range_total(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

/// A body that broke off while it was received.
fn body_failed(store: &S3Store, key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed {
        op: "download",
        target: store.url(key),
        message: e.to_string(),
    }
}

fn write_failed(dest: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Failed {
        op: "write",
        target: dest.display().to_string(),
        message: e.to_string(),
    }
}

/// Starts writing `len` bytes of `file` at `offset` to disk without waiting,
/// so the syncfs that makes a pull durable finds little left to write.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the fd is
    // open for the duration of the call. Failure only loses the head start.
    unsafe {
        nix::libc::sync_file_range(
            file.as_raw_fd(),
            offset as nix::libc::off64_t,
            len as nix::libc::off64_t,
            nix::libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_totals() {
        assert_eq!(byte_range(0, 16), "bytes=0-15");
        assert_eq!(byte_range(16, 5), "bytes=16-20");
        assert_eq!(range_total("bytes 0-15/21"), Some(21));
        assert_eq!(range_total("bytes */0"), Some(0));
        assert_eq!(range_total("bytes 0-15/*"), None);
        assert_eq!(range_total("garbage"), None);
    }
}
