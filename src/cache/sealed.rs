//! Copies of stored bodies in files no one else can change, for `sendfile(2)`.
//!
//! A hit written from memory costs the kernel a copy of every byte into the socket, and
//! costs the client a read of memory another core has just written; `sendfile` from a
//! file hands the socket references to the file's pages instead, and the client reads
//! the same warm pages each time (on loopback with wrk, a 50 KB br body took the client
//! 12.9% of its CPU in the copy from edge's written bytes and 8.1% from nginx's
//! `sendfile`d pages). The first time a plain HTTP/1.1 connection's direct path answers
//! a body of at least [`MIN_LEN`] bytes, the body is copied once into a file and sent
//! from it from then on. The copy lives as long as its entry's representation, and all
//! copies together stay within `cache.sendfile_memory`.
//!
//! Where the copy is made:
//! - With the disk tier on, in an unnamed file (`O_TMPFILE`) in `cache.dir`: its bytes
//!   are in that file system's page cache, which the kernel splices into a socket for
//!   less than a memory file costs (shmem looks its pages up one by one; on this
//!   project's VM a 49 KB br hit cost 13.2 instead of 15.5 µs of CPU). The kernel
//!   writes the file out in the background and may evict its pages under memory
//!   pressure; a copy is sent only when its first and last pages are cached (checked at
//!   most once a second per copy), and otherwise the hit is written from memory while
//!   the pages are read back in the background. The file has no name: only edge's
//!   descriptor reaches it (and, through `/proc`, edge's own user and root), and edge
//!   never writes to it after the copy.
//! - Without a disk tier, on a file system without `O_TMPFILE`, or when the file could
//!   not be written there (a full disk), in an anonymous memory file (`memfd_create`)
//!   sealed against any change of size or content, which stays in memory (or swap).
//!
//! Either way a copy never changes once made, so a response still in the socket's queue
//! when its entry is dropped is sent whole and unchanged.
//!
//! The same budget counts the disk tier's blob files that memory-tier entries hold open
//! ([`BlobHold`], within `cache.open_blobs`), so that large disk hits are sent with
//! `sendfile` from their blobs: copies and open blobs together stay within the
//! descriptors the open-file limit leaves beside the client connections.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{
    Advice, MemfdFlags, Mode, OFlags, SealFlags, fadvise, fcntl_add_seals, memfd_create,
};

use super::disk::page_cached;

/// Bodies shorter than this are written from memory: `sendfile` pays for itself only
/// where the copy it saves is large.
pub const MIN_LEN: usize = 16 * 1024;

/// The budget for sealed copies, shared by every entry.
#[derive(Debug)]
pub struct Sealer {
    /// Most bytes of sealed copies at once (each counted in whole pages); zero: none.
    max: u64,
    used: AtomicU64,
    /// Most sealed copies at once: each holds a file descriptor, which client
    /// connections need more.
    max_files: AtomicU64,
    files: AtomicU64,
    /// Most blob files held open at once by memory-tier entries (`cache.open_blobs`).
    max_blobs: u64,
    blobs: AtomicU64,
    /// The directory whose file system holds the copies; `None`: memory files.
    dir: Option<OwnedFd>,
    /// Set when a copy could not be made in `dir` for want of `O_TMPFILE`: memory
    /// files from then on.
    dir_unusable: AtomicBool,
}

/// One body's copy.
#[derive(Debug)]
pub struct SealedBody {
    file: OwnedFd,
    len: u64,
    charged: u64,
    sealer: Arc<Sealer>,
    /// Whether the copy is in a file system's page cache, whose pages the kernel may
    /// evict (not a memory file).
    evictable: bool,
    /// The second (since the epoch) of the last check that found its pages cached.
    checked: AtomicU64,
}

/// Blob files of the disk tier that one memory-tier entry holds open, counted against
/// [`Sealer`]'s descriptors until it is dropped.
#[derive(Debug)]
pub struct BlobHold {
    files: u64,
    sealer: Arc<Sealer>,
}

impl Sealer {
    /// A budget of `max` bytes of copies (zero: none) and `max_blobs` open blob files
    /// (zero: none). The copies are made in `dir`'s file system when it is given and
    /// can be opened, and in memory files otherwise.
    pub fn new(max: u64, max_blobs: u64, dir: Option<&Path>) -> Arc<Self> {
        let dir = dir.and_then(|dir| {
            rustix::fs::open(
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .inspect_err(|error| {
                tracing::warn!(dir = %dir.display(), %error,
                        "cannot open the directory for body copies; making them in memory files")
            })
            .ok()
        });
        Arc::new(Sealer {
            max,
            used: AtomicU64::new(0),
            max_files: AtomicU64::new(u64::MAX),
            files: AtomicU64::new(0),
            max_blobs,
            blobs: AtomicU64::new(0),
            dir,
            dir_unusable: AtomicBool::new(false),
        })
    }

    /// Room for `files` more blob files held open, if the budget has it now.
    pub fn hold_blobs(self: &Arc<Self>, files: u64) -> Option<BlobHold> {
        let blobs = self.blobs.fetch_add(files, Ordering::AcqRel);
        let all = self.files.fetch_add(files, Ordering::AcqRel);
        let hold = BlobHold {
            files,
            sealer: self.clone(),
        };
        // Over either limit: the hold's drop gives both back.
        (files > 0
            && blobs + files <= self.max_blobs
            && all + files <= self.max_files.load(Ordering::Relaxed))
        .then_some(hold)
    }

    /// Blob files held open now.
    pub fn blobs(&self) -> u64 {
        self.blobs.load(Ordering::Relaxed)
    }

    /// Allows at most `files` descriptors at once: sealed copies and held blob files.
    pub fn limit_files(&self, files: u64) {
        self.max_files.store(files, Ordering::Relaxed);
    }

    /// Bytes of sealed copies held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether a body of `len` bytes would get a copy now.
    pub fn has_room(&self, len: usize) -> bool {
        len >= MIN_LEN
            && self.used() + charge(len) <= self.max
            && self.files.load(Ordering::Relaxed) < self.max_files.load(Ordering::Relaxed)
    }

    /// A sealed copy of `bytes`: `Ok(None)` when the budget has no room for it now,
    /// an error when the file could not be made (the body is then sent from memory).
    pub fn seal(self: &Arc<Self>, bytes: &[u8]) -> io::Result<Option<Arc<SealedBody>>> {
        let charged = charge(bytes.len());
        let before = self.used.fetch_add(charged, Ordering::AcqRel);
        let files = self.files.fetch_add(1, Ordering::AcqRel);
        if bytes.len() < MIN_LEN
            || before + charged > self.max
            || files >= self.max_files.load(Ordering::Relaxed)
        {
            self.used.fetch_sub(charged, Ordering::AcqRel);
            self.files.fetch_sub(1, Ordering::AcqRel);
            return Ok(None);
        }
        // Charged from here: the copy's drop gives it back, or the refund on an error.
        if let Some(file) = self.copy_to_disk(bytes) {
            return Ok(Some(self.body(file, bytes, charged, true)));
        }
        match copy_to_memory(bytes) {
            Ok(file) => Ok(Some(self.body(file, bytes, charged, false))),
            Err(error) => Err(self.refund(charged, error)),
        }
    }

    fn body(
        self: &Arc<Self>,
        file: OwnedFd,
        bytes: &[u8],
        charged: u64,
        evictable: bool,
    ) -> Arc<SealedBody> {
        Arc::new(SealedBody {
            file,
            len: bytes.len() as u64,
            charged,
            sealer: self.clone(),
            evictable,
            checked: AtomicU64::new(0),
        })
    }

    /// `bytes` in an unnamed file in `dir`; `None` without a usable `dir`, or when the
    /// file could not be made or written (a full disk, say): the copy then goes to a
    /// memory file.
    fn copy_to_disk(&self, bytes: &[u8]) -> Option<OwnedFd> {
        let dir = self.dir.as_ref()?;
        if self.dir_unusable.load(Ordering::Relaxed) {
            return None;
        }
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        let made = rustix::fs::openat(dir, ".", flags, Mode::RUSR | Mode::WUSR)
            .map_err(io::Error::from)
            .and_then(|file| write_all(&file, bytes).map(|()| file));
        let error = match made {
            Ok(file) => return Some(file),
            Err(error) => error,
        };
        let errno = rustix::io::Errno::from_io_error(&error);
        if matches!(
            errno,
            Some(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR)
        ) {
            // No O_TMPFILE on this file system (or kernel): memory files from now on.
            self.dir_unusable.store(true, Ordering::Relaxed);
            tracing::warn!(%error, "the cache directory's file system cannot hold unnamed \
                files; body copies for sendfile go to memory files");
        } else {
            tracing::debug!(%error, "could not copy a body into the cache directory; \
                making a memory file instead");
        }
        None
    }

    fn refund(&self, charged: u64, error: io::Error) -> io::Error {
        self.used.fetch_sub(charged, Ordering::AcqRel);
        self.files.fetch_sub(1, Ordering::AcqRel);
        error
    }
}

impl SealedBody {
    /// The sealed file, to send from.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Its length: the body's.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty (never: see [`MIN_LEN`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether sending the copy now is unlikely to wait for the disk: always for a
    /// memory file; for a copy in the page cache, when its first and last pages were
    /// found cached within the second of `now`. A copy found evicted is read back in
    /// the background, and the caller sends the body from memory meanwhile.
    pub fn ready(&self, now: SystemTime) -> bool {
        if !self.evictable {
            return true;
        }
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.checked.load(Ordering::Relaxed) == second {
            return true;
        }
        let file = self.file.as_fd();
        if page_cached(file, 0) && page_cached(file, self.len - 1) {
            self.checked.store(second, Ordering::Relaxed);
            return true;
        }
        // Starts reading it back without waiting for it.
        let _ = fadvise(file, 0, None, Advice::WillNeed);
        false
    }

    /// Whether the copy is in a file system's page cache rather than a memory file.
    pub fn evictable(&self) -> bool {
        self.evictable
    }
}

impl Drop for SealedBody {
    fn drop(&mut self) {
        self.sealer.used.fetch_sub(self.charged, Ordering::AcqRel);
        self.sealer.files.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for BlobHold {
    fn drop(&mut self) {
        self.sealer.blobs.fetch_sub(self.files, Ordering::AcqRel);
        self.sealer.files.fetch_sub(self.files, Ordering::AcqRel);
    }
}

/// `bytes` in a memory file sealed against any change.
fn copy_to_memory(bytes: &[u8]) -> io::Result<OwnedFd> {
    let file = memfd_create("edge-body", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    write_all(&file, bytes)?;
    fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(file)
}

fn write_all(file: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(file, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Logs a copy that could not be made: a warning the first time, then at debug level
/// (each entry tries once, and a full file table would fail them all alike).
pub fn warn_once(error: &io::Error) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(%error, "could not make a sealed copy of a body; sending it from memory");
    } else {
        tracing::debug!(%error, "could not make a sealed copy of a body");
    }
}

/// What a copy of `len` bytes costs: the memory file holds whole pages.
fn charge(len: usize) -> u64 {
    (len as u64).div_ceil(4096) * 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(body: &SealedBody) -> Vec<u8> {
        let mut out = vec![0; body.len() as usize];
        let n = rustix::io::pread(body.fd(), &mut out, 0).unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn a_sealed_copy_holds_the_bytes_and_refuses_any_change() {
        let sealer = Sealer::new(1 << 20, 0, None);
        let bytes: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
        let body = sealer.seal(&bytes).unwrap().expect("room");
        assert_eq!(read_back(&body), bytes);
        assert_eq!(sealer.used(), 102_400, "whole pages");
        assert!(rustix::io::pwrite(body.fd(), b"x", 0).is_err());
        assert!(rustix::fs::ftruncate(body.fd(), 10).is_err());
        assert!(rustix::fs::ftruncate(body.fd(), 200_000).is_err());
        drop(body);
        assert_eq!(sealer.used(), 0);
    }

    #[test]
    fn copies_stay_within_the_budget_and_short_bodies_get_none() {
        let sealer = Sealer::new(64 * 1024, 0, None);
        assert!(sealer.seal(&[1; MIN_LEN - 1]).unwrap().is_none());
        let first = sealer.seal(&[1; 40_000]).unwrap().expect("room");
        assert!(!sealer.has_room(40_000));
        assert!(sealer.seal(&[2; 40_000]).unwrap().is_none());
        assert_eq!(sealer.used(), 40_960);
        drop(first);
        assert!(sealer.seal(&[2; 40_000]).unwrap().is_some());
        let few = Sealer::new(1 << 20, 0, None);
        few.limit_files(1);
        let one = few.seal(&[1; MIN_LEN]).unwrap().expect("room");
        assert!(!few.has_room(MIN_LEN));
        assert!(few.seal(&[1; MIN_LEN]).unwrap().is_none());
        drop(one);
        assert!(few.seal(&[1; MIN_LEN]).unwrap().is_some());
        let off = Sealer::new(0, 0, None);
        assert!(off.seal(&[1; MIN_LEN]).unwrap().is_none());
        assert_eq!(off.used(), 0);
    }

    #[test]
    fn open_blobs_share_the_descriptor_limit_with_sealed_copies() {
        let sealer = Sealer::new(1 << 20, 3, None);
        let two = sealer.hold_blobs(2).expect("room for two");
        assert_eq!(sealer.blobs(), 2);
        assert!(sealer.hold_blobs(2).is_none(), "beyond cache.open_blobs");
        assert_eq!(sealer.blobs(), 2, "a refused hold takes nothing");
        let one = sealer.hold_blobs(1).expect("room for one");
        drop(two);
        assert_eq!(sealer.blobs(), 1);
        sealer.limit_files(2);
        let copy = sealer
            .seal(&[1; MIN_LEN])
            .unwrap()
            .expect("a second descriptor");
        assert!(
            sealer.hold_blobs(1).is_none(),
            "the descriptors are all in use"
        );
        drop(copy);
        assert!(sealer.hold_blobs(1).is_some());
        drop(one);
        assert_eq!(sealer.blobs(), 0);
        assert!(
            Sealer::new(1 << 20, 0, None).hold_blobs(1).is_none(),
            "0: none"
        );
    }

    #[test]
    fn copies_in_a_directory_are_unnamed_and_sent_only_while_their_pages_are_cached() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(1 << 20, 0, Some(dir.path()));
        let bytes: Vec<u8> = (0..100_000).map(|i| (i % 253) as u8).collect();
        let body = sealer.seal(&bytes).unwrap().expect("room");
        assert_eq!(read_back(&body), bytes);
        assert_eq!(sealer.used(), 102_400, "whole pages");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the copy has no name"
        );
        if !body.evictable() {
            eprintln!("SKIPPED: no O_TMPFILE on this file system; the copy is a memory file");
            return;
        }
        let now = SystemTime::now();
        assert!(body.ready(now));
        // Written out and dropped from the page cache, as memory pressure would.
        rustix::fs::fdatasync(body.fd()).unwrap();
        fadvise(body.fd(), 0, None, Advice::DontNeed).unwrap();
        if page_cached(body.fd(), 0) {
            eprintln!("SKIPPED: this file system keeps its pages (tmpfs)");
            return;
        }
        assert!(body.ready(now), "checked once a second");
        let later = now + std::time::Duration::from_secs(1);
        assert!(!body.ready(later), "evicted: the caller sends from memory");
        // That check asked for the pages back, without waiting for them.
        let mut back = false;
        for _ in 0..500 {
            back = body.ready(later);
            if back {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(back, "the pages were read back");
        assert_eq!(read_back(&body), bytes);
        drop(body);
        assert_eq!(sealer.used(), 0);
    }

    #[test]
    fn without_a_usable_directory_copies_are_sealed_memory_files() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(1 << 20, 0, Some(&dir.path().join("missing")));
        let body = sealer.seal(&[7; MIN_LEN]).unwrap().expect("room");
        assert!(!body.evictable());
        assert!(body.ready(SystemTime::now()));
        assert!(rustix::io::pwrite(body.fd(), b"x", 0).is_err(), "sealed");
    }
}
