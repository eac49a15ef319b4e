//! Changes queued for the disk writer but not yet committed, as lookups must see them:
//! a new entry is served from here, and a removed key (or a key under a removed prefix)
//! is a miss, from the moment the change is queued until the writer has committed it
//! and forgets it by its sequence number.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::cache::Entry;
use crate::cache::key::CacheKey;

/// A queued change to one key.
pub enum Pending {
    /// The key's newest entry (bodies in memory, or open blob files for metadata-only
    /// updates).
    Stored(Arc<Entry>),
    /// The key is gone.
    Removed,
}

impl Clone for Pending {
    fn clone(&self) -> Self {
        match self {
            Pending::Stored(e) => Pending::Stored(e.clone()),
            Pending::Removed => Pending::Removed,
        }
    }
}

/// The queued changes, each with the sequence number of its queued operation.
#[derive(Default)]
pub struct Overlay {
    keys: HashMap<CacheKey, (u64, Pending)>,
    prefixes: Vec<(u64, String)>,
}

impl Overlay {
    /// Records the change `seq` to `key`; returns the change it supersedes.
    pub fn set(&mut self, key: &CacheKey, seq: u64, pending: Pending) -> Option<Pending> {
        self.keys
            .insert(key.clone(), (seq, pending))
            .map(|(_, p)| p)
    }

    /// Hides `key` (found unusable) unless a newer entry for it is queued.
    pub fn hide(&mut self, key: &CacheKey, seq: u64) {
        if !matches!(self.keys.get(key), Some((_, Pending::Stored(_)))) {
            self.keys.insert(key.clone(), (seq, Pending::Removed));
        }
    }

    /// The queued change that decides `key`, if any.
    pub fn get(&self, key: &CacheKey) -> Option<Pending> {
        if let Some((_, p)) = self.keys.get(key) {
            return Some(p.clone());
        }
        self.prefixes
            .iter()
            .any(|(_, p)| key.as_str().starts_with(p.as_str()))
            .then_some(Pending::Removed)
    }

    /// Records the removal `seq` of every key starting with `prefix`; returns the keys
    /// whose queued entries it drops.
    pub fn remove_prefix(&mut self, prefix: &str, seq: u64) -> HashSet<String> {
        let mut dropped = HashSet::new();
        self.keys.retain(|k, (_, p)| {
            if !k.as_str().starts_with(prefix) {
                return true;
            }
            if matches!(p, Pending::Stored(_)) {
                dropped.insert(k.as_str().to_owned());
            }
            false
        });
        self.prefixes.push((seq, prefix.to_owned()));
        dropped
    }

    /// Forgets the change `seq` to `key`, unless a newer one replaced it.
    pub fn forget(&mut self, key: &CacheKey, seq: u64) {
        if self.keys.get(key).is_some_and(|(s, _)| *s == seq) {
            self.keys.remove(key);
        }
    }

    /// Forgets the prefix removal `seq`.
    pub fn forget_prefix(&mut self, seq: u64) {
        self.prefixes.retain(|(s, _)| *s != seq);
    }
}
