//! SHA-256 and CRC32 of files and streams, so large files are never read whole
//! into memory.
//!
//! SHA-256 comes from AWS-LC (already linked for TLS): its assembly is about
//! twice as fast as a portable implementation on CPUs without SHA extensions,
//! and hashing is the dominant cost of pushing and pulling large files.

use aws_lc_rs::digest;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Read size for hashing passes.
const CHUNK: usize = 256 * 1024;

/// An incremental SHA-256.
pub struct Sha256(digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }
}

impl Sha256 {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Lowercase hex digest.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finish().as_ref())
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

/// Hex SHA-256 and size of the file at `path`.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let file = File::open(path)?;
    let expected = file.metadata()?.len();
    let mut hasher = Sha256::new();
    let size = for_each_chunk(file, expected, |chunk| hasher.update(chunk))?;
    Ok((hasher.finish_hex(), size))
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// Base64 of the SHA-256 given in hex (the form of S3's `x-amz-checksum-sha256`),
/// or `None` if `hex_digest` is not 32 hex bytes.
pub fn sha256_hex_to_base64(hex_digest: &str) -> Option<String> {
    let raw = hex::decode(hex_digest).ok().filter(|b| b.len() == 32)?;
    Some(aws_smithy_types::base64::encode(raw))
}

/// Base64 of the big-endian CRC32 of `length` bytes of the file at `path` from
/// `offset` (the form of S3's `x-amz-checksum-crc32`).
pub fn crc32_range_base64(path: &Path, offset: u64, length: u64) -> io::Result<String> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut crc = crc32fast::Hasher::new();
    let seen = for_each_chunk(file.take(length), length, |chunk| crc.update(chunk))?;
    if seen != length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("file shrank while reading: wanted {length} bytes at {offset}, got {seen}"),
        ));
    }
    Ok(aws_smithy_types::base64::encode(
        crc.finalize().to_be_bytes(),
    ))
}

/// A reader adapter that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Hex SHA-256 and byte count of everything read.
    pub fn finish(self) -> (String, u64) {
        (self.hasher.finish_hex(), self.size)
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
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex_to_base64(&sha256_bytes(b"")).as_deref(),
            Some("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
        );
        assert_eq!(sha256_hex_to_base64("abc"), None);
    }

    #[test]
    fn crc32_of_a_range_is_the_crc_of_those_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"xx123456789yy").unwrap();
        // CRC32 check value of "123456789" is 0xCBF43926.
        let want = aws_smithy_types::base64::encode(0xCBF4_3926u32.to_be_bytes());
        assert_eq!(crc32_range_base64(&p, 2, 9).unwrap(), want);
        assert!(crc32_range_base64(&p, 10, 9).is_err());
    }
}
