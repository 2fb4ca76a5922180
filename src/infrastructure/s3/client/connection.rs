//! Building the SDK client for one `S3Config`: the standard credential
//! chain and region (us-east-1 when none is found), path-style addressing
//! when an endpoint is set, per-attempt timeouts, four attempts, and the
//! SDK's own checksums only where an operation requires them (see
//! `client.rs`).

use super::{S3Store, DEFAULT_PART_DOWNLOADS};
use crate::domain::config::S3Config;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::Client;
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
}
