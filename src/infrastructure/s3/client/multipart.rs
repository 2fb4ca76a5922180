//! Multipart uploads of large files: create, parts four at a time, complete
//! (or abort on the first failure).
//!
//! Each part carries the CRC32 the push computed in the read that hashed the
//! file, and the upload announces CRC32 up front, so S3 rejects a part whose
//! bytes changed since; the object's metadata records the file's SHA-256 and
//! the index generation the push was to write, as a single PUT does.

use super::{local_read_failed, S3Store, GENERATION_META, SHA_META};
use crate::domain::part_checksums::PartChecksums;
use crate::infrastructure::hashing::FileDigest;
use crate::infrastructure::s3::store::ETag;
use crate::infrastructure::s3::store::{ObjectStore, StoreError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::path::Path;

/// S3's smallest part (all but the last).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

impl S3Store {
    /// Uploads `path` in parts, each checked by the CRC32 `digest` holds for
    /// it; an upload that fails is aborted.
    pub(super) async fn put_multipart(
        &self,
        key: &str,
        path: &Path,
        digest: &FileDigest,
        generation: u64,
    ) -> Result<ETag, StoreError> {
        // The part CRCs come from the read that computed the SHA-256, so a
        // file rewritten since then fails its upload instead of being indexed
        // under the old hash.
        let parts = digest
            .parts
            .as_ref()
            .filter(|p| p.fits(digest.size) && p.part_size >= MIN_PART_SIZE)
            .ok_or_else(|| StoreError::Failed {
                op: "upload",
                target: self.url(key),
                message: format!(
                    "internal error: no usable part checksums for a {} byte file",
                    digest.size
                ),
            })?;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .metadata(SHA_META, digest.sha256.to_hex())
            .metadata(GENERATION_META, generation.to_string())
            // S3 refuses part checksums the upload did not announce, and then
            // wants each part's checksum again at completion.
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| self.fail("create multipart upload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self
            .upload_parts(key, path, digest.size, parts, &upload_id)
            .await;
        match result {
            Ok(parts) => {
                let done = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| self.fail("complete multipart upload", key, e))?;
                Ok(super::etag_of(done.e_tag()))
            }
            Err(e) => {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    /// Uploads every part of `path`, four at a time, in part order.
    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        checksums: &PartChecksums,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        let part_size = checksums.part_size;
        let numbered: Vec<(u64, u32)> = (0u64..).zip(checksums.crc32.iter().copied()).collect();
        let mut parts: Vec<CompletedPart> = stream::iter(numbered)
            .map(|(i, crc)| async move {
                let offset = i * part_size;
                let length = part_size.min(size - offset);
                let crc32 = aws_smithy_types::base64::encode(crc.to_be_bytes());
                let body = ByteStream::read_from()
                    .path(path)
                    .offset(offset)
                    .length(aws_sdk_s3::primitives::Length::Exact(length))
                    .build()
                    .await
                    .map_err(|e| local_read_failed(path, e))?;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(i as i32 + 1)
                    .checksum_crc32(&crc32)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| self.fail("upload part", key, e))?;
                Ok::<_, StoreError>(
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .checksum_crc32(crc32)
                        .build(),
                )
            })
            .buffer_unordered(4)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }
}
