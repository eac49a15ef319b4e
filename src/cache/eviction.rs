//! Disk-tier eviction decisions: which least recently used entries must go so that the
//! blob bytes fit the budget. Pure bookkeeping — the disk tier supplies the candidates
//! and reference counts, and deletes whatever [`admit`] names (STYLE.md #10).

use std::collections::HashMap;

use super::meta::BlobHash;

/// An entry that could be evicted: its key and the blobs it references, with lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<K> {
    /// The entry's key.
    pub key: K,
    /// `(blob, length)` for each representation.
    pub blobs: Vec<(BlobHash, u64)>,
}

/// The decision for one change to the stored set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<K> {
    /// It fits once these entries (least recently used first) are evicted.
    Admit(Vec<K>),
    /// It cannot fit: the new entry alone exceeds the budget, or evicting every
    /// candidate would not free enough. Nothing should be evicted.
    Reject,
}

impl<K> Admission<K> {
    /// A short name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Admission::Admit(_) => "admit",
            Admission::Reject => "reject",
        }
    }
}

/// Decides which entries to evict so that `used` blob bytes (already counting the new
/// entry's `incoming` new bytes) come down to at most `budget`.
///
/// `candidates` come least recently used first and must not include the new entry;
/// `refs` gives a blob's current reference count (counting the new entry's references,
/// so that a blob it shares with a victim is never counted as freed). A blob is freed
/// only when every reference to it is among the victims.
pub fn admit<K>(
    budget: u64,
    used: u64,
    incoming: u64,
    candidates: impl IntoIterator<Item = Candidate<K>>,
    mut refs: impl FnMut(&BlobHash) -> u64,
) -> Admission<K> {
    if incoming > budget {
        return Admission::Reject;
    }
    if used <= budget {
        return Admission::Admit(Vec::new());
    }
    let need = used - budget;
    let mut remaining: HashMap<BlobHash, u64> = HashMap::new();
    let mut freed = 0u64;
    let mut victims = Vec::new();
    for candidate in candidates {
        for (hash, len) in &candidate.blobs {
            let left = remaining.entry(*hash).or_insert_with(|| refs(hash));
            if *left == 1 {
                freed += len;
            }
            *left = left.saturating_sub(1);
        }
        victims.push(candidate.key);
        if freed >= need {
            return Admission::Admit(victims);
        }
    }
    Admission::Reject
}
