//! What this machine last learned from the conditional-write probe about a
//! store, kept in the cache (`{cache}/.swamp-store-probe.json`), so a
//! command need not probe again to use it.
//!
//! Model: one record per cache, naming the store it describes (endpoint,
//! region, bucket) and what the probe found. The probe runs in `datastore
//! setup s3` (on the target) and `datastore status`, and each run replaces
//! the record. It is read when the lock is built: a store known to honour
//! `If-Match` on DELETE lets release delete without reading the record
//! first (one request fewer per command). A record for another store (the
//! cache is per repo, and a repo may move between buckets), a missing or
//! unreadable record all mean "not known": release reads first, which is
//! safe on every store. The record is trusted as long as it names the same
//! store — as the setup's probe of `If-None-Match`/`If-Match` on PUT is.

use super::probe::ConditionalSupport;
use crate::domain::config::S3Config;
use crate::infrastructure::atomic_file::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The record's file in the cache root (outside every datastore directory,
/// so sync never sees it).
pub(crate) const PROBE_RECORD_FILE: &str = ".swamp-store-probe.json";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ProbeRecord {
    store: String,
    conditional_writes: ConditionalSupport,
}

/// The store a record describes: conditional support is the server's, so
/// the prefix does not matter.
fn store_of(config: &S3Config) -> String {
    format!(
        "{} {} {}",
        config.endpoint.as_deref().unwrap_or("aws"),
        config.region.as_deref().unwrap_or("-"),
        config.bucket
    )
}

/// Remembers what the probe found on `config`'s store (best effort: a cache
/// that cannot be written only costs later commands a request).
pub(crate) fn remember(cache: &Path, config: &S3Config, support: ConditionalSupport) {
    let record = ProbeRecord {
        store: store_of(config),
        conditional_writes: support,
    };
    let written = std::fs::create_dir_all(cache).and_then(|()| {
        let bytes = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        write_atomic(&cache.join(PROBE_RECORD_FILE), &bytes)
    });
    if let Err(e) = written {
        tracing::debug!(error = %e, "the probe's result was not remembered");
    }
}

/// What the last probe on this machine found on `config`'s store, if known.
pub(crate) fn remembered(cache: &Path, config: &S3Config) -> Option<ConditionalSupport> {
    let bytes = std::fs::read(cache.join(PROBE_RECORD_FILE)).ok()?;
    let record: ProbeRecord = serde_json::from_slice(&bytes).ok()?;
    (record.store == store_of(config)).then_some(record.conditional_writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bucket: &str, endpoint: Option<&str>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            prefix: "p".into(),
            region: Some("us-east-1".into()),
            endpoint: endpoint.map(str::to_string),
        }
    }

    const ALL: ConditionalSupport = ConditionalSupport {
        create: true,
        update: true,
        delete: true,
    };

    #[test]
    fn a_record_serves_only_the_store_it_names() {
        let cache = tempfile::tempdir().unwrap();
        let here = config("b", Some("http://127.0.0.1:9000"));
        assert_eq!(remembered(cache.path(), &here), None, "nothing probed yet");
        remember(cache.path(), &here, ALL);
        assert_eq!(remembered(cache.path(), &here), Some(ALL));
        let other_prefix = S3Config {
            prefix: "q".into(),
            ..here.clone()
        };
        assert_eq!(remembered(cache.path(), &other_prefix), Some(ALL));
        for other in [
            config("other", Some("http://127.0.0.1:9000")),
            config("b", Some("http://127.0.0.1:9001")),
            config("b", None),
        ] {
            assert_eq!(remembered(cache.path(), &other), None, "{other:?}");
        }
        let ignored = ConditionalSupport {
            delete: false,
            ..ALL
        };
        remember(cache.path(), &here, ignored);
        assert_eq!(remembered(cache.path(), &here), Some(ignored), "replaced");
        std::fs::write(cache.path().join(PROBE_RECORD_FILE), b"{not json").unwrap();
        assert_eq!(
            remembered(cache.path(), &here),
            None,
            "unreadable: not known"
        );
    }
}
