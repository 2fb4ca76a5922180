//! Building the SDK client for one `S3Config`: the standard credential
//! chain; the configured region, else — with an endpoint (MinIO, SeaweedFS,
//! R2...) — `AWS_REGION`/`AWS_DEFAULT_REGION` or the profile's, never the
//! instance metadata service (on a laptop that is a timeout and six WARN
//! blocks per command), else the SDK's whole chain; us-east-1 when none is
//! found. Path-style addressing when an endpoint is set, per-attempt timeouts, four attempts, and the
//! SDK's own checksums only where an operation requires them (see
//! `client.rs`). The caller resolves the settings (`S3Settings`) once; the
//! SDK's credential and region chain stays the SDK's.

use super::{S3Store, DEFAULT_PART_DOWNLOADS};
use crate::domain::config::S3Config;
use aws_config::meta::region::RegionProviderChain;
use aws_config::Region;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::Client;
use std::time::Duration;

/// The per-attempt request timeout unless configured otherwise.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How the client connects, beyond the bucket's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    /// Ranged GETs in flight per large file (1: one plain GET).
    pub part_downloads: usize,
    /// Bound on one request attempt (`SWAMP_S3_TIMEOUT_SECS`).
    pub attempt_timeout: Duration,
    /// The endpoint when the config names none (`AWS_ENDPOINT_URL_S3`,
    /// then `AWS_ENDPOINT_URL`).
    pub fallback_endpoint: Option<String>,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            part_downloads: DEFAULT_PART_DOWNLOADS,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            fallback_endpoint: None,
        }
    }
}

/// The region when none is configured or found.
const FALLBACK_REGION: &str = "us-east-1";

/// Where a region comes from when the config names none: the environment
/// and the profile only (no instance metadata service).
fn local_region_chain() -> RegionProviderChain {
    RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(aws_config::profile::ProfileFileRegionProvider::new())
    .or_else(Region::new(FALLBACK_REGION))
}

/// The region a new S3 datastore records when `setup` is given none: with
/// an endpoint the local chain's, else the SDK's whole chain's (the
/// instance metadata service included, once, at setup), else us-east-1.
pub async fn resolve_region(endpoint: Option<&str>) -> String {
    let found = match endpoint.filter(|e| !e.is_empty()) {
        Some(_) => local_region_chain().region().await,
        None => {
            RegionProviderChain::default_provider()
                .or_else(Region::new(FALLBACK_REGION))
                .region()
                .await
        }
    };
    found.map_or_else(|| FALLBACK_REGION.to_string(), |r| r.to_string())
}

impl S3Store {
    /// Builds the client for `config` (no request is made).
    pub async fn connect(config: &S3Config, settings: &S3Settings) -> Self {
        let attempt_timeout = settings.attempt_timeout;
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| settings.fallback_endpoint.clone())
            .filter(|e| !e.is_empty());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        loader = match (&config.region, &endpoint) {
            (Some(region), _) => loader.region(Region::new(region.clone())),
            (None, Some(_)) => loader.region(local_region_chain()),
            (None, None) => loader,
        };
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5).min(attempt_timeout))
                    .operation_attempt_timeout(attempt_timeout)
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            builder = builder.region(Region::new(FALLBACK_REGION));
        }
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            part_downloads: settings.part_downloads.max(1),
        }
    }
}
