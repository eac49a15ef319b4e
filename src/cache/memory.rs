//! The memory tier: a byte-budgeted LRU, sharded so that concurrent hits on different
//! keys rarely contend for one lock. The budget is a hard bound on what entries are
//! charged ([`Entry::memory_charge`]: bodies plus an estimate of the rest):
//! each shard owns an equal slice of it and evicts its least recently used entries
//! before an insert could exceed that slice.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;

use super::Entry;
use super::key::CacheKey;

const SHARDS: usize = 16;

/// Byte-budgeted, sharded LRU of entries whose bodies are all in memory.
pub struct MemoryTier {
    shards: Box<[Mutex<Shard>]>,
    shard_budget: u64,
    max_entry: u64,
    hasher: std::collections::hash_map::RandomState,
    evictions: AtomicU64,
}

struct Shard {
    lru: LruCache<CacheKey, Arc<Entry>>,
    /// What its entries are charged ([`Entry::memory_charge`]), against the budget.
    bytes: u64,
    /// Their body bytes.
    body: u64,
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
        let shards = (0..SHARDS)
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
            shard_budget: budget / SHARDS as u64,
            max_entry: object_max.min(budget / SHARDS as u64),
            hasher: Default::default(),
            evictions: AtomicU64::new(0),
        }
    }

    /// The largest entry this tier can hold.
    pub fn max_entry(&self) -> u64 {
        self.max_entry
    }

    fn shard(&self, key: &CacheKey) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// The entry for `key`, marking it most recently used.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let mut shard = self.shard(key).lock().expect("memory shard poisoned");
        shard.lru.get(key).cloned()
    }

    /// The entry for `key` without touching recency.
    pub fn peek(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let shard = self.shard(key).lock().expect("memory shard poisoned");
        shard.lru.peek(key).cloned()
    }

    /// Stores `entry`, evicting least recently used entries of its shard as needed.
    /// Returns false (and stores nothing) when the entry exceeds [`Self::max_entry`] or
    /// has bodies on disk.
    pub fn insert(&self, entry: Arc<Entry>) -> bool {
        self.insert_if(entry, || true)
    }

    /// [`Self::insert`], only if `still_current` holds when checked under the shard lock
    /// (a promotion from disk must not overwrite a newer entry stored meanwhile).
    pub fn insert_if(&self, entry: Arc<Entry>, still_current: impl FnOnce() -> bool) -> bool {
        let cost = entry.memory_charge();
        if entry.memory_bytes() > self.max_entry || !entry.in_memory() {
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
                shard.release(&old);
                victims.push(old);
            }
            while shard.bytes + cost > self.shard_budget {
                match shard.lru.pop_lru() {
                    Some((_, old)) => {
                        shard.release(&old);
                        self.evictions.fetch_add(1, Ordering::Relaxed);
                        victims.push(old);
                    }
                    None => break,
                }
            }
            shard.bytes += cost;
            shard.body += entry.memory_bytes();
            shard.lru.put(entry.key.clone(), entry);
        }
        // Victims are dropped here, outside the lock.
        drop(victims);
        true
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&self, key: &CacheKey) -> bool {
        let removed = {
            let mut shard = self.shard(key).lock().expect("memory shard poisoned");
            let removed = shard.lru.pop(key);
            if let Some(old) = &removed {
                shard.release(old);
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
                    shard.release(&old);
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
                .filter(|(_, e)| pred(e))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if let Some(old) = shard.lru.pop(&k) {
                    shard.release(&old);
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
