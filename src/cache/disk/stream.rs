//! A large blob streamed from its file in 128 KiB chunks, never read whole into memory,
//! and verified on the way: every byte of the file goes through blake3, and the last
//! piece of output is held back until the hash matches the blob's name. On a mismatch
//! the stream ends with an error instead, so the client's response is cut short (hyper
//! resets the connection) and is never complete as if it were whole; the entry is
//! removed so the next request refetches it.
//!
//! A blob that hashed correctly on a full read is trusted for `cache.verify_interval`
//! while its file keeps the same stamp (device, inode, length, mtime, ctime): then its
//! bytes are read without hashing, and a range reads only its own bytes.
//!
//! A chunk already in the page cache is read on the worker thread (`preadv2` with
//! `RWF_NOWAIT`, which fails rather than wait for the disk); only a chunk that needs
//! the disk goes to the blocking pool. The hand-off to a pool thread and back is two
//! context switches per chunk, which cost more than the read itself for a hot object.
//!
//! The stream yields to the runtime before each chunk after the first, so many large
//! responses on one thread share it in turns ([`crate::body::TURN`]).
//!
//! Chunks are read into buffers kept for reuse ([`Chunk`]): once hyper has sent a chunk
//! and dropped it, its buffer goes back to a small pool, already initialised (a fresh
//! one must be zeroed before it can be read into) and likely still in the CPU's cache.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use futures_util::Stream;

use super::Shared;
use super::blob::{Fault, FileStamp};
use crate::cache::Segment;
use crate::cache::key::CacheKey;
use crate::cache::meta::{BlobHash, Rep};

/// Bytes read from the file per step: one turn's worth ([`crate::body::TURN`]), after
/// which the stream yields so the thread's other connections go first.
const CHUNK: u64 = crate::body::TURN as u64;

/// A representation whose bytes stay in their blob file. The file is opened at lookup,
/// so an eviction that deletes it meanwhile does not disturb a response in progress.
#[derive(Clone)]
pub struct DiskBody {
    file: Arc<File>,
    hash: BlobHash,
    len: u64,
    key: CacheKey,
    tier: Weak<Shared>,
    /// The file's stamp when it was opened.
    stamp: Option<FileStamp>,
    /// Whether it hashed to its name recently, unchanged since: then it is read
    /// without hashing, and a range reads only its own bytes.
    trusted: bool,
}

impl DiskBody {
    pub(super) fn new(file: File, rep: &Rep, key: CacheKey, tier: Weak<Shared>) -> Self {
        DiskBody {
            file: Arc::new(file),
            hash: rep.hash,
            len: rep.len,
            key,
            tier,
            stamp: None,
            trusted: false,
        }
    }

    /// With the file's `stamp` at opening, and whether it is `trusted` already.
    pub(super) fn with_stamp(self, stamp: FileStamp, trusted: bool) -> Self {
        DiskBody {
            stamp: Some(stamp),
            trusted,
            ..self
        }
    }

    /// Length of the representation.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the representation is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The blob's name.
    pub fn hash(&self) -> &BlobHash {
        &self.hash
    }

    /// The blob's file, opened at lookup.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Whether it was trusted when opened (see [`Self::still_trusted`]).
    pub fn is_trusted(&self) -> bool {
        self.trusted
    }

    /// Whether it is trusted now: the disk tier still holds a verification of it within
    /// `cache.verify_interval`, and its file is still linked and has that stamp (so a
    /// blob rewritten, replaced, touched, evicted or purged since is not, nor one found
    /// corrupt meanwhile). A memory-tier entry that holds the file open is used only
    /// while this holds.
    pub fn still_trusted(&self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let (Some(stamp), Some(tier)) = (self.stamp, self.tier.upgrade()) else {
            return false;
        };
        self.file.metadata().is_ok_and(|now| {
            now.nlink() > 0 && FileStamp::of(&now) == stamp && tier.trusts(&self.hash, stamp)
        })
    }

    /// Whether its first and last bytes are in the page cache, so that sending it
    /// (`sendfile` on a worker thread) is unlikely to wait for the disk. Not a
    /// promise for the pages between: the kernel can evict them meanwhile.
    pub fn resident(&self) -> bool {
        self.len > 0 && page_cached(&self.file, 0) && page_cached(&self.file, self.len - 1)
    }

    /// The bytes of `segments` in order: literal bytes, and byte ranges of the blob that
    /// must be sorted, disjoint and within it (as `http::range::evaluate` returns them).
    pub fn stream(
        &self,
        segments: Vec<Segment>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let reader = Reader {
            body: self.clone(),
            segments: segments.into(),
            pos: 0,
            hasher: blake3::Hasher::new(),
            out: VecDeque::new(),
            verified: false,
            read_any: false,
        };
        futures_util::stream::try_unfold(reader, |mut reader| async move {
            Ok(reader.next().await?.map(|piece| (piece, reader)))
        })
    }
}

struct Reader {
    body: DiskBody,
    segments: VecDeque<Segment>,
    pos: u64,
    hasher: blake3::Hasher,
    out: VecDeque<Bytes>,
    verified: bool,
    /// Whether a chunk was read yet: every later one waits for a turn.
    read_any: bool,
}

impl Reader {
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            // Everything but the last piece may go before the whole file is verified.
            if self.verified || self.out.len() > 1 {
                return Ok(self.out.pop_front());
            }
            if self.body.trusted {
                // Verified recently and unchanged since: read only what is asked.
                if let Some(piece) = self.out.pop_front() {
                    return Ok(Some(piece));
                }
                match self.segments.front() {
                    None => return Ok(None),
                    Some(Segment::Range { start, .. }) if *start > self.pos => {
                        self.pos = (*start).min(self.body.len);
                    }
                    _ => {}
                }
            }
            if self.pos >= self.body.len {
                self.verify()?;
                continue;
            }
            if self.read_any {
                // A turn per chunk (see `crate::body::TURN`).
                tokio::task::yield_now().await;
            }
            let chunk = self.read_chunk().await?;
            self.read_any = true;
            if !self.body.trusted {
                self.hasher.update(&chunk);
            }
            self.emit(&chunk)?;
            self.pos += chunk.len() as u64;
        }
    }

    fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.out.push_back(piece);
        }
    }

    /// Queues the output that `chunk` (file bytes from `self.pos`) completes.
    fn emit(&mut self, chunk: &Bytes) -> io::Result<()> {
        let chunk_start = self.pos;
        let chunk_end = self.pos + chunk.len() as u64;
        while let Some(segment) = self.segments.front_mut() {
            match segment {
                Segment::Bytes(b) => {
                    let b = b.clone();
                    self.segments.pop_front();
                    self.push(b);
                }
                Segment::Range { start, end } => {
                    if *start >= chunk_end {
                        break;
                    }
                    if *start < chunk_start || *end < *start {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "byte ranges of a disk body must be sorted and disjoint",
                        ));
                    }
                    let from = (*start - chunk_start) as usize;
                    let to = ((*end + 1).min(chunk_end) - chunk_start) as usize;
                    let done = *end < chunk_end;
                    if done {
                        self.segments.pop_front();
                    } else {
                        *start = chunk_end;
                    }
                    self.push(chunk.slice(from..to));
                }
            }
        }
        Ok(())
    }

    /// At the end of the file: the hash must match before the held-back output goes.
    fn verify(&mut self) -> io::Result<()> {
        if !self.body.trusted && self.hasher.finalize().as_bytes() != &self.body.hash.0 {
            self.corrupt(&Fault::Hash);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} of {} does not hash to its name; response aborted",
                    self.body.hash, self.body.key
                ),
            ));
        }
        while let Some(segment) = self.segments.pop_front() {
            match segment {
                Segment::Bytes(b) => self.push(b),
                Segment::Range { .. } => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "byte range beyond the end of a disk body",
                    ));
                }
            }
        }
        self.verified = true;
        if !self.body.trusted
            && let (Some(stamp), Some(tier)) = (self.body.stamp, self.body.tier.upgrade())
        {
            tier.verified(&self.body.hash, stamp);
        }
        Ok(())
    }

    async fn read_chunk(&self) -> io::Result<Bytes> {
        let n = CHUNK.min(self.body.len - self.pos) as usize;
        let pos = self.pos;
        let mut chunk = Chunk::take(n);
        let cached = cached_prefix(&self.body.file, chunk.as_mut(), pos);
        if cached == n {
            return Ok(Bytes::from_owner(chunk));
        }
        let file = self.body.file.clone();
        let read = tokio::task::spawn_blocking(move || {
            file.read_exact_at(&mut chunk.as_mut()[cached..], pos + cached as u64)
                .map(|()| Bytes::from_owner(chunk))
        })
        .await
        .map_err(io::Error::other)?;
        if let Err(e) = &read
            && e.kind() == io::ErrorKind::UnexpectedEof
        {
            self.corrupt(&Fault::Length {
                expected: self.body.len,
                found: pos,
            });
        }
        read
    }

    fn corrupt(&self, fault: &Fault) {
        if let Some(tier) = self.body.tier.upgrade() {
            tier.corrupt_found(&self.body.key, &self.body.hash, fault);
        }
    }
}

/// Chunk buffers no response holds, ready for reuse: at most [`POOLED`] of them.
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Buffers kept in [`POOL`]: 8 MiB, enough for every stream a worker has in flight to
/// find one at a steady state.
const POOLED: usize = 64;

/// One chunk of a blob: the first `len` bytes of a [`CHUNK`]-sized buffer, which goes
/// back to [`POOL`] when the last `Bytes` made from it is dropped.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    /// A buffer for `len` (at most [`CHUNK`]) bytes: a pooled one, or a new one.
    fn take(len: usize) -> Chunk {
        let pooled = POOL.lock().map(|mut pool| pool.pop()).ok().flatten();
        let buf = pooled.unwrap_or_else(|| vec![0; CHUNK as usize]);
        Chunk { buf, len }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut pool) = POOL.lock()
            && pool.len() < POOLED
        {
            pool.push(buf);
        }
    }
}

/// Whether the byte of `file` at `pos` is in the page cache, so that reading or sending
/// its page would not wait for the disk.
fn page_cached(file: &File, pos: u64) -> bool {
    cached_prefix(file, &mut [0; 1], pos) == 1
}

/// Reads into `buf` from `pos` as much as the page cache holds without waiting for the
/// disk; returns how many bytes were read (0 when none were cached, at the end of the
/// file, or where the kernel or file system cannot promise not to wait).
fn cached_prefix(file: &File, buf: &mut [u8], pos: u64) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        let mut slices = [io::IoSliceMut::new(&mut buf[filled..])];
        match rustix::io::preadv2(
            file,
            &mut slices,
            pos + filled as u64,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_chunk_shows_only_the_bytes_read_into_it() {
        let mut first = Chunk::take(CHUNK as usize);
        first.as_mut().fill(b'a');
        drop(Bytes::from_owner(first));
        let mut second = Chunk::take(10);
        assert_eq!(second.as_mut().len(), 10);
        second.as_mut().copy_from_slice(b"0123456789");
        let bytes = Bytes::from_owner(second);
        assert_eq!(bytes, "0123456789");
        let slice = bytes.slice(2..4);
        drop(bytes);
        // The slice still holds the buffer: reusing it now would change these bytes.
        let mut third = Chunk::take(CHUNK as usize);
        third.as_mut().fill(b'z');
        assert_eq!(slice, "23");
    }

    #[test]
    fn a_cached_read_takes_what_the_page_cache_holds_up_to_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        // Just written, so in the page cache.
        let mut buf = vec![0; 4_000];
        assert_eq!(cached_prefix(&file, &mut buf, 1_000), 4_000);
        assert_eq!(buf, bytes[1_000..5_000]);
        let mut tail = vec![0; 4_000];
        assert_eq!(
            cached_prefix(&file, &mut tail, 8_000),
            2_000,
            "stops at the end"
        );
        assert_eq!(tail[..2_000], bytes[8_000..]);
        assert_eq!(cached_prefix(&file, &mut tail, 20_000), 0, "past the end");
    }
}
