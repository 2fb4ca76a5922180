//! The server's clock, read off a response: an interceptor that keeps the
//! `Date` header of the last attempt of one request.
//!
//! Lock age is judged by one clock, the store's: `Date` of the response that
//! returned the record minus the record's `Last-Modified`, both stamped by the
//! server. A client whose own clock runs ahead or behind then judges a lock
//! exactly as every other client does.

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::date_time::Format;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Captures the `Date` header of a response (of its last attempt, on retries).
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerDate(Arc<Mutex<Option<SystemTime>>>);

impl ServerDate {
    /// The server's time of the response, if it sent a valid `Date`.
    pub(crate) fn get(&self) -> Option<SystemTime> {
        self.0.lock().ok().and_then(|d| *d)
    }
}

/// Parses an HTTP date (`Tue, 01 Dec 2026 08:07:16 GMT`).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let t = aws_smithy_types::DateTime::from_str(value, Format::HttpDate).ok()?;
    SystemTime::try_from(t).ok()
}

impl Intercept for ServerDate {
    fn name(&self) -> &'static str {
        "ServerDate"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(parse_http_date);
        if let Ok(mut slot) = self.0.lock() {
            *slot = date;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn http_dates_parse_and_garbage_does_not() {
        let t = parse_http_date("Tue, 01 Dec 2026 08:07:16 GMT").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_secs(1_796_112_436)
        );
        assert!(parse_http_date("yesterday").is_none());
        assert!(parse_http_date("").is_none());
    }
}
