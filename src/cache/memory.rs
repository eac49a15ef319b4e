//! The memory tier: a byte-budgeted cache, sharded so that concurrent hits on different
//! keys rarely contend for one lock. The budget is a hard bound on what entries are
//! charged ([`Entry::memory_charge`]: bodies plus an estimate of the rest):
//! each shard owns an equal slice of it and evicts before an insert could exceed it.
//!
//! Eviction is second-chance (CLOCK) over insertion order rather than strict LRU: a hit
//! only sets its slot's `referenced` flag, instead of relinking the entry at the head
//! of a list. On a large index a relink writes two more cold neighbours per hit; the
//! flag lives in the slot the lookup has already read. An eviction takes the oldest
//! slot; if it was hit since it last came round, it is cleared and moved to the head
//! (its second chance) and the next oldest is tried, at most `SECOND_CHANCES` (64) times
//! per insert, so that an insert is never a walk over the whole shard.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;

use super::Entry;
use super::key::CacheKey;

const SHARDS: usize = 16;

/// Referenced slots one insert may pass over before it evicts the oldest regardless.
const SECOND_CHANCES: usize = 64;

/// Byte-budgeted, sharded cache of entries whose bodies are all in memory.
pub struct MemoryTier {
    shards: Box<[Mutex<Shard>]>,
    shard_budget: u64,
    max_entry: u64,
    hasher: std::collections::hash_map::RandomState,
    evictions: AtomicU64,
}

struct Shard {
    /// Slots oldest-first; only inserts and evictions reorder it.
    lru: LruCache<CacheKey, Slot>,
    /// What its entries are charged ([`Entry::memory_charge`]), against the budget.
    bytes: u64,
    /// Their body bytes.
    body: u64,
}

struct Slot {
    entry: Arc<Entry>,
    /// Hit since the clock hand last passed it.
    referenced: bool,
}

impl Shard {
    /// Stops counting `old`, just taken out of the LRU.
    fn release(&mut self, old: &Entry) {
        self.bytes -= old.memory_charge();
        self.body -= old.memory_bytes();
    }
}

impl MemoryTier {
    /// A tier holding at most `budget` body bytes, and no entry larger than
    /// `object_max` (`[cache] memory_object_max`: bigger objects stay on disk only).
    pub fn new(budget: u64, object_max: u64) -> Self {
        Self::with_shards(budget, object_max, SHARDS)
    }

    /// [`Self::new`] with `count` shards, each owning `budget / count`.
    fn with_shards(budget: u64, object_max: u64, count: usize) -> Self {
        let shards = (0..count)
            .map(|_| {
                Mutex::new(Shard {
                    lru: LruCache::unbounded(),
                    bytes: 0,
                    body: 0,
                })
            })
            .collect();
        MemoryTier {
            shards,
            shard_budget: budget / count as u64,
            max_entry: object_max.min(budget / count as u64),
            hasher: Default::default(),
            evictions: AtomicU64::new(0),
        }
    }

    /// The largest entry this tier can hold.
    pub fn max_entry(&self) -> u64 {
        self.max_entry
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % self.shards.len()]
    }

    /// The entry for `key` (a [`CacheKey`] or its text), marking it used (it survives
    /// the next eviction pass).
    pub fn get<Q>(&self, key: &Q) -> Option<Arc<Entry>>
    where
        CacheKey: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(key).lock().expect("memory shard poisoned");
        let slot = shard.lru.peek_mut(key)?;
        // Written only when it changes: a hot entry's slot stays a clean cache line.
        if !slot.referenced {
            slot.referenced = true;
        }
        Some(slot.entry.clone())
    }

    /// The entry for `key` without marking it used.
    pub fn peek<Q>(&self, key: &Q) -> Option<Arc<Entry>>
    where
        CacheKey: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard(key).lock().expect("memory shard poisoned");
        shard.lru.peek(key).map(|slot| slot.entry.clone())
    }

    /// Stores `entry`, evicting the oldest unused entries of its shard as needed.
    /// Returns false (and stores nothing) when the entry exceeds [`Self::max_entry`] or
    /// has bodies on disk without holding their files open (see `Cache::lookup`).
    pub fn insert(&self, entry: Arc<Entry>) -> bool {
        self.insert_if(entry, || true)
    }

    /// [`Self::insert`], only if `still_current` holds when checked under the shard lock
    /// (a promotion from disk must not overwrite a newer entry stored meanwhile).
    pub fn insert_if(&self, entry: Arc<Entry>, still_current: impl FnOnce() -> bool) -> bool {
        let cost = entry.memory_charge();
        if entry.memory_bytes() > self.max_entry || !(entry.in_memory() || entry.blobs.is_some()) {
            self.remove(&entry.key);
            return false;
        }
        let mut victims = Vec::new();
        {
            let mut shard = self
                .shard(&entry.key)
                .lock()
                .expect("memory shard poisoned");
            if !still_current() {
                return false;
            }
            if let Some(old) = shard.lru.pop(&entry.key) {
                shard.release(&old.entry);
                victims.push(old.entry);
            }
            let mut chances = SECOND_CHANCES;
            while shard.bytes + cost > self.shard_budget {
                match shard.lru.pop_lru() {
                    Some((key, mut slot)) if slot.referenced && chances > 0 => {
                        chances -= 1;
                        slot.referenced = false;
                        shard.lru.put(key, slot);
                    }
                    Some((_, old)) => {
                        shard.release(&old.entry);
                        self.evictions.fetch_add(1, Ordering::Relaxed);
                        victims.push(old.entry);
                    }
                    None => break,
                }
            }
            shard.bytes += cost;
            shard.body += entry.memory_bytes();
            let key = entry.key.clone();
            shard.lru.put(
                key,
                Slot {
                    entry,
                    referenced: false,
                },
            );
        }
        // Victims are dropped here, outside the lock.
        drop(victims);
        true
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        CacheKey: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let removed = {
            let mut shard = self.shard(key).lock().expect("memory shard poisoned");
            let removed = shard.lru.pop(key);
            if let Some(old) = &removed {
                shard.release(&old.entry);
            }
            removed
        };
        removed.is_some()
    }

    /// Removes `key` if its entry satisfies `pred`; returns whether it did.
    pub fn remove_if<Q>(&self, key: &Q, pred: impl FnOnce(&Entry) -> bool) -> bool
    where
        CacheKey: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let removed = {
            let mut shard = self.shard(key).lock().expect("memory shard poisoned");
            if !shard.lru.peek(key).is_some_and(|slot| pred(&slot.entry)) {
                return false;
            }
            let removed = shard.lru.pop(key);
            if let Some(old) = &removed {
                shard.release(&old.entry);
            }
            removed
        };
        removed.is_some()
    }

    /// Removes every entry whose key starts with `prefix`; returns their keys.
    pub fn remove_prefix(&self, prefix: &str) -> Vec<CacheKey> {
        let mut removed = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().expect("memory shard poisoned");
            let doomed: Vec<CacheKey> = shard
                .lru
                .iter()
                .filter(|(k, _)| k.as_str().starts_with(prefix))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if let Some(old) = shard.lru.pop(&k) {
                    shard.release(&old.entry);
                    removed.push(k);
                }
            }
        }
        removed
    }

    /// Removes every entry for which `pred` holds; returns how many.
    pub fn remove_where(&self, mut pred: impl FnMut(&Entry) -> bool) -> usize {
        let mut n = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().expect("memory shard poisoned");
            let doomed: Vec<CacheKey> = shard
                .lru
                .iter()
                .filter(|(_, slot)| pred(&slot.entry))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if let Some(old) = shard.lru.pop(&k) {
                    shard.release(&old.entry);
                    n += 1;
                }
            }
        }
        n
    }

    /// Body bytes currently held.
    pub fn bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().expect("memory shard poisoned").body)
            .sum()
    }

    /// Bytes charged against the budget: bodies plus estimated overhead.
    pub fn charged(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().expect("memory shard poisoned").bytes)
            .sum()
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("memory shard poisoned").lru.len())
            .sum()
    }

    /// Whether the tier holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries evicted for space since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{key, meta_for};
    use crate::cache::{Body, Entry};
    use bytes::Bytes;

    fn entry(path: &str) -> Arc<Entry> {
        let body = [b'x'; 100];
        let bodies = vec![Body::Memory(Bytes::copy_from_slice(&body))];
        Arc::new(Entry::new(key(path), meta_for(&[&body]), bodies))
    }

    fn holds(tier: &MemoryTier, path: &str) -> bool {
        tier.peek(&key(path)).is_some()
    }

    /// A tier of one shard with room for exactly `n` test entries.
    fn tier_for(n: u64) -> MemoryTier {
        let charge = entry("/probe").memory_charge();
        MemoryTier::with_shards(charge * n + charge / 2, 1 << 20, 1)
    }

    #[test]
    fn an_entry_hit_since_the_hand_passed_survives_and_an_unused_one_goes() {
        let tier = tier_for(3);
        for path in ["/a", "/b", "/c"] {
            assert!(tier.insert(entry(path)));
        }
        // "/a" is the oldest, but it was hit: "/b" goes instead.
        assert!(tier.get(&key("/a")).is_some());
        assert!(tier.insert(entry("/d")));
        assert!(holds(&tier, "/a") && !holds(&tier, "/b"));
        assert!(holds(&tier, "/c") && holds(&tier, "/d"));
        // Its chance is spent: unless hit again, "/a" is next after "/c".
        assert!(tier.insert(entry("/e")));
        assert!(!holds(&tier, "/c") && holds(&tier, "/a"));
        assert!(tier.insert(entry("/f")));
        assert!(!holds(&tier, "/a"));
        assert_eq!(tier.len(), 3);
        assert_eq!(tier.evictions(), 3);
    }

    #[test]
    fn peeking_does_not_count_as_use() {
        let tier = tier_for(2);
        assert!(tier.insert(entry("/a")));
        assert!(tier.insert(entry("/b")));
        assert!(tier.peek(&key("/a")).is_some());
        assert!(tier.insert(entry("/c")));
        assert!(!holds(&tier, "/a") && holds(&tier, "/b") && holds(&tier, "/c"));
    }

    #[test]
    fn when_every_entry_was_hit_an_insert_still_evicts_and_keeps_the_budget() {
        let tier = tier_for(100);
        for i in 0..100 {
            let path = format!("/{i}");
            assert!(tier.insert(entry(&path)));
            assert!(tier.get(&key(&path)).is_some());
        }
        let budget = tier.shard_budget;
        assert!(tier.insert(entry("/new")));
        assert!(tier.charged() <= budget);
        assert_eq!(tier.len(), 100);
        assert!(holds(&tier, "/new"));
        // Past the bounded scan the oldest went although it was hit.
        assert!(!holds(&tier, &format!("/{SECOND_CHANCES}")));
        assert!(holds(&tier, "/0"));
    }
}
