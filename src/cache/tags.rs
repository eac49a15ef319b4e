//! The surrogate-key (tag) index, so that a tag purge touches only the entries that
//! carry the tag instead of scanning every entry.
//!
//! Two halves, because entries live in two places:
//!
//! - On disk, the redb table [`TAGS`] holds one `(tag, key)` row per tag of every
//!   committed entry. The disk index writer adds and removes these rows in the same
//!   transaction as the entry itself (store, removal, eviction), so the table is exact
//!   for what the disk holds and survives restarts.
//! - In memory, [`TagIndex`] maps tags to the keys that entered the memory tier (stored,
//!   revalidated or promoted from disk), which covers entries the disk has not
//!   committed yet or no longer holds (memory only, skipped writes, evicted from disk
//!   but still in memory). It may name keys that are gone — a purge of a gone key is a no-op — and
//!   each of its shards is pruned to the keys still in the memory tier whenever it has
//!   doubled in size (off the request path), so it stays proportional to the memory
//!   tier. A key pruned while its disk write is still queued is found in the disk table
//!   once the queue is flushed, which a tag purge does first.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::{Mutex, MutexGuard};

use redb::{Database, ReadableDatabase as _, ReadableTable as _, Table, TableDefinition};

use super::key::CacheKey;

/// `(tag, key)` → nothing: the tags of every entry in the disk index.
pub(super) const TAGS: TableDefinition<(&str, &str), ()> = TableDefinition::new("tags");

/// Purge state persisted beside the index: [`SOFT_BEFORE`].
pub(super) const PURGE_STATE: TableDefinition<&str, u64> = TableDefinition::new("purge_state");

/// Entries validated at or before this Unix second are stale (a soft purge of
/// everything).
pub(super) const SOFT_BEFORE: &str = "soft_before";

/// Shards of the in-memory index.
const SHARDS: usize = 16;

/// Smallest size at which a shard of the in-memory index is pruned.
const MIN_PRUNE: usize = 1024;

/// Records the tags of `key` (a new or replaced entry) in the disk index.
pub(super) fn index(
    table: &mut Table<'_, (&'static str, &'static str), ()>,
    key: &str,
    tags: &[String],
) -> Result<(), redb::Error> {
    for tag in tags {
        table.insert((tag.as_str(), key), ())?;
    }
    Ok(())
}

/// Forgets the tags of `key` (a removed or replaced entry) in the disk index.
pub(super) fn unindex(
    table: &mut Table<'_, (&'static str, &'static str), ()>,
    key: &str,
    tags: &[String],
) -> Result<(), redb::Error> {
    for tag in tags {
        table.remove((tag.as_str(), key))?;
    }
    Ok(())
}

/// The keys of committed entries tagged `tag`: one range read, O(log n + matches).
pub(super) fn keys_with_tag(db: &Database, tag: &str) -> Result<Vec<CacheKey>, redb::Error> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(TAGS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut keys = Vec::new();
    for row in table.range::<(&str, &str)>((tag, "")..)? {
        let (k, _) = row?;
        let (t, key) = k.value();
        if t != tag {
            break;
        }
        keys.push(CacheKey::from_stored(key.to_owned()));
    }
    Ok(keys)
}

/// Reads the persisted soft-purge-all time (0 when none).
pub(super) fn load_soft_before(db: &Database) -> Result<u64, redb::Error> {
    let txn = db.begin_read()?;
    match txn.open_table(PURGE_STATE) {
        Ok(t) => Ok(t.get(SOFT_BEFORE)?.map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Persists the soft-purge-all time in its own transaction, committed durably.
pub(super) fn store_soft_before(db: &Database, secs: u64) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(PURGE_STATE)?;
        let old = table.get(SOFT_BEFORE)?.map_or(0, |v| v.value());
        table.insert(SOFT_BEFORE, old.max(secs))?;
    }
    txn.commit()?;
    Ok(())
}

/// Tags → keys of the entries this process stored, sharded by key so that adding a
/// key or pruning one shard never holds up the others for long.
pub(super) struct TagIndex {
    shards: Box<[Mutex<Tags>]>,
    hasher: RandomState,
}

#[derive(Default)]
struct Tags {
    by_tag: HashMap<Box<str>, HashSet<CacheKey>>,
    by_key: HashMap<CacheKey, Box<[Box<str>]>>,
    /// Size at which [`TagIndex::add`] asks for a prune of this shard.
    prune_at: usize,
}

impl Tags {
    fn forget(&mut self, key: &CacheKey) {
        let Some(tags) = self.by_key.remove(key) else {
            return;
        };
        for tag in tags.iter() {
            if let Some(keys) = self.by_tag.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
    }
}

impl Default for TagIndex {
    fn default() -> Self {
        TagIndex {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl TagIndex {
    fn shard_of(&self, key: &CacheKey) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Tags> {
        self.shards[shard].lock().expect("tag index poisoned")
    }

    /// Records that `key` now carries `tags` (replacing what it carried). Returns the
    /// shard to [`Self::prune`] when it has grown enough to be worth pruning.
    pub(super) fn add(&self, key: &CacheKey, tags: &[String]) -> Option<usize> {
        let shard = self.shard_of(key);
        let mut t = self.lock(shard);
        t.forget(key);
        if tags.is_empty() {
            return None;
        }
        let boxed: Box<[Box<str>]> = tags.iter().map(|s| s.as_str().into()).collect();
        for tag in boxed.iter() {
            t.by_tag.entry(tag.clone()).or_default().insert(key.clone());
        }
        t.by_key.insert(key.clone(), boxed);
        let due = t.by_key.len() >= t.prune_at.max(MIN_PRUNE);
        if due {
            // Until the prune has run, do not ask again.
            t.prune_at = usize::MAX;
        }
        due.then_some(shard)
    }

    /// Forgets `key`.
    pub(super) fn remove(&self, key: &CacheKey) {
        self.lock(self.shard_of(key)).forget(key);
    }

    /// The keys recorded with `tag`.
    pub(super) fn keys(&self, tag: &str) -> Vec<CacheKey> {
        let mut keys = Vec::new();
        for shard in 0..SHARDS {
            if let Some(k) = self.lock(shard).by_tag.get(tag) {
                keys.extend(k.iter().cloned());
            }
        }
        keys
    }

    /// Forgets every key.
    pub(super) fn clear(&self) {
        for shard in 0..SHARDS {
            let mut t = self.lock(shard);
            t.by_tag.clear();
            t.by_key.clear();
            t.prune_at = 0;
        }
    }

    /// Keeps only the keys of `shard` for which `keep` holds; its next prune is due
    /// when it has doubled from what is left.
    pub(super) fn prune(&self, shard: usize, mut keep: impl FnMut(&CacheKey) -> bool) {
        let mut t = self.lock(shard);
        let doomed: Vec<CacheKey> = t.by_key.keys().filter(|k| !keep(k)).cloned().collect();
        for key in &doomed {
            t.forget(key);
        }
        t.prune_at = t.by_key.len() * 2;
    }

    /// Keys recorded.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).by_key.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> CacheKey {
        CacheKey::new("s", "h", path)
    }

    #[test]
    fn a_replaced_entry_keeps_only_its_new_tags() {
        let index = TagIndex::default();
        index.add(&key("/a"), &["x".into(), "y".into()]);
        index.add(&key("/b"), &["x".into()]);
        index.add(&key("/a"), &["y".into()]);
        assert_eq!(index.keys("x"), [key("/b")]);
        assert_eq!(index.keys("y"), [key("/a")]);
        index.add(&key("/a"), &[]);
        assert!(index.keys("y").is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn pruning_keeps_what_the_predicate_keeps_and_asks_again_after_doubling() {
        let index = TagIndex::default();
        let mut due = Vec::new();
        for i in 0..(SHARDS * MIN_PRUNE * 2) {
            due.extend(index.add(&key(&format!("/{i}")), &["t".into()]));
        }
        assert!(!due.is_empty(), "prunes are due");
        let shard = due[0];
        // Asked once per shard until it is pruned.
        assert_eq!(due.iter().filter(|s| **s == shard).count(), 1, "{due:?}");
        let before = index.len();
        index.prune(shard, |k| k.path_and_query().len() < 4); // keeps /0 … /99 of it
        let after = index.len();
        assert!(after < before, "{before} -> {after}");
        assert_eq!(index.keys("t").len(), after);
        index.clear();
        assert!(index.keys("t").is_empty());
    }

    #[test]
    fn the_disk_table_finds_exactly_the_keys_of_a_tag() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TAGS).unwrap();
            index(&mut table, "k1", &["a".into(), "ab".into()]).unwrap();
            index(&mut table, "k2", &["a".into()]).unwrap();
            index(&mut table, "k3", &["b".into()]).unwrap();
            unindex(&mut table, "k2", &["a".into()]).unwrap();
        }
        txn.commit().unwrap();
        let found: Vec<String> = keys_with_tag(&db, "a")
            .unwrap()
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect();
        assert_eq!(found, ["k1"]);
        assert!(keys_with_tag(&db, "zz").unwrap().is_empty());
        assert_eq!(load_soft_before(&db).unwrap(), 0);
        store_soft_before(&db, 42).unwrap();
        store_soft_before(&db, 7).unwrap();
        assert_eq!(load_soft_before(&db).unwrap(), 42);
    }
}
