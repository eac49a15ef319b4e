//! Conditional requests (RFC 9110 §13): `If-Match`, `If-Unmodified-Since`,
//! `If-None-Match` and `If-Modified-Since`, evaluated against the selected
//! representation's validators in the order of §13.2.2.
//!
//! `If-Range`, step 5 of that order, belongs with `Range` in [`super::range`].

use std::time::SystemTime;

use http::header::{
    CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, HeaderName, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_UNMODIFIED_SINCE, LAST_MODIFIED, VARY,
};
use http::{HeaderMap, Method};

use super::{date, field_members, trim};

/// The headers a 304 response carries when the 200 would have (RFC 9110 §15.4.5):
/// `Cache-Control`, `Content-Location`, `Date`, `ETag`, `Expires` and `Vary`, plus
/// `Last-Modified`, which is allowed and lets clients keep their validator.
static NOT_MODIFIED_HEADERS: [HeaderName; 7] = [
    CACHE_CONTROL,
    CONTENT_LOCATION,
    DATE,
    ETAG,
    EXPIRES,
    VARY,
    LAST_MODIFIED,
];

/// What the preconditions of a request decide (RFC 9110 §13.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No precondition stops the request: serve it (subject to `Range`).
    Proceed,
    /// Answer 304 Not Modified (RFC 9110 §15.4.5).
    NotModified,
    /// Answer 412 Precondition Failed (RFC 9110 §15.5.13).
    Failed,
}

impl Precondition {
    /// A short token for logs: `"proceed"`, `"not-modified"` or `"failed"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Precondition::Proceed => "proceed",
            Precondition::NotModified => "not-modified",
            Precondition::Failed => "failed",
        }
    }
}

/// The validators of the selected representation (RFC 9110 §8.8).
///
/// A `Validators` value stands for a current representation, so `If-Match: *` is
/// true and `If-None-Match: *` is false for it. Callers evaluate preconditions only
/// when the response would otherwise be 2xx (RFC 9110 §13.2.1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Validators<'a> {
    /// The full `ETag` field value of the selected representation, e.g. `"abc"` or
    /// `W/"abc"` with its quotes.
    pub etag: Option<&'a str>,
    /// The ETags of the resource's other representations (its encoded variants);
    /// `If-None-Match` matches any of them too, since it uses weak comparison over
    /// the same content (RFC 9110 §13.1.2).
    pub other_etags: &'a [&'a str],
    /// The `Last-Modified` of the selected representation.
    pub last_modified: Option<SystemTime>,
    /// For a stored response without `Last-Modified`: its `Date`, or when it was
    /// received. A cache compares `If-Modified-Since` with it instead (RFC 9111
    /// §4.3.2); `If-Unmodified-Since` still needs a real `Last-Modified`.
    pub generated: Option<SystemTime>,
}

/// Evaluates the request's preconditions (RFC 9110 §13.2.2) in this order:
///
/// 1. `If-Match` present: unless a listed entity-tag strongly matches `etag`, or the
///    value is `*`, → `Failed` (§13.1.1).
/// 2. Otherwise, `If-Unmodified-Since` present and a valid date: if `last_modified` is
///    later → `Failed` (§13.1.4).
/// 3. `If-None-Match` present: if a listed entity-tag weakly matches `etag` or one of
///    `other_etags`, or the value is `*`, → `NotModified` for GET and HEAD, `Failed`
///    for other methods (§13.1.2).
/// 4. Otherwise, for GET and HEAD, `If-Modified-Since` a valid date: if
///    `last_modified` (else `generated`) is not later → `NotModified` (§13.1.3).
///
/// Invalid dates are ignored (§13.1.3, §13.1.4), as are malformed members of
/// entity-tag lists; dates compare at the one-second resolution of HTTP-date.
pub fn evaluate(method: &Method, request: &HeaderMap, v: &Validators<'_>) -> Precondition {
    let last_modified = v.last_modified.map(date::unix_secs);
    let safe = method == Method::GET || method == Method::HEAD;

    // Step 1 (§13.1.1): If-Match uses the strong comparison.
    if request.contains_key(&IF_MATCH) {
        let matched = match tag_list(|| field_members(request, &IF_MATCH)) {
            TagList::Any => true,
            TagList::Tags(mut tags) => {
                let current = v.etag.and_then(|e| EntityTag::parse(e.as_bytes()));
                current.is_some_and(|current| tags.any(|tag| tag.strong_eq(&current)))
            }
        };
        if !matched {
            return Precondition::Failed;
        }
    // Step 2 (§13.1.4): only when If-Match is absent.
    } else if let (Some(since), Some(modified)) =
        (single_date(request, &IF_UNMODIFIED_SINCE), last_modified)
        && modified > since
    {
        return Precondition::Failed;
    }

    // Step 3 (§13.1.2): If-None-Match uses the weak comparison.
    if request.contains_key(&IF_NONE_MATCH) {
        if !none_match_hits(|| field_members(request, &IF_NONE_MATCH), v) {
            return Precondition::Proceed;
        }
        return if safe {
            Precondition::NotModified
        } else {
            Precondition::Failed
        };
    }

    // Step 4 (§13.1.3): only GET and HEAD, only without If-None-Match.
    if safe
        && let (Some(since), Some(modified)) = (
            single_date(request, &IF_MODIFIED_SINCE),
            last_modified.or(v.generated.map(date::unix_secs)),
        )
        && modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether an `If-None-Match` field names the selected representation or one of the
/// others (RFC 9110 §13.1.2: `*`, or a member that weakly matches). `members` lists the
/// field's members (of every line) each time it is called: `*` is looked for first,
/// then the list is read again as tags.
pub fn none_match_hits<'a, I>(members: impl Fn() -> I, v: &Validators<'_>) -> bool
where
    I: Iterator<Item = &'a [u8]>,
{
    match tag_list(members) {
        TagList::Any => true,
        TagList::Tags(mut tags) => {
            let current = || {
                v.etag
                    .into_iter()
                    .chain(v.other_etags.iter().copied())
                    .filter_map(|e| EntityTag::parse(e.as_bytes()))
            };
            tags.any(|tag| current().any(|c| tag.weak_eq(&c)))
        }
    }
}

/// Whether two entity-tags match under the strong comparison (RFC 9110 §8.8.3.2):
/// neither is weak and their opaque-tags are identical. Malformed tags never match.
pub fn strong_eq(a: &str, b: &str) -> bool {
    match (
        EntityTag::parse(a.as_bytes()),
        EntityTag::parse(b.as_bytes()),
    ) {
        (Some(a), Some(b)) => a.strong_eq(&b),
        _ => false,
    }
}

/// Whether two entity-tags match under the weak comparison (RFC 9110 §8.8.3.2):
/// their opaque-tags are identical, weak or not. Malformed tags never match.
pub fn weak_eq(a: &str, b: &str) -> bool {
    match (
        EntityTag::parse(a.as_bytes()),
        EntityTag::parse(b.as_bytes()),
    ) {
        (Some(a), Some(b)) => a.weak_eq(&b),
        _ => false,
    }
}

/// The headers to copy from the full response onto a 304 (RFC 9110 §15.4.5).
pub fn not_modified_headers() -> &'static [HeaderName] {
    &NOT_MODIFIED_HEADERS
}

/// A parsed entity-tag, `[ W/ ] DQUOTE *etagc DQUOTE` (RFC 9110 §8.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntityTag<'a> {
    weak: bool,
    /// The opaque-tag without its quotes.
    opaque: &'a [u8],
}

impl<'a> EntityTag<'a> {
    /// Parses one entity-tag, ignoring surrounding whitespace; `None` when malformed.
    /// The `W/` prefix is case-sensitive (§8.8.3).
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Self> {
        let bytes = trim(bytes);
        let (weak, quoted) = match bytes.strip_prefix(b"W/") {
            Some(rest) => (true, rest),
            None => (false, bytes),
        };
        let opaque = quoted.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        // etagc = %x21 / %x23-7E / obs-text
        opaque
            .iter()
            .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
            .then_some(EntityTag { weak, opaque })
    }

    /// The strong comparison (§8.8.3.2).
    pub(crate) fn strong_eq(&self, other: &EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// The weak comparison (§8.8.3.2).
    pub(crate) fn weak_eq(&self, other: &EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }
}

/// The value of `If-Match` or `If-None-Match`: `"*" / #entity-tag`.
enum TagList<I> {
    Any,
    /// The well-formed members, parsed as they are iterated.
    Tags(I),
}

/// Reads an entity-tag list from its members (every line's, listed by `members` each
/// time it is called). `*` counts only as the whole field value; malformed members are
/// dropped, so a field of nothing but garbage is an empty list that matches nothing.
/// Nothing is collected: a conditional hit allocates nothing here.
fn tag_list<'a, I>(members: impl Fn() -> I) -> TagList<impl Iterator<Item = EntityTag<'a>>>
where
    I: Iterator<Item = &'a [u8]>,
{
    let mut all = members();
    if all.next() == Some(b"*") && all.next().is_none() {
        return TagList::Any;
    }
    TagList::Tags(members().filter_map(EntityTag::parse))
}

/// A date field that must hold exactly one valid HTTP-date, as whole seconds; `None`
/// when absent, invalid or repeated (RFC 9110 §13.1.3, §13.1.4: ignore it).
fn single_date(request: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let mut lines = request.get_all(name).iter();
    let value = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    date::parse(value.as_bytes()).map(date::unix_secs)
}

#[cfg(test)]
mod tests;
