//! Any bytes as a lock record: parsing never panics, a parsed record has a
//! token, its describe/ttl never panic, and it re-reads after a write.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swamp_datastore::domain::lock::LockInfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = LockInfo::from_json(data) {
        assert!(!info.token.is_empty());
        let _ = info.describe();
        let _ = info.ttl();
        assert!(LockInfo::from_json(&info.to_json()).is_ok(), "a parsed record re-reads");
    }
});
