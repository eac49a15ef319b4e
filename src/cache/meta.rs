//! Entry metadata: everything about a stored response except its body bytes. It is what
//! the disk index stores (serialised with postcard) and what the memory tier holds
//! beside the bodies.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::http::encoding::Encoding;
use crate::http::freshness::Freshness;

/// The stored field that names the coding of a body kept as the origin sent it.
const OPAQUE_CODING: &str = "content-encoding";

/// The blake3 hash of a blob's bytes: its name on disk and its identity everywhere.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        BlobHash(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// One representation of a stored response: the identity body or an encoded variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rep {
    /// Its content coding.
    pub encoding: Encoding,
    /// The blob holding its bytes.
    pub hash: BlobHash,
    /// Its length in bytes.
    pub len: u64,
    /// Its strong ETag field value, quoted (RFC 9110 §8.8.3).
    pub etag: String,
}

/// Metadata of a stored response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// `host` + path and query, for logs and purges.
    pub url: String,
    /// The response status.
    pub status: u16,
    /// End-to-end response headers as stored: hop-by-hop fields, `Content-Length`,
    /// `Content-Encoding` and `ETag` are held elsewhere and not repeated here.
    pub headers: Vec<(String, Vec<u8>)>,
    /// When the request that filled this entry was sent, in Unix seconds.
    pub request_time: u64,
    /// When its response was received, in Unix seconds.
    pub response_time: u64,
    /// Freshness computed from the response at fill or last revalidation.
    pub freshness: Freshness,
    /// `Last-Modified`, in Unix seconds, when the origin sent a valid one.
    pub last_modified: Option<u64>,
    /// Surrogate keys from `Surrogate-Key` / `Cache-Tag`.
    pub tags: Vec<String>,
    /// The representations, identity first.
    pub reps: Vec<Rep>,
    /// The purge-all generation this entry was stored in.
    pub generation: u64,
    /// Set by a soft purge: the entry must be revalidated before it is used fresh.
    pub invalidated: bool,
}

impl Meta {
    /// `response_time` as a `SystemTime`.
    pub fn response_at(&self) -> SystemTime {
        from_unix(self.response_time)
    }

    /// When the response was generated: its `Date`, else when it was received
    /// (RFC 9111 §4.3.2's stand-in for a missing `Last-Modified`).
    pub fn generated_at(&self) -> SystemTime {
        self.header("date")
            .and_then(crate::http::date::parse)
            .unwrap_or_else(|| self.response_at())
    }

    /// `last_modified` as a `SystemTime`.
    pub fn last_modified_at(&self) -> Option<SystemTime> {
        self.last_modified.map(from_unix)
    }

    /// The identity representation.
    pub fn identity(&self) -> &Rep {
        &self.reps[0]
    }

    /// Total bytes of all representations.
    pub fn body_bytes(&self) -> u64 {
        self.reps.iter().map(|r| r.len).sum()
    }

    /// The origin's `Content-Encoding` of a body stored as it was sent, because edge
    /// does not decode that coding (see `fill`): such an entry has one representation,
    /// served as is to every client, and is never compressed again.
    pub fn opaque_coding(&self) -> Option<&[u8]> {
        self.header(OPAQUE_CODING)
    }

    /// Records the coding of a body stored as the origin sent it (see
    /// [`Self::opaque_coding`]); the stored fields otherwise never hold one.
    pub fn set_opaque_coding(&mut self, coding: Vec<u8>) {
        self.headers.push((OPAQUE_CODING.to_owned(), coding));
    }

    /// The first stored value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The stored fields as a header map (fields that fail to parse are skipped).
    pub fn header_map(&self) -> http::HeaderMap {
        let mut headers = http::HeaderMap::with_capacity(self.headers.len() + 8);
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_bytes(value),
            ) {
                headers.append(n, v);
            }
        }
        headers
    }

    /// Encodes for the disk index.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("metadata always serialises")
    }

    /// Decodes from the disk index; `None` when the bytes are not a valid entry.
    pub fn from_bytes(bytes: &[u8]) -> Option<Meta> {
        let meta: Meta = postcard::from_bytes(bytes).ok()?;
        (!meta.reps.is_empty()).then_some(meta)
    }
}

/// Seconds since the Unix epoch.
pub fn to_unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The inverse of [`to_unix`].
pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}
