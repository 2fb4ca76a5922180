//! Crash-safe file writes: write a uniquely named temp file in the target's
//! directory, fsync it, rename it over the target, fsync the directory. A crash
//! leaves either the old file or the new one under the real name, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The marker that starts the names of our temp files.
pub const TEMP_MARKER: &str = ".swamp-tmp-";

/// Hex digits after the marker in a temp name: enough that a fresh name
/// never meets an existing one.
const TEMP_UNIQUE_LEN: usize = 32;

/// Whether `name` is one of our temp files: `.swamp-tmp-` and 32 hex digits,
/// or the `{name}.swamp-tmp-{12 hex}` / `versions.swamp-tmp-rm` shapes that
/// older builds left. Any other name that merely contains the marker is a
/// user's name like any other.
pub fn is_temp_name(name: &str) -> bool {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(unique) = name.strip_prefix(TEMP_MARKER) {
        if hex(unique, TEMP_UNIQUE_LEN) {
            return true;
        }
    }
    match name.rsplit_once(TEMP_MARKER) {
        Some((before, after)) if !before.is_empty() => hex(after, 12) || after == "rm",
        _ => false,
    }
}

/// A temp path beside `target`. Its name does not grow with the target's,
/// so it fits wherever the target's name fits (a 250-byte name plus a
/// suffix would not).
pub fn temp_path_for(target: &Path) -> PathBuf {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    target.with_file_name(format!("{TEMP_MARKER}{unique}"))
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
        let temp = temp_path_for(&target);
        assert!(is_temp_name(&temp.file_name().unwrap().to_string_lossy()));
    }

    #[test]
    fn temp_names_are_short_and_user_names_with_the_marker_are_not_temp() {
        let long = "x".repeat(250);
        let temp = temp_path_for(&Path::new("/d").join(&long));
        let name = temp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() < 64, "{name}");
        assert!(is_temp_name(&name));
        for (name, temp) in [
            ("report.swamp-tmp-0123456789ab", true),
            ("versions.swamp-tmp-rm", true),
            (".swamp-tmp-", false),
            (".swamp-tmp-notes", false),
            ("my.swamp-tmp-notes.txt", false),
            (".swamp-tmp-0123456789ab", false),
            ("plain", false),
        ] {
            assert_eq!(is_temp_name(name), temp, "{name}");
        }
    }
}
