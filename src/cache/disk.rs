//! The disk tier: content-addressed blobs at `<dir>/blobs/ab/cd/<blake3 hex>` and an
//! index in redb (`<dir>/index.redb`).
//!
//! Reads run on tokio's blocking pool and verify every blob against its name before a
//! byte is served. Writes never block a request: [`DiskTier::store`] queues the entry
//! (bounded by `[cache] write_queue` bytes) for one writer thread, which writes blobs
//! (temp file, fsync, rename, directory fsync) and only then commits the index, in
//! batches. Changes queued but not yet committed are kept in an overlay that lookups
//! consult first, so a removal or a new entry is visible at once.
//!
//! Failures never stop serving: a full disk skips the store, an index that cannot be
//! opened is moved aside, and an index that fails at run time disables the tier.

pub(super) mod blob;
pub(super) mod index;
mod overlay;
mod stream;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::Database;

use super::key::CacheKey;
use super::meta::{BlobHash, Rep};
use super::{Body, Entry};
use crate::config::CacheConfig;

use self::blob::{Fault, FileStamp, Layout};
use self::index::Indexed;
use self::overlay::{Overlay, Pending};
pub use self::stream::DiskBody;
use self::writer::{Discard, Op};

/// What the index held at start-up.
pub struct Opened {
    /// The open tier.
    pub tier: DiskTier,
    /// The persisted purge-all generation.
    pub generation: u64,
    /// The persisted `Vary` specs.
    pub vary: Vec<(String, Vec<String>)>,
}

/// The disk tier handle, owned by the cache. Dropping it drains the write queue and
/// closes the index.
pub struct DiskTier {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// State shared by the handle, the writer thread, blocking reads and disk bodies.
struct Shared {
    layout: Layout,
    db: Database,
    budget: u64,
    queue_limit: u64,
    overlay: Mutex<Overlay>,
    touches: Mutex<HashSet<String>>,
    tx: Mutex<Option<Sender<Op>>>,
    seq: AtomicU64,
    queued_bytes: AtomicU64,
    blob_bytes: AtomicU64,
    entries: AtomicU64,
    corrupt: AtomicU64,
    skipped: AtomicU64,
    evictions: AtomicU64,
    failed: AtomicBool,
    last_warning: Mutex<Option<Instant>>,
    /// Streamed blobs that hashed to their names on a full read: by name, the file
    /// stamp then and when. Trusted for `verify_interval` while the stamp holds.
    verified: Mutex<HashMap<BlobHash, (FileStamp, Instant)>>,
    verify_interval: Duration,
    /// Called on the writer thread with each key evicted for space, once the index
    /// change is committed (see [`DiskTier::on_evict`]).
    on_evict: OnceLock<EvictHook>,
}

type EvictHook = Box<dyn Fn(&str) + Send + Sync>;

/// Most verifications remembered; beyond it the record starts over.
const MAX_VERIFIED: usize = 65_536;

impl DiskTier {
    /// Opens (or creates) the tier under `config.dir`: removes leftovers in `tmp/`, opens
    /// the index (moving an unreadable one aside), and starts the writer. Never scans the
    /// blobs. An error means the directory or a fresh index cannot be created at all.
    pub fn open(config: &CacheConfig) -> Result<Opened, String> {
        let layout = Layout::new(&config.dir);
        for dir in [config.dir.clone(), layout.blobs(), layout.tmp()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        match blob::clear_tmp(&layout) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(target: "edge::disk", removed = n, "removed leftover temp files")
            }
            Err(e) => tracing::warn!(target: "edge::disk", error = %e, "could not clear tmp/"),
        }
        let db = index::open(&layout.index())?;
        let (counters, entries) =
            index::load_counters(&db).map_err(|e| format!("reading the index: {e}"))?;
        let vary = index::load_vary(&db).map_err(|e| format!("reading the index: {e}"))?;
        tracing::info!(
            target: "edge::disk",
            dir = %config.dir.display(),
            entries,
            blob_bytes = counters.blob_bytes,
            budget = config.disk,
            generation = counters.generation,
            "disk tier open"
        );
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            layout,
            db,
            budget: config.disk,
            queue_limit: config.write_queue,
            overlay: Mutex::default(),
            touches: Mutex::default(),
            tx: Mutex::new(Some(tx)),
            seq: AtomicU64::new(1),
            queued_bytes: AtomicU64::new(0),
            blob_bytes: AtomicU64::new(counters.blob_bytes),
            entries: AtomicU64::new(entries),
            corrupt: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            last_warning: Mutex::new(None),
            verified: Mutex::default(),
            verify_interval: config.verify_interval,
            on_evict: OnceLock::new(),
        });
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("edge-disk-writer".into())
            .spawn(move || writer::run(writer_shared, rx))
            .map_err(|e| format!("starting the disk writer: {e}"))?;
        Ok(Opened {
            tier: DiskTier {
                shared,
                writer: Some(writer),
            },
            generation: counters.generation,
            vary,
        })
    }

    /// The entry for `key` of at least `generation`: from the queued changes, else from
    /// the index. Bodies of at most `small_max` bytes in all are read whole and verified;
    /// bigger ones are opened for streaming. A corrupt or missing blob is a miss.
    pub async fn lookup(
        &self,
        key: &CacheKey,
        generation: u64,
        small_max: u64,
    ) -> Option<Arc<Entry>> {
        if self.shared.failed.load(Ordering::Relaxed) {
            return None;
        }
        match self.shared.overlay().get(key) {
            Some(Pending::Stored(entry)) => {
                return (entry.meta.generation >= generation).then_some(entry);
            }
            Some(Pending::Removed) => return None,
            None => {}
        }
        let shared = self.shared.clone();
        let key = key.clone();
        match tokio::task::spawn_blocking(move || shared.read(&key, generation, small_max)).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(target: "edge::disk", error = %e, "disk lookup failed");
                None
            }
        }
    }

    /// Queues `entry` (bodies in memory) to be written; false when it is not. When the
    /// queue is full or the entry exceeds the budget, nothing is written and any older
    /// version is removed, so that the disk never serves a version older than the one
    /// just stored.
    pub fn store(&self, entry: Arc<Entry>) -> bool {
        let shared = &self.shared;
        if shared.failed.load(Ordering::Relaxed) {
            return false;
        }
        let size = entry.memory_bytes();
        let queued = shared.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if size > shared.budget || (queued > 0 && queued + size > shared.queue_limit) {
            shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            shared.skipped.fetch_add(1, Ordering::Relaxed);
            let why = if size > shared.budget {
                "larger than the disk budget"
            } else {
                "write queue full"
            };
            shared.warn_rarely(&entry.key, why);
            self.remove(&entry.key);
            return false;
        }
        let seq = shared.next_seq();
        let key = entry.key.clone();
        shared
            .overlay()
            .set(&key, seq, Pending::Stored(entry.clone()));
        shared.send(Op::Store {
            seq,
            entry,
            bytes: size,
        });
        true
    }

    /// Queues new metadata for an entry whose bodies are on disk; applied only if the
    /// stored entry still has the same representations.
    pub fn update_meta(&self, entry: Arc<Entry>) {
        let seq = self.shared.next_seq();
        self.shared
            .overlay()
            .set(&entry.key, seq, Pending::Stored(entry.clone()));
        self.shared.send(Op::Meta { seq, entry });
    }

    /// Removes `key`; returns whether it was stored (or queued).
    pub fn remove(&self, key: &CacheKey) -> bool {
        // Read before queueing: the writer may commit the removal at once.
        let indexed = matches!(
            index::read_entry(&self.shared.db, key.as_str()),
            Ok(Indexed::Entry(_)) | Ok(Indexed::Undecodable)
        );
        let seq = self.shared.next_seq();
        let queued = matches!(
            self.shared.overlay().set(key, seq, Pending::Removed),
            Some(Pending::Stored(_))
        );
        self.shared.send(Op::Remove {
            seq,
            key: key.clone(),
        });
        indexed || queued
    }

    /// Removes every key starting with `prefix`; returns those stored or queued.
    pub fn remove_prefix(&self, prefix: &str) -> HashSet<String> {
        // Scan before queueing: the writer may commit the removal at once.
        let mut removed: HashSet<String> = match index::keys_with_prefix(&self.shared.db, prefix) {
            Ok(keys) => keys.into_iter().collect(),
            Err(e) => {
                self.shared.storage_error("scanning the index", &e);
                HashSet::new()
            }
        };
        let seq = self.shared.next_seq();
        removed.extend(self.shared.overlay().remove_prefix(prefix, seq));
        self.shared.send(Op::RemovePrefix {
            seq,
            prefix: prefix.to_owned(),
        });
        removed
    }

    /// Persists the purge-all generation.
    pub fn set_generation(&self, generation: u64) {
        self.shared.send(Op::Generation(generation));
    }

    /// Persists the `Vary` spec of `primary`.
    pub fn set_vary(&self, primary: &CacheKey, names: Arc<[String]>) {
        self.shared.send(Op::SetVary(primary.clone(), names));
    }

    /// Forgets the `Vary` spec of `primary`.
    pub fn remove_vary(&self, primary: &CacheKey) {
        self.shared.send(Op::RemoveVary(primary.clone()));
    }

    /// Notes a hit on `key` for eviction order; applied in batches.
    pub fn touch(&self, key: &CacheKey) {
        self.shared.touch(key);
    }

    /// Has `hook` called with each key the tier evicts for space from now on (once: a
    /// later hook is ignored), on the writer thread after the eviction is committed.
    pub fn on_evict(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.shared.on_evict.set(Box::new(hook));
    }

    /// Waits until every change queued before the call is committed (or has failed).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.shared.send(Op::Flush(done)) {
            let _ = wait.await;
        }
    }

    /// Blobs found corrupt or missing since start.
    pub fn corrupt_blobs(&self) -> u64 {
        self.shared.corrupt.load(Ordering::Relaxed)
    }

    /// Bytes of referenced blobs, as of the last commit.
    pub fn bytes(&self) -> u64 {
        self.shared.blob_bytes.load(Ordering::Relaxed)
    }

    /// Entries in the index, as of the last commit.
    pub fn entries(&self) -> u64 {
        self.shared.entries.load(Ordering::Relaxed)
    }

    /// Entries evicted for space since start.
    pub fn evictions(&self) -> u64 {
        self.shared.evictions.load(Ordering::Relaxed)
    }

    /// Stores skipped (queue full, too large, or a failed write) since start.
    pub fn skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Its budget for blob bytes: a larger body is never written.
    pub fn budget(&self) -> u64 {
        self.shared.budget
    }

    /// Whether the tier is still in service (false after a fatal index error).
    pub fn is_healthy(&self) -> bool {
        !self.shared.failed.load(Ordering::Relaxed)
    }

    /// The index database, for the purge code's own reads and tables (`cache::tags`).
    pub(in crate::cache) fn db(&self) -> &Database {
        &self.shared.db
    }
}

impl Drop for DiskTier {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain the queue, record the last hits and
        // exit; joining it means the index is closed when the cache is gone.
        self.shared.tx.lock().expect("sender lock poisoned").take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Shared {
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues an operation for the writer; false when the writer is gone.
    fn send(&self, op: Op) -> bool {
        let tx = self.tx.lock().expect("sender lock poisoned");
        match tx.as_ref().map(|tx| tx.send(op)) {
            Some(Ok(())) => true,
            Some(Err(mpsc::SendError(op))) => {
                drop(tx);
                self.settle(&[op]);
                if !self.failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(target: "edge::disk", "disk writer stopped; serving from memory and origin only");
                }
                false
            }
            None => false,
        }
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.overlay.lock().expect("overlay poisoned")
    }

    /// Forgets the overlay records of committed (or failed) operations.
    fn settle(&self, ops: &[Op]) {
        let mut overlay = self.overlay();
        for op in ops {
            match op {
                Op::Store { seq, entry, bytes } => {
                    self.queued_bytes.fetch_sub(*bytes, Ordering::AcqRel);
                    overlay.forget(&entry.key, *seq);
                }
                Op::Meta { seq, entry } => overlay.forget(&entry.key, *seq),
                Op::Remove { seq, key } | Op::Discard { seq, key, .. } => overlay.forget(key, *seq),
                Op::RemovePrefix { seq, .. } => overlay.forget_prefix(*seq),
                Op::Generation(_) | Op::SetVary(..) | Op::RemoveVary(_) | Op::Flush(_) => {}
            }
        }
    }

    fn touch(&self, key: &CacheKey) {
        let mut touches = self.touches.lock().expect("touches poisoned");
        // Bounded: when the writer falls behind, recency is merely a little older.
        if touches.len() < 100_000 {
            touches.insert(key.as_str().to_owned());
        }
    }

    /// The blocking half of a lookup.
    fn read(
        self: &Arc<Self>,
        key: &CacheKey,
        generation: u64,
        small_max: u64,
    ) -> Option<Arc<Entry>> {
        let meta = match index::read_entry(&self.db, key.as_str()) {
            Ok(Indexed::Entry(meta)) => meta,
            Ok(Indexed::Absent) => return None,
            Ok(Indexed::Undecodable) => {
                tracing::warn!(target: "edge::disk", %key, "undecodable index entry removed");
                self.discard(key, Discard::Undecodable);
                return None;
            }
            Err(e) => {
                self.storage_error("reading the index", &e);
                return None;
            }
        };
        if meta.generation < generation {
            self.discard(key, Discard::Generation(generation));
            return None;
        }
        let mut bodies = Vec::with_capacity(meta.reps.len());
        let whole = meta.body_bytes() <= small_max;
        for rep in &meta.reps {
            let path = self.layout.blob(&rep.hash);
            let body = if whole {
                blob::read_verified(&path, &rep.hash, rep.len).map(Body::Memory)
            } else {
                blob::open_checked(&path, rep.len).map(|(file, stamp)| {
                    let trusted = self.trusts(&rep.hash, stamp);
                    let body = DiskBody::new(file, rep, key.clone(), Arc::downgrade(self));
                    Body::Disk(Box::new(body.with_stamp(stamp, trusted)))
                })
            };
            match body {
                Ok(body) => bodies.push(body),
                Err(fault) => {
                    self.fault(key, rep, &fault);
                    return None;
                }
            }
        }
        self.touch(key);
        Some(Arc::new(Entry::new(key.clone(), meta, bodies)))
    }

    /// A blob of `key` could not be served: when the index still references it (and not
    /// merely a lookup racing an eviction), count it, log it, and remove the entry.
    fn fault(&self, key: &CacheKey, rep: &Rep, fault: &Fault) {
        let still_referenced = matches!(
            index::read_entry(&self.db, key.as_str()),
            Ok(Indexed::Entry(meta)) if meta.reps.iter().any(|r| r.hash == rep.hash)
        );
        if still_referenced {
            self.corrupt_found(key, &rep.hash, fault);
        }
    }

    /// Counts, logs and discards a corrupt blob of `key`.
    /// Whether the blob `hash`, whose file now has `stamp`, hashed correctly within
    /// `verify_interval` with that same stamp.
    fn trusts(&self, hash: &BlobHash, stamp: FileStamp) -> bool {
        let verified = self.verified.lock().expect("verified lock poisoned");
        verified
            .get(hash)
            .is_some_and(|(seen, at)| *seen == stamp && at.elapsed() < self.verify_interval)
    }

    /// Records that the blob `hash`, with `stamp`, hashed to its name just now.
    fn verified(&self, hash: &BlobHash, stamp: FileStamp) {
        if self.verify_interval.is_zero() {
            return;
        }
        let mut verified = self.verified.lock().expect("verified lock poisoned");
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(*hash, (stamp, Instant::now()));
    }

    fn corrupt_found(&self, key: &CacheKey, hash: &BlobHash, fault: &Fault) {
        self.verified
            .lock()
            .expect("verified lock poisoned")
            .remove(hash);
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        let detail = match fault {
            Fault::Length { expected, found } => format!("{found} bytes, expected {expected}"),
            Fault::Io(e) => e.to_string(),
            Fault::Missing | Fault::Hash => String::new(),
        };
        tracing::error!(
            target: "edge::disk",
            %key,
            blob = %hash,
            path = %self.layout.blob(hash).display(),
            fault = fault.as_str(),
            detail,
            "corrupt blob: entry removed, the next request refetches from the origin"
        );
        self.discard(key, Discard::Blob(*hash));
    }

    /// Hides `key` from lookups and queues its conditional removal.
    fn discard(&self, key: &CacheKey, why: Discard) {
        let seq = self.next_seq();
        self.overlay().hide(key, seq);
        self.send(Op::Discard {
            seq,
            key: key.clone(),
            why,
        });
    }

    /// Logs an index error; a fatal one takes the tier out of service.
    fn storage_error(&self, what: &str, e: &redb::Error) {
        if matches!(e, redb::Error::PreviousIo | redb::Error::DatabaseClosed) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    target: "edge::disk",
                    error = %e,
                    "disk tier disabled after an I/O error in the index; serving from memory and origin; restart edge to re-enable it"
                );
            }
        } else {
            tracing::error!(target: "edge::disk", error = %e, "{what}");
        }
    }

    /// Warns about a skipped store at most every ten seconds.
    fn warn_rarely(&self, key: &CacheKey, why: &str) {
        let mut last = self.last_warning.lock().expect("warning lock poisoned");
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                target: "edge::disk",
                %key,
                why,
                skipped_total = self.skipped.load(Ordering::Relaxed),
                "not storing on disk (further skips are counted, not logged, for 10s)"
            );
        }
    }
}
