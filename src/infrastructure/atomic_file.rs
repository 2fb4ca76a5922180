//! Crash-safe file writes: write a uniquely named temp file in the target's
//! directory, fsync it, rename it over the target, fsync the directory. A crash
//! leaves either the old file or the new one under the real name, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The marker in the names of our temp files (skipped by walks and sync).
pub const TEMP_MARKER: &str = ".swamp-tmp-";

/// Whether `name` is one of our temp files.
pub fn is_temp_name(name: &str) -> bool {
    name.contains(TEMP_MARKER)
}

/// A temp path beside `target`.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    target.with_file_name(format!("{name}{TEMP_MARKER}{}", &unique[..12]))
}

/// Writes `bytes` to `target` atomically, creating parent directories.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_from(target, &mut &bytes[..]).map(|_| ())
}

/// Streams `reader` into `target` atomically; returns the bytes written.
pub fn write_atomic_from(target: &Path, reader: &mut dyn Read) -> io::Result<u64> {
    let parent = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let temp = temp_path_for(target);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        let written = io::copy(reader, &mut file)?;
        file.flush()?;
        file.sync_all()?;
        fs::rename(&temp, target)?;
        sync_dir(parent);
        Ok(written)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Fsyncs a directory so a rename in it is durable (best effort: some
/// filesystems refuse to open directories for sync).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/file.txt");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(is_temp_name(&temp_path_for(&target).to_string_lossy()));
    }
}
