//! Verifying a download against its index entry, by what the download
//! computed while it was written (part CRC32s or SHA-256).

use crate::domain::sync_index::IndexEntry;
use crate::infrastructure::hashing::{digest_file, Checked, FileDigest};
use std::path::Path;

/// How a download compares with its index entry.
pub(super) enum Verified {
    /// It is the content the entry describes.
    AsIndexed(FileDigest),
    /// It is other content, with this digest.
    Differs(FileDigest),
}

/// Compares a download in `temp` with `entry`, by what the download computed
/// (`checked`). Only content that differs is read again, for its SHA-256: the
/// rare path of an interrupted push or a corrupt object.
pub(super) fn verify_download(
    temp: &Path,
    entry: &IndexEntry,
    size: u64,
    checked: Checked,
) -> std::io::Result<Verified> {
    let agrees = size == entry.size
        && match &checked {
            Checked::Sha256(sha) => *sha == entry.sha256,
            Checked::PartCrc32(parts) => entry.parts.as_ref() == Some(parts),
        };
    if agrees {
        return Ok(Verified::AsIndexed(FileDigest {
            size,
            sha256: entry.sha256,
            parts: match checked {
                Checked::PartCrc32(parts) => Some(parts),
                Checked::Sha256(_) => entry.parts.clone(),
            },
        }));
    }
    let digest = digest_file(temp)?;
    if digest.size == entry.size && digest.sha256 == entry.sha256 {
        // The content is right and the index's part checksums were not.
        return Ok(Verified::AsIndexed(digest));
    }
    Ok(Verified::Differs(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_is_compared_by_what_it_computed() {
        use crate::domain::part_checksums::PartChecksums;
        use crate::infrastructure::hashing::sha256_bytes;
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("t");
        std::fs::write(&temp, b"0123456789").unwrap();
        let crcs = |data: &[u8]| PartChecksums {
            part_size: 4,
            crc32: data.chunks(4).map(crc32fast::hash).collect(),
        };
        let entry = IndexEntry {
            size: 10,
            sha256: sha256_bytes(b"0123456789"),
            parts: Some(crcs(b"0123456789")),
        };
        // Matching part CRCs: taken as the indexed content, without re-reading.
        let verdict =
            verify_download(&temp, &entry, 10, Checked::PartCrc32(crcs(b"0123456789"))).unwrap();
        assert!(
            matches!(verdict, Verified::AsIndexed(d) if d.sha256 == entry.sha256 && d.parts == entry.parts)
        );
        // A changed byte in one part: other content, with its real SHA-256.
        std::fs::write(&temp, b"0123456788").unwrap();
        let verdict =
            verify_download(&temp, &entry, 10, Checked::PartCrc32(crcs(b"0123456788"))).unwrap();
        assert!(matches!(verdict, Verified::Differs(d) if d.sha256 == sha256_bytes(b"0123456788")));
        // Wrong CRCs in the index but content that hashes right: the content wins.
        std::fs::write(&temp, b"0123456789").unwrap();
        let mut wrong = entry.clone();
        wrong.parts = Some(crcs(b"xxxxxxxxxx"));
        let verdict =
            verify_download(&temp, &wrong, 10, Checked::PartCrc32(crcs(b"0123456789"))).unwrap();
        assert!(matches!(verdict, Verified::AsIndexed(d) if d.sha256 == entry.sha256));
        // Entries without part CRCs compare by SHA-256, and the size counts too.
        let old = IndexEntry {
            parts: None,
            ..entry.clone()
        };
        let sha = Checked::Sha256(entry.sha256);
        assert!(matches!(
            verify_download(&temp, &old, 10, sha.clone()).unwrap(),
            Verified::AsIndexed(_)
        ));
        std::fs::write(&temp, b"01234567890").unwrap();
        assert!(matches!(
            verify_download(&temp, &old, 11, sha).unwrap(),
            Verified::Differs(d) if d.size == 11
        ));
    }
}
