//! Whether a response may be stored, how long it stays fresh, and how long it may be
//! served stale: RFC 9111 §3 and §4.2, RFC 9213 (`CDN-Cache-Control`), RFC 5861
//! (`stale-while-revalidate`, `stale-if-error`) and `Surrogate-Control`.
//!
//! This is a shared cache (RFC 9111 §1), so `s-maxage`, `private` and the
//! `Authorization` rules of §3.5 apply. The fields that target this cache
//! ([`targeted_fields`]) are read here.

use std::time::SystemTime;

use http::header::{
    AGE, AUTHORIZATION, CACHE_CONTROL, DATE, EXPIRES, HeaderName, LAST_MODIFIED, VARY,
};
use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};

use super::cache_control::CacheControl;
use super::structured::{self, Value};
use super::{date, field_members, split_list, trim};

/// `CDN-Cache-Control` (RFC 9213 §3) and `Surrogate-Control` (W3C Edge Architecture
/// Specification): cache policy for this cache only, in precedence order.
static TARGETED: [HeaderName; 2] = [
    HeaderName::from_static("cdn-cache-control"),
    HeaderName::from_static("surrogate-control"),
];

/// The cap on heuristic freshness: one day. RFC 9111 §4.2.2 leaves the bound to the
/// cache; RFC 7234 required a warning beyond 24 hours, and common caches stop there.
pub const HEURISTIC_MAX_SECS: u64 = 24 * 60 * 60;

/// How fresh a stored response is and how it may be reused, all in seconds.
///
/// Computed once when the response arrives ([`analyze`]); the current age is derived
/// later from the time the response was received and `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// The freshness lifetime (RFC 9111 §4.2.1), or the heuristic one (§4.2.2).
    pub lifetime: u64,
    /// The corrected initial age when the response was received (RFC 9111 §4.2.3).
    pub initial_age: u64,
    /// How long past stale it may be served while it is revalidated in the background
    /// (RFC 5861 §3); 0 when `must_revalidate` or `no_cache` is set.
    pub stale_while_revalidate: u64,
    /// How long past stale it may be served when the origin fails (RFC 5861 §4);
    /// 0 when `must_revalidate` or `no_cache` is set.
    pub stale_if_error: u64,
    /// Once stale, it must be revalidated before reuse: `must-revalidate`,
    /// `proxy-revalidate` or `s-maxage` (RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10).
    pub must_revalidate: bool,
    /// It must be revalidated before every reuse (RFC 9111 §5.2.2.4).
    pub no_cache: bool,
    /// `lifetime` is a heuristic (RFC 9111 §4.2.2), not explicit.
    pub heuristic: bool,
}

impl Freshness {
    /// The response's current age at `now` (RFC 9111 §4.2.3): the corrected initial
    /// age plus the time it has been resident since `response_time`. Saturates; a
    /// `now` before `response_time` counts as no resident time.
    pub fn current_age(&self, response_time: SystemTime, now: SystemTime) -> u64 {
        self.initial_age
            .saturating_add(secs_between(response_time, now))
    }

    /// Whether the response may be reused without validation (RFC 9111 §4.2):
    /// the lifetime exceeds the current age and `no-cache` is absent.
    pub fn is_fresh(&self, response_time: SystemTime, now: SystemTime) -> bool {
        !self.no_cache && self.current_age(response_time, now) < self.lifetime
    }

    /// Remaining freshness in seconds, negative once stale (for `Cache-Status: ttl=`,
    /// RFC 9211 §2.5).
    pub fn ttl(&self, response_time: SystemTime, now: SystemTime) -> i64 {
        let age = self.current_age(response_time, now);
        to_i64(self.lifetime).saturating_sub(to_i64(age))
    }

    /// Whether the response is stale but within its `stale-while-revalidate` window
    /// (RFC 5861 §3): it may be served while a revalidation runs in the background.
    pub fn within_stale_while_revalidate(
        &self,
        response_time: SystemTime,
        now: SystemTime,
    ) -> bool {
        self.within_stale_window(self.stale_while_revalidate, response_time, now)
    }

    /// Whether the response is stale but within its `stale-if-error` window
    /// (RFC 5861 §4): it may be served when the origin cannot be reached or answers
    /// 500, 502, 503 or 504.
    pub fn within_stale_if_error(&self, response_time: SystemTime, now: SystemTime) -> bool {
        self.within_stale_window(self.stale_if_error, response_time, now)
    }

    /// Stale, and stale by less than `window` seconds; never when a directive forbids
    /// serving stale (RFC 9111 §4.2.4).
    fn within_stale_window(&self, window: u64, response_time: SystemTime, now: SystemTime) -> bool {
        let age = self.current_age(response_time, now);
        !self.no_cache
            && !self.must_revalidate
            && age >= self.lifetime
            && age - self.lifetime < window
    }
}

/// Computes a response's [`Freshness`] as this shared cache sees it.
///
/// `request_time` is when the request to the origin was sent and `response_time` when
/// its response was received (RFC 9111 §4.2.3). The policy comes from the first of
/// these fields that is present and holds a directive this cache understands:
///
/// 1. `CDN-Cache-Control` (RFC 9213 §2.2, §3). It replaces `Cache-Control` and
///    `Expires` for this cache: every directive below is read from it instead.
/// 2. `Surrogate-Control`, whose `max-age` (the `+stale` suffix is ignored) and
///    `no-store` replace `Cache-Control` and `Expires` in the same way.
/// 3. `Cache-Control`.
///
/// The freshness lifetime is then, in order:
///
/// 1. `s-maxage` (RFC 9111 §5.2.2.10), which also sets `must_revalidate` as it carries
///    `proxy-revalidate` semantics for shared caches;
/// 2. `max-age` (§5.2.2.1);
/// 3. `Expires` − `Date` (§4.2.1), only under `Cache-Control`; `Date` falls back to
///    `response_time` when absent or invalid (RFC 9110 §6.6.1), an invalid `Expires`
///    means already expired (§5.3), and differing `Expires` lines mean stale (§4.2.1);
/// 4. otherwise a heuristic (§4.2.2) of 10% of `Date` − `Last-Modified`, capped at
///    [`HEURISTIC_MAX_SECS`], for a heuristically cacheable status (RFC 9110 §15.1) or
///    a response marked `public`; without `Last-Modified` the lifetime is 0.
///
/// `stale_while_revalidate` and `stale_if_error` come from the same field, and are
/// zeroed when `must_revalidate` or `no_cache` is set (RFC 9111 §4.2.4: a cache must
/// not serve stale when a directive forbids it), so callers need not check.
pub fn analyze(
    status: u16,
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Freshness {
    let Policy { cc, source } = Policy::of(headers);
    // RFC 9110 §6.6.1: a response without a valid Date gets the time it was received.
    let date_value = date::header(headers, &DATE).unwrap_or(response_time);

    let explicit = cc.s_maxage.or(cc.max_age).or_else(|| match source {
        Source::CacheControl => expires_lifetime(headers, date_value),
        Source::Targeted => None,
    });
    let (lifetime, heuristic) = match explicit {
        Some(lifetime) => (lifetime, false),
        None if cc.public || heuristically_cacheable(status) => {
            match heuristic_lifetime(headers, date_value) {
                Some(lifetime) => (lifetime, true),
                None => (0, false),
            }
        }
        None => (0, false),
    };

    let must_revalidate = cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some();
    let may_serve_stale = !must_revalidate && !cc.no_cache;
    let stale = |allowance: Option<u64>| allowance.filter(|_| may_serve_stale).unwrap_or(0);
    Freshness {
        lifetime,
        initial_age: corrected_initial_age(headers, date_value, request_time, response_time),
        stale_while_revalidate: stale(cc.stale_while_revalidate),
        stale_if_error: stale(cc.stale_if_error),
        must_revalidate,
        no_cache: cc.no_cache,
        heuristic,
    }
}

/// Whether a response may be stored, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storability {
    /// The response may be stored.
    Store,
    /// The response must not be stored; the reason is a short token for logs and
    /// `Cache-Status: detail=` (RFC 9211 §2.8).
    DontStore(&'static str),
}

impl Storability {
    /// `"store"`, or the reason the response is not stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            Storability::Store => "store",
            Storability::DontStore(reason) => reason,
        }
    }
}

/// Decides whether this shared cache may store a response (RFC 9111 §3), checking in
/// this order:
///
/// 1. The method is GET. HEAD responses are not stored (`"head"`): they have no body to
///    serve a later GET with; other methods give `"method"`.
/// 2. The status is final (`"informational"` for 1xx, `"status"` outside 100–599) and
///    not 206 (`"partial"`) or 304 (`"not-modified"`): this cache stores only complete
///    responses.
/// 3. No `no-store` in the request's `Cache-Control` (§5.2.1.5) or in the effective
///    response policy (§5.2.2.5; the policy is chosen as in [`analyze`]). Under
///    `must-understand` (§5.2.2.3) the response is stored only for a status code this
///    cache understands (`"must-understand"`), and then `no-store` is ignored.
/// 4. No `private` (§5.2.2.7).
/// 5. A request with `Authorization` only when the response says `must-revalidate`,
///    `public` or `s-maxage` (§3.5), else `"authorization"`.
/// 6. No `Vary: *` (`"vary-star"`): it can never match a later request (§4.1).
/// 7. Explicit freshness (`max-age`, `s-maxage`, `Expires`), `public`, a heuristically
///    cacheable status (RFC 9110 §15.1) or `no-cache` (stored, always revalidated),
///    else `"no-freshness"`.
pub fn storable(
    method: &Method,
    request: &HeaderMap,
    status: u16,
    response: &HeaderMap,
) -> Storability {
    use Storability::{DontStore, Store};
    // §3: "the request method is understood by the cache".
    if method == Method::HEAD {
        return DontStore("head");
    }
    if method != Method::GET {
        return DontStore("method");
    }
    // §3: "the response status code is final"; 206 and 304 need handling (§3.3,
    // §4.3.4) that belongs to the caller, not to storage.
    match status {
        100..=199 => return DontStore("informational"),
        206 => return DontStore("partial"),
        304 => return DontStore("not-modified"),
        200..=599 => {}
        _ => return DontStore("status"),
    }
    let Policy { cc, source } = Policy::of(response);
    let request_cc = CacheControl::from_headers(request, &CACHE_CONTROL).unwrap_or_default();
    // §5.2.1.5: no-store in the request.
    if request_cc.no_store {
        return DontStore("no-store");
    }
    // §5.2.2.3: must-understand overrides no-store for status codes we implement.
    if cc.must_understand {
        if !understood_status(status) {
            return DontStore("must-understand");
        }
    } else if cc.no_store {
        // §5.2.2.5
        return DontStore("no-store");
    }
    // §5.2.2.7: a shared cache must not store private responses.
    if cc.private {
        return DontStore("private");
    }
    // §3.5: responses to authenticated requests need explicit permission.
    if request.contains_key(AUTHORIZATION)
        && !(cc.must_revalidate || cc.public || cc.s_maxage.is_some())
    {
        return DontStore("authorization");
    }
    // RFC 9110 §12.5.5: Vary: * never matches (RFC 9111 §4.1), so storing is useless.
    if has_vary_star(response) {
        return DontStore("vary-star");
    }
    // §3: explicit freshness, public, or a heuristically cacheable status.
    let expires = source == Source::CacheControl && response.contains_key(EXPIRES);
    let explicit = cc.max_age.is_some() || cc.s_maxage.is_some() || expires;
    if explicit || cc.public || heuristically_cacheable(status) || cc.no_cache {
        Store
    } else {
        DontStore("no-freshness")
    }
}

/// The fields whose directives govern this cache ahead of `Cache-Control`, in
/// precedence order: `cdn-cache-control` and `surrogate-control`.
pub fn targeted_fields() -> &'static [HeaderName] {
    &TARGETED
}

/// Where the effective cache policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `CDN-Cache-Control` or `Surrogate-Control`: `Expires` does not apply.
    Targeted,
    /// `Cache-Control`, with `Expires` as a fallback.
    CacheControl,
}

/// The directives that govern this cache for one response.
struct Policy {
    cc: CacheControl,
    source: Source,
}

impl Policy {
    /// Picks the first targeted field that is present, valid and not empty (RFC 9213
    /// §2.2), else `Cache-Control`. A valid `CDN-Cache-Control` of directives edge does
    /// not know (RFC 9213 §3.1's `none`) still sets `Cache-Control` aside.
    fn of(headers: &HeaderMap) -> Policy {
        match cdn_cache_control(headers).or_else(|| surrogate_control(headers)) {
            Some(cc) => Policy {
                cc,
                source: Source::Targeted,
            },
            None => Policy {
                cc: CacheControl::from_headers(headers, &CACHE_CONTROL).unwrap_or_default(),
                source: Source::CacheControl,
            },
        }
    }
}

/// `CDN-Cache-Control` read as RFC 9213 §2.1 says: a Structured Field Dictionary,
/// ignored whole (`None`) when it is empty or does not parse. A directive whose value
/// has another type than its definition implies (`max-age="60"`, `max-age=1.5`) is
/// not used; the rest of the field still is.
fn cdn_cache_control(headers: &HeaderMap) -> Option<CacheControl> {
    // RFC 8941 §4.2: the field lines form one value, joined by commas.
    let mut joined: Vec<u8> = Vec::new();
    // An empty line adds nothing (RFC 9110 §5.3 lets a recipient ignore empty list
    // elements), wherever it comes.
    for line in headers
        .get_all(&TARGETED[0])
        .iter()
        .filter(|l| !l.as_bytes().trim_ascii().is_empty())
    {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    let members = structured::parse_dictionary(&joined)?;
    if members.is_empty() {
        return None;
    }
    let directives: Vec<String> = members
        .into_iter()
        .filter_map(|(name, value)| directive_text(name, value))
        .collect();
    Some(CacheControl::parse(directives.iter().map(|d| d.as_bytes())))
}

/// One Dictionary member as `Cache-Control` directive text, when its value has the
/// type the directive takes: delta-seconds are Integers, flags are `true`, and
/// `no-cache`/`private` may also name fields in a String.
fn directive_text(name: String, value: Value) -> Option<String> {
    let delta = matches!(
        name.as_str(),
        "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error"
    );
    match value {
        Value::Integer(n) if delta && n >= 0 => Some(format!("{name}={n}")),
        Value::Boolean(true) if !delta => Some(name),
        Value::String(fields) if matches!(name.as_str(), "no-cache" | "private") => {
            let fields = fields.replace('\\', "\\\\").replace('"', "\\\"");
            Some(format!("{name}=\"{fields}\""))
        }
        _ => None,
    }
}

/// Reads `Surrogate-Control`'s `max-age=N[+M]` and `no-store`; `None` when it has
/// neither. Other directives (`content`, `no-store-remote`, targeting) are ignored.
fn surrogate_control(headers: &HeaderMap) -> Option<CacheControl> {
    let mut understood: Vec<&[u8]> = Vec::new();
    for line in headers.get_all(&TARGETED[1]) {
        for member in split_list(line.as_bytes(), true) {
            let name_end = member
                .iter()
                .position(|&b| b == b'=')
                .unwrap_or(member.len());
            match trim(&member[..name_end]).to_ascii_lowercase().as_slice() {
                b"no-store" => understood.push(b"no-store"),
                // max-age=N+M: M is an extra stale allowance this cache does not use.
                b"max-age" => {
                    understood.push(member.split(|&b| b == b'+').next().unwrap_or(member))
                }
                _ => {}
            }
        }
    }
    let cc = CacheControl::parse(understood);
    (!cc.is_empty()).then_some(cc)
}

/// `Expires` − `Date` in seconds (RFC 9111 §4.2.1); `None` without `Expires`.
fn expires_lifetime(headers: &HeaderMap, date_value: SystemTime) -> Option<u64> {
    let mut lines = headers.get_all(EXPIRES).iter();
    let first = lines.next()?;
    // §4.2.1: more than one value → considered stale.
    if lines.any(|other| other != first) {
        return Some(0);
    }
    // §5.3: an invalid date, such as "0", represents a time in the past.
    Some(date::parse(first.as_bytes()).map_or(0, |expires| secs_between(date_value, expires)))
}

/// 10% of the time since `Last-Modified`, at most [`HEURISTIC_MAX_SECS`]
/// (RFC 9111 §4.2.2); `None` without a valid `Last-Modified`.
fn heuristic_lifetime(headers: &HeaderMap, date_value: SystemTime) -> Option<u64> {
    let last_modified = date::header(headers, &LAST_MODIFIED)?;
    Some((secs_between(last_modified, date_value) / 10).min(HEURISTIC_MAX_SECS))
}

/// The corrected initial age (RFC 9111 §4.2.3):
/// `max(apparent_age, age_value + response_delay)`.
fn corrected_initial_age(
    headers: &HeaderMap,
    date_value: SystemTime,
    request_time: SystemTime,
    response_time: SystemTime,
) -> u64 {
    let apparent_age = secs_between(date_value, response_time);
    let response_delay = secs_between(request_time, response_time);
    let corrected_age_value = age_value(headers).saturating_add(response_delay);
    apparent_age.max(corrected_age_value)
}

/// The `Age` field (RFC 9111 §5.1): the first value, 0 when absent or invalid.
fn age_value(headers: &HeaderMap) -> u64 {
    headers
        .get(AGE)
        .and_then(|v| split_list(v.as_bytes(), false).next())
        .and_then(super::cache_control::parse_delta_seconds)
        .unwrap_or(0)
}

/// Status codes that are cacheable by default (RFC 9110 §15.1), so they may get
/// heuristic freshness (RFC 9111 §4.2.2).
fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Status codes whose caching requirements this cache implements, for
/// `must-understand` (RFC 9111 §5.2.2.3): the final codes RFC 9110 §15 defines,
/// less 206 and 304, which are never stored here.
fn understood_status(status: u16) -> bool {
    matches!(status, 200..=205 | 300..=303 | 305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505)
}

/// Whether any `Vary` line lists `*` (RFC 9110 §12.5.5).
fn has_vary_star(headers: &HeaderMap) -> bool {
    field_members(headers, &VARY).any(|m| m == b"*")
}

/// Whole seconds from `from` to `to`, 0 when `to` is earlier.
fn secs_between(from: SystemTime, to: SystemTime) -> u64 {
    to.duration_since(from).map_or(0, |d| d.as_secs())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
