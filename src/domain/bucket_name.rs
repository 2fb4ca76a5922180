//! S3 bucket-name rules (the general-purpose bucket rules AWS documents), checked
//! up front so a typo fails with a clear message instead of a cryptic SDK error.

use thiserror::Error;

/// Why a bucket name is not valid.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid S3 bucket name '{name}': {reason}")]
pub struct BucketNameError {
    /// The name as given.
    pub name: String,
    /// The rule it breaks.
    pub reason: &'static str,
}

/// Checks `name` against the S3 bucket naming rules.
pub fn validate_bucket_name(name: &str) -> Result<(), BucketNameError> {
    let fail = |reason| {
        Err(BucketNameError {
            name: name.to_string(),
            reason,
        })
    };
    if name.len() < 3 || name.len() > 63 {
        return fail("must be 3 to 63 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return fail("only lowercase letters, digits, dots and hyphens are allowed");
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return fail("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return fail("must not contain two adjacent dots");
    }
    if name.contains(".-") || name.contains("-.") {
        return fail("must not have a dot next to a hyphen");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return fail("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") {
        return fail("must not start with a reserved prefix (xn--, sthree-)");
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return fail("must not end with a reserved suffix (-s3alias, --ol-s3)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["abc", "my-bucket", "my.bucket.1", "a1b", &"a".repeat(63)] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_each_rule() {
        let cases = [
            ("ab", "3 to 63"),
            (&"a".repeat(64) as &str, "3 to 63"),
            ("My-Bucket", "lowercase"),
            ("my_bucket", "lowercase"),
            ("-bucket", "begin and end"),
            ("bucket.", "begin and end"),
            ("my..bucket", "adjacent dots"),
            ("my.-bucket", "dot next to a hyphen"),
            ("192.168.1.1", "IP address"),
            ("xn--bucket", "reserved prefix"),
            ("bucket-s3alias", "reserved suffix"),
        ];
        for (name, why) in cases {
            let err = validate_bucket_name(name).expect_err(name);
            assert!(err.to_string().contains(why), "{name}: {err}");
        }
    }
}
