//! Gitignore-style exclude patterns, compiled once with `globset`.
//!
//! Model: patterns are checked in order and the last one that matches decides,
//! so `!pattern` re-includes. A pattern without a `/` (other than a trailing one)
//! matches a name at any depth; a leading `/` or an inner `/` anchors it to the
//! datastore root; a trailing `/` matches directories, i.e. everything below them.
//! A pattern that matches a directory also matches every path under it.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use thiserror::Error;

/// An exclude pattern that does not compile.
#[derive(Debug, Error)]
#[error("invalid exclude pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What globset said.
    pub reason: String,
}

/// A compiled, ordered list of gitignore-style patterns.
#[derive(Debug, Clone)]
pub struct ExcludeMatcher {
    set: GlobSet,
    /// For each glob in `set`: (index of its source pattern, is it a negation).
    owners: Vec<(usize, bool)>,
}

impl ExcludeMatcher {
    /// Compiles `patterns`; blank lines and `#` comments are ignored.
    pub fn new(patterns: &[String]) -> Result<Self, PatternError> {
        let mut builder = GlobSetBuilder::new();
        let mut owners = Vec::new();
        for (index, raw) in patterns.iter().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (negated, body) = match trimmed.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, trimmed),
            };
            for glob in expand(body) {
                let compiled = GlobBuilder::new(&glob)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| PatternError {
                        pattern: raw.clone(),
                        reason: e.kind().to_string(),
                    })?;
                builder.add(compiled);
                owners.push((index, negated));
            }
        }
        let set = builder.build().map_err(|e| PatternError {
            pattern: patterns.join(", "),
            reason: e.to_string(),
        })?;
        Ok(Self { set, owners })
    }

    /// A matcher that excludes nothing.
    #[cfg(test)]
    pub(crate) fn empty() -> Self {
        Self {
            set: GlobSet::empty(),
            owners: Vec::new(),
        }
    }

    /// Whether the `/`-separated relative `path` is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.set
            .matches(path)
            .into_iter()
            .map(|i| self.owners[i])
            .max_by_key(|(index, _)| *index)
            .is_some_and(|(_, negated)| !negated)
    }
}

/// Turns one gitignore pattern into the globs that implement it.
fn expand(body: &str) -> Vec<String> {
    let dir_only = body.ends_with('/');
    let body = body.trim_end_matches('/');
    let anchored = body.starts_with('/') || body.contains('/');
    let body = body.trim_start_matches('/');
    let base = if anchored || body.starts_with("**/") {
        body.to_string()
    } else {
        format!("**/{body}")
    };
    if dir_only {
        vec![format!("{base}/**")]
    } else {
        vec![base.clone(), format!("{base}/**")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(p: &[&str]) -> ExcludeMatcher {
        ExcludeMatcher::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn unanchored_name_matches_at_any_depth() {
        let m = matcher(&["*.tmp"]);
        assert!(m.is_excluded("a.tmp"));
        assert!(m.is_excluded("logs/x/a.tmp"));
        assert!(!m.is_excluded("logs/a.tmpx"));
    }

    #[test]
    fn anchored_and_directory_patterns() {
        let m = matcher(&["/telemetry", "logs/debug/", "data/*/secret.json"]);
        assert!(m.is_excluded("telemetry"));
        assert!(m.is_excluded("telemetry/2026/a.json"));
        assert!(!m.is_excluded("data/telemetry"));
        assert!(m.is_excluded("logs/debug/x.log"));
        assert!(!m.is_excluded("logs/debugger.log"));
        assert!(m.is_excluded("data/app/secret.json"));
        assert!(!m.is_excluded("data/app/sub/secret.json"));
    }

    #[test]
    fn last_match_wins_and_negation_reincludes() {
        let m = matcher(&["logs/", "!logs/keep.log"]);
        assert!(m.is_excluded("logs/a.log"));
        assert!(!m.is_excluded("logs/keep.log"));
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let m = matcher(&["# comment", "  ", "x"]);
        assert!(m.is_excluded("x"));
        assert!(!m.is_excluded("# comment"));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        let err = ExcludeMatcher::new(&["a[".to_string()]).unwrap_err();
        assert!(err.to_string().contains("a["));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn path() -> impl Strategy<Value = String> {
            proptest::collection::vec("[a-c]{1,3}", 1..5).prop_map(|s| s.join("/"))
        }

        proptest! {
            /// Any pattern text compiles or fails cleanly, and matching never panics.
            #[test]
            fn any_pattern_compiles_or_fails_cleanly(pattern in "\\PC{0,20}", p in path()) {
                if let Ok(m) = ExcludeMatcher::new(&[pattern]) {
                    let _ = m.is_excluded(&p);
                }
            }

            /// A directory pattern excludes everything under a matching
            /// directory, and a later `!` of the same pattern re-includes it.
            #[test]
            fn directory_patterns_cover_their_subtree_and_negation_undoes_them(dir in path(), rest in path()) {
                let below = format!("{dir}/{rest}");
                let m = ExcludeMatcher::new(&[format!("/{dir}/")]).unwrap();
                prop_assert!(m.is_excluded(&below), "{below}");
                let undone = ExcludeMatcher::new(&[format!("/{dir}/"), format!("!/{dir}/")]).unwrap();
                prop_assert!(!undone.is_excluded(&below), "{below}");
                prop_assert!(!ExcludeMatcher::empty().is_excluded(&below));
            }
        }
    }
}
