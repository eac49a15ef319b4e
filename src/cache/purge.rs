//! Purges across both tiers: by URL (with its `Vary` variants), by key prefix, by
//! surrogate key (tag), and everything; each hard (removed) or soft (kept but stale, so
//! the next request revalidates and `stale-if-error` may still serve it).
//!
//! Every purge is durable once it returns: removals and the purge-all generation are
//! committed to the disk index (the disk writer's queue is flushed), and a soft purge of
//! everything persists its time in the index's `purge_state` table.
//!
//! Every purge also reaches the fills in flight, whose origin answer may predate it:
//! each is logged ([`log`]) before it removes anything, and a fill stores only through
//! [`Cache::insert_unless_purged`] or [`Cache::update_meta_unless_purged`], which
//! refuse what a purge logged since the fill's [`PurgeMark`] covers.
//!
//! Cost: a URL is two key lookups and a range read; a prefix is a range read of the disk
//! index plus a pass over the memory tier; a tag reads only the keys carrying it (see
//! [`super::tags`]); hard `all` is O(1) (a generation bump); soft `all` is O(1) (a time
//! below which every entry counts as stale).

mod log;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use redb::Database;

use self::log::{PurgeLog, Purged};
use super::disk::DiskTier;
use super::key::CacheKey;
use super::meta::{Meta, to_unix};
use super::tags::{self, TagIndex};
use super::{Cache, Entry};

/// The cache's purge bookkeeping: the in-memory tag index, the soft purge-all time and
/// the log fills read ([`PurgeMark`]).
pub(super) struct PurgeState {
    tags: TagIndex,
    /// Entries validated at or before this Unix second are stale; 0 for none.
    soft_before: AtomicU64,
    log: PurgeLog,
}

/// What a fill notes before it asks the origin ([`Cache::purge_mark`]), so that a purge
/// landing while it reads is not undone by storing what it read, which may predate the
/// purge: [`Cache::insert_unless_purged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeMark {
    seq: u64,
    generation: u64,
}

impl PurgeState {
    /// Loads the persisted soft purge-all time from the disk index, if there is one.
    pub(super) fn load(disk: Option<&DiskTier>) -> Self {
        let soft_before = match disk.map(|d| tags::load_soft_before(d.db())) {
            Some(Ok(secs)) => secs,
            Some(Err(e)) => {
                tracing::warn!(target: "edge::disk", error = %e, "could not read the purge state; no soft purge in effect");
                0
            }
            None => 0,
        };
        PurgeState {
            tags: TagIndex::default(),
            soft_before: AtomicU64::new(soft_before),
            log: PurgeLog::default(),
        }
    }
}

impl Cache {
    /// Records the tags of a newly stored entry in the in-memory tag index (the disk
    /// index records its own when it commits the entry).
    pub(super) fn index_tags(&self, entry: &Entry) {
        let Some(shard) = self.inner.purges.tags.add(&entry.key, &entry.meta.tags) else {
            return;
        };
        // Keep only keys still in the memory tier (the disk table covers the rest).
        let cache = self.clone();
        let prune = move || {
            let memory = &cache.inner.memory;
            cache
                .inner
                .purges
                .tags
                .prune(shard, |k| memory.peek(k).is_some());
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(prune)),
            Err(_) => prune(),
        }
    }

    /// Whether a soft purge of everything made `meta` stale.
    pub(super) fn soft_purged(&self, meta: &Meta) -> bool {
        let before = self.inner.purges.soft_before.load(Ordering::Acquire);
        before > 0 && meta.response_time <= before
    }

    fn disk_db(&self) -> Option<&Database> {
        self.inner
            .disk
            .as_ref()
            .filter(|d| d.is_healthy())
            .map(DiskTier::db)
    }

    /// The purges so far: what a fill notes before it asks the origin. A purge is
    /// logged before it removes anything, so an entry stored before a purge was logged
    /// is one the purge removes.
    pub fn purge_mark(&self) -> PurgeMark {
        PurgeMark {
            seq: self.inner.purges.log.mark(),
            generation: self.generation(),
        }
    }

    /// Whether a purge since `mark` covered the URL of `primary` (by URL, prefix, one of
    /// `tags`, or everything).
    pub fn purged_since(&self, mark: &PurgeMark, primary: &CacheKey, tags: &[String]) -> bool {
        self.generation() != mark.generation
            || (self.inner.purges.log).covers(mark.seq, primary.primary_str(), tags)
    }

    /// [`Cache::insert_kept`] for a response read since `mark` was taken for its URL
    /// `primary`: `None`, and nothing stored, when a purge since may have covered it.
    /// Checked again once stored: a purge that began meanwhile may have missed the new
    /// entry, which is then removed.
    pub fn insert_unless_purged(
        &self,
        key: CacheKey,
        meta: Meta,
        bodies: Vec<Bytes>,
        primary: &CacheKey,
        mark: &PurgeMark,
    ) -> Option<(Arc<Entry>, bool)> {
        if self.purged_since(mark, primary, &meta.tags) {
            return None;
        }
        let stored = self.insert_kept(key, meta, bodies);
        if self.purged_since(mark, primary, &stored.0.meta.tags) {
            self.remove(&stored.0.key);
            return None;
        }
        Some(stored)
    }

    /// [`Cache::update_meta`] under the same rule as [`Cache::insert_unless_purged`].
    pub fn update_meta_unless_purged(
        &self,
        entry: &Entry,
        meta: Meta,
        primary: &CacheKey,
        mark: &PurgeMark,
    ) -> Option<Arc<Entry>> {
        if self.purged_since(mark, primary, &meta.tags) {
            return None;
        }
        let updated = self.update_meta(entry, meta);
        if self.purged_since(mark, primary, &updated.meta.tags) {
            self.remove(&updated.key);
            return None;
        }
        Some(updated)
    }

    /// Removes the URL of `primary` and every `Vary` variant of it (RFC 9111 §4.4: an
    /// unsafe method's response invalidates it). Not logged for fills in flight: a busy
    /// write endpoint (each new `Location` a new URL) would fill the log with URLs that
    /// are rarely cached, and only operators' purges need to reach fills.
    pub fn invalidate_url(&self, primary: &CacheKey) {
        let primary = primary.primary();
        self.remove(&primary);
        self.remove_prefix(&primary.variant_prefix());
    }

    /// Purges the URL of `primary` and every `Vary` variant of it; returns how many
    /// entries were removed (or, when `soft`, marked stale).
    pub async fn purge_url(&self, primary: &CacheKey, soft: bool) -> u64 {
        let primary = primary.primary();
        self.inner.purges.log.record(Purged::Url(primary.as_str()));
        if soft {
            let mut keys = self.keys_with_prefix(&primary.variant_prefix()).await;
            keys.insert(primary);
            return self.invalidate_all(keys).await;
        }
        let cache = self.clone();
        blocking(move || {
            cache.inner.purges.tags.remove(&primary);
            u64::from(cache.remove(&primary))
                + cache.remove_prefix(&primary.variant_prefix()) as u64
        })
        .await
    }

    /// Purges every entry whose key starts with `prefix` (a key prefix: see
    /// [`CacheKey::new`]); returns how many.
    pub async fn purge_prefix(&self, prefix: &str, soft: bool) -> u64 {
        self.inner.purges.log.record(Purged::Prefix(prefix));
        if soft {
            let keys = self.keys_with_prefix(prefix).await;
            return self.invalidate_all(keys).await;
        }
        let cache = self.clone();
        let prefix = prefix.to_owned();
        blocking(move || cache.remove_prefix(&prefix) as u64).await
    }

    /// Purges every entry carrying surrogate key `tag`, in every site; returns how many.
    pub async fn purge_tag(&self, tag: &str, soft: bool) -> u64 {
        self.inner.purges.log.record(Purged::Tag(tag));
        let keys = self.keys_with_tag(tag).await;
        if soft {
            return self.invalidate_all(keys).await;
        }
        let cache = self.clone();
        blocking(move || {
            keys.iter()
                .filter(|k| {
                    cache.inner.purges.tags.remove(k);
                    cache.remove(k)
                })
                .count() as u64
        })
        .await
    }

    /// Purges everything in O(1): hard bumps the generation (every older entry is a
    /// miss); soft makes every entry validated at or before `now` stale. Returns the
    /// generation in effect afterwards.
    pub async fn purge_everything(&self, soft: bool, now: SystemTime) -> u64 {
        self.inner.purges.log.record(Purged::All);
        if soft {
            let secs = to_unix(now);
            self.inner
                .purges
                .soft_before
                .fetch_max(secs, Ordering::AcqRel);
            if self.disk_db().is_some() {
                let cache = self.clone();
                let stored = blocking(move || {
                    let db = cache.disk_db().expect("checked above");
                    tags::store_soft_before(db, secs)
                })
                .await;
                if let Err(e) = stored {
                    tracing::error!(target: "edge::disk", error = %e, "could not persist a soft purge; it lasts until restart");
                }
            }
            return self.generation();
        }
        self.inner.purges.tags.clear();
        let generation = self.purge_all();
        self.flush().await;
        generation
    }

    /// The keys of stored entries tagged `tag`: those this process stored, and those the
    /// disk index holds once every queued write is committed.
    pub async fn keys_with_tag(&self, tag: &str) -> HashSet<CacheKey> {
        let mut keys: HashSet<CacheKey> = self.inner.purges.tags.keys(tag).into_iter().collect();
        if self.disk_db().is_some() {
            self.flush().await;
            let cache = self.clone();
            let tag = tag.to_owned();
            let found = blocking(move || {
                tags::keys_with_tag(cache.disk_db().expect("checked above"), &tag)
            })
            .await;
            match found {
                Ok(found) => keys.extend(found),
                Err(e) => {
                    tracing::error!(target: "edge::disk", error = %e, "reading the tag index failed")
                }
            }
        }
        keys
    }

    /// The keys starting with `prefix` in either tier.
    async fn keys_with_prefix(&self, prefix: &str) -> HashSet<CacheKey> {
        let mut keys = HashSet::new();
        // A pass over the memory tier that removes nothing.
        self.inner.memory.remove_where(|e| {
            if e.key.as_str().starts_with(prefix) {
                keys.insert(e.key.clone());
            }
            false
        });
        if self.disk_db().is_some() {
            self.flush().await;
            let cache = self.clone();
            let prefix = prefix.to_owned();
            let found = blocking(move || {
                super::disk::index::keys_with_prefix(
                    cache.disk_db().expect("checked above"),
                    &prefix,
                )
            })
            .await;
            match found {
                Ok(found) => keys.extend(found.into_iter().map(CacheKey::from_stored)),
                Err(e) => {
                    tracing::error!(target: "edge::disk", error = %e, "reading the disk index failed")
                }
            }
        }
        keys
    }

    /// Marks each of `keys` stale; returns how many were stored.
    async fn invalidate_all(&self, keys: HashSet<CacheKey>) -> u64 {
        let mut n = 0;
        for key in keys {
            n += u64::from(self.invalidate(&key).await);
        }
        n
    }

    /// Marks `key` stale in both tiers, keeping its bodies; false when it is not stored.
    async fn invalidate(&self, key: &CacheKey) -> bool {
        let mark = self.purge_mark();
        let generation = mark.generation;
        let entry = match self.inner.memory.peek(key) {
            Some(entry) => entry,
            None => match &self.inner.disk {
                // Bodies are opened, not read: only the metadata changes.
                Some(disk) => match disk.lookup(key, generation, 0).await {
                    Some(entry) => entry,
                    None => return false,
                },
                None => return false,
            },
        };
        if entry.meta.generation < generation {
            return false;
        }
        if !entry.meta.invalidated {
            let mut meta = entry.meta.clone();
            meta.invalidated = true;
            // Re-stored under the generation of now: a purge of everything that landed
            // while the entry was read must not be undone.
            let _ = self.update_meta_unless_purged(&entry, meta, &entry.key, &mark);
        }
        true
    }
}

/// Runs index work on tokio's blocking pool, off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("purge task panicked")
}
