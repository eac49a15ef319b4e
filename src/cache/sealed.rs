//! Copies of stored bodies in sealed memory files, for `sendfile(2)`.
//!
//! A hit written from memory costs the kernel a copy of every byte into the socket, and
//! costs the client a read of memory another core has just written; `sendfile` from a
//! file hands the socket references to the file's pages instead, and the client reads
//! the same warm pages each time (on loopback with wrk, a 50 KB br body took the client
//! 12.9% of its CPU in the copy from edge's written bytes and 8.1% from nginx's
//! `sendfile`d pages). The first time a plain HTTP/1.1 connection's direct path answers
//! a body of at least [`MIN_LEN`] bytes, the body is copied once into an anonymous
//! memory file (`memfd_create`), sealed against any change of size or content, and
//! sent from it from then on. The copy lives as long as its entry's representation, and
//! all copies together stay within `cache.sendfile_memory`.
//!
//! The sealed file is what makes this safe: its bytes can never change, so a response
//! still in the socket's queue when its entry is dropped is sent whole and unchanged.
//!
//! The same budget counts the disk tier's blob files that memory-tier entries hold open
//! ([`BlobHold`], within `cache.open_blobs`), so that large disk hits are sent with
//! `sendfile` from their blobs: sealed copies and open blobs together stay within the
//! descriptors the open-file limit leaves beside the client connections.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, memfd_create};

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
}

/// One body's sealed copy.
#[derive(Debug)]
pub struct SealedBody {
    file: OwnedFd,
    len: u64,
    charged: u64,
    sealer: Arc<Sealer>,
}

/// Blob files of the disk tier that one memory-tier entry holds open, counted against
/// [`Sealer`]'s descriptors until it is dropped.
#[derive(Debug)]
pub struct BlobHold {
    files: u64,
    sealer: Arc<Sealer>,
}

impl Sealer {
    /// A budget of `max` bytes of sealed copies (zero: none) and `max_blobs` open blob
    /// files (zero: none).
    pub fn new(max: u64, max_blobs: u64) -> Arc<Self> {
        Arc::new(Sealer {
            max,
            used: AtomicU64::new(0),
            max_files: AtomicU64::new(u64::MAX),
            files: AtomicU64::new(0),
            max_blobs,
            blobs: AtomicU64::new(0),
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
        // Charged from here: the body's drop, or the guard's on an error, gives it back.
        let guard = SealedBody {
            file: memfd_create("edge-body", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .map_err(|e| self.refund(charged, e))?,
            len: bytes.len() as u64,
            charged,
            sealer: self.clone(),
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            match rustix::io::write(&guard.file, rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        fcntl_add_seals(
            &guard.file,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
        )?;
        Ok(Some(Arc::new(guard)))
    }

    fn refund(&self, charged: u64, error: rustix::io::Errno) -> io::Error {
        self.used.fetch_sub(charged, Ordering::AcqRel);
        self.files.fetch_sub(1, Ordering::AcqRel);
        error.into()
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
        let sealer = Sealer::new(1 << 20, 0);
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
        let sealer = Sealer::new(64 * 1024, 0);
        assert!(sealer.seal(&[1; MIN_LEN - 1]).unwrap().is_none());
        let first = sealer.seal(&[1; 40_000]).unwrap().expect("room");
        assert!(!sealer.has_room(40_000));
        assert!(sealer.seal(&[2; 40_000]).unwrap().is_none());
        assert_eq!(sealer.used(), 40_960);
        drop(first);
        assert!(sealer.seal(&[2; 40_000]).unwrap().is_some());
        let few = Sealer::new(1 << 20, 0);
        few.limit_files(1);
        let one = few.seal(&[1; MIN_LEN]).unwrap().expect("room");
        assert!(!few.has_room(MIN_LEN));
        assert!(few.seal(&[1; MIN_LEN]).unwrap().is_none());
        drop(one);
        assert!(few.seal(&[1; MIN_LEN]).unwrap().is_some());
        let off = Sealer::new(0, 0);
        assert!(off.seal(&[1; MIN_LEN]).unwrap().is_none());
        assert_eq!(off.used(), 0);
    }

    #[test]
    fn open_blobs_share_the_descriptor_limit_with_sealed_copies() {
        let sealer = Sealer::new(1 << 20, 3);
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
        assert!(Sealer::new(1 << 20, 0).hold_blobs(1).is_none(), "0: none");
    }
}
