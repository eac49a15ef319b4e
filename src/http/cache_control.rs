//! The `Cache-Control` field (RFC 9111 §5.2), request and response directives in one
//! struct.
//!
//! `CDN-Cache-Control` is first read as a Structured Field (`super::structured`,
//! RFC 9213 §2.1) and its members handed to this parser as directives. Parsing is
//! total: any bytes give a value,
//! never a panic or an error, because a cache must keep working when an origin sends
//! garbage. How garbage is interpreted:
//!
//! - Directive names are case-insensitive; unknown directives are ignored (§5.2.3).
//! - Arguments may be a token or a quoted-string (`max-age="60"` is accepted, §5.2).
//! - delta-seconds above 2^31 are clamped to 2^31 (§1.2.2).
//! - An invalid `max-age` or `s-maxage` (negative, non-numeric, missing) is read as
//!   `0`: §4.2.1 encourages caches to treat a response with invalid freshness
//!   information as stale. Other invalid delta-seconds directives are ignored.
//! - A `max-age` or `s-maxage` repeated with different values is read as `0`: §4.2.1
//!   allows "either the first occurrence should be used or the response should be
//!   considered stale", and we choose stale. Other repeated delta-seconds directives
//!   keep their most conservative value (the smallest staleness allowance, the largest
//!   `min-fresh`).
//! - Qualified forms `no-cache="Set-Cookie"` and `private="Set-Cookie"` (§5.2.2.4,
//!   §5.2.2.7) are read as their unqualified forms. For `no-cache` that means
//!   revalidating every time instead of only stripping the named fields; for `private`
//!   it means a shared cache does not store the response at all. Both are more
//!   restrictive than the qualified meaning, which §5.2.2.4 and §5.2.2.7 permit.

use std::fmt;

use super::{split_list, trim};

/// The value delta-seconds are clamped to when they exceed it (RFC 9111 §1.2.2).
pub const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// Parsed `Cache-Control` directives (RFC 9111 §5.2); `None` / `false` means absent.
///
/// One struct carries both request directives (§5.2.1: `max-stale`, `min-fresh`,
/// `only-if-cached`, ...) and response directives (§5.2.2: `s-maxage`, `public`,
/// `must-revalidate`, ...), since several appear in both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `max-age` in seconds (§5.2.1.1, §5.2.2.1).
    pub max_age: Option<u64>,
    /// `s-maxage` in seconds: `max-age` for shared caches (§5.2.2.10).
    pub s_maxage: Option<u64>,
    /// `no-store` (§5.2.1.5, §5.2.2.5).
    pub no_store: bool,
    /// `no-cache`, qualified or not (§5.2.1.4, §5.2.2.4).
    pub no_cache: bool,
    /// `private`, qualified or not (§5.2.2.7).
    pub private: bool,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `no-transform` (§5.2.1.6, §5.2.2.6).
    pub no_transform: bool,
    /// `stale-while-revalidate` in seconds (RFC 5861 §3).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` in seconds (RFC 5861 §4).
    pub stale_if_error: Option<u64>,
    /// `only-if-cached`, a request directive (§5.2.1.7).
    pub only_if_cached: bool,
    /// `max-stale`, a request directive (§5.2.1.2); `u64::MAX` when it has no value.
    pub max_stale: Option<u64>,
    /// `min-fresh` in seconds, a request directive (§5.2.1.3).
    pub min_fresh: Option<u64>,
    /// `must-understand` (§5.2.2.3).
    pub must_understand: bool,
}

impl CacheControl {
    /// Parses the directives of every field line (§5.2: the lines form one
    /// comma-separated list). Never fails; see the module docs for how invalid and
    /// repeated directives are read.
    pub fn parse<'a, I: IntoIterator<Item = &'a [u8]>>(field_lines: I) -> Self {
        let mut cc = CacheControl::default();
        for line in field_lines {
            for member in split_list(line, true) {
                cc.apply(member);
            }
        }
        cc
    }

    /// Parses every line of the field `name` in `headers`; `None` when the field is
    /// absent, so callers can tell "no field" from "a field with no directives".
    pub fn from_headers(
        headers: &http::HeaderMap,
        name: &http::header::HeaderName,
    ) -> Option<Self> {
        let mut lines = headers.get_all(name).iter().peekable();
        lines.peek()?;
        Some(Self::parse(lines.map(|v| v.as_bytes())))
    }

    /// Whether no directive this cache understands is set.
    pub fn is_empty(&self) -> bool {
        *self == CacheControl::default()
    }

    /// Applies one list member, `name [ "=" ( token / quoted-string ) ]`.
    fn apply(&mut self, member: &[u8]) {
        let (name, arg) = match member.iter().position(|&b| b == b'=') {
            Some(eq) => (trim(&member[..eq]), Some(unquote(trim(&member[eq + 1..])))),
            None => (member, None),
        };
        let delta = || {
            arg.as_ref()
                .and_then(|a| a.as_deref())
                .and_then(parse_delta_seconds)
        };
        match name.to_ascii_lowercase().as_slice() {
            // §4.2.1: invalid → stale, repeated with another value → stale.
            b"max-age" => merge_freshness(&mut self.max_age, delta().unwrap_or(0)),
            b"s-maxage" => merge_freshness(&mut self.s_maxage, delta().unwrap_or(0)),
            b"stale-while-revalidate" => merge(&mut self.stale_while_revalidate, delta(), u64::min),
            b"stale-if-error" => merge(&mut self.stale_if_error, delta(), u64::min),
            b"min-fresh" => merge(&mut self.min_fresh, delta(), u64::max),
            // §5.2.1.2: "max-stale" without a value accepts any staleness.
            b"max-stale" => {
                let value = if arg.is_none() {
                    Some(u64::MAX)
                } else {
                    delta()
                };
                merge(&mut self.max_stale, value, u64::min);
            }
            b"no-store" => self.no_store = true,
            b"no-cache" => self.no_cache = true,
            b"private" => self.private = true,
            b"public" => self.public = true,
            b"must-revalidate" => self.must_revalidate = true,
            b"proxy-revalidate" => self.proxy_revalidate = true,
            b"immutable" => self.immutable = true,
            b"no-transform" => self.no_transform = true,
            b"only-if-cached" => self.only_if_cached = true,
            b"must-understand" => self.must_understand = true,
            // §5.2.3: unrecognised directives are ignored.
            _ => {}
        }
    }
}

/// Emits the set directives in a canonical order, e.g. `public, max-age=60`.
///
/// `parse(display(cc)) == cc` for every value whose delta-seconds are at most 2^31
/// (larger values are clamped by parsing, §1.2.2).
impl fmt::Display for CacheControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = [
            (self.public, "public"),
            (self.private, "private"),
            (self.no_cache, "no-cache"),
            (self.no_store, "no-store"),
            (self.no_transform, "no-transform"),
            (self.must_revalidate, "must-revalidate"),
            (self.proxy_revalidate, "proxy-revalidate"),
            (self.must_understand, "must-understand"),
            (self.immutable, "immutable"),
            (self.only_if_cached, "only-if-cached"),
        ];
        let deltas = [
            (self.max_age, "max-age"),
            (self.s_maxage, "s-maxage"),
            (self.stale_while_revalidate, "stale-while-revalidate"),
            (self.stale_if_error, "stale-if-error"),
            (self.min_fresh, "min-fresh"),
        ];
        let mut sep = "";
        for (_, name) in flags.iter().filter(|(set, _)| *set) {
            write!(f, "{sep}{name}")?;
            sep = ", ";
        }
        for (value, name) in deltas.iter().filter_map(|(v, n)| v.map(|v| (v, n))) {
            write!(f, "{sep}{name}={value}")?;
            sep = ", ";
        }
        match self.max_stale {
            Some(u64::MAX) => write!(f, "{sep}max-stale"),
            Some(value) => write!(f, "{sep}max-stale={value}"),
            None => Ok(()),
        }
    }
}

/// Parses delta-seconds, `1*DIGIT` (RFC 9111 §1.2.2), clamping values above 2^31.
///
/// Anything else (empty, a sign, a fraction, other bytes) is `None`.
pub(crate) fn parse_delta_seconds(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Some(n.map_or(DELTA_SECONDS_MAX, |n| n.min(DELTA_SECONDS_MAX)))
}

/// Strips a quoted-string's quotes and escapes (RFC 9110 §5.6.4); tokens pass through.
/// `None` for an unterminated quoted-string, which makes the argument invalid.
fn unquote(arg: &[u8]) -> Option<Vec<u8>> {
    let Some(inner) = arg.strip_prefix(b"\"") else {
        return Some(arg.to_vec());
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => out.push(*bytes.next()?),
            b'"' => return bytes.as_slice().is_empty().then_some(out),
            _ => out.push(b),
        }
    }
    None
}

/// Records a freshness delta: a second, different value makes the response stale
/// (RFC 9111 §4.2.1).
fn merge_freshness(slot: &mut Option<u64>, value: u64) {
    *slot = match *slot {
        Some(old) if old != value => Some(0),
        _ => Some(value),
    };
}

/// Records an optional delta, combining repeats with `pick`; invalid values
/// (`None`) leave the slot as it was.
fn merge(slot: &mut Option<u64>, value: Option<u64>, pick: fn(u64, u64) -> u64) {
    if let Some(value) = value {
        *slot = Some(slot.map_or(value, |old| pick(old, value)));
    }
}

#[cfg(test)]
mod tests;
