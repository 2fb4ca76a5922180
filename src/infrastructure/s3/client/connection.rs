//! Building the SDK client for one `S3Config`: the standard credential
//! chain (credentials in the environment taken from there directly: the
//! chain would pick them first anyway, and building the rest of it loads
//! every native root certificate); the configured region, else — with an
//! endpoint (MinIO, SeaweedFS, R2...) — `AWS_REGION`/`AWS_DEFAULT_REGION` or
//! the profile's, never the instance metadata service (on a laptop that is a
//! timeout and six WARN blocks per command), else the SDK's whole chain;
//! us-east-1 when none is found. Path-style addressing when an endpoint is
//! set (plain HTTP, without TLS set-up, for an `http://` one when no proxy
//! is configured), per-attempt timeouts, four attempts, and the SDK's own
//! checksums only where an operation requires them (see `client.rs`). The
//! caller resolves the settings (`S3Settings`) once; the SDK's credential
//! and region chain stays the SDK's.

use super::{S3Store, DEFAULT_PART_DOWNLOADS};
use crate::domain::config::S3Config;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::Region;
use aws_sdk_s3::config::ProvideCredentials;
use aws_sdk_s3::config::{
    RequestChecksumCalculation, ResponseChecksumValidation, SharedHttpClient,
};
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

/// The proxy variables the SDK's default client reads.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether the S3 client may skip TLS: its endpoint is `http://` (a local
/// MinIO or SeaweedFS) and no proxy is configured, so nothing it reaches
/// speaks TLS. The SDK's default client loads every native root certificate
/// when the client is built — a third of a no-op's CPU here (~440 files of
/// /etc/ssl/certs read and parsed on each command) — for an endpoint that
/// never uses them. With a proxy the SDK's default is kept as it is.
fn plain_http_will_do(endpoint: &str, is_set: impl Fn(&str) -> bool) -> bool {
    let plain = endpoint
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
    plain && !PROXY_VARIABLES.iter().any(|name| is_set(name))
}

/// The SDK's default HTTP client without TLS: the same connector settings
/// (connect and read timeouts) and sleep, built the way the SDK builds its
/// own default (`aws_smithy_runtime`'s `default_https_client`).
fn plain_http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = aws_smithy_http_client::Connector::builder();
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.build_http()
    })
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
        // The default chain tries the environment first: when it holds the
        // credentials, the rest of the chain is never asked — but building it
        // builds an STS client (for web identity), and with it loads every
        // native root certificate. Taking them from the environment directly
        // gives the same credentials without that.
        let environment = EnvironmentVariableCredentialsProvider::new();
        if environment.provide_credentials().await.is_ok() {
            loader = loader.credentials_provider(environment);
        }
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
            if plain_http_will_do(&endpoint, |name| std::env::var_os(name).is_some()) {
                builder = builder.http_client(plain_http_client());
            }
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            part_downloads: settings.part_downloads.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_http_endpoint_without_a_proxy_skips_tls() {
        let cases: [(&str, Option<&str>, bool); 7] = [
            ("http://127.0.0.1:9000", None, true),
            ("HTTP://minio.lan:9000", None, true),
            ("https://s3.example.com", None, false),
            ("http://127.0.0.1:9000", Some("HTTPS_PROXY"), false),
            ("http://127.0.0.1:9000", Some("http_proxy"), false),
            ("http://127.0.0.1:9000", Some("all_proxy"), false),
            ("http:/", None, false),
        ];
        for (endpoint, proxy, plain) in cases {
            let is_set = |name: &str| Some(name) == proxy;
            assert_eq!(
                plain_http_will_do(endpoint, is_set),
                plain,
                "{endpoint} {proxy:?}"
            );
        }
    }
}
