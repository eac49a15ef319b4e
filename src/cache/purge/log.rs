//! The purges fills must respect: which URLs, tags and prefixes were purged after a
//! fill asked its origin, so that what it read is not stored over a purge.
//!
//! A fill notes the log's sequence number before it asks the origin
//! ([`PurgeLog::mark`]); a purge records what it covers, under a new number, before it
//! removes anything ([`PurgeLog::record`]); a fill stores only if nothing recorded
//! after its mark covers its URL ([`PurgeLog::covers`]). Only purges that name the URL,
//! one of its tags or a prefix of it count, so a busy purge or invalidation stream
//! elsewhere never keeps a URL from being stored.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

/// Entries the log keeps; when full it forgets the older half. Forgetting raises the
/// floor: a fill marked before it may no longer be stored (as if everything had been
/// purged), which costs a refetch, never a wrong answer. Operators' purges at 20 a
/// second fill half of it in about 27 minutes.
const CAPACITY: usize = 65_536;

/// What one purge covers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purged<'a> {
    /// One URL, by its primary key.
    Url(&'a str),
    /// Every URL whose key starts with this.
    Prefix(&'a str),
    /// Every URL whose response carries this tag.
    Tag(&'a str),
    /// Everything.
    All,
}

/// The log of purges, by sequence number.
#[derive(Default)]
pub(crate) struct PurgeLog {
    inner: Mutex<Log>,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Default)]
struct Log {
    /// The last number given out.
    seq: u64,
    /// Fills marked before this are treated as purged: purges after their mark may
    /// have been forgotten.
    floor: u64,
    /// The last purge of everything.
    all: u64,
    /// URL purges by the 64-bit hash of the primary key, and their numbers.
    urls: HashMap<u64, u64>,
    /// Tag purges by the hash of the tag.
    tags: HashMap<u64, u64>,
    /// Prefix purges.
    prefixes: Vec<(String, u64)>,
}

impl PurgeLog {
    /// The number a fill notes before it asks its origin.
    pub(crate) fn mark(&self) -> u64 {
        self.lock().seq
    }

    /// Records a purge; call before removing what it covers.
    pub(crate) fn record(&self, purged: Purged<'_>) {
        let hash = match purged {
            Purged::Url(s) | Purged::Tag(s) => self.hasher.hash_one(s),
            Purged::Prefix(_) | Purged::All => 0,
        };
        let mut log = self.lock();
        if log.urls.len() + log.tags.len() + log.prefixes.len() >= CAPACITY {
            // Every record takes the next number, so the newer half is above `cut`. A
            // fill marked at `cut` or later still sees every purge after its mark.
            let cut = log.seq.saturating_sub((CAPACITY / 2) as u64);
            log.floor = cut;
            log.urls.retain(|_, s| *s > cut);
            log.tags.retain(|_, s| *s > cut);
            log.prefixes.retain(|(_, s)| *s > cut);
        }
        log.seq += 1;
        let seq = log.seq;
        match purged {
            Purged::Url(_) => drop(log.urls.insert(hash, seq)),
            Purged::Tag(_) => drop(log.tags.insert(hash, seq)),
            Purged::Prefix(prefix) => log.prefixes.push((prefix.to_owned(), seq)),
            Purged::All => log.all = seq,
        }
    }

    /// Whether a purge recorded after `mark` covers the URL with primary key `primary`
    /// whose response carries `tags`.
    pub(crate) fn covers(&self, mark: u64, primary: &str, tags: &[String]) -> bool {
        let url = self.hasher.hash_one(primary);
        let tags: Vec<u64> = tags
            .iter()
            .map(|t| self.hasher.hash_one(t.as_str()))
            .collect();
        let log = self.lock();
        let after = |seq: Option<&u64>| seq.is_some_and(|&s| s > mark);
        mark < log.floor
            || log.all > mark
            || after(log.urls.get(&url))
            || tags.iter().any(|t| after(log.tags.get(t)))
            || (log.prefixes.iter()).any(|(p, s)| *s > mark && primary.starts_with(p.as_str()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.inner.lock().expect("purge log poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_purges_after_the_mark_that_name_the_url_cover_it() {
        let log = PurgeLog::default();
        log.record(Purged::Url("a/x"));
        let mark = log.mark();
        let tags = ["red".to_owned()];
        assert!(!log.covers(mark, "a/x", &tags), "purged before the mark");
        log.record(Purged::Url("a/y"));
        log.record(Purged::Tag("blue"));
        log.record(Purged::Prefix("b/"));
        assert!(
            !log.covers(mark, "a/x", &tags),
            "other URLs, tags, prefixes"
        );
        log.record(Purged::Tag("red"));
        assert!(log.covers(mark, "a/x", &tags), "its tag");
        assert!(!log.covers(mark, "a/x", &[]), "untagged");
        log.record(Purged::Prefix("a/"));
        assert!(log.covers(mark, "a/z", &[]), "its prefix");
        let mark = log.mark();
        log.record(Purged::Url("a/x"));
        assert!(log.covers(mark, "a/x", &[]), "its URL");
        let mark = log.mark();
        log.record(Purged::All);
        assert!(log.covers(mark, "c/anything", &[]), "everything");
    }

    #[test]
    fn a_full_log_forgets_its_older_half_and_treats_marks_before_it_as_purged() {
        let log = PurgeLog::default();
        let old = log.mark();
        for i in 0..CAPACITY / 2 {
            log.record(Purged::Url(&format!("u/{i}")));
        }
        let middle = log.mark();
        for i in CAPACITY / 2..CAPACITY {
            log.record(Purged::Url(&format!("u/{i}")));
        }
        assert!(!log.covers(old, "v/1", &[]));
        log.record(Purged::Url("u/last"));
        assert!(log.covers(old, "v/1", &[]), "marked before the floor");
        assert!(!log.covers(middle, "v/1", &[]), "marked in the half kept");
        assert!(log.covers(middle, "u/last", &[]), "a purge kept");
        let newest = format!("u/{}", CAPACITY - 1);
        assert!(log.covers(middle, &newest, &[]), "a purge kept");
        assert_eq!(
            log.lock().urls.len(),
            CAPACITY / 2 + 1,
            "the newer half and the last"
        );
    }
}
