//! A hit written as HTTP/1.1 bytes, for the listener's direct path
//! (`listener::direct`): the response [`super::respond`] builds for hyper, from the same
//! fields, serialised once per representation and kept beside the maps ([`Wire`]).

use std::time::SystemTime;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderValue};

use super::{
    CACHE_STATUS, CacheStatus, Presentation, StackText, choose, full_fields_of, not_modified_block,
    other_etags,
};
use crate::cache::{Body as Stored, DiskBody, Entry, Wire};
use crate::http::conditional::{self, Validators};
use crate::http::split_list;

/// What [`respond_wire`] answered, beside the head it wrote.
pub struct WireHit<'a> {
    /// 200 or 304.
    pub status: u16,
    /// The body to send after the head: empty for a 304, and for a body on disk.
    pub body: Bytes,
    /// A 200's body that stays on disk: its blob, for the caller to send.
    pub disk: Option<&'a DiskBody>,
    /// The representation answered (of `entry.meta.reps`).
    pub index: usize,
    /// The response's `Content-Encoding`, if it has one.
    pub encoding: Option<HeaderValue>,
}

/// [`super::respond`] for the requests the direct path takes: a GET or HEAD whose only
/// fields that matter here are `Accept-Encoding` and `If-None-Match` (each at most one
/// line), of an entry stored with status 200. Writes the response's status line and
/// fields into `out` (the caller adds any of its own, then the empty line that ends
/// the head) and returns the rest; `None` (with `out` untouched) when the answer is
/// anything else — a 406, fields without `Date` — which the caller leaves to hyper.
pub fn respond_wire<'a>(
    entry: &'a Entry,
    accept: Option<&[u8]>,
    if_none_match: Option<&[u8]>,
    now: SystemTime,
    mut status: CacheStatus,
    presentation: &Presentation<'_>,
    out: &mut Vec<u8>,
) -> Option<WireHit<'a>> {
    let meta = &entry.meta;
    if meta.status != 200 {
        return None;
    }
    let index = choose(meta, presentation.preference, accept)?;
    let rep = &meta.reps[index];
    let not_modified = if_none_match.is_some_and(|field| {
        let (others, count) = other_etags(meta, index);
        let validators = Validators {
            etag: Some(&rep.etag),
            other_etags: &others[..count],
            ..Validators::default()
        };
        conditional::none_match_hits(|| split_list(field, false), &validators)
    });
    let (body, disk) = match (not_modified, entry.body(index)) {
        (true, _) => (Bytes::new(), None),
        (false, Stored::Memory(bytes)) => (bytes.clone(), None),
        (false, Stored::Disk(disk)) => (Bytes::new(), Some(&**disk)),
    };

    let block = entry.header_block(index);
    let full = || full_fields_of(entry, index, (presentation.compressible)(meta));
    let wire = match not_modified {
        true => block
            .not_modified_wire
            .get_or_init(|| serialise(&not_modified_block(&full()))),
        false => block.full_wire.get_or_init(|| serialise(&full())),
    };
    if !wire.dated {
        // Every stored response has a Date (fills add one); hyper would add it.
        return None;
    }

    let response_at = meta.response_at();
    status.ttl = Some(meta.freshness.ttl(response_at, now));
    let age = meta.freshness.current_age(response_at, now);
    out.extend_from_slice(match not_modified {
        true => b"HTTP/1.1 304 Not Modified\r\n",
        false => b"HTTP/1.1 200 OK\r\n",
    });
    match presentation.cache_control {
        Some(cc) => {
            out.extend_from_slice(&wire.fields[..wire.cache_control_at]);
            field(out, b"cache-control", cc.as_bytes());
        }
        None => out.extend_from_slice(&wire.fields),
    }
    let mut text = StackText::default();
    text.push_int(i64::try_from(age).unwrap_or(i64::MAX));
    field(out, b"age", text.as_ref());
    let mut text = StackText::default();
    status.write(&mut text);
    field(out, CACHE_STATUS.as_str().as_bytes(), text.as_ref());
    Some(WireHit {
        status: if not_modified { 304 } else { 200 },
        body,
        disk,
        index,
        encoding: wire.encoding.clone(),
    })
}

/// `block` as HTTP/1.1 writes it, less the fields each response sets for itself (`Age`
/// and `Cache-Status`), with `Cache-Control` last.
fn serialise(block: &HeaderMap) -> Box<Wire> {
    let mut fields = Vec::with_capacity(
        block
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum(),
    );
    for (name, value) in block {
        if *name != header::AGE && *name != CACHE_STATUS && *name != header::CACHE_CONTROL {
            field(&mut fields, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let cache_control_at = fields.len();
    for value in block.get_all(header::CACHE_CONTROL) {
        field(&mut fields, b"cache-control", value.as_bytes());
    }
    Box::new(Wire {
        fields: fields.into_boxed_slice(),
        cache_control_at,
        dated: block.contains_key(header::DATE),
        encoding: block.get(header::CONTENT_ENCODING).cloned(),
    })
}

/// Writes one field line, `name: value` and its CRLF, into a head being written.
pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
