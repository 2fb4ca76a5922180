//! Data-item names: `/`-joined segments of letters, digits, `-`, `_` and `.`.
//! Every name is also a `SafeRelativePath`, so no name can reach outside the
//! datastore.

use crate::domain::relative_path::SafeRelativePath;
use std::fmt;
use thiserror::Error;

/// Why a data-item name was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid data name '{name}': {reason}")]
pub struct ItemNameError {
    /// The name as given (escaped).
    pub name: String,
    /// The rule it breaks.
    pub reason: String,
}

/// A validated data-item name such as `app/config`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemName(SafeRelativePath);

impl ItemName {
    /// Validates `raw` as a data-item name.
    pub fn parse(raw: &str) -> Result<Self, ItemNameError> {
        let path = SafeRelativePath::parse(raw).map_err(|e| ItemNameError {
            name: e.path.clone(),
            reason: e.reason.to_string(),
        })?;
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        {
            return Err(ItemNameError {
                name: raw.escape_debug().to_string(),
                reason: format!(
                    "character {c:?} is not allowed (use letters, digits, '-', '_', '.', '/')"
                ),
            });
        }
        Ok(Self(path))
    }

    /// The name as a relative path.
    pub fn as_path(&self) -> &SafeRelativePath {
        &self.0
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for ItemName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in ["app", "app/config", "a.b-c_d/e1", ".hidden"] {
            assert!(ItemName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "", "../x", "/abs", "a//b", "a/./b", "a\\b", "a b", "a\tb", "a@b", "a/..", "é",
        ] {
            assert!(ItemName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A name is accepted exactly when every character is allowed
            /// and it is a safe relative path; accepted names round-trip.
            #[test]
            fn names_are_accepted_exactly_by_the_rules(raw in "[a-zA-Z0-9._/ -]{0,24}|\\PC{0,12}") {
                let allowed = raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
                let safe = SafeRelativePath::parse(&raw).is_ok();
                match ItemName::parse(&raw) {
                    Ok(name) => {
                        prop_assert!(allowed && safe, "{raw:?} accepted");
                        prop_assert_eq!(name.as_str(), raw.as_str());
                    }
                    Err(_) => prop_assert!(!(allowed && safe), "{raw:?} refused"),
                }
            }
        }
    }
}
