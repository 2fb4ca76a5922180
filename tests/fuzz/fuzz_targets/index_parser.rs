//! Any bytes as a remote index: parsing never panics, and whatever parses
//! names only safe paths, never a path that is both file and directory, and
//! survives a write and a re-read unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swamp_datastore::domain::relative_path::SafeRelativePath;
use swamp_datastore::domain::sync_index::{path_conflict, RemoteIndex};

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = RemoteIndex::parse(data) {
        for key in index.files.keys() {
            assert!(SafeRelativePath::parse(key).is_ok(), "unsafe key {key:?}");
        }
        assert!(path_conflict(&index.files).is_none());
        let again = RemoteIndex::parse(&index.to_json()).expect("a parsed index re-reads");
        assert_eq!(again, index);
    }
});
