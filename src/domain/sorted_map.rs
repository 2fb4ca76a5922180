//! Reading a large JSON object into a `BTreeMap` in one bulk build.
//!
//! The index and the sync state map up to 100 000 paths to entries, and read
//! them on every command. serde's own `BTreeMap` support inserts entry by
//! entry, searching the tree from its root each time; here the entries are
//! collected first and the map is built once (`FromIterator` sorts, which costs
//! one linear pass on input that is already sorted, as ours always is because
//! it was written from a `BTreeMap`). Duplicate keys keep the last value, as
//! serde's insertion would.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// `deserialize_with` for a `BTreeMap<String, V>` field.
pub fn deserialize<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Entries<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
        type Value = Vec<(String, V)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of paths to entries")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }

    let entries = deserializer.deserialize_map(Entries(PhantomData))?;
    Ok(entries.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "super::deserialize")]
        files: BTreeMap<String, u32>,
    }

    fn parse(json: &str) -> Result<BTreeMap<String, u32>, serde_json::Error> {
        serde_json::from_str::<Holder>(json).map(|h| h.files)
    }

    #[test]
    fn builds_the_same_map_as_insertion_in_any_order() {
        let sorted = parse(r#"{"files":{"a":1,"b/c":2,"b-d":3}}"#).unwrap();
        let shuffled = parse(r#"{"files":{"b-d":3,"a":1,"b/c":2}}"#).unwrap();
        let inserted: BTreeMap<String, u32> =
            serde_json::from_str(r#"{"b/c":2,"a":1,"b-d":3}"#).unwrap();
        assert_eq!(sorted, inserted);
        assert_eq!(shuffled, inserted);
        assert_eq!(parse(r#"{"files":{}}"#).unwrap(), BTreeMap::new());
    }

    #[test]
    fn a_duplicate_key_keeps_the_last_value_and_bad_input_fails() {
        let map = parse(r#"{"files":{"a":1,"b":2,"a":3}}"#).unwrap();
        assert_eq!(map.get("a"), Some(&3));
        assert_eq!(map.len(), 2);
        assert!(parse(r#"{"files":["a"]}"#).is_err());
        assert!(parse(r#"{"files":{"a":"x"}}"#).is_err());
    }
}
