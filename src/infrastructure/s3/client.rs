//! The aws-sdk-s3 implementation of `ObjectStore`: one client per command
//! (shared by lock and sync), the standard credential chain, path-style
//! addressing when an endpoint is set, request timeouts and retries, and error
//! messages that name the fix.
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

mod download;
mod server_date;

use crate::domain::config::S3Config;
use crate::domain::part_checksums::PartChecksums;
use crate::infrastructure::hashing::{sha256_hex_to_base64, CheckKind, FileDigest};
use crate::infrastructure::s3::store::{
    Downloaded, Fetched, Listed, ObjectMeta, ObjectStore, PutMode, StoreError,
};
use async_trait::async_trait;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use std::path::Path;
use std::time::Duration;

/// Environment variable bounding one S3 request attempt, in seconds.
pub const TIMEOUT_ENV: &str = "SWAMP_S3_TIMEOUT_SECS";

/// The per-attempt request timeout: `SWAMP_S3_TIMEOUT_SECS` or 60 s.
fn attempt_timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(60))
}

/// Metadata key holding a file's SHA-256.
const SHA_META: &str = "sha256";
/// Object metadata: the index generation the uploading push was to write.
const GENERATION_META: &str = "swamp-generation";

/// The generation recorded in an object's metadata.
fn recorded_generation(
    metadata: Option<&std::collections::HashMap<String, String>>,
) -> Option<u64> {
    metadata?.get(GENERATION_META)?.parse().ok()
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

/// The endpoint in force: config, then `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`.
pub fn effective_endpoint(config: &S3Config) -> Option<String> {
    config
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|e| !e.is_empty())
}

impl S3Store {
    /// Builds the client for `config`.
    pub async fn connect(config: &S3Config) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5).min(attempt_timeout()))
                    .operation_attempt_timeout(attempt_timeout())
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = effective_endpoint(config) {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            part_downloads: DEFAULT_PART_DOWNLOADS,
        }
    }

    /// Downloads a large file's parts `n` at a time; 1 fetches it with one
    /// plain GET (for servers that serve ranged GETs slowly, such as moto).
    pub fn with_part_downloads(mut self, n: usize) -> Self {
        self.part_downloads = n.max(1);
        self
    }

    fn fail<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let target = self.url(key);
        match status {
            Some(412) => return StoreError::Precondition(target),
            Some(409) if matches!(err.code(), Some("ConditionalRequestConflict")) => {
                return StoreError::Conflict(target)
            }
            Some(404) if !matches!(err.code(), Some("NoSuchBucket")) => {
                return StoreError::NotFound(target)
            }
            _ => {}
        }
        let detail = DisplayErrorContext(&err).to_string();
        let hint = match (err.code(), status) {
            (Some("NoSuchBucket"), _) => format!("bucket '{}' does not exist: create it or fix the bucket name", self.bucket),
            (Some("AccessDenied"), _) | (_, Some(403)) => "access denied: the credentials lack permission on this bucket/prefix".to_string(),
            (Some("InvalidAccessKeyId"), _) | (Some("SignatureDoesNotMatch"), _) => "the credentials were rejected: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE".to_string(),
            (Some("PermanentRedirect"), _) | (Some("AuthorizationHeaderMalformed"), _) | (_, Some(301)) => "wrong region for this bucket: set --region / datastore.region / AWS_REGION".to_string(),
            _ if detail.contains("credentials") || detail.contains("Credentials") => "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use SSO/instance credentials".to_string(),
            _ if matches!(err, SdkError::TimeoutError(_)) => "the request timed out: the endpoint is slow or unreachable".to_string(),
            _ if matches!(err, SdkError::DispatchFailure(_)) => "endpoint unreachable: check the endpoint URL, network and that the server is running".to_string(),
            _ => String::new(),
        };
        let first_line = detail.lines().next().unwrap_or("").to_string();
        StoreError::Failed {
            op,
            target,
            message: if hint.is_empty() {
                first_line
            } else {
                format!("{hint} ({first_line})")
            },
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        path: &Path,
        digest: &FileDigest,
        generation: u64,
    ) -> Result<String, StoreError> {
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
            .metadata(SHA_META, &digest.sha256)
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
                Ok(done.e_tag().unwrap_or_default().to_string())
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

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        checksums: &PartChecksums,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
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

/// S3's smallest part (all but the last).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

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
                    message: format!(
                        "bucket '{}' does not exist: create it or fix the bucket name",
                        self.bucket
                    ),
                },
                other => other,
            })
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<String, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(bytes));
        req = match mode {
            PutMode::Overwrite => req,
            PutMode::Create => req.if_none_match("*"),
            PutMode::Update(etag) => req.if_match(etag),
        };
        let out = req.send().await.map_err(|e| self.fail("put", key, e))?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        digest: &FileDigest,
        generation: u64,
        content: Option<bytes::Bytes>,
    ) -> Result<String, StoreError> {
        // One rule decides which files travel in parts: those that have part
        // checksums (their uploads send them, their downloads check them).
        if PartChecksums::wanted_for(digest.size) {
            return self.put_multipart(key, path, digest, generation).await;
        }
        let sha256 = digest.sha256.as_str();
        let body = match content {
            Some(bytes) => ByteStream::from(bytes),
            None => ByteStream::from_path(path)
                .await
                .map_err(|e| local_read_failed(path, e))?,
        };
        // The server checks the body against the hash the push computed, so
        // a file rewritten after hashing fails here instead of being indexed
        // under the wrong hash.
        let checksum = sha256_hex_to_base64(sha256).ok_or_else(|| StoreError::Failed {
            op: "upload",
            target: self.url(key),
            message: format!("not a SHA-256: '{sha256}'"),
        })?;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .metadata(SHA_META, sha256)
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
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    async fn get_bytes(
        &self,
        key: &str,
        if_none_match: Option<&str>,
    ) -> Result<Fetched, StoreError> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(etag) = if_none_match {
            req = req.if_none_match(etag);
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
            etag: out.e_tag().unwrap_or_default().to_string(),
            last_modified: out.last_modified().and_then(to_system_time),
            server_time: date.get(),
        };
        // Some S3-compatible servers (s3s-fs) ignore If-None-Match and answer
        // 200: the ETag still says the object is the one we have.
        if if_none_match.is_some_and(|want| !meta.etag.is_empty() && meta.etag == want) {
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

    async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                out.content_length().unwrap_or(0).max(0) as u64,
                out.metadata().and_then(|m| m.get(SHA_META)).cloned(),
            ))),
            Err(e) => match self.fail("head", key, e) {
                StoreError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), StoreError> {
        let mut req = self.client.delete_object().bucket(&self.bucket).key(key);
        if let Some(etag) = if_match {
            req = req.if_match(etag);
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("delete", key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("list", prefix, e))?;
            for obj in page.contents() {
                out.push(Listed {
                    key: obj.key().unwrap_or_default().to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        Ok(out)
    }
}
