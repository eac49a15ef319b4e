//! The store: one `Clone` handle over the memory tier, the disk tier and the table of
//! fills in progress. Lookups go memory, then disk; purge-all is a generation bump.

pub mod flight;
pub mod key;
pub mod memory;
pub mod meta;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;

use self::flight::Flights;
use self::key::CacheKey;
use self::memory::MemoryTier;
use self::meta::Meta;

/// A stored response: its metadata and one body per representation.
pub struct Entry {
    /// The key it is stored under.
    pub key: CacheKey,
    /// Status, headers, validators, freshness, representations.
    pub meta: Meta,
    /// Bodies, parallel to `meta.reps`.
    pub bodies: Vec<Body>,
}

/// Where a representation's bytes are.
#[derive(Clone)]
pub enum Body {
    /// Held in memory.
    Memory(Bytes),
}

impl Body {
    /// Bytes this body holds in memory.
    pub fn memory_len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
        }
    }
}

impl Entry {
    /// Body bytes held in memory by this entry (what the memory budget counts).
    pub fn memory_bytes(&self) -> u64 {
        self.bodies.iter().map(Body::memory_len).sum()
    }
}

/// Which tier answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The memory tier.
    Memory,
    /// The disk tier.
    Disk,
}

impl Tier {
    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Disk => "disk",
        }
    }
}

/// A stored entry and the tier it came from.
#[derive(Clone)]
pub struct Hit {
    /// The entry.
    pub entry: Arc<Entry>,
    /// Where it was found.
    pub tier: Tier,
}

/// The result of a lookup at one instant.
pub enum Lookup {
    /// Usable as is.
    Fresh(Hit),
    /// Stored but stale (or soft-purged): revalidate before use, or serve stale where allowed.
    Stale(Hit),
    /// Nothing stored.
    Miss,
}

impl Lookup {
    /// A short name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Lookup::Fresh(_) => "fresh",
            Lookup::Stale(_) => "stale",
            Lookup::Miss => "miss",
        }
    }
}

/// Sizes of the store.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Memory budget in body bytes.
    pub memory: u64,
}

/// The cache handle: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    memory: MemoryTier,
    vary: std::sync::RwLock<std::collections::HashMap<CacheKey, Arc<[String]>>>,
    flights: Flights,
    generation: AtomicU64,
}

impl Cache {
    /// An empty memory-only cache.
    pub fn new(config: CacheConfig) -> Self {
        Cache {
            inner: Arc::new(Inner {
                memory: MemoryTier::new(config.memory),
                vary: Default::default(),
                flights: Flights::default(),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The fills in progress.
    pub fn flights(&self) -> &Flights {
        &self.inner.flights
    }

    /// The memory tier.
    pub fn memory(&self) -> &MemoryTier {
        &self.inner.memory
    }

    /// The current purge-all generation; entries stored under an older one are misses.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Looks `key` up at `now`: memory tier first, then disk.
    pub async fn lookup(&self, key: &CacheKey, now: SystemTime) -> Lookup {
        let Some(entry) = self.inner.memory.get(key) else {
            return Lookup::Miss;
        };
        if entry.meta.generation < self.generation() {
            self.inner.memory.remove(key);
            return Lookup::Miss;
        }
        let hit = Hit {
            entry,
            tier: Tier::Memory,
        };
        let meta = &hit.entry.meta;
        if !meta.invalidated && meta.freshness.is_fresh(meta.response_at(), now) {
            Lookup::Fresh(hit)
        } else {
            Lookup::Stale(hit)
        }
    }

    /// Stores a complete response; returns the shared entry.
    pub fn insert(&self, key: CacheKey, mut meta: Meta, bodies: Vec<Bytes>) -> Arc<Entry> {
        meta.generation = self.generation();
        let entry = Arc::new(Entry {
            key,
            meta,
            bodies: bodies.into_iter().map(Body::Memory).collect(),
        });
        self.inner.memory.insert(entry.clone());
        entry
    }

    /// Replaces the metadata of a stored entry and keeps its bodies (a 304 revalidation,
    /// RFC 9111 §4.3.4, or a soft purge). Returns the new entry.
    pub fn update_meta(&self, entry: &Entry, mut meta: Meta) -> Arc<Entry> {
        meta.generation = self.generation();
        let updated = Arc::new(Entry {
            key: entry.key.clone(),
            meta,
            bodies: entry.bodies.clone(),
        });
        self.inner.memory.insert(updated.clone());
        updated
    }

    /// Removes `key` from every tier; returns whether anything was removed.
    pub fn remove(&self, key: &CacheKey) -> bool {
        self.inner.memory.remove(key)
    }

    /// Records the request fields a URL's responses vary on (its variants are stored
    /// under [`CacheKey::variant`] keys).
    pub fn set_vary(&self, primary: &CacheKey, names: Vec<String>) {
        let mut vary = self.inner.vary.write().expect("vary lock poisoned");
        if vary.get(primary).is_some_and(|old| **old == *names) {
            return;
        }
        vary.insert(primary.clone(), names.into());
    }

    /// The request fields a URL's responses vary on, when they vary.
    pub fn vary(&self, primary: &CacheKey) -> Option<Arc<[String]>> {
        self.inner.vary.read().expect("vary lock poisoned").get(primary).cloned()
    }

    /// Forgets that a URL varies.
    pub fn remove_vary(&self, primary: &CacheKey) {
        self.inner.vary.write().expect("vary lock poisoned").remove(primary);
    }

    /// Removes every entry whose key starts with `prefix`; returns how many.
    pub fn remove_prefix(&self, prefix: &str) -> usize {
        self.inner
            .memory
            .remove_where(|e| e.key.as_str().starts_with(prefix))
    }

    /// Makes every stored entry a miss, in O(1).
    pub fn purge_all(&self) -> u64 {
        self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}
