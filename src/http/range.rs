//! Byte range requests (RFC 9110 §14): `Range` and `If-Range` → a [`RangeOutcome`].
//!
//! Range support is optional for a server (§14.2), so whenever a `Range` field is
//! anything but a clean, modest request for bytes, the answer is the full
//! representation rather than an error.

use std::time::SystemTime;

use http::header::{IF_RANGE, RANGE};
use http::{HeaderMap, Method};

use super::conditional::EntityTag;
use super::{date, split_list, trim};

/// More ranges than this in one request is treated as abuse (RFC 9110 §17.15): the
/// `Range` field is ignored and the full representation is served.
pub const MAX_RANGES: usize = 64;

/// A satisfiable byte range, both ends inclusive (RFC 9110 §14.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// Offset of the first byte.
    pub start: u64,
    /// Offset of the last byte, inclusive.
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range (saturating for a range covering all of `u64`).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// Whether the range is empty, which only a malformed range (`end < start`) is;
    /// [`evaluate`] never returns one.
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }

    /// The `Content-Range` value for this range of a representation of `complete`
    /// bytes (RFC 9110 §14.4), e.g. `bytes 0-99/1000`.
    pub fn content_range(&self, complete: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, complete)
    }
}

/// How to answer a request that may carry `Range` (RFC 9110 §14.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Serve the whole representation, 200: no `Range`, an ignored one, or an
    /// `If-Range` that does not match.
    Full,
    /// Serve these ranges, 206 (RFC 9110 §15.3.7): sorted, disjoint, non-adjacent,
    /// non-empty and within the representation. One range is a single-part response,
    /// more are `multipart/byteranges`.
    Partial(Vec<ByteRange>),
    /// Answer 416 Range Not Satisfiable with [`unsatisfiable_content_range`]
    /// (RFC 9110 §15.5.17).
    Unsatisfiable,
}

impl RangeOutcome {
    /// A short token for logs: `"full"`, `"partial"` or `"unsatisfiable"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RangeOutcome::Full => "full",
            RangeOutcome::Partial(_) => "partial",
            RangeOutcome::Unsatisfiable => "unsatisfiable",
        }
    }
}

/// Decides whether and how to answer with part of a representation of `len` bytes
/// whose validators are `etag` (the full `ETag` field value) and `last_modified`:
///
/// 1. Only GET: `Range` is ignored for other methods (§14.2) → `Full`.
/// 2. No `Range`, or more than one `Range` line → `Full`.
/// 3. `If-Range` (§13.1.5) present: an entity-tag must strongly match `etag` (a weak
///    tag never matches), a date must equal `last_modified` exactly (whole seconds);
///    otherwise, or when it is neither → `Full`.
/// 4. A unit other than `bytes` (case-insensitive), a syntactically invalid
///    range-set, or more than [`MAX_RANGES`] ranges → `Full` (§14.2 lets a server
///    ignore `Range`).
/// 5. Each range is resolved against `len` (§14.1.2): `a-b` with `b` clamped to
///    `len - 1`, `a-` to the end, `-n` the last `n` bytes; a range starting at or past
///    `len`, and `-0`, are unsatisfiable and dropped. With `len == 0` nothing is
///    satisfiable.
/// 6. None left → `Unsatisfiable`; otherwise the ranges are sorted and overlapping or
///    adjacent ones coalesced (§14.2 allows it) → `Partial`.
pub fn evaluate(
    method: &Method,
    request: &HeaderMap,
    len: u64,
    etag: Option<&str>,
    last_modified: Option<SystemTime>,
) -> RangeOutcome {
    // Step 1 (§14.2): "A server MUST ignore a Range header field received with a
    // request method that is unrecognized or for which range handling is not defined";
    // it is defined only for GET.
    if method != Method::GET {
        return RangeOutcome::Full;
    }
    // Step 2: Range is a single field value; combined lines are not a valid range-set.
    let mut lines = request.get_all(RANGE).iter();
    let (Some(range), None) = (lines.next(), lines.next()) else {
        return RangeOutcome::Full;
    };
    // Step 3 (§13.1.5): If-Range is evaluated only with Range present.
    if let Some(if_range) = request.get(IF_RANGE)
        && !if_range_matches(if_range.as_bytes(), etag, last_modified)
    {
        return RangeOutcome::Full;
    }
    // Step 4 (§14.1.1, §14.2): an unknown unit or invalid set is ignored.
    let Some(specs) = parse_byte_ranges(range.as_bytes()) else {
        return RangeOutcome::Full;
    };
    // Step 5 (§14.1.2): resolve against the representation's length.
    let mut ranges: Vec<ByteRange> = specs
        .into_iter()
        .filter_map(|spec| spec.resolve(len))
        .collect();
    if ranges.is_empty() {
        return RangeOutcome::Unsatisfiable;
    }
    // Step 6 (§14.2): coalesce overlapping and adjacent ranges, in ascending order.
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end.saturating_add(1) => {
                last.end = last.end.max(range.end)
            }
            _ => merged.push(range),
        }
    }
    RangeOutcome::Partial(merged)
}

/// The `Content-Range` of a 416 response (RFC 9110 §14.4), e.g. `bytes */1000`.
pub fn unsatisfiable_content_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// One range-spec as written, before it meets the representation (§14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    /// `first-pos "-" [ last-pos ]`
    Int { first: u64, last: Option<u64> },
    /// `"-" suffix-length`
    Suffix(u64),
}

impl RangeSpec {
    /// The satisfiable part of the spec for a representation of `len` bytes
    /// (§14.1.2), or `None`.
    fn resolve(self, len: u64) -> Option<ByteRange> {
        let last_byte = len.checked_sub(1)?;
        match self {
            RangeSpec::Int { first, last } => (first < len).then(|| ByteRange {
                start: first,
                end: last.map_or(last_byte, |last| last.min(last_byte)),
            }),
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(n) => Some(ByteRange {
                start: len - n.min(len),
                end: last_byte,
            }),
        }
    }
}

/// Parses `bytes=range-set` (§14.1.1); `None` for another unit, a syntax error or
/// more than [`MAX_RANGES`] ranges. Empty list members are allowed (§5.6.1).
fn parse_byte_ranges(value: &[u8]) -> Option<Vec<RangeSpec>> {
    let value = trim(value);
    let eq = value.iter().position(|&b| b == b'=')?;
    if !value[..eq].eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let members = split_list(&value[eq + 1..], false);
    let count = members.clone().count();
    if count == 0 || count > MAX_RANGES {
        return None;
    }
    members.map(parse_spec).collect()
}

/// Parses one range-spec: `a-b`, `a-` or `-n`, digits only; `b < a` is invalid.
fn parse_spec(spec: &[u8]) -> Option<RangeSpec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return Some(RangeSpec::Suffix(parse_pos(last)?));
    }
    let first = parse_pos(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(parse_pos(last)?)
    };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    Some(RangeSpec::Int { first, last })
}

/// Parses `1*DIGIT`, saturating at `u64::MAX`: a position past any representation
/// is still syntactically valid.
fn parse_pos(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Whether `If-Range` lets the range request through (§13.1.5): an entity-tag must
/// strongly match, an HTTP-date must equal `Last-Modified` exactly.
fn if_range_matches(value: &[u8], etag: Option<&str>, last_modified: Option<SystemTime>) -> bool {
    let value = trim(value);
    // §13.1.5: an entity-tag starts with DQUOTE or W/, an HTTP-date never does.
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let current = etag.and_then(|e| EntityTag::parse(e.as_bytes()));
        return match (EntityTag::parse(value), current) {
            (Some(wanted), Some(current)) => wanted.strong_eq(&current),
            _ => false,
        };
    }
    match (date::parse(value), last_modified) {
        (Some(wanted), Some(current)) => date::unix_secs(wanted) == date::unix_secs(current),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
