//! The sharded remote index (format 2): a small root naming immutable shards.
//!
//! Model: the root (`{prefix}/.datastore-index.json`, the commit point,
//! written last with `If-Match`) has `2^shardBits` slots; each names the body
//! of its shard by hash, or is empty. A file belongs to the slot its *group*
//! hashes to (CRC32): a data item's versions (`data/NAME/@versions/*`) share
//! the group `data/NAME/@versions`, so one shard holds an item; any other
//! file is its own group, so a directory of many files spreads evenly. A
//! shard body (`{"files": {...}}`, sorted) lives at
//! `{prefix}/.datastore-index-shards/{name}.json`, named `{generation}-{hash}`:
//! the generation of the root it was written for and the first 128 bits of
//! its SHA-256. It never changes once written, so a reader never meets a
//! half-replaced shard, and a root names only bodies written before it. Only
//! one root of each generation is ever written (each is conditional on the
//! one before), so a name is never reused, even when content returns to an
//! earlier state: deleting an old name can never remove a shard that a newer
//! root names. A shard is trusted only if its bytes hash to its name and
//! every path in it belongs to its slot.
//!
//! Replaced shards are not deleted at once (that would cost every change a
//! request): the root lists them as `garbage`, and the write that brings the
//! list to `GARBAGE_BATCH` deletes them after its root is written.
//!
//! Format 1 (one object listing every file, `sync_index.rs`) is still read;
//! every index write writes format 2.

use crate::domain::data_read::VERSIONS_DIR;
use crate::domain::sync_index::{validate_entries, IndexEntry, IndexError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The format number of a sharded index's root.
pub const SHARDED_FORMAT: u32 = 2;
/// The directory of shard bodies under the prefix. It sorts before the root
/// (`-` < `.`), so the lock's listing can start after it and skip them.
pub const SHARDS_DIR: &str = ".datastore-index-shards";
/// The most slots a writer creates (512).
pub const MAX_SHARD_BITS: u8 = 9;
/// The most slots a reader accepts (a root from a future writer may use more).
const READ_MAX_SHARD_BITS: u8 = 16;
/// How many files a shard holds at most, on average, before a writer that
/// may reshard doubles the slots.
const FILES_PER_SHARD: usize = 256;
/// How many replaced shards the root lists before a writer deletes them.
pub const GARBAGE_BATCH: usize = 32;

/// The root of a sharded index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexRoot {
    /// Always `SHARDED_FORMAT`.
    pub format: u32,
    /// The repo whose datastore this is (see `RemoteIndex::repo_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_id: Option<String>,
    /// Grows by one with every index write (see `RemoteIndex::generation`).
    #[serde(default)]
    pub generation: u64,
    /// `log2` of the number of slots.
    pub shard_bits: u8,
    /// Per slot, the name of its shard body; `""` for an empty slot.
    pub shards: Vec<String>,
    /// Shards replaced by earlier roots, not deleted yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub garbage: Vec<String>,
    /// Always empty. A swamp from before format 2 requires `files` before it
    /// checks the format: with it there, it says "format 2 … upgrade swamp"
    /// instead of "corrupt … run repair".
    #[serde(default)]
    pub files: serde_json::Map<String, serde_json::Value>,
}

/// A shard body as stored.
#[derive(Serialize, Deserialize)]
struct ShardBody<E> {
    files: E,
}

/// A shard body ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedShard {
    /// Its name: `{generation}-{hash}`.
    pub name: String,
    /// The hash part of the name.
    pub hash: String,
    /// The body.
    pub bytes: Vec<u8>,
}

/// What one index write produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRoot {
    /// The root to write.
    pub root: IndexRoot,
    /// The shards to upload before it (new names only).
    pub bodies: Vec<EncodedShard>,
    /// The shards to delete after it is written (the garbage it cleared).
    pub collect: Vec<String>,
}

impl IndexRoot {
    /// Parses and validates root bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, IndexError> {
        let root: IndexRoot =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Corrupt(e.to_string()))?;
        if root.format != SHARDED_FORMAT {
            return Err(IndexError::Format(root.format));
        }
        if let Some(id) = &root.repo_id {
            uuid::Uuid::parse_str(id)
                .map_err(|_| IndexError::Corrupt(format!("repoId '{id}' is not a UUID")))?;
        }
        if !root.files.is_empty() {
            return Err(IndexError::Corrupt(
                "a sharded index root lists files".into(),
            ));
        }
        if root.shard_bits > READ_MAX_SHARD_BITS || root.shards.len() != 1 << root.shard_bits {
            return Err(IndexError::Corrupt(format!(
                "the root names {} shards for shardBits {}",
                root.shards.len(),
                root.shard_bits
            )));
        }
        if let Some(bad) = root
            .shards
            .iter()
            .filter(|h| !h.is_empty())
            .chain(&root.garbage)
            .find(|h| hash_part(h).is_none())
        {
            return Err(IndexError::Corrupt(format!("'{bad}' is not a shard name")));
        }
        Ok(root)
    }

    /// Serializes the root.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The shard bodies the root names.
    pub fn named(&self) -> HashSet<&str> {
        self.shards
            .iter()
            .filter(|h| !h.is_empty())
            .map(String::as_str)
            .collect()
    }
}

/// The hash part of a shard name (`{generation}-{32 lowercase hex}`), if it
/// has that shape.
fn hash_part(name: &str) -> Option<&str> {
    let (generation, hash) = name.split_once('-')?;
    let generation_ok = !generation.is_empty()
        && generation.len() <= 20
        && generation.bytes().all(|b| b.is_ascii_digit());
    let hash_ok = hash.len() == 32 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (generation_ok && hash_ok).then_some(hash)
}

/// The key of shard `name` relative to the prefix.
pub fn shard_rel(name: &str) -> String {
    format!("{SHARDS_DIR}/{name}.json")
}

/// Whether `rel` (a key under the prefix) is a shard body: never a datastore file.
pub fn is_shard_key(rel: &str) -> bool {
    rel.strip_prefix(SHARDS_DIR)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The group of a datastore path: what decides its slot.
pub fn group_of(path: &str) -> &str {
    let marker = format!("/{VERSIONS_DIR}/");
    match path.find(&marker) {
        Some(at) => &path[..at + marker.len() - 1],
        None => path,
    }
}

/// The slot of the group `group` among `2^bits`.
pub fn slot_of_group(group: &str, bits: u8) -> usize {
    match bits {
        0 => 0,
        bits => (crc32fast::hash(group.as_bytes()) >> (32 - u32::from(bits))) as usize,
    }
}

/// The slot of the datastore path `path` among `2^bits`.
pub fn slot_of(path: &str, bits: u8) -> usize {
    slot_of_group(group_of(path), bits)
}

/// The number of slot bits for `files` files: the fewest that keep shards
/// at `FILES_PER_SHARD` files or fewer on average, up to `MAX_SHARD_BITS`.
pub fn bits_for(files: usize) -> u8 {
    let mut bits = 0;
    while bits < MAX_SHARD_BITS && files >> bits > FILES_PER_SHARD {
        bits += 1;
    }
    bits
}

/// The bits a writer uses: the base's (so unchanged shards stay unchanged),
/// unless there is none or `may_reshard` and it is 4× off the ideal.
pub fn bits_to_write(files: usize, base: Option<&IndexRoot>, may_reshard: bool) -> u8 {
    let ideal = bits_for(files);
    match base {
        Some(base) if !may_reshard || base.shard_bits.abs_diff(ideal) < 2 => base.shard_bits,
        _ => ideal,
    }
}

/// The name of shard bytes.
pub fn hash_of(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    hex::encode(&digest.as_ref()[..16])
}

/// Encodes the entries of one slot: its bytes and hash; `None` when there
/// are none.
fn encode(files: &BTreeMap<&str, &IndexEntry>) -> Option<(Vec<u8>, String)> {
    if files.is_empty() {
        return None;
    }
    let bytes = serde_json::to_vec(&ShardBody { files }).unwrap_or_default();
    let hash = hash_of(&bytes);
    Some((bytes, hash))
}

/// The root for `files`, with generation `generation`, written onto `base`.
///
/// `covered`, when given, lists the slots `files` is complete for (the rest
/// were never loaded): those keep `base`'s shards, and `bits` must be
/// `base`'s. Without it `files` is the whole index. A slot whose content is
/// `base`'s keeps its name; the others get new ones. What `base` named and
/// the new root does not joins the garbage.
pub fn build_root(
    files: &BTreeMap<String, IndexEntry>,
    bits: u8,
    base: Option<&IndexRoot>,
    covered: Option<&[bool]>,
    repo_id: Option<String>,
    generation: u64,
) -> BuiltRoot {
    let slots = 1usize << bits;
    let same_slots = base.filter(|b| b.shard_bits == bits);
    let mut by_slot: Vec<BTreeMap<&str, &IndexEntry>> = vec![BTreeMap::new(); slots];
    for (path, entry) in files {
        by_slot[slot_of(path, bits)].insert(path, entry);
    }
    let mut shards = Vec::with_capacity(slots);
    let mut bodies = Vec::new();
    for (slot, entries) in by_slot.iter().enumerate() {
        let before = same_slots
            .and_then(|b| b.shards.get(slot))
            .cloned()
            .unwrap_or_default();
        if covered.is_some_and(|c| !c.get(slot).copied().unwrap_or(false)) {
            shards.push(before);
            continue;
        }
        match encode(entries) {
            None => shards.push(String::new()),
            Some((_, hash)) if hash_part(&before) == Some(hash.as_str()) => shards.push(before),
            Some((bytes, hash)) => {
                let name = format!("{generation}-{hash}");
                shards.push(name.clone());
                bodies.push(EncodedShard { name, hash, bytes });
            }
        }
    }
    let named: HashSet<&str> = shards.iter().map(String::as_str).collect();
    let mut garbage: Vec<String> = base.map(|b| b.garbage.clone()).unwrap_or_default();
    if let Some(base) = base {
        for old in base.shards.iter().filter(|h| !h.is_empty()) {
            if !named.contains(old.as_str()) && !garbage.contains(old) {
                garbage.push(old.clone());
            }
        }
    }
    garbage.retain(|g| !named.contains(g.as_str()));
    let collect = match garbage.len() >= GARBAGE_BATCH {
        true => std::mem::take(&mut garbage),
        false => Vec::new(),
    };
    let root = IndexRoot {
        format: SHARDED_FORMAT,
        repo_id,
        generation,
        shard_bits: bits,
        shards,
        garbage,
        files: serde_json::Map::new(),
    };
    BuiltRoot {
        root,
        bodies,
        collect,
    }
}

/// Parses the body of slot `slot` (of `2^bits`) that the root names `name`:
/// its bytes must hash to that name, and every path in it must be valid and
/// belong to the slot (a shard cannot smuggle in entries of another).
pub fn parse_shard(
    bytes: &[u8],
    name: &str,
    slot: usize,
    bits: u8,
) -> Result<BTreeMap<String, IndexEntry>, IndexError> {
    if hash_part(name) != Some(hash_of(bytes).as_str()) {
        return Err(IndexError::Corrupt(format!(
            "shard {name} does not match its name"
        )));
    }
    #[derive(Deserialize)]
    struct Sorted {
        #[serde(deserialize_with = "crate::domain::sorted_map::deserialize")]
        files: BTreeMap<String, IndexEntry>,
    }
    let body: Sorted = serde_json::from_slice(bytes)
        .map_err(|e| IndexError::Corrupt(format!("shard {name}: {e}")))?;
    validate_entries(&body.files)?;
    if let Some(stray) = body.files.keys().find(|p| slot_of(p, bits) != slot) {
        return Err(IndexError::Corrupt(format!(
            "shard {name} lists '{stray}', which belongs to another shard"
        )));
    }
    Ok(body.files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> IndexEntry {
        IndexEntry {
            size: u64::from(n),
            sha256: format!("{:064x}", n).parse().unwrap(),
            parts: None,
        }
    }

    fn files(paths: &[&str]) -> BTreeMap<String, IndexEntry> {
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), entry(i as u8)))
            .collect()
    }

    fn build(
        files: &BTreeMap<String, IndexEntry>,
        bits: u8,
        base: Option<&IndexRoot>,
        generation: u64,
    ) -> BuiltRoot {
        build_root(files, bits, base, None, None, generation)
    }

    /// Reassembles the files of `root` from `bodies`.
    fn load(root: &IndexRoot, bodies: &[EncodedShard]) -> BTreeMap<String, IndexEntry> {
        let mut all = BTreeMap::new();
        for (slot, name) in root.shards.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let body = bodies.iter().find(|b| &b.name == name).unwrap();
            all.extend(parse_shard(&body.bytes, name, slot, root.shard_bits).unwrap());
        }
        all
    }

    #[test]
    fn groups_keep_an_items_versions_together() {
        let rows = [
            (
                "data/app/config/@versions/1.bin",
                "data/app/config/@versions",
            ),
            (
                "data/app/config/@versions/1.json",
                "data/app/config/@versions",
            ),
            ("data/app/config/@versions", "data/app/config/@versions"),
            ("outputs/run/1.log", "outputs/run/1.log"),
            ("top", "top"),
        ];
        for (path, group) in rows {
            assert_eq!(group_of(path), group, "{path}");
        }
        assert_eq!(
            slot_of("data/a/@versions/1.bin", 9),
            slot_of("data/a/@versions/7.json", 9)
        );
    }

    #[test]
    fn bits_grow_with_the_files_and_stop_at_the_most() {
        let rows = [
            (0, 0),
            (256, 0),
            (257, 1),
            (2_000, 3),
            (100_000, 9),
            (10_000_000, 9),
        ];
        for (files, bits) in rows {
            assert_eq!(bits_for(files), bits, "{files}");
        }
        let base = |bits| IndexRoot {
            format: 2,
            repo_id: None,
            generation: 1,
            shard_bits: bits,
            shards: vec![String::new(); 1 << bits],
            garbage: Vec::new(),
            files: serde_json::Map::new(),
        };
        // A scoped writer keeps the base's slots; a whole writer reshards
        // only when they are 4x off.
        assert_eq!(bits_to_write(100_000, Some(&base(3)), false), 3);
        assert_eq!(bits_to_write(100_000, Some(&base(8)), true), 8);
        assert_eq!(bits_to_write(100_000, Some(&base(3)), true), 9);
        assert_eq!(bits_to_write(2_000, None, false), 3);
    }

    #[test]
    fn a_root_and_its_shards_round_trip() {
        let all = files(&[
            "data/a/@versions/1.bin",
            "data/a/@versions/1.json",
            "outputs/x",
            "outputs/y",
            "z",
        ]);
        for bits in [0, 1, 3, 9] {
            let built = build(&all, bits, None, 4);
            assert_eq!(IndexRoot::parse(&built.root.to_json()).unwrap(), built.root);
            assert_eq!(load(&built.root, &built.bodies), all, "bits {bits}");
            assert!(built.bodies.len() <= all.len());
            assert!(built.bodies.iter().all(|b| b.name.starts_with("4-")));
        }
    }

    #[test]
    fn a_change_rewrites_only_its_shard_and_its_old_shard_becomes_garbage() {
        let mut all: BTreeMap<String, IndexEntry> = (0..2_000)
            .map(|i| (format!("d{}/f{i}", i % 100), entry((i % 250) as u8)))
            .collect();
        let bits = bits_for(all.len());
        let before = build(&all, bits, None, 1).root;
        all.insert("d7/f7".into(), entry(251));
        let after = build(&all, bits, Some(&before), 2);
        assert_eq!(after.bodies.len(), 1, "one shard changed");
        let slot = slot_of("d7/f7", bits);
        assert_eq!(after.root.shards[slot], after.bodies[0].name);
        assert!(after.bodies[0].name.starts_with("2-"));
        for s in (0..1 << bits).filter(|s| *s != slot) {
            assert_eq!(after.root.shards[s], before.shards[s], "slot {s} kept");
        }
        assert_eq!(after.root.garbage, vec![before.shards[slot].clone()]);
        assert!(after.collect.is_empty());
        // Content back to an earlier state gets a new name, never the old one.
        all.insert("d7/f7".into(), entry(7));
        let back = build(&all, bits, Some(&after.root), 3);
        assert_ne!(back.root.shards[slot], before.shards[slot]);
        assert!(back.root.shards[slot].starts_with("3-"));
    }

    #[test]
    fn garbage_is_collected_in_batches() {
        let mut all = files(&["a"]);
        let mut root = build(&all, 0, None, 1).root;
        let mut collected = Vec::new();
        for generation in 2..(GARBAGE_BATCH as u64 + 10) {
            all.insert("a".into(), entry(generation as u8));
            let built = build(&all, 0, Some(&root), generation);
            assert!(built.root.garbage.len() < GARBAGE_BATCH);
            assert!(!built.root.garbage.contains(&built.root.shards[0]));
            if !built.collect.is_empty() {
                assert_eq!(built.collect.len(), GARBAGE_BATCH);
                assert!(built.root.garbage.is_empty());
                collected.push(generation);
            }
            root = built.root;
        }
        assert_eq!(collected, vec![GARBAGE_BATCH as u64 + 1]);
    }

    #[test]
    fn uncovered_slots_keep_the_bases_shards() {
        let all = files(&["a", "b", "c", "d", "e", "f"]);
        let base = build(&all, 3, None, 1).root;
        let slot = slot_of("a", 3);
        let mut covered = vec![false; 8];
        covered[slot] = true;
        // Only slot `slot` loaded, with `a` changed.
        let loaded: BTreeMap<String, IndexEntry> = all
            .iter()
            .filter(|(k, _)| slot_of(k, 3) == slot)
            .map(|(k, v)| (k.clone(), if k == "a" { entry(99) } else { v.clone() }))
            .collect();
        let built = build_root(&loaded, 3, Some(&base), Some(&covered), None, 2);
        for s in 0..8 {
            assert_eq!(
                built.root.shards[s] == base.shards[s],
                s != slot,
                "slot {s}"
            );
        }
        assert_eq!(built.bodies.len(), 1);
    }

    #[test]
    fn bad_roots_and_shards_are_refused() {
        let bad_roots: [&[u8]; 6] = [
            b"{",
            br#"{"format":2,"shardBits":1,"shards":[""]}"#,
            br#"{"format":2,"shardBits":0,"shards":["../../x"]}"#,
            br#"{"format":2,"shardBits":0,"shards":["0123456789abcdef0123456789abcdef"]}"#,
            br#"{"format":2,"shardBits":0,"shards":[""],"repoId":"x"}"#,
            br#"{"format":2,"shardBits":40,"shards":[]}"#,
        ];
        for bytes in bad_roots {
            assert!(
                matches!(IndexRoot::parse(bytes), Err(IndexError::Corrupt(_))),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert!(matches!(
            IndexRoot::parse(br#"{"format":3,"shardBits":0,"shards":[""]}"#),
            Err(IndexError::Format(3))
        ));
        let all = files(&["a", "b", "c", "d"]);
        let built = build(&all, 1, None, 1);
        let body = &built.bodies[0];
        let slot = built
            .root
            .shards
            .iter()
            .position(|h| *h == body.name)
            .unwrap();
        assert!(parse_shard(&body.bytes, &body.name, slot, 1).is_ok());
        // Bytes that do not hash to the name.
        let mut tampered = body.bytes.clone();
        tampered.push(b' ');
        assert!(parse_shard(&tampered, &body.name, slot, 1).is_err());
        // A body in the wrong slot.
        assert!(parse_shard(&body.bytes, &body.name, 1 - slot, 1).is_err());
        // An unsafe path, correctly named.
        let evil = br#"{"files":{"../x":{"size":1,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}}}"#;
        assert!(matches!(
            parse_shard(evil, &format!("1-{}", hash_of(evil)), 0, 0),
            Err(IndexError::UnsafeKey(_))
        ));
    }

    #[test]
    fn a_reader_of_format_1_only_is_told_to_upgrade() {
        let root = build(&files(&["a"]), 0, None, 1).root;
        // What a swamp from before format 2 did: parse as a whole index,
        // then check the format.
        assert!(matches!(
            crate::domain::sync_index::RemoteIndex::parse(&root.to_json()),
            Err(IndexError::Format(2))
        ));
    }

    #[test]
    fn shard_keys_are_recognized() {
        assert!(is_shard_key(&shard_rel(&format!("7-{}", "a".repeat(32)))));
        assert!(!is_shard_key(".datastore-index.json"));
        assert!(!is_shard_key(".datastore-index-shardsX/a"));
        // The lock's listing starts after every shard and before the root.
        let after = format!("{SHARDS_DIR}/~");
        assert!(shard_rel(&format!("{}-{}", u64::MAX, "f".repeat(32))) < after);
        assert!(crate::domain::sync_index::INDEX_KEY > after.as_str());
    }
}
