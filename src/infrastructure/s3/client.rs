//! The aws-sdk-s3 implementation of `ObjectStore`: one client per command
//! (shared by lock and sync), the standard credential chain, path-style
//! addressing when an endpoint is set, request timeouts and retries, and error
//! messages that name the fix.

use crate::domain::config::S3Config;
use crate::infrastructure::s3::store::{
    Downloaded, Fetched, Listed, ObjectMeta, ObjectStore, PutMode, StoreError,
};
use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Files larger than this are uploaded in parts of this size.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
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

/// An S3 bucket reached through aws-sdk-s3.
pub struct S3Store {
    client: Client,
    bucket: String,
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
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4));
        if shared.region().is_none() {
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = effective_endpoint(config) {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
        }
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
        size: u64,
        sha256: &str,
    ) -> Result<String, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .metadata(SHA_META, sha256)
            .send()
            .await
            .map_err(|e| self.fail("create multipart upload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self.upload_parts(key, path, size, &upload_id).await;
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
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, StoreError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let count = size.div_ceil(MULTIPART_THRESHOLD);
        let mut parts: Vec<CompletedPart> = stream::iter(0..count)
            .map(|i| async move {
                let offset = i * MULTIPART_THRESHOLD;
                let length = MULTIPART_THRESHOLD.min(size - offset);
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
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| self.fail("upload part", key, e))?;
                Ok::<_, StoreError>(
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .set_e_tag(part.e_tag().map(str::to_string))
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
        size: u64,
        sha256: &str,
    ) -> Result<String, StoreError> {
        if size > MULTIPART_THRESHOLD {
            return self.put_multipart(key, path, size, sha256).await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| local_read_failed(path, e))?;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .metadata(SHA_META, sha256)
            .body(body)
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
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(304) => {
                return Ok(Fetched::NotModified)
            }
            Err(e) => return Err(self.fail("get", key, e)),
        };
        let meta = ObjectMeta {
            etag: out.e_tag().unwrap_or_default().to_string(),
            last_modified: out.last_modified().and_then(to_system_time),
        };
        let bytes = out.body.collect().await.map_err(|e| StoreError::Failed {
            op: "get",
            target: self.url(key),
            message: e.to_string(),
        })?;
        Ok(Fetched::Object(bytes.to_vec(), meta))
    }

    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<Downloaded, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.fail("download", key, e))?;
        let io_fail = |e: std::io::Error| StoreError::Failed {
            op: "write",
            target: dest.display().to_string(),
            message: e.to_string(),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(io_fail)?;
        let recorded_sha256 = out.metadata().and_then(|m| m.get(SHA_META)).cloned();
        let mut body = out.body;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| StoreError::Failed {
            op: "download",
            target: self.url(key),
            message: e.to_string(),
        })? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io_fail)?;
        }
        // Durability comes from one syncfs before the sync state records the
        // file (see CacheSync::pull), not from an fsync per file.
        file.flush().await.map_err(io_fail)?;
        Ok(Downloaded {
            size,
            sha256: hex::encode(hasher.finalize()),
            recorded_sha256,
        })
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
