//! The disk writer: one thread that applies queued changes in batches. Each batch
//! writes its new blobs first (temp file, fsync, rename, directory fsync) and then
//! commits every index change in one redb transaction, so that a crash at any point
//! leaves no entry pointing at a missing or partial blob — at worst an unreferenced blob,
//! which orphan collection removes after the next start.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use super::blob;
use super::index::{Finished, IndexWriter, Indexed};
use super::{Body, Shared};
use crate::cache::Entry;
use crate::cache::eviction::Admission;
use crate::cache::key::CacheKey;
use crate::cache::meta::BlobHash;

/// Most operations applied in one transaction.
const MAX_BATCH: usize = 256;
/// Most body bytes written per transaction (one larger body is still one batch).
const MAX_BATCH_BYTES: u64 = 64 << 20;
/// How often recorded hits are written to the recency table.
const TOUCH_INTERVAL: Duration = Duration::from_secs(1);

/// One queued change.
pub enum Op {
    /// Store an entry whose bodies are in memory (`bytes` of them, for queue accounting).
    Store {
        seq: u64,
        entry: Arc<Entry>,
        bytes: u64,
    },
    /// Replace the metadata of an entry whose bodies are already on disk.
    Meta { seq: u64, entry: Arc<Entry> },
    /// Remove a key.
    Remove { seq: u64, key: CacheKey },
    /// Remove every key with this prefix.
    RemovePrefix { seq: u64, prefix: String },
    /// Remove a key found unusable, if it is still the entry that was found so.
    Discard {
        seq: u64,
        key: CacheKey,
        why: Discard,
    },
    /// Persist the purge-all generation.
    Generation(u64),
    /// Persist a `Vary` spec.
    SetVary(CacheKey, Arc<[String]>),
    /// Forget a `Vary` spec.
    RemoveVary(CacheKey),
    /// Answer once everything queued before it is applied.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Why a lookup found an entry unusable.
#[derive(Debug, Clone, Copy)]
pub enum Discard {
    /// Stored before a purge-all to this generation.
    Generation(u64),
    /// Its metadata does not decode.
    Undecodable,
    /// This blob of it is corrupt or missing.
    Blob(BlobHash),
}

/// The writer thread's loop: batches until the channel closes, recording hits every
/// second and collecting orphan blobs when idle.
pub fn run(shared: Arc<Shared>, rx: Receiver<Op>) {
    let mut gc = OrphanCollector::new();
    let mut last_touch = Instant::now();
    loop {
        match rx.recv_timeout(TOUCH_INTERVAL) {
            Ok(op) => {
                let mut bytes = op_bytes(&op);
                let mut batch = vec![op];
                while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(op) => {
                            bytes += op_bytes(&op);
                            batch.push(op);
                        }
                        Err(_) => break,
                    }
                }
                apply(&shared, batch);
                last_touch = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                if !shared.touches.lock().expect("touches poisoned").is_empty() {
                    apply(&shared, Vec::new());
                    last_touch = Instant::now();
                } else {
                    gc.step(&shared);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_touch.elapsed() >= TOUCH_INTERVAL {
            apply(&shared, Vec::new());
            last_touch = Instant::now();
        }
    }
    // Shutting down: record the last hits.
    apply(&shared, Vec::new());
}

fn op_bytes(op: &Op) -> u64 {
    match op {
        Op::Store { bytes, .. } => *bytes,
        _ => 0,
    }
}

/// Applies one batch (possibly empty: hits only), then releases its overlay records and
/// answers its flushes, whatever happened.
fn apply(shared: &Shared, batch: Vec<Op>) {
    if !shared.failed.load(Ordering::Relaxed) {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_batch(shared, &batch)));
        if outcome.is_err() && !shared.failed.swap(true, Ordering::Relaxed) {
            tracing::error!(target: "edge::disk", "disk writer panicked; disk tier disabled, serving from memory and origin");
        }
    } else {
        shared.touches.lock().expect("touches poisoned").clear();
    }
    shared.settle(&batch);
    for op in batch {
        if let Op::Flush(done) = op {
            let _ = done.send(());
        }
    }
}

fn write_batch(shared: &Shared, batch: &[Op]) {
    let touches: Vec<String> =
        std::mem::take(&mut *shared.touches.lock().expect("touches poisoned"))
            .into_iter()
            .collect();
    if batch.iter().all(|op| matches!(op, Op::Flush(_))) && touches.is_empty() {
        return;
    }

    // 1. Blobs, made durable before the index may reference them.
    let mut written: HashSet<BlobHash> = HashSet::new();
    let mut fresh: Vec<BlobHash> = Vec::new();
    let mut dirty_dirs = BTreeSet::new();
    let mut stored = vec![false; batch.len()];
    for (i, op) in batch.iter().enumerate() {
        match op {
            Op::Store { entry, .. } => {
                stored[i] = write_blobs(shared, entry, &mut written, &mut fresh, &mut dirty_dirs)
            }
            Op::Discard {
                why: Discard::Blob(hash),
                ..
            } => remove_if_corrupt(shared, hash),
            _ => {}
        }
    }
    if let Err(e) = blob::sync_dirs(&dirty_dirs) {
        tracing::warn!(target: "edge::disk", error = %e, "fsync of blob directories failed; this batch is not stored");
        stored.iter_mut().for_each(|s| *s = false);
    }

    // 2. The index, in one transaction.
    let committed = (|| -> Result<(Finished, Vec<String>), redb::Error> {
        let mut txn = shared.db.begin_write()?;
        // Recovery after a crash then reads the saved allocator state instead of walking
        // the whole index, so a restart is warm at once.
        txn.set_quick_repair(true);
        let mut evicted = Vec::new();
        let finished = {
            let mut ix = IndexWriter::open(&txn)?;
            for (op, stored) in batch.iter().zip(&stored) {
                apply_op(shared, &mut ix, op, *stored, &mut evicted)?;
            }
            for key in &touches {
                ix.touch(key)?;
            }
            ix.finish()?
        };
        txn.commit()?;
        Ok((finished, evicted))
    })();

    // 3. Files no committed entry references.
    match committed {
        Ok((finished, evicted)) => {
            for hash in &finished.dead {
                if let Err(e) = blob::remove(&shared.layout, hash) {
                    tracing::warn!(target: "edge::disk", blob = %hash, error = %e, "could not delete an unreferenced blob");
                }
            }
            shared
                .blob_bytes
                .store(finished.counters.blob_bytes, Ordering::Relaxed);
            shared.entries.store(finished.entries, Ordering::Relaxed);
            shared
                .evictions
                .fetch_add(evicted.len() as u64, Ordering::Relaxed);
            if let Some(hook) = shared.on_evict.get() {
                evicted.iter().for_each(|key| hook(key));
            }
        }
        Err(e) => {
            shared.storage_error("committing the disk index; this batch is not stored", &e);
            for hash in &fresh {
                let _ = blob::remove(&shared.layout, hash);
            }
        }
    }
}

/// Writes the blobs of `entry` that are not already in place; false when one failed.
fn write_blobs(
    shared: &Shared,
    entry: &Entry,
    written: &mut HashSet<BlobHash>,
    fresh: &mut Vec<BlobHash>,
    dirty_dirs: &mut BTreeSet<std::path::PathBuf>,
) -> bool {
    for (rep, body) in entry.meta.reps.iter().zip(entry.bodies()) {
        if written.contains(&rep.hash) {
            continue;
        }
        let Body::Memory(bytes) = body else {
            return false;
        };
        let known = matches!(super::index::blob(&shared.db, &rep.hash), Ok(Some(_)));
        if known && blob::present(&shared.layout.blob(&rep.hash), rep.len) {
            written.insert(rep.hash);
            continue;
        }
        match blob::write(&shared.layout, &rep.hash, bytes, dirty_dirs) {
            Ok(()) => {
                written.insert(rep.hash);
                if !known {
                    fresh.push(rep.hash);
                }
            }
            Err(e) => {
                shared.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "edge::disk",
                    key = %entry.key,
                    blob = %rep.hash,
                    error = %e,
                    "not storing on disk: writing the blob failed (nothing partial is kept)"
                );
                return false;
            }
        }
    }
    true
}

/// Deletes a blob reported corrupt if its file still does not hash to its name (a
/// fresh copy may have replaced it since), so that the next store rewrites it.
fn remove_if_corrupt(shared: &Shared, hash: &BlobHash) {
    let path = shared.layout.blob(hash);
    if blob::hash_file(&path).as_ref() != Some(hash) {
        let _ = blob::remove(&shared.layout, hash);
    }
}

/// Applies one operation to the index, adding the keys it evicted for space to
/// `evicted`.
fn apply_op(
    shared: &Shared,
    ix: &mut IndexWriter<'_>,
    op: &Op,
    stored: bool,
    evicted: &mut Vec<String>,
) -> Result<(), redb::Error> {
    match op {
        Op::Store { entry, .. } => {
            let key = entry.key.as_str();
            if !stored || entry.meta.generation < ix.counters.generation {
                // Never leave an older version behind the one that was not stored.
                ix.remove(key)?;
                return Ok(());
            }
            let incoming = ix.put(key, &entry.meta)?;
            match ix.evict_to(shared.budget, key, incoming)? {
                Admission::Admit(victims) => evicted.extend(victims),
                Admission::Reject => {
                    shared.skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "edge::disk", key, "does not fit the disk budget; not stored");
                    ix.remove(key)?;
                }
            }
        }
        Op::Meta { entry, .. } => {
            if let Indexed::Entry(old) = ix.get(entry.key.as_str())?
                && old.reps == entry.meta.reps
                && entry.meta.generation >= ix.counters.generation
            {
                ix.set_meta(entry.key.as_str(), &entry.meta)?;
            }
        }
        Op::Remove { key, .. } => {
            ix.remove(key.as_str())?;
        }
        Op::RemovePrefix { prefix, .. } => {
            ix.remove_prefix(prefix)?;
        }
        Op::Discard { key, why, .. } => {
            let doomed = match (ix.get(key.as_str())?, why) {
                (Indexed::Entry(meta), Discard::Generation(g)) => meta.generation < *g,
                (Indexed::Entry(meta), Discard::Blob(hash)) => {
                    meta.reps.iter().any(|r| r.hash == *hash)
                }
                (Indexed::Undecodable, _) => true,
                _ => false,
            };
            if doomed {
                ix.remove(key.as_str())?;
            }
        }
        Op::Generation(g) => ix.set_generation(*g),
        Op::SetVary(primary, names) => ix.set_vary(primary.as_str(), names)?,
        Op::RemoveVary(primary) => ix.remove_vary(primary.as_str())?,
        Op::Flush(_) => {}
    }
    Ok(())
}

/// Removes blob files that no entry references and that predate this process (left by a
/// crash between a blob's rename and its index commit, or by a moved-aside index). It
/// runs on the writer thread, one top-level directory per idle second, so that it never
/// races a store.
struct OrphanCollector {
    started: SystemTime,
    next: Option<u16>,
    removed: u64,
}

impl OrphanCollector {
    fn new() -> Self {
        OrphanCollector {
            started: SystemTime::now(),
            next: Some(0),
            removed: 0,
        }
    }

    fn step(&mut self, shared: &Shared) {
        let Some(i) = self.next else { return };
        let top = shared.layout.blobs().join(format!("{i:02x}"));
        for sub in std::fs::read_dir(&top).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let Some(hash) = file.file_name().to_str().and_then(blob::parse_name) else {
                    continue;
                };
                let old = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < self.started);
                if old
                    && matches!(super::index::blob(&shared.db, &hash), Ok(None))
                    && std::fs::remove_file(file.path()).is_ok()
                {
                    self.removed += 1;
                }
            }
        }
        self.next = (i < 0xff).then_some(i + 1);
        if self.next.is_none() && self.removed > 0 {
            tracing::info!(target: "edge::disk", removed = self.removed, "removed orphan blobs");
        }
    }
}
