//! Blob files: the directory layout, the atomic write (temp file while hashing, fsync,
//! rename), and the verified read. A blob's name is the blake3 of its bytes, so a file
//! whose bytes do not hash to its name is corrupt, whatever else looks right.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::cache::meta::BlobHash;

/// Where the disk tier keeps its files under `[cache] dir`.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }

    /// `<dir>/index.redb`.
    pub fn index(&self) -> PathBuf {
        self.root.join("index.redb")
    }

    /// `<dir>/blobs`.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// `<dir>/tmp`: blobs being written; anything left here at start-up is removed.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `<dir>/blobs/ab/cd/<hex>`.
    pub fn blob(&self, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.blobs().join(&hex[..2]).join(&hex[2..4]).join(hex)
    }
}

/// Why a blob could not be served.
#[derive(Debug)]
pub enum Fault {
    /// The file is gone.
    Missing,
    /// The file's length differs from the indexed length.
    Length {
        /// Length in the index.
        expected: u64,
        /// Length on disk.
        found: u64,
    },
    /// The bytes do not hash to the blob's name.
    Hash,
    /// Reading failed.
    Io(io::Error),
}

impl Fault {
    /// A short name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Fault::Missing => "missing",
            Fault::Length { .. } => "wrong-length",
            Fault::Hash => "hash-mismatch",
            Fault::Io(_) => "io-error",
        }
    }

    fn from_io(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::NotFound {
            Fault::Missing
        } else {
            Fault::Io(e)
        }
    }
}

/// Reads a whole blob and checks it against its name before returning a byte of it.
pub fn read_verified(path: &Path, hash: &BlobHash, len: u64) -> Result<Bytes, Fault> {
    let bytes = fs::read(path).map_err(Fault::from_io)?;
    if bytes.len() as u64 != len {
        return Err(Fault::Length {
            expected: len,
            found: bytes.len() as u64,
        });
    }
    if BlobHash::of(&bytes) != *hash {
        return Err(Fault::Hash);
    }
    Ok(Bytes::from(bytes))
}

/// Opens a blob for streaming after checking its length; its bytes are verified as
/// they are read.
pub fn open_checked(path: &Path, len: u64) -> Result<(File, FileStamp), Fault> {
    let file = File::open(path).map_err(Fault::from_io)?;
    let metadata = file.metadata().map_err(Fault::Io)?;
    let found = metadata.len();
    if found != len {
        return Err(Fault::Length {
            expected: len,
            found,
        });
    }
    Ok((file, FileStamp::of(&metadata)))
}

/// Which file, in which state: a blob rewritten, replaced or touched gets another
/// stamp, so a verification recorded against the old one no longer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    pub(super) fn of(metadata: &fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt as _;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        FileStamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// Whether a complete-looking blob is in place (right length; content is checked on
/// read). Used to skip rewriting a blob that another entry already stored.
pub fn present(path: &Path, len: u64) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == len)
}

/// Hashes a whole file; `None` when it cannot be read.
pub fn hash_file(path: &Path) -> Option<BlobHash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(path).ok()?).ok()?;
    Some(BlobHash(*hasher.finalize().as_bytes()))
}

/// A temp file that is removed unless it was renamed into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` as the blob `hash`: to `tmp/` while hashing, fsync, then rename into
/// place (a rename onto an existing blob is success: same name, same bytes). Directories
/// whose entries changed are added to `dirty_dirs`; the caller fsyncs them before the
/// index may reference the blob. On any error nothing is left in `tmp/`.
pub fn write(
    layout: &Layout,
    hash: &BlobHash,
    bytes: &[u8],
    dirty_dirs: &mut BTreeSet<PathBuf>,
) -> io::Result<()> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_path = layout.tmp().join(format!("{}-{n}.tmp", std::process::id()));
    let mut tmp = TempFile(Some(tmp_path.clone()));
    let mut file = File::create_new(&tmp_path)?;
    let mut hasher = blake3::Hasher::new();
    for chunk in bytes.chunks(1 << 20) {
        hasher.update(chunk);
        file.write_all(chunk)?;
    }
    file.sync_all()?;
    drop(file);
    if hasher.finalize().as_bytes() != &hash.0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("body does not hash to its blob name {hash}"),
        ));
    }
    let dest = layout.blob(hash);
    let parent = dest.parent().expect("blob paths have a parent");
    if !parent.is_dir() {
        create_dirs(parent, dirty_dirs)?;
    }
    fs::rename(&tmp_path, &dest)?;
    tmp.0 = None;
    dirty_dirs.insert(parent.to_path_buf());
    Ok(())
}

/// Creates `dir` and its missing parents, recording each parent whose entries changed.
fn create_dirs(dir: &Path, dirty_dirs: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.is_dir() {
        missing.push(cur.to_path_buf());
        cur = match cur.parent() {
            Some(p) => p,
            None => break,
        };
    }
    for d in missing.iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = d.parent() {
            dirty_dirs.insert(p.to_path_buf());
        }
    }
    Ok(())
}

/// Makes directory entry changes (renames, new directories) durable.
pub fn sync_dirs(dirs: &BTreeSet<PathBuf>) -> io::Result<()> {
    for dir in dirs {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Removes a blob file; a file already gone is fine.
pub fn remove(layout: &Layout, hash: &BlobHash) -> io::Result<()> {
    match fs::remove_file(layout.blob(hash)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Parses a blob file name back into its hash.
pub fn parse_name(name: &str) -> Option<BlobHash> {
    let hash = blake3::Hash::from_hex(name).ok()?;
    Some(BlobHash(*hash.as_bytes()))
}

/// Empties `tmp/`, returning how many leftovers were removed.
pub fn clear_tmp(layout: &Layout) -> io::Result<usize> {
    let mut removed = 0;
    for item in fs::read_dir(layout.tmp())? {
        let path = item?.path();
        let gone = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}
