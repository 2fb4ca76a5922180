//! Safe relative paths: the only form in which a file name from outside (an S3
//! key, a data-item name, an index entry) may reach the disk. A `SafeRelativePath`
//! cannot name anything outside the directory it is joined to.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a relative path was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unsafe path '{path}': {reason}")]
pub struct UnsafePathError {
    /// The path as given (control characters escaped).
    pub path: String,
    /// The rule it breaks.
    pub reason: &'static str,
}

/// A `/`-separated relative path with no `.`/`..`/empty segments, no absolute
/// root, no backslashes and no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SafeRelativePath(String);

impl SafeRelativePath {
    /// Validates `raw` and wraps it.
    pub fn parse(raw: &str) -> Result<Self, UnsafePathError> {
        let fail = |reason| {
            Err(UnsafePathError {
                path: raw.escape_debug().to_string(),
                reason,
            })
        };
        if raw.is_empty() {
            return fail("empty path");
        }
        if raw.starts_with('/') {
            return fail("absolute paths are not allowed");
        }
        if raw.contains('\\') {
            return fail("backslashes are not allowed");
        }
        if raw.chars().any(|c| c.is_control()) {
            return fail("control characters are not allowed");
        }
        for segment in raw.split('/') {
            match segment {
                "" => return fail("empty path segments are not allowed"),
                "." | ".." => return fail("'.' and '..' segments are not allowed"),
                _ => {}
            }
        }
        Ok(Self(raw.to_string()))
    }

    /// `path` relative to `root`, `/`-joined and validated; `None` when it is
    /// not under `root` or not a safe relative path.
    pub fn between(root: &Path, path: &Path) -> Option<Self> {
        Self::of_entry(root, path).ok()
    }

    /// `between`, saying why a path under `root` cannot be a datastore path
    /// (a name that is not UTF-8 is refused, never mangled into another name).
    pub fn of_entry(root: &Path, path: &Path) -> Result<Self, UnsafePathError> {
        let refuse = |reason| UnsafePathError {
            path: path.to_string_lossy().escape_debug().to_string(),
            reason,
        };
        // Fast path for the stat walk, which calls this for every cache file:
        // a byte prefix and a rest that is already clean. Anything else takes
        // the component-wise route below.
        let rest = path
            .as_os_str()
            .as_bytes()
            .strip_prefix(root.as_os_str().as_bytes())
            .and_then(|rest| rest.strip_prefix(b"/"));
        if let Some(text) = rest.and_then(|rest| std::str::from_utf8(rest).ok()) {
            if let Ok(clean) = Self::parse(text) {
                return Ok(clean);
            }
        }
        let rel = path
            .strip_prefix(root)
            .map_err(|_| refuse("not under the datastore root"))?;
        let mut segments = Vec::new();
        for component in rel.components() {
            let text = component
                .as_os_str()
                .to_str()
                .ok_or_else(|| refuse("the name is not valid UTF-8"))?;
            segments.push(text);
        }
        Self::parse(&segments.join("/"))
    }

    /// The path as a `/`-separated string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as an owned `/`-separated string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The first segment (the datastore directory a path belongs to).
    pub fn top_dir(&self) -> &str {
        self.0.split('/').next().unwrap_or("")
    }

    /// Joins this path under `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut out = root.to_path_buf();
        out.extend(self.0.split('/'));
        out
    }
}

impl fmt::Display for SafeRelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nested_relative_paths() {
        let p = SafeRelativePath::parse("data/app/.hidden/x.json").unwrap();
        assert_eq!(p.top_dir(), "data");
        assert_eq!(
            p.under(Path::new("/root")),
            PathBuf::from("/root/data/app/.hidden/x.json")
        );
    }

    #[test]
    fn between_joins_components_under_a_root() {
        let p = SafeRelativePath::between(Path::new("/r"), Path::new("/r/a/b")).unwrap();
        assert_eq!(p.as_str(), "a/b");
        assert!(SafeRelativePath::between(Path::new("/r"), Path::new("/other/a")).is_none());
        assert!(SafeRelativePath::between(Path::new("/r"), Path::new("/r")).is_none());
        // A byte prefix that is not a component prefix.
        assert!(SafeRelativePath::between(Path::new("/r"), Path::new("/rx/a")).is_none());
        // Unclean spellings take the component-wise route to the same answer.
        for (root, path) in [("/r/", "/r/a/b"), ("/r", "/r//a/./b/"), ("/", "/a/b")] {
            let p = SafeRelativePath::between(Path::new(root), Path::new(path)).unwrap();
            assert_eq!(p.as_str(), "a/b", "{root} {path}");
        }
    }

    #[test]
    fn names_that_are_not_utf8_are_refused_not_mangled() {
        use std::ffi::OsStr;
        let root = Path::new("/r");
        let path = root.join(OsStr::from_bytes(b"data/caf\xe9"));
        let err = SafeRelativePath::of_entry(root, &path).unwrap_err();
        assert_eq!(err.reason, "the name is not valid UTF-8");
        assert!(SafeRelativePath::between(root, &path).is_none());
        let err = SafeRelativePath::of_entry(root, &root.join("data/a\nb")).unwrap_err();
        assert_eq!(err.reason, "control characters are not allowed");
    }

    #[test]
    fn rejects_escapes() {
        for bad in [
            "",
            "/abs",
            "../escape",
            "a/../../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "a\nb",
            "..",
        ] {
            assert!(SafeRelativePath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever is accepted can never leave the directory it is
            /// joined to, and its text is unchanged.
            #[test]
            fn accepted_paths_stay_under_their_root(raw in "\\PC{0,40}|[a-z./\\\\]{0,20}") {
                if let Ok(p) = SafeRelativePath::parse(&raw) {
                    prop_assert_eq!(p.as_str(), raw.as_str());
                    let joined = p.under(Path::new("/root"));
                    prop_assert!(joined.starts_with("/root"));
                    for c in joined.strip_prefix("/root").unwrap().components() {
                        prop_assert!(matches!(c, std::path::Component::Normal(_)), "{:?}", c);
                    }
                    prop_assert!(!raw.chars().any(|c| c.is_control() || c == '\\'));
                }
            }

            /// `of_entry` inverts `under` for every accepted path, and never
            /// accepts a name that is not UTF-8.
            #[test]
            fn of_entry_inverts_under(segments in proptest::collection::vec("[a-zA-Z0-9 ._-]{1,12}", 1..5), junk in proptest::collection::vec(any::<u8>(), 1..8)) {
                let raw = segments.join("/");
                if let Ok(p) = SafeRelativePath::parse(&raw) {
                    let root = Path::new("/r");
                    prop_assert_eq!(SafeRelativePath::of_entry(root, &p.under(root)).unwrap(), p);
                }
                use std::ffi::OsStr;
                let mut name = b"data/".to_vec();
                name.extend(&junk);
                let path = Path::new("/r").join(OsStr::from_bytes(&name));
                if std::str::from_utf8(&junk).is_err() {
                    prop_assert!(SafeRelativePath::of_entry(Path::new("/r"), &path).is_err());
                }
            }
        }
    }
}
