//! The disk index in redb: which keys are stored (key → metadata), how many entries
//! reference each blob (blob → reference count and length), recency for eviction
//! (sequence → key and key → sequence), the persisted `Vary` specs, and a few counters
//! (purge-all generation, next sequence, blob bytes). Every change goes through one
//! [`IndexWriter`] per write transaction, so the counters always match the tables.
//! [`open`] never lets a damaged file stop edge from starting.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _, Table,
    TableDefinition, WriteTransaction,
};

use crate::cache::eviction::{self, Admission, Candidate};
use crate::cache::meta::{BlobHash, Meta};

/// key (`CacheKey` stored form) → `Meta::to_bytes`.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
/// blob hash → (reference count, length in bytes).
const BLOBS: TableDefinition<&[u8; 32], (u64, u64)> = TableDefinition::new("blobs");
/// access sequence → key; the first row is the least recently used entry.
const RECENCY: TableDefinition<u64, &str> = TableDefinition::new("recency");
/// key → its current access sequence.
const KEY_SEQ: TableDefinition<&str, u64> = TableDefinition::new("key_seq");
/// Named counters: [`GENERATION`], [`NEXT_SEQ`], [`BLOB_BYTES`].
const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");
/// primary key → the request field names its responses vary on, `\n`-separated.
const VARY: TableDefinition<&str, &str> = TableDefinition::new("vary");

const GENERATION: &str = "generation";
const NEXT_SEQ: &str = "next_seq";
const BLOB_BYTES: &str = "blob_bytes";

/// The index's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// The purge-all generation.
    pub generation: u64,
    /// The next access sequence number.
    pub next_seq: u64,
    /// Bytes of all referenced blobs (what the disk budget bounds).
    pub blob_bytes: u64,
}

/// What a write transaction left behind.
#[derive(Debug)]
pub struct Finished {
    /// The counters as committed.
    pub counters: Counters,
    /// Entries in the index.
    pub entries: u64,
    /// Blobs no entry references any more.
    pub dead: Vec<BlobHash>,
}

/// What the index holds for one key.
#[derive(Debug)]
pub enum Indexed {
    /// Nothing.
    Absent,
    /// An entry.
    Entry(Meta),
    /// A row whose metadata does not decode (written by another version, or damaged).
    Undecodable,
}

/// Opens the index, waiting briefly for a previous instance in this process to close it,
/// and moving an unreadable one aside so that a bad file never stops edge from starting.
pub fn open(path: &Path) -> Result<Database, String> {
    let open = |path: &Path| {
        std::panic::catch_unwind(|| {
            let mut builder = Database::builder();
            builder.set_cache_size(64 << 20);
            builder.create(path)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let failure = loop {
        match open(path) {
            Ok(Ok(db)) => match create_tables(&db) {
                Ok(()) => return Ok(db),
                Err(e) => break e.to_string(),
            },
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(format!(
                    "{} is in use by another edge process",
                    path.display()
                ));
            }
            Ok(Err(e)) => break e.to_string(),
            Err(_) => break "the index reader panicked".to_owned(),
        }
    };
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("redb.corrupt-{secs}"));
    tracing::error!(
        target: "edge::disk",
        index = %path.display(),
        moved_to = %aside.display(),
        error = %failure,
        "disk index unreadable: moved aside, starting with an empty disk tier"
    );
    std::fs::rename(path, &aside).map_err(|e| format!("moving {} aside: {e}", path.display()))?;
    match open(path) {
        Ok(Ok(db)) => create_tables(&db).map(|()| db).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(format!("creating {}: {e}", path.display())),
        Err(_) => Err(format!(
            "creating {}: the index writer panicked",
            path.display()
        )),
    }
}

/// Creates any missing table, so that read transactions never meet a missing one.
pub fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    // Like every commit of the writer: a crash before the next commit must not leave
    // the index needing a full repair (a walk of the whole file) at the next start.
    txn.set_quick_repair(true);
    {
        txn.open_table(ENTRIES)?;
        txn.open_table(BLOBS)?;
        txn.open_table(RECENCY)?;
        txn.open_table(KEY_SEQ)?;
        txn.open_table(STATE)?;
        txn.open_table(VARY)?;
        txn.open_table(crate::cache::tags::TAGS)?;
    }
    txn.commit()?;
    Ok(())
}

/// The counters and the number of entries, read at start-up (O(1): no table scan).
pub fn load_counters(db: &Database) -> Result<(Counters, u64), redb::Error> {
    let txn = db.begin_read()?;
    let state = txn.open_table(STATE)?;
    let get = |name: &str| -> Result<u64, redb::Error> {
        Ok(state.get(name)?.map(|v| v.value()).unwrap_or(0))
    };
    let counters = Counters {
        generation: get(GENERATION)?,
        next_seq: get(NEXT_SEQ)?,
        blob_bytes: get(BLOB_BYTES)?,
    };
    let entries = txn.open_table(ENTRIES)?.len()?;
    Ok((counters, entries))
}

/// Every persisted `Vary` spec.
pub fn load_vary(db: &Database) -> Result<Vec<(String, Vec<String>)>, redb::Error> {
    let txn = db.begin_read()?;
    let vary = txn.open_table(VARY)?;
    let mut out = Vec::new();
    for row in vary.iter()? {
        let (k, v) = row?;
        let names = v
            .value()
            .split('\n')
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        out.push((k.value().to_owned(), names));
    }
    Ok(out)
}

/// The row for `key` in a fresh read transaction.
pub fn read_entry(db: &Database, key: &str) -> Result<Indexed, redb::Error> {
    let txn = db.begin_read()?;
    let entries = txn.open_table(ENTRIES)?;
    Ok(decode(entries.get(key)?.map(|g| g.value().to_vec())))
}

/// Keys starting with `prefix`, in a fresh read transaction.
pub fn keys_with_prefix(db: &Database, prefix: &str) -> Result<Vec<String>, redb::Error> {
    let txn = db.begin_read()?;
    let entries = txn.open_table(ENTRIES)?;
    let mut keys = Vec::new();
    for row in entries.range::<&str>(prefix..)? {
        let (k, _) = row?;
        let k = k.value();
        if !k.starts_with(prefix) {
            break;
        }
        keys.push(k.to_owned());
    }
    Ok(keys)
}

/// The reference count and length of a blob, if any entry references it.
pub fn blob(db: &Database, hash: &BlobHash) -> Result<Option<(u64, u64)>, redb::Error> {
    let txn = db.begin_read()?;
    let blobs = txn.open_table(BLOBS)?;
    Ok(blobs.get(&hash.0)?.map(|g| g.value()))
}

fn decode(bytes: Option<Vec<u8>>) -> Indexed {
    match bytes {
        None => Indexed::Absent,
        Some(b) => Meta::from_bytes(&b).map_or(Indexed::Undecodable, Indexed::Entry),
    }
}

/// Every change to the index within one write transaction.
pub struct IndexWriter<'t> {
    entries: Table<'t, &'static str, &'static [u8]>,
    blobs: Table<'t, &'static [u8; 32], (u64, u64)>,
    recency: Table<'t, u64, &'static str>,
    key_seq: Table<'t, &'static str, u64>,
    state: Table<'t, &'static str, u64>,
    vary: Table<'t, &'static str, &'static str>,
    /// (tag, key) rows, kept in step with `entries` (see `cache::tags`).
    tags: Table<'t, (&'static str, &'static str), ()>,
    /// The counters as this transaction leaves them.
    pub counters: Counters,
    released: Vec<BlobHash>,
}

impl<'t> IndexWriter<'t> {
    /// Opens every table of `txn`.
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, redb::Error> {
        let state = txn.open_table(STATE)?;
        let get = |name: &str| -> Result<u64, redb::Error> {
            Ok(state.get(name)?.map(|v| v.value()).unwrap_or(0))
        };
        let counters = Counters {
            generation: get(GENERATION)?,
            next_seq: get(NEXT_SEQ)?,
            blob_bytes: get(BLOB_BYTES)?,
        };
        Ok(IndexWriter {
            entries: txn.open_table(ENTRIES)?,
            blobs: txn.open_table(BLOBS)?,
            recency: txn.open_table(RECENCY)?,
            key_seq: txn.open_table(KEY_SEQ)?,
            state,
            vary: txn.open_table(VARY)?,
            tags: txn.open_table(crate::cache::tags::TAGS)?,
            counters,
            released: Vec::new(),
        })
    }

    /// The row for `key` as this transaction sees it.
    pub fn get(&self, key: &str) -> Result<Indexed, redb::Error> {
        Ok(decode(self.entries.get(key)?.map(|g| g.value().to_vec())))
    }

    /// Stores `meta` under `key`, replacing any previous entry, as the most recently
    /// used entry. Returns the blob bytes this adds (blobs nothing referenced before).
    pub fn put(&mut self, key: &str, meta: &Meta) -> Result<u64, redb::Error> {
        // References first, release second: a blob the old and new entry share is never
        // released in between.
        let mut incoming = 0;
        for rep in &meta.reps {
            if self.incref(&rep.hash, rep.len)? {
                incoming += rep.len;
            }
        }
        self.remove(key)?;
        self.entries.insert(key, meta.to_bytes().as_slice())?;
        crate::cache::tags::index(&mut self.tags, key, &meta.tags)?;
        self.touch_unchecked(key)?;
        Ok(incoming)
    }

    /// Replaces the metadata of `key` without changing its blobs or recency; the caller
    /// has checked that the representations are the same.
    pub fn set_meta(&mut self, key: &str, meta: &Meta) -> Result<(), redb::Error> {
        self.entries.insert(key, meta.to_bytes().as_slice())?;
        Ok(())
    }

    /// Removes `key` and releases its blobs; returns whether it was stored.
    pub fn remove(&mut self, key: &str) -> Result<bool, redb::Error> {
        let Some(old) = self.entries.remove(key)?.map(|g| g.value().to_vec()) else {
            return Ok(false);
        };
        match Meta::from_bytes(&old) {
            Some(meta) => {
                for rep in &meta.reps {
                    self.decref(&rep.hash)?;
                }
                crate::cache::tags::unindex(&mut self.tags, key, &meta.tags)?;
            }
            None => tracing::warn!(
                target: "edge::disk",
                key,
                "removing an undecodable index row; its blobs stay until orphan collection"
            ),
        }
        if let Some(seq) = self.key_seq.remove(key)?.map(|g| g.value()) {
            self.recency.remove(seq)?;
        }
        Ok(true)
    }

    /// Removes every key starting with `prefix`; returns them.
    pub fn remove_prefix(&mut self, prefix: &str) -> Result<Vec<String>, redb::Error> {
        let mut keys = Vec::new();
        for row in self.entries.range::<&str>(prefix..)? {
            let (k, _) = row?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            keys.push(k.to_owned());
        }
        for k in &keys {
            self.remove(k)?;
        }
        Ok(keys)
    }

    /// Marks `key` most recently used, if it is stored.
    pub fn touch(&mut self, key: &str) -> Result<(), redb::Error> {
        if self.key_seq.get(key)?.is_some() {
            self.touch_unchecked(key)?;
        }
        Ok(())
    }

    fn touch_unchecked(&mut self, key: &str) -> Result<(), redb::Error> {
        if let Some(old) = self.key_seq.get(key)?.map(|g| g.value()) {
            self.recency.remove(old)?;
        }
        let seq = self.counters.next_seq;
        self.counters.next_seq += 1;
        self.recency.insert(seq, key)?;
        self.key_seq.insert(key, seq)?;
        Ok(())
    }

    /// Brings blob bytes within `budget` after `key` was stored with `incoming` new
    /// bytes, evicting least recently used entries other than `key`. On
    /// [`Admission::Reject`] nothing was evicted; the caller removes `key` again.
    pub fn evict_to(
        &mut self,
        budget: u64,
        key: &str,
        incoming: u64,
    ) -> Result<Admission<String>, redb::Error> {
        let mut failed = None;
        let admission = {
            let entries = &self.entries;
            let blobs = &self.blobs;
            let candidates = self.recency.iter()?.map_while(|row| {
                let step = || -> Result<Option<Candidate<String>>, redb::Error> {
                    let (_, k) = row?;
                    let k = k.value().to_owned();
                    if k == key {
                        return Ok(None);
                    }
                    let blobs = match entries
                        .get(k.as_str())?
                        .and_then(|g| Meta::from_bytes(g.value()))
                    {
                        Some(meta) => meta.reps.iter().map(|r| (r.hash, r.len)).collect(),
                        None => Vec::new(),
                    };
                    Ok(Some(Candidate { key: k, blobs }))
                };
                match step() {
                    Ok(c) => Some(c),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                }
            });
            let refs = |h: &BlobHash| blobs.get(&h.0).ok().flatten().map_or(0, |g| g.value().0);
            eviction::admit(
                budget,
                self.counters.blob_bytes,
                incoming,
                candidates.flatten(),
                refs,
            )
        };
        if let Some(e) = failed {
            return Err(e);
        }
        if let Admission::Admit(victims) = &admission {
            for victim in victims {
                self.remove(victim)?;
            }
        }
        Ok(admission)
    }

    /// Records the purge-all generation.
    pub fn set_generation(&mut self, generation: u64) {
        self.counters.generation = self.counters.generation.max(generation);
    }

    /// Records the `Vary` spec of `primary`.
    pub fn set_vary(&mut self, primary: &str, names: &[String]) -> Result<(), redb::Error> {
        self.vary.insert(primary, names.join("\n").as_str())?;
        Ok(())
    }

    /// Forgets the `Vary` spec of `primary`.
    pub fn remove_vary(&mut self, primary: &str) -> Result<(), redb::Error> {
        self.vary.remove(primary)?;
        Ok(())
    }

    /// Writes the counters back and returns them, the number of entries, and the blobs
    /// no entry references any more (their files may go once the transaction commits).
    pub fn finish(mut self) -> Result<Finished, redb::Error> {
        self.state.insert(GENERATION, self.counters.generation)?;
        self.state.insert(NEXT_SEQ, self.counters.next_seq)?;
        self.state.insert(BLOB_BYTES, self.counters.blob_bytes)?;
        let mut dead = Vec::new();
        self.released.sort();
        self.released.dedup();
        for hash in &self.released {
            if self.blobs.get(&hash.0)?.is_none() {
                dead.push(*hash);
            }
        }
        Ok(Finished {
            counters: self.counters,
            entries: self.entries.len()?,
            dead,
        })
    }

    /// Adds a reference to a blob; true when it is new to the index.
    fn incref(&mut self, hash: &BlobHash, len: u64) -> Result<bool, redb::Error> {
        let current = self.blobs.get(&hash.0)?.map(|g| g.value());
        match current {
            Some((refs, len)) => {
                self.blobs.insert(&hash.0, (refs + 1, len))?;
                Ok(false)
            }
            None => {
                self.blobs.insert(&hash.0, (1, len))?;
                self.counters.blob_bytes += len;
                Ok(true)
            }
        }
    }

    fn decref(&mut self, hash: &BlobHash) -> Result<(), redb::Error> {
        let Some((refs, len)) = self.blobs.get(&hash.0)?.map(|g| g.value()) else {
            return Ok(());
        };
        if refs <= 1 {
            self.blobs.remove(&hash.0)?;
            self.counters.blob_bytes = self.counters.blob_bytes.saturating_sub(len);
            self.released.push(*hash);
        } else {
            self.blobs.insert(&hash.0, (refs - 1, len))?;
        }
        Ok(())
    }
}
