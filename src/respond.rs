//! A stored entry and a request become a response: pick the representation, evaluate
//! preconditions (304/412) and ranges (206/416), and build the headers — `ETag`,
//! `Age`, `Cache-Status` (RFC 9211) and the stored end-to-end fields.

use std::time::SystemTime;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, request};

use crate::body::ResponseBody;
use crate::cache::meta::BlobHash;
use crate::cache::meta::Meta;
use crate::cache::{Body as Stored, Entry, Segment};
use crate::http::conditional::{self, Precondition, Validators};
use crate::http::encoding::{self, Encoding};
use crate::http::range::{self, ByteRange, RangeOutcome};
use crate::origin::VIA;

mod wire;
pub use wire::{WireHit, field, respond_wire};

/// The `Cache-Status` field (RFC 9211) for one response, by parameter.
#[derive(Debug, Clone, Default)]
pub struct CacheStatus {
    /// Served from cache without going forward.
    pub hit: bool,
    /// Why the request went forward: `uri-miss`, `vary-miss`, `stale`, `method`,
    /// `bypass`, `request`, `miss`.
    pub fwd: Option<&'static str>,
    /// The status the origin answered with.
    pub fwd_status: Option<u16>,
    /// The response was stored.
    pub stored: bool,
    /// The request waited for another request's fill.
    pub collapsed: bool,
    /// Remaining freshness in seconds (negative when stale).
    pub ttl: Option<i64>,
    /// Extra detail.
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    /// A hit.
    pub fn hit() -> Self {
        CacheStatus {
            hit: true,
            ..Default::default()
        }
    }

    /// A request that went forward for `reason`.
    pub fn forward(reason: &'static str) -> Self {
        CacheStatus {
            fwd: Some(reason),
            ..Default::default()
        }
    }

    /// The field value, e.g. `edge; fwd=uri-miss; fwd-status=200; stored`. Built on
    /// the stack: one allocation, for the value itself.
    pub fn to_header(&self) -> HeaderValue {
        let mut s = StackText::default();
        self.write(&mut s);
        HeaderValue::from_bytes(s.as_ref()).expect("cache-status is ASCII")
    }

    fn write(&self, s: &mut StackText) {
        s.push("edge");
        if self.hit {
            s.push("; hit");
        }
        if let Some(fwd) = self.fwd {
            s.push("; fwd=");
            s.push(fwd);
        }
        if let Some(status) = self.fwd_status {
            s.push("; fwd-status=");
            s.push_int(status.into());
        }
        if self.stored {
            s.push("; stored");
        }
        if self.collapsed {
            s.push("; collapsed");
        }
        if let Some(ttl) = self.ttl {
            s.push("; ttl=");
            s.push_int(ttl);
        }
        if let Some(detail) = self.detail {
            s.push("; detail=");
            s.push(detail);
        }
    }
}

/// `Age` and `Cache-Status` of one response from the cache, written on the stack and
/// then sharing one allocation (each value on its own would take one or two).
fn age_and_status(age: u64, status: &CacheStatus) -> (HeaderValue, HeaderValue) {
    let mut s = StackText::default();
    s.push_int(i64::try_from(age).unwrap_or(i64::MAX));
    let split = s.len;
    status.write(&mut s);
    let both = Bytes::from_owner(s);
    let value = |bytes: Bytes| HeaderValue::from_maybe_shared(bytes).expect("digits and ASCII");
    (value(both.slice(..split)), value(both.slice(split..)))
}

/// A short text written on the stack. Longer writes are cut at its capacity, which
/// every `Cache-Status` fits well within.
struct StackText {
    buf: [u8; 160],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; 160],
            len: 0,
        }
    }
}

impl StackText {
    fn push(&mut self, text: &str) {
        let n = text.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&text.as_bytes()[..n]);
        self.len += n;
    }

    /// Appends `n` in decimal.
    fn push_int(&mut self, n: i64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            self.push("-");
        }
        self.push(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
    }
}

impl AsRef<[u8]> for StackText {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Origin fields that are for this cache only and never reach clients, stored or
/// passed: `Surrogate-Control` (the Edge Architecture Specification has a surrogate
/// remove it) and the purge tags. `CDN-Cache-Control` is not among them: RFC 9213 §3
/// has CDN caches "typically forward" it for the CDNs downstream.
pub(crate) const EDGE_ONLY: [&str; 3] = ["surrogate-control", "surrogate-key", "cache-tag"];

/// How a site presents stored entries to clients.
#[derive(Clone, Copy)]
pub struct Presentation<'a> {
    /// The server's encoding preference, identity last (`[compression] preference`).
    pub preference: &'a [Encoding],
    /// Whether an object is compressible: its responses carry `Vary: Accept-Encoding`
    /// even before its variants are ready. Asked once per entry, when its header
    /// blocks are built.
    pub compressible: &'a dyn Fn(&Meta) -> bool,
    /// The `Cache-Control` sent to clients instead of the origin's (immutable rules).
    pub cache_control: Option<&'a HeaderValue>,
}

/// At most this many representations: identity, br, zstd, gzip.
const MAX_REPS: usize = 4;

/// Builds the response to `request` from `entry` at `now`.
pub fn respond(
    entry: &Entry,
    request: &request::Parts,
    now: SystemTime,
    mut status: CacheStatus,
    presentation: &Presentation<'_>,
) -> Response<ResponseBody> {
    let meta = &entry.meta;
    let response_at = meta.response_at();
    if status.hit {
        status.ttl = Some(meta.freshness.ttl(response_at, now));
    }
    let age = meta.freshness.current_age(response_at, now);

    let accept = request
        .headers
        .get(header::ACCEPT_ENCODING)
        .map(HeaderValue::as_bytes);
    let Some(index) = choose(meta, presentation.preference, accept) else {
        return not_acceptable(status);
    };
    let rep = &meta.reps[index];

    // RFC 9110 §13.2.2: preconditions before Range.
    let (other_etags, others) = other_etags(meta, index);
    let last_modified = meta.last_modified_at();
    let generated = (last_modified.is_none()
        && request.headers.contains_key(header::IF_MODIFIED_SINCE))
    .then(|| meta.generated_at());
    let validators = Validators {
        etag: Some(&rep.etag),
        other_etags: &other_etags[..others],
        last_modified,
        generated,
    };
    // §13.2.1: preconditions apply only where the response would be 2xx; a stored 404
    // or 301 is answered as it is.
    let precondition = if (200..300).contains(&meta.status) {
        conditional::evaluate(&request.method, &request.headers, &validators)
    } else {
        Precondition::Proceed
    };

    let block = entry.header_block(index);
    let compressible = || (presentation.compressible)(meta);
    let mut headers = if status.hit {
        let full = block
            .full
            .get_or_init(|| full_block(entry, index, compressible()));
        match precondition {
            Precondition::NotModified => block
                .not_modified
                .get_or_init(|| not_modified_block(full))
                .clone(),
            _ => full.clone(),
        }
    } else {
        // A miss or a revalidation builds its fields for itself: most entries are
        // answered by hyper only then, and their hits on the direct path keep bytes
        // instead (`Wire`), so a block kept now would be memory no hit reads.
        let full = match block.full.get() {
            Some(full) => full.clone(),
            None => full_fields_of(entry, index, compressible()),
        };
        match precondition {
            Precondition::NotModified => not_modified_block(&full),
            _ => full,
        }
    };
    // Age and Cache-Status replace the block's placeholders in place.
    let (age, status) = age_and_status(age, &status);
    replace(&mut headers, &header::AGE, age);
    replace(&mut headers, &CACHE_STATUS, status);
    if let Some(cc) = presentation.cache_control {
        replace(&mut headers, &header::CACHE_CONTROL, cc.clone());
    }
    match precondition {
        Precondition::NotModified => return empty(StatusCode::NOT_MODIFIED, headers),
        Precondition::Failed => return precondition_failed(headers),
        Precondition::Proceed => {}
    }

    let status_code = StatusCode::from_u16(meta.status).unwrap_or(StatusCode::OK);
    if status_code == StatusCode::OK {
        // RFC 9110 §14.2: ranges apply to the selected representation. edge answers
        // Range requests from the identity representation so that offsets mean the
        // same bytes whatever the client accepts.
        let identity = &meta.reps[0];
        let ranged = range::evaluate(
            &request.method,
            &request.headers,
            identity.len,
            Some(&identity.etag),
            meta.last_modified_at(),
        );
        match ranged {
            RangeOutcome::Full => {}
            RangeOutcome::Unsatisfiable => return unsatisfiable(headers, identity.len),
            RangeOutcome::Partial(ranges) => {
                // The identity representation's fields, when another was chosen (an
                // opaque coding's own Content-Encoding stays: its ranges are of the
                // bytes as stored).
                if index != 0 {
                    headers.remove(header::CONTENT_ENCODING);
                    if let Ok(v) = HeaderValue::from_str(&identity.etag) {
                        headers.insert(header::ETAG, v);
                    }
                }
                return partial(headers, entry.body(0), &identity.hash, &ranges);
            }
        }
    }

    let mut response = Response::new(whole_body(entry.body(index)));
    *response.status_mut() = status_code;
    *response.headers_mut() = headers;
    response
}

/// The representation of `meta` a client sending `accept` (its `Accept-Encoding`) gets,
/// by index into `meta.reps`; `None` when it accepts none of them (406). Negotiation
/// breaks ties by the server's `preference`, identity last.
fn choose(meta: &Meta, preference: &[Encoding], accept: Option<&[u8]>) -> Option<usize> {
    let mut available = [Encoding::Identity; MAX_REPS];
    let mut count = 0;
    let stored = preference
        .iter()
        .filter(|e| meta.reps.iter().any(|r| r.encoding == **e));
    for encoding in stored.chain(meta.reps.iter().map(|r| &r.encoding)) {
        if count < MAX_REPS && !available[..count].contains(encoding) {
            available[count] = *encoding;
            count += 1;
        }
    }
    // A body stored in a coding edge cannot decode goes to every client, as the
    // origin sent it (its Vary did not name Accept-Encoding): never a 406.
    let chosen = encoding::negotiate(accept, &available[..count])
        .or_else(|| meta.opaque_coding().map(|_| Encoding::Identity))?;
    Some(
        meta.reps
            .iter()
            .position(|r| r.encoding == chosen)
            .unwrap_or(0),
    )
}

/// The ETags of `meta`'s representations other than `index`, and how many there are:
/// chosen by position, their text read only if the request has a condition.
fn other_etags(meta: &Meta, index: usize) -> ([&str; MAX_REPS], usize) {
    let mut etags = [""; MAX_REPS];
    let mut count = 0;
    for (_, r) in meta
        .reps
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .take(MAX_REPS)
    {
        etags[count] = &r.etag;
        count += 1;
    }
    (etags, count)
}

/// Whether the stored fields already say the response varies on `Accept-Encoding`.
fn varies_on_encoding(headers: &HeaderMap) -> bool {
    headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|n| n.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    })
}

/// Sets the one value of field `name` to `value`. A field with exactly one value is
/// overwritten in place: `HeaderMap::insert` reserves room before it looks, so on a
/// block that is exactly at capacity it would grow (two allocations and a rehash) even
/// though the name is there.
fn replace(headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue) {
    let mut values = headers.get_all(name).iter();
    let single = values.next().is_some() && values.next().is_none();
    match headers.get_mut(name) {
        Some(slot) if single => *slot = value,
        _ => {
            headers.insert(name.clone(), value);
        }
    }
}

/// A whole stored body as a response body: from memory, a reference to the stored
/// bytes; from disk, one segment streamed and verified.
fn whole_body(stored: &Stored) -> ResponseBody {
    match stored {
        Stored::Memory(bytes) => ResponseBody::whole(bytes.clone()),
        Stored::Disk(_) => {
            let whole = (!stored.is_empty()).then(|| Segment::Range {
                start: 0,
                end: stored.len() - 1,
            });
            body_bytes(stored, whole.into_iter().collect())
        }
    }
}

/// The response body made of `segments` of a stored body: sliced from memory, or
/// streamed from its blob file, verified as it is read (a blob that fails verification
/// ends the body with an error, so the response is never complete as if it were whole).
/// Nothing is read until the body is polled, so HEAD costs no disk reads.
fn body_bytes(stored: &Stored, segments: Vec<Segment>) -> ResponseBody {
    match stored {
        Stored::Memory(bytes) => match segments.as_slice() {
            [Segment::Range { start, end }] => {
                ResponseBody::whole(bytes.slice(*start as usize..=*end as usize))
            }
            _ => {
                let mut out = BytesMut::new();
                for segment in &segments {
                    match segment {
                        Segment::Bytes(b) => out.extend_from_slice(b),
                        Segment::Range { start, end } => {
                            out.extend_from_slice(&bytes[*start as usize..=*end as usize]);
                        }
                    }
                }
                ResponseBody::whole(out.freeze())
            }
        },
        Stored::Disk(disk) => Body::from_stream(disk.stream(segments)).into(),
    }
}

/// `Cache-Status` (RFC 9211).
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The fields of the full response for representation `index` of `entry`, with
/// placeholders for `Age` and `Cache-Status`: the stored end-to-end fields, `ETag`,
/// `Content-Encoding`, `Vary`, `Accept-Ranges`, `Content-Length` and `Via`.
fn full_block(entry: &Entry, index: usize, compressible: bool) -> HeaderMap {
    share_values(&full_fields_of(entry, index, compressible))
}

/// [`full_fields`] for representation `index` of `entry`, as [`full_block`] keeps them.
fn full_fields_of(entry: &Entry, index: usize, compressible: bool) -> HeaderMap {
    let meta = &entry.meta;
    let rep = &meta.reps[index];
    full_fields(
        meta,
        Some(&rep.etag),
        rep.encoding,
        Some(entry.body(index).len()),
        compressible,
    )
}

/// The fields [`full_block`] holds, for a body of `len` bytes (`None`: not yet known,
/// the body goes chunked) whose `ETag` is `etag` (`None`: not yet known).
fn full_fields(
    meta: &Meta,
    etag: Option<&str>,
    encoding: Encoding,
    len: Option<u64>,
    compressible: bool,
) -> HeaderMap {
    let mut full = stored_headers(meta);
    if let Some(v) = etag.and_then(|etag| HeaderValue::from_str(etag).ok()) {
        full.insert(header::ETAG, v);
    }
    if encoding != Encoding::Identity {
        full.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.as_str()),
        );
    }
    // RFC 9110 §12.5.5: every response of an object that has (or will have) encoded
    // representations says the choice depends on Accept-Encoding.
    if (compressible || meta.reps.len() > 1) && !varies_on_encoding(&full) {
        full.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if meta.status == 200 {
        full.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Some(len) = len {
        full.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    // RFC 9110 §7.6.3, as every response gets it: here, so that it need not be
    // appended (growing the map) on each hit.
    if !full.get_all(header::VIA).iter().any(|v| v == VIA) {
        full.append(header::VIA, HeaderValue::from_static(VIA));
    }
    full.insert(header::AGE, HeaderValue::from_static("0"));
    full.insert(CACHE_STATUS, HeaderValue::from_static("edge"));
    full
}

/// The head of a response streamed to the client whose miss started a fill, while the
/// fill still reads the body (`fill::STREAM_AFTER`): the fields a hit on the stored
/// entry will have, from the metadata the origin's head gave, with `Content-Length`
/// when the origin declared one and the origin's `ETag` (a derived one needs the whole
/// body, so until the fill ends there is none).
pub fn streaming_head(
    meta: &Meta,
    origin_etag: Option<&str>,
    len: Option<u64>,
    now: SystemTime,
    status: &CacheStatus,
    presentation: &Presentation<'_>,
) -> HeaderMap {
    let compressible = (presentation.compressible)(meta);
    let mut headers = full_fields(meta, origin_etag, Encoding::Identity, len, compressible);
    let age = meta.freshness.current_age(meta.response_at(), now);
    let (age, status) = age_and_status(age, status);
    replace(&mut headers, &header::AGE, age);
    replace(&mut headers, &CACHE_STATUS, status);
    if let Some(cc) = presentation.cache_control {
        replace(&mut headers, &header::CACHE_CONTROL, cc.clone());
    }
    headers
}

/// Values a block often holds, kept `'static`: cloning one touches no memory.
const STATIC_VALUES: [&str; 9] = [
    "0",
    "edge",
    "bytes",
    "accept-encoding",
    "nosniff",
    VIA,
    "br",
    "zstd",
    "gzip",
];

/// `block` as it is kept for every hit: each value not in [`STATIC_VALUES`] a slice of
/// one buffer. Cloning the block on a hit then touches one reference count and one run
/// of bytes, where separately allocated values would each be a likely cache miss on a
/// node with a large index. The map holds exactly its fields (the one they were
/// gathered in holds a power-of-two slots' worth, kilobytes per cached entry).
fn share_values(block: &HeaderMap) -> HeaderMap {
    let known = |v: &HeaderValue| {
        STATIC_VALUES
            .iter()
            .copied()
            .find(|s| s.as_bytes() == v.as_bytes())
    };
    let mut bytes = Vec::new();
    for (_, value) in block {
        if known(value).is_none() {
            bytes.extend_from_slice(value.as_bytes());
        }
    }
    let shared = Bytes::from(bytes);
    let mut out = HeaderMap::with_capacity(block.len());
    let mut at = 0;
    for (name, value) in block {
        let mut kept = match known(value) {
            Some(text) => HeaderValue::from_static(text),
            None => {
                let end = at + value.len();
                let slice = shared.slice(at..end);
                at = end;
                HeaderValue::from_maybe_shared(slice).unwrap_or_else(|_| value.clone())
            }
        };
        kept.set_sensitive(value.is_sensitive());
        out.append(name.clone(), kept);
    }
    out.clone()
}

/// The fields of a 304 for the representation whose full response has `full`
/// (RFC 9110 §15.4.5), with the same placeholders.
fn not_modified_block(full: &HeaderMap) -> HeaderMap {
    let mut not_modified = HeaderMap::new();
    for name in conditional::not_modified_headers()
        .iter()
        .chain([&header::VIA])
    {
        for v in full.get_all(name) {
            not_modified.append(name.clone(), v.clone());
        }
    }
    not_modified.insert(header::AGE, HeaderValue::from_static("0"));
    not_modified.insert(CACHE_STATUS, HeaderValue::from_static("edge"));
    not_modified.clone()
}

/// The stored end-to-end headers, less the edge-only ones.
fn stored_headers(meta: &Meta) -> HeaderMap {
    let mut headers = meta.header_map();
    for name in EDGE_ONLY {
        headers.remove(name);
    }
    if let Some(ct) = meta.header("content-type")
        && !ct.is_empty()
    {
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }
    headers
}

fn empty(status: StatusCode, headers: HeaderMap) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn precondition_failed(full: HeaderMap) -> Response<ResponseBody> {
    let mut headers = HeaderMap::new();
    for name in [header::ETAG, header::LAST_MODIFIED, header::DATE] {
        if let Some(v) = full.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    if let Some(v) = full.get(CACHE_STATUS) {
        headers.insert(CACHE_STATUS, v.clone());
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    empty(StatusCode::PRECONDITION_FAILED, headers)
}

fn unsatisfiable(mut headers: HeaderMap, len: u64) -> Response<ResponseBody> {
    headers.remove(header::CONTENT_ENCODING);
    if let Ok(v) = HeaderValue::from_str(&range::unsatisfiable_content_range(len)) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    empty(StatusCode::RANGE_NOT_SATISFIABLE, headers)
}

fn not_acceptable(status: CacheStatus) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::whole(Bytes::from_static(
        b"no acceptable content-coding\n",
    )));
    *response.status_mut() = StatusCode::NOT_ACCEPTABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
        .headers_mut()
        .insert(CACHE_STATUS, status.to_header());
    response
}

/// 206 for one range, or `multipart/byteranges` for several (RFC 9110 §14.6), from the
/// identity body `stored` whose blob name is `hash`.
fn partial(
    mut headers: HeaderMap,
    stored: &Stored,
    hash: &BlobHash,
    ranges: &[ByteRange],
) -> Response<ResponseBody> {
    let complete = stored.len();
    let segments = if let [only] = ranges {
        if let Ok(v) = HeaderValue::from_str(&only.content_range(complete)) {
            headers.insert(header::CONTENT_RANGE, v);
        }
        vec![Segment::Range {
            start: only.start,
            end: only.end,
        }]
    } else {
        // The boundary must not occur in the parts; a hash of the body is a safe choice.
        let boundary = format!("edge-{}", &hash.to_hex()[..24]);
        let content_type = headers.get(header::CONTENT_TYPE).cloned();
        let mut segments = Vec::with_capacity(ranges.len() * 2 + 1);
        for r in ranges {
            let mut head = BytesMut::new();
            head.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
            if let Some(ct) = &content_type {
                head.extend_from_slice(b"Content-Type: ");
                head.extend_from_slice(ct.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(
                format!("Content-Range: {}\r\n\r\n", r.content_range(complete)).as_bytes(),
            );
            segments.push(Segment::Bytes(head.freeze()));
            segments.push(Segment::Range {
                start: r.start,
                end: r.end,
            });
        }
        segments.push(Segment::Bytes(Bytes::from(format!(
            "\r\n--{boundary}--\r\n"
        ))));
        if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
        {
            headers.insert(header::CONTENT_TYPE, v);
        }
        segments
    };
    let len: u64 = segments
        .iter()
        .map(|s| match s {
            Segment::Bytes(b) => b.len() as u64,
            Segment::Range { start, end } => end - start + 1,
        })
        .sum();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // For HEAD, hyper sends the head only; the body is never polled.
    let mut response = Response::new(body_bytes(stored, segments));
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    *response.headers_mut() = headers;
    response
}

/// The identity ETag for a body the origin sent without one: derived from its blake3
/// hash so that every edge node gives the same ETag for the same bytes.
pub fn derived_etag(hash: &crate::cache::meta::BlobHash) -> String {
    format!("\"b3-{}\"", &hash.to_hex()[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_block_has_the_same_fields_with_values_in_one_buffer() {
        let mut block = HeaderMap::new();
        block.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css"));
        block.append(
            header::VARY,
            HeaderValue::from_bytes(b"accept-encoding").unwrap(),
        );
        block.append(header::VARY, HeaderValue::from_bytes(b"origin").unwrap());
        let mut secret = HeaderValue::from_bytes(b"a=1").unwrap();
        secret.set_sensitive(true);
        block.insert(header::SET_COOKIE, secret);
        block.insert(header::ETAG, HeaderValue::from_bytes(b"\"b3-x\"").unwrap());
        block.insert(header::AGE, HeaderValue::from_static("0"));

        let kept = share_values(&block);
        let fields = |m: &HeaderMap| {
            m.iter()
                .map(|(n, v)| (n.clone(), v.clone(), v.is_sensitive()))
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(&kept), fields(&block));
        // The values not in STATIC_VALUES lie end to end in one buffer.
        let dynamic: Vec<&[u8]> = kept
            .iter()
            .map(|(_, v)| v.as_bytes())
            .filter(|v| !STATIC_VALUES.iter().any(|s| s.as_bytes() == *v))
            .collect();
        assert_eq!(dynamic.len(), 4);
        for pair in dynamic.windows(2) {
            assert_eq!(
                pair[0].as_ptr().wrapping_add(pair[0].len()),
                pair[1].as_ptr(),
                "{:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn cache_status_lists_its_parameters_in_order() {
        let status = CacheStatus {
            fwd_status: Some(200),
            stored: true,
            collapsed: true,
            ..CacheStatus::forward("uri-miss")
        };
        assert_eq!(
            status.to_header(),
            "edge; fwd=uri-miss; fwd-status=200; stored; collapsed"
        );
        let hit = CacheStatus {
            ttl: Some(-42),
            detail: Some("max-stale"),
            ..CacheStatus::hit()
        };
        assert_eq!(hit.to_header(), "edge; hit; ttl=-42; detail=max-stale");
        for (ttl, text) in [
            (0, "0"),
            (7, "7"),
            (3600, "3600"),
            (i64::MAX, "9223372036854775807"),
            (i64::MIN, "-9223372036854775808"),
        ] {
            let status = CacheStatus {
                ttl: Some(ttl),
                ..CacheStatus::hit()
            };
            assert_eq!(
                status.to_header(),
                format!("edge; hit; ttl={text}").as_str()
            );
        }
    }
}
