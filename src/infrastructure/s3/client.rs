//! The aws-sdk-s3 implementation of `ObjectStore`: one client per command
//! (shared by lock and sync). `connection` builds it (credentials, region,
//! endpoint, timeouts, retries); `errors` turns SDK errors into `StoreError`s
//! whose messages name the fix; large files go up in `multipart` and come
//! down in `download`.
//!
//! Integrity checks are swamp's own, chosen so no byte is hashed twice: a
//! single PUT carries the file's SHA-256 (already computed by the push) as
//! `x-amz-checksum-sha256`, and each multipart part the CRC32 the push computed
//! in the same read, so the server rejects content that changed after it was
//! hashed; a download computes what its index entry lets it compare (the part
//! CRC32s of a large file, else the SHA-256) while it writes. The SDK's own
//! request and response checksums are therefore only used where an operation
//! requires them — over plain http they would sign every payload chunk with a
//! second SHA-256 pass.

mod connection;
mod download;
mod errors;
mod multipart;
mod server_date;

pub use connection::{resolve_region, S3Settings, DEFAULT_ATTEMPT_TIMEOUT};

use crate::domain::part_checksums::PartChecksums;
use crate::infrastructure::hashing::{sha256_base64, CheckKind, FileDigest};
use crate::infrastructure::s3::store::{
    Downloaded, ETag, Fetched, Head, Listed, ObjectMeta, ObjectStore, PutMode, Recorded, StoreError,
};
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use std::path::Path;

/// Metadata key holding a file's SHA-256.
const SHA_META: &str = "sha256";
/// Object metadata: the index generation the uploading push was to write.
const GENERATION_META: &str = "swamp-generation";

/// What swamp's upload recorded in an object's metadata.
fn recorded(metadata: Option<&std::collections::HashMap<String, String>>) -> Recorded {
    let field = |name| metadata.and_then(|m| m.get(name));
    Recorded {
        sha256: field(SHA_META).and_then(|v| v.parse().ok()),
        generation: field(GENERATION_META).and_then(|v| v.parse().ok()),
    }
}

/// The ETag of a response (empty when the store sent none).
fn etag_of(raw: Option<&str>) -> ETag {
    ETag::new(raw.unwrap_or_default())
}

/// Parts of one large file downloaded at once, unless configured otherwise.
pub const DEFAULT_PART_DOWNLOADS: usize = 4;

/// An S3 bucket reached through aws-sdk-s3.
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Ranged GETs in flight per large file (1: one plain GET).
    part_downloads: usize,
}

/// A local file that could not be read for an upload.
fn local_read_failed(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed {
        op: "read",
        target: path.display().to_string(),
        message: e.to_string(),
    }
}

fn to_system_time(t: &aws_sdk_s3::primitives::DateTime) -> Option<std::time::SystemTime> {
    std::time::SystemTime::try_from(*t).ok()
}

#[async_trait]
impl ObjectStore for S3Store {
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, key)
    }

    async fn head_bucket(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match self.fail("head bucket", "", e) {
                StoreError::NotFound(_) => StoreError::Failed {
                    op: "head bucket",
                    target: format!("s3://{}", self.bucket),
                    message: errors::missing_bucket(&self.bucket),
                },
                other => other,
            })
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<ETag, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(bytes));
        req = match mode {
            PutMode::Create => req.if_none_match("*"),
            PutMode::Update(etag) => req.if_match(etag.as_str()),
            PutMode::Overwrite => req,
        };
        let out = req.send().await.map_err(|e| self.fail("put", key, e))?;
        Ok(etag_of(out.e_tag()))
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        digest: &FileDigest,
        generation: u64,
        content: Option<bytes::Bytes>,
    ) -> Result<ETag, StoreError> {
        // One rule decides which files travel in parts: those that have part
        // checksums (their uploads send them, their downloads check them).
        if PartChecksums::wanted_for(digest.size) {
            return self.put_multipart(key, path, digest, generation).await;
        }
        let body = match content {
            Some(bytes) => ByteStream::from(bytes),
            None => ByteStream::from_path(path)
                .await
                .map_err(|e| local_read_failed(path, e))?,
        };
        // The server checks the body against the hash the push computed, so
        // a file rewritten after hashing fails here instead of being indexed
        // under the wrong hash.
        let checksum = sha256_base64(&digest.sha256);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .metadata(SHA_META, digest.sha256.to_hex())
            .metadata(GENERATION_META, generation.to_string())
            .checksum_sha256(checksum)
            .body(body)
            // The checksum above already has the server verify the body; an
            // in-memory body would otherwise be hashed once more for the
            // signature (a streamed one is sent unsigned anyway).
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.fail("upload", key, e))?;
        Ok(etag_of(out.e_tag()))
    }

    async fn get_bytes(
        &self,
        key: &str,
        if_none_match: Option<&ETag>,
    ) -> Result<Fetched, StoreError> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(etag) = if_none_match {
            req = req.if_none_match(etag.as_str());
        }
        let date = server_date::ServerDate::default();
        let out = match req.customize().interceptor(date.clone()).send().await {
            Ok(out) => out,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(304) => {
                return Ok(Fetched::NotModified)
            }
            Err(e) => return Err(self.fail("get", key, e)),
        };
        let meta = ObjectMeta {
            etag: etag_of(out.e_tag()),
            last_modified: out.last_modified().and_then(to_system_time),
            server_time: date.get(),
        };
        // Some S3-compatible servers (s3s-fs) ignore If-None-Match and answer
        // 200: the ETag still says the object is the one we have.
        if if_none_match.is_some_and(|want| !meta.etag.is_empty() && &meta.etag == want) {
            return Ok(Fetched::NotModified);
        }
        let bytes = out.body.collect().await.map_err(|e| StoreError::Failed {
            op: "get",
            target: self.url(key),
            message: e.to_string(),
        })?;
        Ok(Fetched::Object(bytes.to_vec(), meta))
    }

    async fn get_to_file(
        &self,
        key: &str,
        dest: &Path,
        check: CheckKind,
    ) -> Result<Downloaded, StoreError> {
        download::get_to_file(self, key, dest, check).await
    }

    async fn head(&self, key: &str) -> Result<Option<Head>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Head {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                recorded: recorded(out.metadata()),
            })),
            Err(e) => match self.fail("head", key, e) {
                StoreError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &str, if_match: Option<&ETag>) -> Result<(), StoreError> {
        let mut req = self.client.delete_object().bucket(&self.bucket).key(key);
        if let Some(etag) = if_match {
            req = req.if_match(etag.as_str());
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("delete", key, e))
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        for batch in keys.chunks(1000) {
            let unbuildable = |e: aws_sdk_s3::error::BuildError| StoreError::Failed {
                op: "delete",
                target: self.url(&batch[0]),
                message: e.to_string(),
            };
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(unbuildable)?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(unbuildable)?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.fail("delete", &batch[0], e))?;
            if let Some(failed) = out.errors().first() {
                return Err(StoreError::Failed {
                    op: "delete",
                    target: self.url(failed.key().unwrap_or_default()),
                    message: failed.message().unwrap_or("refused").to_string(),
                });
            }
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        self.list_from(prefix, None).await
    }

    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<Listed>, StoreError> {
        let mut listed = self.list_from(prefix, Some(start_after)).await?;
        // A store that ignores StartAfter lists more; the bound still holds.
        listed.retain(|l| l.key.as_str() > start_after);
        Ok(listed)
    }
}

impl S3Store {
    async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<Listed>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("list", prefix, e))?;
            for obj in page.contents() {
                out.push(Listed {
                    key: obj.key().unwrap_or_default().to_string(),
                    etag: obj.e_tag().map(|e| etag_of(Some(e))),
                });
            }
        }
        Ok(out)
    }
}
