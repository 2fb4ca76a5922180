//! Per-part CRC32s of a large file: how its downloads are verified.
//!
//! A file's identity is its SHA-256 (change detection, the healing of
//! interrupted pushes, migration checks). Verifying a 1 GiB download against
//! it costs one core several seconds, far more than the transfer. So a file
//! larger than one part also carries the CRC32 of each `part_size` piece, in
//! the index next to its SHA-256: the same checksums the push sends with each
//! multipart part (the server rejects a part whose body does not match), and
//! the ones a pull recomputes at memory speed while it writes.
//!
//! A CRC32 per 16 MiB part catches corruption and truncation as well as a
//! hash does; it is no defence against someone who can write the bucket, but
//! neither is the SHA-256, because such a writer can rewrite the index too.

use serde::{Deserialize, Serialize};

/// Size of the parts large files are uploaded and verified in (S3 allows
/// 5 MiB to 5 GiB; 10 000 parts of 16 MiB cover 156 GiB).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;

/// CRC32s of consecutive `part_size` pieces of a file, the last one shorter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartChecksums {
    /// Bytes per part.
    pub part_size: u64,
    /// CRC32 (IEEE, as S3's `x-amz-checksum-crc32`) of each part, in order.
    pub crc32: Vec<u32>,
}

impl PartChecksums {
    /// Whether these checksums can describe a file of `size` bytes: a part
    /// size above zero and exactly one checksum per part.
    pub fn fits(&self, size: u64) -> bool {
        self.part_size > 0 && self.crc32.len() as u64 == size.div_ceil(self.part_size)
    }

    /// Whether a file of `size` bytes gets part checksums: only files that
    /// are uploaded in more than one part.
    pub fn wanted_for(size: u64) -> bool {
        size > PART_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(part_size: u64, n: usize) -> PartChecksums {
        PartChecksums {
            part_size,
            crc32: vec![7; n],
        }
    }

    #[test]
    fn fits_needs_one_checksum_per_part() {
        assert!(parts(10, 3).fits(21));
        assert!(parts(10, 3).fits(30));
        assert!(!parts(10, 3).fits(31));
        assert!(!parts(10, 3).fits(20));
        assert!(parts(10, 0).fits(0));
        assert!(!parts(0, 0).fits(0));
        assert!(!parts(0, 1).fits(5));
    }

    #[test]
    fn only_multipart_files_want_them() {
        assert!(!PartChecksums::wanted_for(PART_SIZE));
        assert!(PartChecksums::wanted_for(PART_SIZE + 1));
    }

    #[test]
    fn serializes_compactly() {
        let json = serde_json::to_string(&parts(16, 2)).unwrap();
        assert_eq!(json, r#"{"partSize":16,"crc32":[7,7]}"#);
    }
}
