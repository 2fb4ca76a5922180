//! SHA-256 and CRC32 of files and streams, so large files are never read whole
//! into memory.
//!
//! A file's `FileDigest` comes from one read: its SHA-256 and, when it is large
//! enough to travel in parts, the CRC32 of each part (see
//! `domain::part_checksums`). A download computes whichever of the two its
//! index entry lets it compare (`CheckKind`), while it writes.
//!
//! SHA-256 comes from AWS-LC (already linked for TLS): its assembly is about
//! twice as fast as a portable implementation on CPUs without SHA extensions,
//! and hashing is the dominant cost of pushing and pulling large files.

use crate::domain::part_checksums::{PartChecksums, PART_SIZE};
use crate::domain::sha256::Sha256;
use aws_lc_rs::digest;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Read size for hashing passes.
const CHUNK: usize = 256 * 1024;

/// An incremental SHA-256.
pub struct Sha256Hasher(digest::Context);

impl Default for Sha256Hasher {
    fn default() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }
}

impl Sha256Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest.
    pub fn finish(self) -> Sha256 {
        Sha256::from_bytes(to_array(self.0.finish().as_ref()))
    }
}

/// Feeds everything `reader` yields to `consume`, a chunk at a time; returns
/// the byte count. `expected` (bytes) sizes the buffer, so hashing thousands
/// of small files does not allocate and zero a full chunk for each.
fn for_each_chunk(
    mut reader: impl Read,
    expected: u64,
    mut consume: impl FnMut(&[u8]),
) -> io::Result<u64> {
    let mut buf = vec![0u8; (expected.saturating_add(1)).min(CHUNK as u64) as usize];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(size);
        }
        consume(&buf[..n]);
        size += n as u64;
    }
}

/// SHA-256 and size of the file at `path`.
pub fn sha256_file(path: &Path) -> io::Result<(Sha256, u64)> {
    let file = File::open(path)?;
    let expected = file.metadata()?.len();
    let mut hasher = Sha256Hasher::new();
    let size = for_each_chunk(file, expected, |chunk| hasher.update(chunk))?;
    Ok((hasher.finish(), size))
}

/// What identifies a file's content and protects its transfers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Bytes hashed.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Sha256,
    /// CRC32 of each `PART_SIZE` part, for files larger than one part.
    pub parts: Option<PartChecksums>,
}

impl FileDigest {
    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        let mut parts = PartCrc32::new(PART_SIZE);
        parts.update(bytes);
        Self::from_pass(sha256_bytes(bytes), bytes.len() as u64, parts)
    }

    fn from_pass(sha256: Sha256, size: u64, parts: PartCrc32) -> Self {
        Self {
            size,
            sha256,
            parts: PartChecksums::wanted_for(size).then(|| parts.finish()),
        }
    }
}

/// The digest of the file at `path`, in one read.
pub fn digest_file(path: &Path) -> io::Result<FileDigest> {
    let file = File::open(path)?;
    let expected = file.metadata()?.len();
    digest_reader(file, expected)
}

/// The digest of everything `reader` yields (`expected` bytes, roughly).
fn digest_reader(reader: impl Read, expected: u64) -> io::Result<FileDigest> {
    let mut hasher = Sha256Hasher::new();
    // Always computed, kept only for large files: the file may grow past a
    // part while it is read, and a CRC of a small file costs next to nothing.
    let mut parts = PartCrc32::new(PART_SIZE);
    let size = for_each_chunk(reader, expected, |chunk| {
        hasher.update(chunk);
        parts.update(chunk);
    })?;
    Ok(FileDigest::from_pass(hasher.finish(), size, parts))
}

/// Files up to this size are kept in memory by `hash_file`, so an upload
/// sends the very bytes that were hashed without reading the file again.
pub const KEEP_IN_MEMORY: u64 = 256 * 1024;

/// A file read once for its digest, with its bytes when it is small.
#[derive(Debug, Clone)]
pub struct HashedFile {
    /// What identifies the content.
    pub digest: FileDigest,
    /// The bytes that were hashed, for files up to `KEEP_IN_MEMORY`.
    pub content: Option<bytes::Bytes>,
}

/// Reads the file at `path` once: its digest, and its bytes when it is no
/// larger than `KEEP_IN_MEMORY` (a larger file is streamed, never held).
pub fn hash_file(path: &Path) -> io::Result<HashedFile> {
    let mut file = File::open(path)?;
    let expected = file.metadata()?.len();
    if expected > KEEP_IN_MEMORY {
        return Ok(HashedFile {
            digest: digest_reader(file, expected)?,
            content: None,
        });
    }
    // The file may grow after the stat: read at most one byte past the
    // limit; if it did, hash what was read and stream on from there.
    let mut bytes = Vec::with_capacity(expected as usize + 1);
    (&mut file)
        .take(KEEP_IN_MEMORY + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > KEEP_IN_MEMORY {
        let read = bytes.len() as u64;
        return Ok(HashedFile {
            digest: digest_reader(io::Cursor::new(bytes).chain(file), read)?,
            content: None,
        });
    }
    Ok(HashedFile {
        digest: FileDigest::of_bytes(&bytes),
        content: Some(bytes.into()),
    })
}

/// `digest_file` on a blocking thread, so hashing a large file never holds
/// up the runtime (and with it the lock's heartbeat).
pub async fn digest_file_off_runtime(path: std::path::PathBuf) -> io::Result<FileDigest> {
    crate::infrastructure::blocking::run(move || digest_file(&path)).await
}

/// CRC32s of consecutive fixed-size parts of a stream.
pub struct PartCrc32 {
    part_size: u64,
    filled: u64,
    current: crc32fast::Hasher,
    done: Vec<u32>,
}

impl PartCrc32 {
    /// Parts of `part_size` bytes (at least one byte).
    pub fn new(part_size: u64) -> Self {
        Self {
            part_size: part_size.max(1),
            filled: 0,
            current: crc32fast::Hasher::new(),
            done: Vec::new(),
        }
    }

    /// Feeds `bytes`, closing a part at every `part_size` boundary.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.part_size - self.filled;
            let take = room.min(bytes.len() as u64) as usize;
            self.current.update(&bytes[..take]);
            self.filled += take as u64;
            bytes = &bytes[take..];
            if self.filled == self.part_size {
                let full = std::mem::replace(&mut self.current, crc32fast::Hasher::new());
                self.done.push(full.finalize());
                self.filled = 0;
            }
        }
    }

    /// The checksums, the last (short) part included.
    pub fn finish(mut self) -> PartChecksums {
        if self.filled > 0 {
            self.done.push(self.current.finalize());
        }
        PartChecksums {
            part_size: self.part_size,
            crc32: self.done,
        }
    }
}

/// What a download should compute to compare with its index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// The SHA-256 of the whole content.
    Sha256,
    /// The CRC32 of each part of this size.
    PartCrc32 {
        /// Bytes per part.
        part_size: u64,
    },
}

/// What a download computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// SHA-256 of the content.
    Sha256(Sha256),
    /// CRC32 of each part.
    PartCrc32(PartChecksums),
}

/// Computes a `CheckKind` over a stream.
pub enum ContentChecker {
    /// Hashing with SHA-256.
    Sha256(Sha256Hasher),
    /// CRC32 per part.
    PartCrc32(PartCrc32),
}

impl ContentChecker {
    /// A checker for `kind`.
    pub fn new(kind: CheckKind) -> Self {
        match kind {
            CheckKind::Sha256 => Self::Sha256(Sha256Hasher::new()),
            CheckKind::PartCrc32 { part_size } => Self::PartCrc32(PartCrc32::new(part_size)),
        }
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::PartCrc32(p) => p.update(bytes),
        }
    }

    /// The result.
    pub fn finish(self) -> Checked {
        match self {
            Self::Sha256(h) => Checked::Sha256(h.finish()),
            Self::PartCrc32(p) => Checked::PartCrc32(p.finish()),
        }
    }
}

/// SHA-256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> Sha256 {
    Sha256::from_bytes(to_array(digest::digest(&digest::SHA256, bytes).as_ref()))
}

/// Base64 of a SHA-256 (the form of S3's `x-amz-checksum-sha256`).
pub fn sha256_base64(sha: &Sha256) -> String {
    aws_smithy_types::base64::encode(sha.as_bytes())
}

/// A SHA-256 output as its array (AWS-LC's digests of SHA-256 are 32 bytes).
fn to_array(digest: &[u8]) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest);
    bytes
}

/// A reader adapter that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256Hasher,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256Hasher::new(),
            size: 0,
        }
    }

    /// SHA-256 and byte count of everything read.
    pub fn finish(self) -> (Sha256, u64) {
        (self.hasher.finish(), self.size)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_stream_hashes_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let (h, n) = sha256_file(&p).unwrap();
        assert_eq!(n, 5);
        assert_eq!(h, sha256_bytes(b"hello"));
        let mut r = HashingReader::new(&b"hello"[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish(), (h, 5));
    }

    #[test]
    fn digests_match_known_vectors() {
        // FIPS 180-2 "abc" and the empty input.
        assert_eq!(
            sha256_bytes(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_bytes(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_base64(&sha256_bytes(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn part_crcs_split_at_part_boundaries_whatever_the_chunking() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let want: Vec<u32> = data.chunks(64).map(crc32fast::hash).collect();
        for step in [1, 63, 64, 65, 1000] {
            let mut parts = PartCrc32::new(64);
            for chunk in data.chunks(step) {
                parts.update(chunk);
            }
            let got = parts.finish();
            assert_eq!(got.crc32, want, "chunks of {step}");
            assert!(got.fits(1000));
        }
        assert!(PartCrc32::new(64).finish().crc32.is_empty());
    }

    #[test]
    fn file_digest_carries_parts_only_for_multipart_files() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"hello").unwrap();
        let d = digest_file(&small).unwrap();
        assert_eq!((d.size, d.parts.clone()), (5, None));
        assert_eq!(d.sha256, sha256_bytes(b"hello"));
        assert_eq!(d, FileDigest::of_bytes(b"hello"));

        let big = dir.path().join("big");
        let data = vec![3u8; (PART_SIZE + 10) as usize];
        std::fs::write(&big, &data).unwrap();
        let d = digest_file(&big).unwrap();
        let parts = d.parts.clone().unwrap();
        assert_eq!(parts.part_size, PART_SIZE);
        assert_eq!(
            parts.crc32,
            vec![
                crc32fast::hash(&data[..PART_SIZE as usize]),
                crc32fast::hash(&data[PART_SIZE as usize..])
            ]
        );
        assert_eq!(d.sha256, sha256_bytes(&data));
        assert_eq!(d, FileDigest::of_bytes(&data));
    }

    #[test]
    fn checkers_compute_what_was_asked() {
        let mut sha = ContentChecker::new(CheckKind::Sha256);
        sha.update(b"abc");
        assert_eq!(sha.finish(), Checked::Sha256(sha256_bytes(b"abc")));
        let mut crc = ContentChecker::new(CheckKind::PartCrc32 { part_size: 2 });
        crc.update(b"abc");
        assert_eq!(
            crc.finish(),
            Checked::PartCrc32(PartChecksums {
                part_size: 2,
                crc32: vec![crc32fast::hash(b"ab"), crc32fast::hash(b"c")],
            })
        );
    }

    #[test]
    fn hash_file_keeps_small_files_and_streams_large_ones() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        let body = vec![3u8; KEEP_IN_MEMORY as usize];
        std::fs::write(&small, &body).unwrap();
        let got = hash_file(&small).unwrap();
        assert_eq!(got.digest, FileDigest::of_bytes(&body));
        assert_eq!(got.content.as_deref(), Some(&body[..]));
        let large = dir.path().join("large");
        let body = vec![4u8; KEEP_IN_MEMORY as usize + 1];
        std::fs::write(&large, &body).unwrap();
        let got = hash_file(&large).unwrap();
        assert_eq!(got.digest, FileDigest::of_bytes(&body));
        assert!(got.content.is_none());
        assert!(hash_file(&dir.path().join("missing")).is_err());
    }
}
