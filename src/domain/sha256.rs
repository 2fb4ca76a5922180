//! A SHA-256 digest: 32 bytes, shown and stored as 64 lowercase hex digits.
//! Identifies file content in the index, the sync state, object metadata and
//! data-item versions; parsing is where a malformed digest from another
//! machine is refused (uppercase hex is accepted and normalised).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a SHA-256 (64 hex digits): '{0}'")]
pub struct NotASha256(pub String);

impl Sha256 {
    /// The digest with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.with_hex(str::to_string)
    }

    /// Calls `f` with the 64 lowercase hex digits, written on the stack: the
    /// state and index files hold one digest per file, 100 000 of them in a
    /// large datastore, so their (de)serialisation should not allocate each.
    fn with_hex<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        let mut digits = [0u8; 64];
        // Cannot fail: 32 bytes take exactly 64 digits.
        let _ = hex::encode_to_slice(self.0, &mut digits);
        f(std::str::from_utf8(&digits).unwrap_or_default())
    }
}

impl FromStr for Sha256 {
    type Err = NotASha256;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        // Exactly 64 digits: const-hex would also take a `0x` prefix.
        if s.len() != 64 {
            return Err(NotASha256(s.to_string()));
        }
        hex::decode_to_slice(s, &mut bytes).map_err(|_| NotASha256(s.to_string()))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_hex(|hex| f.write_str(hex))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_hex(|hex| serializer.serialize_str(hex))
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Parses the digits where the deserializer holds them (no copy).
        struct Digits;
        impl serde::de::Visitor<'_> for Digits {
            type Value = Sha256;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SHA-256 as 64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Sha256, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hex_round_trips_and_uppercase_is_normalised() {
        let sha: Sha256 = EMPTY.parse().unwrap();
        assert_eq!(sha.to_string(), EMPTY);
        let upper: Sha256 = EMPTY.to_uppercase().parse().unwrap();
        assert_eq!(upper, sha);
        assert_eq!(serde_json::to_string(&sha).unwrap(), format!("\"{EMPTY}\""));
        let back: Sha256 = serde_json::from_str(&format!("\"{EMPTY}\"")).unwrap();
        assert_eq!(back, sha);
        // Escaped digits reach the parser unescaped.
        let escaped = format!("\"\\u0065{}\"", &EMPTY[1..]);
        assert_eq!(serde_json::from_str::<Sha256>(&escaped).unwrap(), sha);
    }

    #[test]
    fn anything_but_64_hex_digits_is_refused() {
        for bad in [
            "",
            "abc",
            &EMPTY[..63],
            &format!("{EMPTY}0"),
            &EMPTY.replace('e', "g"),
            &format!("0x{EMPTY}"),
            &format!("0x{}", &EMPTY[2..]),
        ] {
            assert_eq!(
                bad.parse::<Sha256>(),
                Err(NotASha256(bad.to_string())),
                "{bad}"
            );
            assert!(serde_json::from_str::<Sha256>(&format!("\"{bad}\"")).is_err());
        }
    }
}
