//! SDK errors as the `StoreError`s callers act on and users read.
//!
//! 412, 409 `ConditionalRequestConflict` and 404 (but not `NoSuchBucket`)
//! are answers, not failures: they become `Precondition`, `Conflict` and
//! `NotFound`, which the lock and the sync act on. Anything else becomes
//! `Failed`, its message the SDK's first line led by a hint that names the
//! fix when the error is one we recognise (a missing bucket, permissions,
//! rejected or missing credentials, the wrong region, a timeout, an
//! unreachable endpoint).

use super::S3Store;
use crate::infrastructure::s3::store::{ObjectStore, StoreError};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

impl S3Store {
    /// `err`, from operation `op` on `key`, as a `StoreError`.
    pub(super) fn fail<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        store_error(op, self.url(key), &self.bucket, err)
    }
}

/// The hint for a bucket that does not exist.
pub(super) fn missing_bucket(bucket: &str) -> String {
    format!("bucket '{bucket}' does not exist: create it or fix the bucket name")
}

/// The hint for a bucket in another region, naming it when S3 said which.
fn wrong_region(region: Option<&str>) -> String {
    match region {
        Some(region) => format!("wrong region for this bucket, which is in {region}: set --region {region} / datastore.region / AWS_REGION"),
        None => "wrong region for this bucket: set --region / datastore.region / AWS_REGION".to_string(),
    }
}

/// The bucket's region as S3 names it on a redirect (`x-amz-bucket-region`),
/// if it looks like one (it is shown to the user).
fn bucket_region<E>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    let region = err.raw_response()?.headers().get("x-amz-bucket-region")?;
    let plausible = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    plausible.then_some(region)
}

/// `err`, from operation `op` on `target` in `bucket`, as a `StoreError`.
fn store_error<E>(
    op: &'static str,
    target: String,
    bucket: &str,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
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
        (Some("NoSuchBucket"), _) => missing_bucket(bucket),
        // AWS answers rejected credentials with 403 as well: match their codes first.
        (Some("InvalidAccessKeyId"), _) | (Some("SignatureDoesNotMatch"), _) => "the credentials were rejected: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE".to_string(),
        (Some("AccessDenied"), _) | (_, Some(403)) => "access denied: the credentials lack permission on this bucket/prefix".to_string(),
        (Some("PermanentRedirect"), _) | (Some("AuthorizationHeaderMalformed"), _) | (_, Some(301)) => wrong_region(bucket_region(&err)),
        _ if detail.contains("credentials") || detail.contains("Credentials") => "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use SSO/instance credentials".to_string(),
        _ if matches!(err, SdkError::TimeoutError(_)) => "the request timed out: the endpoint is slow or unreachable".to_string(),
        _ if matches!(err, SdkError::DispatchFailure(_)) => "endpoint unreachable: check the endpoint URL, network and that the server is running".to_string(),
        _ => String::new(),
    };
    let what = concise(&err, status);
    StoreError::Failed {
        op,
        target,
        message: if hint.is_empty() {
            what
        } else {
            format!("{hint} ({what})")
        },
    }
}

/// What the store or the connection said, in one line of plain text: the
/// S3 error code and message with the HTTP status, or the chain of causes
/// by their `Display` — never the SDK's `Debug` dump (headers, bodies,
/// extensions), which is what `DisplayErrorContext` ends with.
fn concise<E>(err: &SdkError<E, HttpResponse>, status: Option<u16>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let said = match (err.code(), err.message()) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(text), None) | (None, Some(text)) => Some(text.to_string()),
        // A reply without a body (a HEAD): its metadata's Display is a
        // Debug dump, so say only that the store explained nothing.
        (None, None) if matches!(err, SdkError::ServiceError(_)) => {
            Some("no details from the store".to_string())
        }
        (None, None) => None,
    };
    let text = match said {
        Some(said) => match status {
            Some(status) => format!("{said}, HTTP {status}"),
            None => said,
        },
        None => {
            let mut parts: Vec<String> = Vec::new();
            let mut cause: Option<&dyn std::error::Error> = Some(err);
            while let Some(e) = cause {
                let text = e.to_string();
                if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
                    parts.push(text);
                }
                cause = e.source();
            }
            if let (Some(status), true) = (status, parts.len() <= 1) {
                parts.push(format!("HTTP {status}"));
            }
            parts.join(": ")
        }
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    /// How a test error comes about.
    #[derive(Debug, Clone, Copy)]
    enum Make {
        /// A reply with this HTTP status and, if given, this S3 error code.
        Reply(u16, Option<&'static str>),
        /// A reply with this status and no body at all (a HEAD's).
        Bare(u16),
        /// No reply within the attempt timeout.
        Timeout,
        /// The connection failed with this text.
        Io(&'static str),
        /// The request could not be sent, with this text.
        Other(&'static str),
    }

    impl Make {
        fn error(self) -> SdkError<GetObjectError, HttpResponse> {
            match self {
                Make::Reply(status, code) => {
                    let mut meta = ErrorMetadata::builder().message("the server said no");
                    if let Some(code) = code {
                        meta = meta.code(code);
                    }
                    let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
                    SdkError::service_error(GetObjectError::generic(meta.build()), raw)
                }
                Make::Bare(status) => {
                    let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
                    let meta = ErrorMetadata::builder()
                        .custom("s3_extended_request_id", "abc==")
                        .build();
                    SdkError::service_error(GetObjectError::generic(meta), raw)
                }
                Make::Timeout => SdkError::timeout_error("took too long"),
                Make::Io(text) => SdkError::dispatch_failure(ConnectorError::io(text.into())),
                Make::Other(text) => {
                    SdkError::dispatch_failure(ConnectorError::other(text.into(), None))
                }
            }
        }
    }

    /// What an error must become.
    #[derive(Debug)]
    enum Want {
        Precondition,
        Conflict,
        NotFound,
        /// `Failed`, its message led by this hint ("": the SDK's line alone).
        Failed(&'static str),
    }

    const NO_BUCKET: &str = "bucket 'b' does not exist: create it or fix the bucket name";
    const ACCESS: &str = "access denied: the credentials lack permission on this bucket/prefix";
    const REJECTED: &str = "the credentials were rejected: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE";
    const REGION: &str =
        "wrong region for this bucket: set --region / datastore.region / AWS_REGION";
    const NO_CREDENTIALS: &str = "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use SSO/instance credentials";
    const TIMEOUT: &str = "the request timed out: the endpoint is slow or unreachable";
    const UNREACHABLE: &str =
        "endpoint unreachable: check the endpoint URL, network and that the server is running";

    #[test]
    fn sdk_errors_become_the_store_errors_and_hints_users_see() {
        use Make::*;
        use Want::*;
        let cases = [
            (Reply(412, Some("PreconditionFailed")), Precondition),
            (Reply(409, Some("ConditionalRequestConflict")), Conflict),
            (Reply(409, Some("OperationAborted")), Failed("")),
            (Reply(404, None), NotFound),
            (Reply(404, Some("NoSuchKey")), NotFound),
            (Reply(404, Some("NoSuchBucket")), Failed(NO_BUCKET)),
            (Reply(403, None), Failed(ACCESS)),
            (Reply(403, Some("AccessDenied")), Failed(ACCESS)),
            (Bare(403), Failed(ACCESS)),
            (Bare(301), Failed(REGION)),
            (Reply(400, Some("InvalidAccessKeyId")), Failed(REJECTED)),
            (Reply(400, Some("SignatureDoesNotMatch")), Failed(REJECTED)),
            // What AWS sends for them.
            (Reply(403, Some("InvalidAccessKeyId")), Failed(REJECTED)),
            (Reply(403, Some("SignatureDoesNotMatch")), Failed(REJECTED)),
            (Reply(301, Some("PermanentRedirect")), Failed(REGION)),
            (
                Reply(400, Some("AuthorizationHeaderMalformed")),
                Failed(REGION),
            ),
            (Reply(301, None), Failed(REGION)),
            (Reply(500, Some("InternalError")), Failed("")),
            (Timeout, Failed(TIMEOUT)),
            (Io("connection refused"), Failed(UNREACHABLE)),
            // Credentials are named before the failure to send is.
            (Other("failed to load credentials"), Failed(NO_CREDENTIALS)),
        ];
        for (make, want) in cases {
            match (
                &want,
                store_error("get", "s3://b/k".into(), "b", make.error()),
            ) {
                (Precondition, StoreError::Precondition(t))
                | (Conflict, StoreError::Conflict(t))
                | (NotFound, StoreError::NotFound(t)) => assert_eq!(t, "s3://b/k", "{make:?}"),
                (
                    Failed(hint),
                    StoreError::Failed {
                        op,
                        target,
                        message,
                    },
                ) => {
                    assert_eq!((op, target.as_str()), ("get", "s3://b/k"), "{make:?}");
                    assert!(message.starts_with(hint), "{make:?}: {message}");
                    // What the store said, in plain words: no Debug dump.
                    let said = match make {
                        Reply(status, Some(code)) => {
                            format!("{code}: the server said no, HTTP {status}")
                        }
                        Reply(status, None) => format!("the server said no, HTTP {status}"),
                        Bare(status) => format!("no details from the store, HTTP {status}"),
                        Timeout => "took too long".into(),
                        Io(text) | Other(text) => text.into(),
                    };
                    assert!(message.contains(&said), "{make:?}: {message}");
                    for dump in ["{", "ErrorMetadata", "Extensions", "DispatchFailure("] {
                        assert!(!message.contains(dump), "{make:?}: {message}");
                    }
                }
                (want, got) => panic!("{make:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}
