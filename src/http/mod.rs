//! Pure HTTP semantics: caching (RFC 9111, RFC 9213, RFC 5861), conditional
//! requests and ranges (RFC 9110 §13, §14) and content negotiation (RFC 9110 §12).
//!
//! Nothing here does IO or reads the clock: every function that needs the time takes
//! it as an argument, so each rule can be tested with fixed instants.
//!
//! - [`cache_control`]: the `Cache-Control` field (and `Surrogate-Control`'s directives)
//!   parsed into a [`CacheControl`].
//! - [`structured`]: Structured Field Dictionaries (RFC 8941), as `CDN-Cache-Control`
//!   is read (RFC 9213 §2.1).
//! - [`freshness`]: may a response be stored, for how long is it fresh, and may it be
//!   served stale; `CDN-Cache-Control` and `Surrogate-Control` precedence.
//! - [`conditional`]: `If-Match`, `If-None-Match`, `If-Modified-Since`,
//!   `If-Unmodified-Since` → a [`Precondition`].
//! - [`range`]: `Range` and `If-Range` → a [`RangeOutcome`].
//! - [`encoding`]: `Accept-Encoding` → the [`Encoding`] to serve.
//! - [`immutable`]: path → the `Cache-Control` sent to clients (fingerprinted assets).
//! - [`path`]: request-target normalisation for keys and forwarding.
//! - [`date`]: HTTP-date parsing and formatting.

pub mod cache_control;
pub mod conditional;
pub mod date;
pub mod encoding;
pub mod freshness;
pub mod immutable;
pub mod path;
pub mod range;
pub mod structured;

pub use cache_control::CacheControl;
pub use conditional::{Precondition, Validators};
pub use encoding::Encoding;
pub use freshness::{Freshness, Storability};
pub use range::{ByteRange, RangeOutcome};

/// Splits one field line into the members of a comma-separated list (RFC 9110 §5.6.1),
/// trimming optional whitespace and dropping empty members.
///
/// Commas inside a double-quoted string do not split. With `escapes`, a backslash
/// inside quotes escapes the next byte (quoted-string, RFC 9110 §5.6.4); entity-tags
/// have no escapes (RFC 9110 §8.8.3), so their callers pass `false`. An unterminated
/// quote runs to the end of the line; the member is then malformed and the caller's
/// member parser rejects it.
/// Allocates nothing: it walks the line as it is iterated.
pub(crate) fn split_list(line: &[u8], escapes: bool) -> ListMembers<'_> {
    ListMembers {
        rest: Some(line),
        escapes,
    }
}

/// The members of every line of list field `name`, in order (RFC 9110 §5.3: the lines
/// form one list), without escapes: see [`split_list`].
pub(crate) fn field_members<'a>(
    headers: &'a http::HeaderMap,
    name: &http::HeaderName,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|line| split_list(line.as_bytes(), false))
}

/// The members of one list field line: see [`split_list`].
#[derive(Clone)]
pub(crate) struct ListMembers<'a> {
    /// What is left of the line; `None` once its last member has been taken.
    rest: Option<&'a [u8]>,
    escapes: bool,
}

impl<'a> Iterator for ListMembers<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let line = self.rest?;
            let mut in_quotes = false;
            let mut escaped = false;
            let mut comma = None;
            for (i, &b) in line.iter().enumerate() {
                if in_quotes {
                    if escaped {
                        escaped = false;
                    } else if self.escapes && b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_quotes = false;
                    }
                } else if b == b'"' {
                    in_quotes = true;
                } else if b == b',' {
                    comma = Some(i);
                    break;
                }
            }
            let member = match comma {
                Some(i) => {
                    self.rest = Some(&line[i + 1..]);
                    trim(&line[..i])
                }
                None => {
                    self.rest = None;
                    trim(line)
                }
            };
            if !member.is_empty() {
                return Some(member);
            }
        }
    }
}

/// Trims optional whitespace (SP and HTAB, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Whether `b` may appear in a token (`tchar`, RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_list_keeps_commas_inside_quotes() {
        assert_eq!(
            split_list(br#"a, b="x,y" ,, c"#, true).collect::<Vec<_>>(),
            vec![&b"a"[..], br#"b="x,y""#, b"c"]
        );
    }

    #[test]
    fn split_list_honours_escapes_only_when_asked() {
        // With escapes, \" does not close the string, so the comma is quoted.
        assert_eq!(split_list(br#""a\",b""#, true).count(), 1);
        // Entity-tags have no escapes: "a\" is a whole tag and the comma splits.
        assert_eq!(split_list(br#""a\",b""#, false).count(), 2);
    }

    #[test]
    fn trim_removes_only_optional_whitespace() {
        assert_eq!(trim(b" \t a b \t"), b"a b");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b""), b"");
    }
}
