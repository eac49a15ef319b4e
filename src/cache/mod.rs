//! The store: one `Clone` handle over the memory tier, the disk tier and the table of
//! fills in progress. Lookups go memory, then disk (promoting objects up to
//! `memory_object_max` into memory); purge-all is a generation bump, persisted.

mod disk;
pub mod eviction;
pub mod flight;
pub mod key;
pub mod memory;
pub mod meta;
mod purge;
pub mod sealed;
mod tags;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use bytes::Bytes;

pub use self::disk::DiskBody;
use self::disk::DiskTier;
use self::flight::Flights;
use self::key::CacheKey;
use self::memory::MemoryTier;
use self::meta::{Meta, to_unix};
pub use self::purge::PurgeMark;
use self::sealed::{BlobHold, SealedBody, Sealer};
use crate::config::CacheConfig;

/// A stored response: its metadata and one body per representation.
pub struct Entry {
    /// The key it is stored under.
    pub key: CacheKey,
    /// Status, headers, validators, freshness, representations.
    pub meta: Meta,
    /// Per representation, parallel to `meta.reps`: its body and its response header
    /// block, side by side in one allocation, so that a hit finds both in one place.
    reps: Box<[Held]>,
    /// When a hit on it was last passed to the disk tier's recency, in Unix seconds.
    touched: AtomicU64,
    /// For an entry whose bodies stay on disk, kept in the memory tier: its place in
    /// `cache.open_blobs` while it holds their files open (see [`Cache::lookup`]).
    blobs: Option<Arc<BlobHold>>,
}

/// What an entry holds for one representation.
struct Held {
    body: Body,
    block: HeaderBlock,
    /// Its body's sealed copy, once a hit asked for one and the budget had room (see
    /// [`sealed`]).
    sealed: std::sync::OnceLock<Arc<SealedBody>>,
    /// Whether making the copy failed (it is not tried again for this entry).
    unsealable: std::sync::atomic::AtomicBool,
}

/// One representation's response fields, built by [`crate::respond`] when first
/// needed: a representation no client asks for, or never with a validator, costs
/// nothing.
#[derive(Default)]
pub struct HeaderBlock {
    /// For a full (200, or the stored status) response.
    pub full: std::sync::OnceLock<http::HeaderMap>,
    /// For a 304 (RFC 9110 §15.4.5).
    pub not_modified: std::sync::OnceLock<http::HeaderMap>,
    /// The full response's fields as HTTP/1.1 bytes, for hits answered without hyper.
    pub full_wire: std::sync::OnceLock<Box<Wire>>,
    /// The 304's fields as HTTP/1.1 bytes.
    pub not_modified_wire: std::sync::OnceLock<Box<Wire>>,
}

/// A response's fields as an HTTP/1.1 head writes them, built by
/// [`crate::respond::respond_wire`] the first time a hit on the listener's direct path
/// needs them (independently of the maps, which only hyper's path builds).
pub struct Wire {
    /// Every field but `Age` and `Cache-Status`, each `name: value\r\n`, with the
    /// `Cache-Control` lines last.
    pub fields: Box<[u8]>,
    /// Where the `Cache-Control` lines start in `fields` (a site's immutable rule
    /// replaces them).
    pub cache_control_at: usize,
    /// Whether the fields have a `Date`.
    pub dated: bool,
    /// The `Content-Encoding`, if any.
    pub encoding: Option<http::HeaderValue>,
}

/// Where a representation's bytes are.
#[derive(Clone)]
pub enum Body {
    /// Held in memory.
    Memory(Bytes),
    /// In a blob file, streamed and verified as it is read (boxed: most entries are
    /// in memory, and this keeps their `Body` small).
    Disk(Box<DiskBody>),
}

/// One piece of a response body made from a stored body: literal bytes (multipart
/// headers) or an inclusive byte range of the stored body.
#[derive(Debug, Clone)]
pub enum Segment {
    /// These bytes as they are.
    Bytes(Bytes),
    /// Bytes `start..=end` of the stored body.
    Range {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
}

impl Body {
    /// Bytes this body holds in memory.
    pub fn memory_len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::Disk(_) => 0,
        }
    }

    /// The representation's length.
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::Disk(d) => d.len(),
        }
    }

    /// Whether the representation is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Entry {
    fn new(key: CacheKey, meta: Meta, bodies: Vec<Body>) -> Self {
        Entry {
            reps: bodies
                .into_iter()
                .map(|body| Held {
                    body,
                    block: HeaderBlock::default(),
                    sealed: std::sync::OnceLock::new(),
                    unsealable: std::sync::atomic::AtomicBool::new(false),
                })
                .collect(),
            key,
            meta,
            touched: AtomicU64::new(0),
            blobs: None,
        }
    }

    /// Whether each body on disk is still trusted ([`DiskBody::still_trusted`]): the
    /// condition for an entry holding its blobs open to stay in the memory tier.
    fn blobs_still_trusted(&self) -> bool {
        self.bodies().all(|body| match body {
            Body::Memory(_) => true,
            Body::Disk(disk) => disk.still_trusted(),
        })
    }

    /// The body of representation `index` (of `meta.reps`).
    pub fn body(&self, index: usize) -> &Body {
        &self.reps[index].body
    }

    /// The bodies, in the order of `meta.reps`.
    pub fn bodies(&self) -> impl ExactSizeIterator<Item = &Body> {
        self.reps.iter().map(|held| &held.body)
    }

    /// The sealed copy of representation `index`'s body, to send with `sendfile`: made
    /// on the first call that finds room for it in `sealer`'s budget, and kept with
    /// the entry. `None` for a body on disk or too short, while the budget is full, or
    /// when the copy could not be made (then never for this entry).
    pub fn sealed_body(&self, index: usize, sealer: &Arc<Sealer>) -> Option<&Arc<SealedBody>> {
        let held = &self.reps[index];
        if let Some(made) = held.sealed.get() {
            return Some(made);
        }
        let Body::Memory(bytes) = &held.body else {
            return None;
        };
        if !sealer.has_room(bytes.len()) || held.unsealable.load(Ordering::Relaxed) {
            return None;
        }
        // Made outside the cell, so that a thread serving the same entry meanwhile
        // sends from memory instead of waiting for the copy; of two copies made at once
        // one is kept, and the other's drop gives its budget back.
        match sealer.seal(bytes) {
            Ok(Some(made)) => Some(held.sealed.get_or_init(|| made)),
            Ok(None) => None,
            Err(error) => {
                sealed::warn_once(&error);
                held.unsealable.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// The response header block of representation `index`, built from `meta` on
    /// first use, then cloned per response instead of rebuilt on every hit (see
    /// [`crate::respond`]).
    pub fn header_block(&self, index: usize) -> &HeaderBlock {
        &self.reps[index].block
    }

    /// What the memory budget charges for this entry: its body bytes and an estimate,
    /// from its size, of all it holds besides — the entry and its key (twice, with the
    /// LRU slot), the stored fields, and each representation's response fields as hits
    /// build them (full and 304, as maps and as HTTP/1.1 bytes). Fixed for the entry's
    /// life, so that the budget bounds the process's memory and not only its bodies.
    pub fn memory_charge(&self) -> u64 {
        // Measured with benches/scale (1,000,000 entries of 512 B): see the README.
        const ENTRY: u64 = 768;
        const FIELD: u64 = 72;
        const BLOCK_FIELD: u64 = 112;
        const ADDED_FIELDS: u64 = 9;
        const WIRE_ADDED: u64 = 320;
        let meta = &self.meta;
        let fields = meta.headers.len() as u64;
        let field_bytes: u64 = meta
            .headers
            .iter()
            .map(|(n, v)| (n.len() + v.len()) as u64)
            .sum();
        let etags: u64 = meta.reps.iter().map(|r| r.etag.len() as u64).sum();
        let stored = fields * FIELD + field_bytes;
        let block = (fields + ADDED_FIELDS) * BLOCK_FIELD + field_bytes;
        // The same fields written out for the direct path: ": " and CRLF each, the
        // added fields' names and values (the ETag's counted below), the `Wire` box
        // and the allocations.
        let wire = field_bytes + (fields + ADDED_FIELDS) * 4 + WIRE_ADDED;
        let reps = meta.reps.len() as u64;
        self.memory_bytes()
            + ENTRY
            + 2 * self.key.as_str().len() as u64
            + meta.url.len() as u64
            + stored
            // Each ETag as stored, and in the full and 304 fields as maps and as bytes.
            + etags * 5
            + reps * (block + block / 2 + wire + wire / 2)
    }

    /// Body bytes held in memory by this entry (what the memory budget counts).
    pub fn memory_bytes(&self) -> u64 {
        self.bodies().map(Body::memory_len).sum()
    }

    /// Whether every body is in memory.
    pub fn in_memory(&self) -> bool {
        self.bodies().all(|b| matches!(b, Body::Memory(_)))
    }

    /// Whether a hit at `now` (Unix seconds) should refresh the entry's disk recency:
    /// at most once per [`TOUCH_EVERY`] seconds, so hot memory hits cost no disk writes.
    fn touch_due(&self, now: u64) -> bool {
        let last = self.touched.load(Ordering::Relaxed);
        now.saturating_sub(last) >= TOUCH_EVERY
            && self
                .touched
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Seconds between recency updates for one entry served from memory.
const TOUCH_EVERY: u64 = 10;
/// Stripes of the mutation stamps (see [`Cache::stamp`]).
const STAMPS: usize = 64;

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

/// The cache handle: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    memory: Arc<MemoryTier>,
    disk: Option<DiskTier>,
    vary: RwLock<HashMap<CacheKey, Arc<[String]>>>,
    flights: Flights,
    generation: AtomicU64,
    /// Bumped before every change to a key (by stripe) or to many keys (`all`), so that
    /// a promotion from disk can tell that its entry was replaced or removed meanwhile.
    stamps: Box<[AtomicU64]>,
    all_stamp: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
    /// The tag index and soft purge-all time (see `purge.rs`).
    purges: purge::PurgeState,
    /// The budget of sealed body copies (see [`sealed`]).
    sealer: Arc<Sealer>,
}

impl Cache {
    /// Opens the store of `config`: the memory tier, and the disk tier under
    /// `config.dir` with its persisted entries, purge-all generation and `Vary` specs.
    /// A directory or index that cannot be used is logged and the cache runs from
    /// memory only; it never fails.
    pub fn open(config: &CacheConfig) -> Self {
        let opened = if config.disk == 0 {
            tracing::info!(target: "edge::disk", "cache.disk = 0: disk tier off, memory only");
            None
        } else {
            match DiskTier::open(config) {
                Ok(opened) => Some(opened),
                Err(e) => {
                    tracing::error!(
                        target: "edge::disk",
                        dir = %config.dir.display(),
                        error = %e,
                        "disk tier unavailable; serving from memory and origin only"
                    );
                    None
                }
            }
        };
        let (disk, generation, vary) = match opened {
            Some(o) => (Some(o.tier), o.generation, o.vary),
            None => (None, 0, Vec::new()),
        };
        let vary = vary
            .into_iter()
            .map(|(k, names)| (CacheKey::from_stored(k), names.into()))
            .collect();
        let purges = purge::PurgeState::load(disk.as_ref());
        let memory = Arc::new(MemoryTier::new(config.memory, config.memory_object_max));
        if let Some(disk) = &disk {
            // An entry holding an evicted blob open lets it go, so that the blob's disk
            // space is freed now rather than at the entry's next hit. (A weak handle:
            // the writer thread must never drop the cache, whose drop joins it.)
            let memory = Arc::downgrade(&memory);
            disk.on_evict(move |key| {
                if let Some(memory) = memory.upgrade() {
                    memory.remove_if(key, |entry| entry.blobs.is_some());
                }
            });
        }
        Cache {
            inner: Arc::new(Inner {
                memory,
                disk,
                vary: RwLock::new(vary),
                flights: Flights::default(),
                generation: AtomicU64::new(generation),
                stamps: (0..STAMPS).map(|_| AtomicU64::new(0)).collect(),
                all_stamp: AtomicU64::new(0),
                hasher: Default::default(),
                purges,
                sealer: Sealer::new(config.sendfile_memory, config.open_blobs),
            }),
        }
    }

    /// A memory-only store (`config.dir` and `config.disk` are ignored).
    pub fn memory_only(config: &CacheConfig) -> Self {
        Cache::open(&CacheConfig {
            disk: 0,
            ..config.clone()
        })
    }

    /// The budget of sealed body copies, for [`Entry::sealed_body`].
    pub fn sealer(&self) -> &Arc<Sealer> {
        &self.inner.sealer
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

    /// The largest body a fill can store now, given `max_object_size`: the larger of
    /// what the memory tier takes and, when it is in service, what the disk tier takes.
    /// A fill of a larger body streams it through instead of buffering it for nothing.
    pub fn largest_storable(&self, max_object_size: u64) -> u64 {
        let disk = self
            .inner
            .disk
            .as_ref()
            .filter(|d| d.is_healthy())
            .map_or(0, DiskTier::budget);
        disk.max(self.inner.memory.max_entry()).min(max_object_size)
    }

    /// Whether the disk tier is open and in service.
    pub fn has_disk(&self) -> bool {
        self.inner.disk.as_ref().is_some_and(DiskTier::is_healthy)
    }

    /// Blobs found corrupt or missing on disk since start (each was removed and treated
    /// as a miss).
    pub fn corrupt_blobs(&self) -> u64 {
        self.inner.disk.as_ref().map_or(0, DiskTier::corrupt_blobs)
    }

    /// Blob bytes on disk, as of the last index commit.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.disk.as_ref().map_or(0, DiskTier::bytes)
    }

    /// Entries in the disk index, as of the last index commit.
    pub fn disk_entries(&self) -> u64 {
        self.inner.disk.as_ref().map_or(0, DiskTier::entries)
    }

    /// Entries evicted from disk for space since start.
    pub fn disk_evictions(&self) -> u64 {
        self.inner.disk.as_ref().map_or(0, DiskTier::evictions)
    }

    /// Stores the disk tier skipped (write queue full, too large, write failed).
    pub fn disk_skipped(&self) -> u64 {
        self.inner.disk.as_ref().map_or(0, DiskTier::skipped)
    }

    /// Waits until every disk write queued so far is committed (tests, benchmarks and
    /// shutdown; requests never wait for the disk).
    pub async fn flush(&self) {
        if let Some(disk) = &self.inner.disk {
            disk.flush().await;
        }
    }

    /// The mutation stamp of `key`: changes whenever `key` may have been replaced or
    /// removed.
    fn stamp(&self, key: &CacheKey) -> u64 {
        let stripe = self.stripe(key);
        self.inner.stamps[stripe].load(Ordering::SeqCst)
            + self.inner.all_stamp.load(Ordering::SeqCst)
    }

    fn stripe(&self, key: &CacheKey) -> usize {
        (self.inner.hasher.hash_one(key) as usize) % STAMPS
    }

    fn bump(&self, key: &CacheKey) {
        self.inner.stamps[self.stripe(key)].fetch_add(1, Ordering::SeqCst);
    }

    /// Looks `key` up at `now`: memory tier first, then disk.
    pub async fn lookup(&self, key: &CacheKey, now: SystemTime) -> Lookup {
        if let Some(found) = self.lookup_memory(key.as_str(), now) {
            return found;
        }
        let Some(disk) = &self.inner.disk else {
            return Lookup::Miss;
        };
        let stamp = self.stamp(key);
        let max = self.inner.memory.max_entry();
        // Boxed: a memory hit's future need not hold the disk read's.
        let Some(entry) = Box::pin(disk.lookup(key, self.generation(), max)).await else {
            return Lookup::Miss;
        };
        // Promoted: bodies that fit in memory, or the open files of trusted blobs.
        let (entry, promote) = match entry.in_memory() {
            true => {
                let fits = entry.memory_bytes() <= max;
                (entry, fits)
            }
            false => self.holding_blobs(entry),
        };
        if promote {
            entry.touched.store(to_unix(now), Ordering::Relaxed);
            self.inner
                .memory
                .insert_if(entry.clone(), || self.stamp(key) == stamp);
            self.index_tags(&entry);
        }
        let hit = Hit {
            entry,
            tier: Tier::Disk,
        };
        self.classify(hit, now)
    }

    /// The memory tier's part of [`Self::lookup`], by the key's stored form (see
    /// [`CacheKey::write`]): a hit builds no key. `None` when the memory tier does not
    /// hold `key`; a miss when it held it from before a purge of everything.
    pub fn lookup_memory(&self, key: &str, now: SystemTime) -> Option<Lookup> {
        let entry = self.inner.memory.get(key)?;
        if entry.meta.generation < self.generation() {
            self.inner.memory.remove(key);
            return Some(Lookup::Miss);
        }
        if let Some(disk) = &self.inner.disk
            && entry.touch_due(to_unix(now))
        {
            disk.touch(&entry.key);
        }
        // An entry holding its blobs open goes on only while they are trusted; then
        // the lookup opens them again from the disk tier, hashing them if need be.
        let tier = match entry.blobs {
            None => Tier::Memory,
            Some(_) if entry.blobs_still_trusted() => Tier::Disk,
            Some(_) => {
                self.inner.memory.remove(key);
                return None;
            }
        };
        let hit = Hit { entry, tier };
        Some(self.classify(hit, now))
    }

    /// `entry`, whose bodies are (partly) on disk, ready for the memory tier and whether
    /// it is: holding its blob files open within `cache.open_blobs`, when every one is
    /// trusted ([`DiskBody::is_trusted`]). A large hit then finds its entry, blob open,
    /// without the index, and the direct path can `sendfile` it. An untrusted blob is
    /// hashed on its next full read first.
    fn holding_blobs(&self, entry: Arc<Entry>) -> (Arc<Entry>, bool) {
        let trusted = |body: &Body| match body {
            Body::Disk(disk) => disk.is_trusted(),
            Body::Memory(_) => true,
        };
        if !entry.bodies().all(trusted) {
            return (entry, false);
        }
        let files = entry
            .bodies()
            .filter(|body| matches!(body, Body::Disk(_)))
            .count() as u64;
        let Some(hold) = self.inner.sealer.hold_blobs(files) else {
            return (entry, false);
        };
        // The disk tier's lookup made it, and no one else holds it yet.
        match Arc::try_unwrap(entry) {
            Ok(mut entry) => {
                entry.blobs = Some(Arc::new(hold));
                (Arc::new(entry), true)
            }
            Err(entry) => (entry, false),
        }
    }

    fn classify(&self, hit: Hit, now: SystemTime) -> Lookup {
        let meta = &hit.entry.meta;
        if !meta.invalidated
            && !self.soft_purged(meta)
            && meta.freshness.is_fresh(meta.response_at(), now)
        {
            Lookup::Fresh(hit)
        } else {
            Lookup::Stale(hit)
        }
    }

    /// Stores a complete response; returns the shared entry. It is in memory at once
    /// when it fits `memory_object_max`, and queued for the disk tier, which writes it
    /// off the request path (or skips it, logged, when its queue is full or it fails).
    pub fn insert(&self, key: CacheKey, meta: Meta, bodies: Vec<Bytes>) -> Arc<Entry> {
        self.insert_kept(key, meta, bodies).0
    }

    /// [`Self::insert`], and whether either tier kept the entry: false when it is too
    /// large for memory and the disk tier is off, failed, or skipped it (its write
    /// queue full).
    pub fn insert_kept(
        &self,
        key: CacheKey,
        mut meta: Meta,
        bodies: Vec<Bytes>,
    ) -> (Arc<Entry>, bool) {
        debug_assert_eq!(meta.reps.len(), bodies.len(), "one body per representation");
        meta.generation = self.generation();
        let entry = Arc::new(Entry::new(
            key,
            meta,
            bodies.into_iter().map(Body::Memory).collect(),
        ));
        self.bump(&entry.key);
        let mut kept = self.inner.memory.insert(entry.clone());
        self.index_tags(&entry);
        if let Some(disk) = &self.inner.disk {
            kept |= disk.store(entry.clone());
        }
        (entry, kept)
    }

    /// Replaces the metadata of a stored entry and keeps its bodies (a 304 revalidation,
    /// RFC 9111 §4.3.4, or a soft purge), in both tiers. Returns the new entry.
    pub fn update_meta(&self, entry: &Entry, mut meta: Meta) -> Arc<Entry> {
        meta.generation = self.generation();
        let bodies = entry.bodies().cloned().collect();
        let mut updated = Entry::new(entry.key.clone(), meta, bodies);
        // Bodies on disk stay in memory only with their files' place in
        // `cache.open_blobs` (see `holding_blobs`); otherwise the next lookup reads
        // the new metadata from the disk tier.
        updated.blobs = entry.blobs.clone();
        let updated = Arc::new(updated);
        self.bump(&updated.key);
        if updated.in_memory() || updated.blobs.is_some() {
            self.inner.memory.insert(updated.clone());
        } else {
            self.inner.memory.remove(&updated.key);
        }
        self.index_tags(&updated);
        if let Some(disk) = &self.inner.disk {
            if updated.in_memory() {
                let _ = disk.store(updated.clone());
            } else {
                disk.update_meta(updated.clone());
            }
        }
        updated
    }

    /// Removes `key` from every tier; returns whether anything was removed.
    pub fn remove(&self, key: &CacheKey) -> bool {
        self.bump(key);
        let in_memory = self.inner.memory.remove(key);
        let on_disk = self.inner.disk.as_ref().is_some_and(|d| d.remove(key));
        in_memory || on_disk
    }

    /// Records the request fields a URL's responses vary on (its variants are stored
    /// under [`CacheKey::variant`] keys), persistently.
    pub fn set_vary(&self, primary: &CacheKey, names: Vec<String>) {
        let names: Arc<[String]> = names.into();
        {
            let mut vary = self.inner.vary.write().expect("vary lock poisoned");
            if vary.get(primary).is_some_and(|old| *old == names) {
                return;
            }
            vary.insert(primary.clone(), names.clone());
        }
        if let Some(disk) = &self.inner.disk {
            disk.set_vary(primary, names);
        }
    }

    /// Whether the URL whose primary key has the stored form `primary` varies.
    pub fn varies(&self, primary: &str) -> bool {
        self.inner
            .vary
            .read()
            .expect("vary lock poisoned")
            .contains_key(primary)
    }

    /// The request fields a URL's responses vary on, when they vary.
    pub fn vary(&self, primary: &CacheKey) -> Option<Arc<[String]>> {
        self.inner
            .vary
            .read()
            .expect("vary lock poisoned")
            .get(primary)
            .cloned()
    }

    /// Forgets that a URL varies.
    pub fn remove_vary(&self, primary: &CacheKey) {
        let removed = self
            .inner
            .vary
            .write()
            .expect("vary lock poisoned")
            .remove(primary);
        if removed.is_some()
            && let Some(disk) = &self.inner.disk
        {
            disk.remove_vary(primary);
        }
    }

    /// Removes every entry whose key starts with `prefix`, in both tiers; returns how
    /// many keys were removed.
    pub fn remove_prefix(&self, prefix: &str) -> usize {
        self.inner.all_stamp.fetch_add(1, Ordering::SeqCst);
        let mut keys: std::collections::HashSet<String> = self
            .inner
            .memory
            .remove_prefix(prefix)
            .into_iter()
            .map(|k| k.as_str().to_owned())
            .collect();
        if let Some(disk) = &self.inner.disk {
            keys.extend(disk.remove_prefix(prefix));
        }
        keys.len()
    }

    /// Makes every stored entry a miss, in O(1), durably: the new generation is
    /// committed to the disk index with the next batch.
    pub fn purge_all(&self) -> u64 {
        let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(disk) = &self.inner.disk {
            disk.set_generation(generation);
        }
        generation
    }
}
