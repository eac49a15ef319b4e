//! Request-target normalisation (RFC 3986 §6.2.2): the same function makes the cache
//! key and the target forwarded to the origin, so that the two can never disagree
//! about which resource a request names (path-confusion cache poisoning).
//!
//! - Percent-encoding case is upper-cased (`%2f` → `%2F`, §6.2.2.1).
//! - Percent-encoded unreserved characters are decoded (`%7E` → `~`, §6.2.2.2).
//! - Dot segments are removed (§5.2.4, §6.2.2.3), after decoding, so `%2E%2E/` climbs
//!   like `../` does; a path never climbs above `/`.
//! - Encoded reserved characters (`%2F`, `%3F`, …) stay encoded: they are data.
//!
//! The query is then kept, sorted, dropped, or filtered to an allow-list, per site.
//!
//! `is_host_field` checks a `Host` value against RFC 3986's authority grammar.

use std::borrow::Cow;
use std::fmt::Write as _;

/// What a site does with query strings, for the key and the forwarded request alike.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueryPolicy {
    /// Keep the query as sent (percent-encoding case normalised).
    #[default]
    Keep,
    /// Sort parameters by name, then value, so `?b=1&a=2` and `?a=2&b=1` are one entry.
    Sort,
    /// Drop the query entirely.
    Drop,
    /// Keep only these parameter names (sorted), drop the rest.
    Allow(Vec<String>),
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `value` is a `Host` field value: `uri-host [ ":" port ]` (RFC 9110 §7.2,
/// RFC 3986 §3.2.2-3), empty included. A space, a slash, a backslash, an `@` or a
/// control byte would otherwise reach the cache key and the `Location` of redirects.
pub(crate) fn is_host_field(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        if !is_ip_literal(&value[1..end]) {
            return false;
        }
        match &value[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&[][..], port),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon + 1..]),
            None => (value, &[][..]),
        }
    };
    is_reg_name(host) && port.iter().all(u8::is_ascii_digit)
}

/// The inside of an RFC 3986 IP-literal: an IPv6 address, or
/// `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn is_ip_literal(literal: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = literal {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, address) = (&rest[..dot], &rest[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !address.is_empty()
            && address.iter().all(|&b| is_reg_name_byte(b) || b == b':');
    }
    std::str::from_utf8(literal).is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok())
}

/// RFC 3986 `reg-name`: unreserved, sub-delims and percent-encoded bytes (an IPv4
/// address is one too).
fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%' {
            if !name
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if is_reg_name_byte(name[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// RFC 3986 `unreserved` or `sub-delims`.
fn is_reg_name_byte(b: u8) -> bool {
    is_unreserved(b) || b"!$&'()*+,;=".contains(&b)
}

/// Normalises percent-encoding in one component: upper-case hex digits, decode
/// unreserved characters. A `%` not followed by two hex digits is encoded as `%25`.
fn normalise_percent(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            match (
                bytes.get(i + 1).and_then(|&h| hex(h)),
                bytes.get(i + 2).and_then(|&l| hex(l)),
            ) {
                (Some(h), Some(l)) => {
                    let decoded = h * 16 + l;
                    if is_unreserved(decoded) {
                        out.push(decoded as char);
                    } else {
                        let _ = write!(out, "%{decoded:02X}");
                    }
                    i += 3;
                    continue;
                }
                _ => {
                    out.push_str("%25");
                    i += 1;
                    continue;
                }
            }
        }
        if b.is_ascii() {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        i += 1;
    }
    out
}

/// Removes `.` and `..` segments (RFC 3986 §5.2.4). The result always starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let trailing = path.ends_with("/.") || path.ends_with("/..") || path == "." || path == "..";
    for segment in path.split('/').skip(usize::from(path.starts_with('/'))) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

/// Normalises a path (without query).
pub fn normalise_path(path: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    remove_dot_segments(&normalise_percent(path))
}

/// Normalises a query string (without `?`) under `policy`; `None` when nothing is left.
pub fn normalise_query(query: &str, policy: &QueryPolicy) -> Option<String> {
    let params = || {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(normalise_percent)
    };
    let joined = match policy {
        QueryPolicy::Drop => return None,
        QueryPolicy::Keep => normalise_percent(query),
        QueryPolicy::Sort => {
            let mut all: Vec<String> = params().collect();
            all.sort();
            all.join("&")
        }
        QueryPolicy::Allow(names) => {
            let mut kept: Vec<String> = params()
                .filter(|p| {
                    let name = p.split('=').next().unwrap_or("");
                    names.iter().any(|n| n == name)
                })
                .collect();
            kept.sort();
            kept.join("&")
        }
    };
    (!joined.is_empty()).then_some(joined)
}

/// Normalises a whole `path?query` request target.
pub fn normalise_target<'a>(path_and_query: &'a str, policy: &QueryPolicy) -> Cow<'a, str> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // Most targets are normal already: no copy then.
    let query_unchanged = match query {
        None => true,
        Some(q) => *policy == QueryPolicy::Keep && !q.is_empty() && is_plain(q),
    };
    if query_unchanged && is_normal_path(path) {
        return Cow::Borrowed(path_and_query);
    }
    Cow::Owned(normalise_target_copy(path, query, policy))
}

/// [`normalise_target`], always building the result.
fn normalise_target_copy(path: &str, query: Option<&str>, policy: &QueryPolicy) -> String {
    let mut out = normalise_path(path);
    if let Some(q) = query.and_then(|q| normalise_query(q, policy)) {
        out.push('?');
        out.push_str(&q);
    }
    out
}

/// ASCII without `%`: percent normalisation leaves it as it is.
fn is_plain(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii() && b != b'%')
}

/// A path [`normalise_path`] returns unchanged: absolute, plain, no dot segments.
fn is_normal_path(path: &str) -> bool {
    path.starts_with('/') && is_plain(path) && !path.split('/').any(|s| s == "." || s == "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dot_segments_are_removed_and_never_climb_above_root() {
        assert_eq!(normalise_path("/a/b/../c/./d"), "/a/c/d");
        assert_eq!(normalise_path("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalise_path("/a/.."), "/");
        assert_eq!(normalise_path("/a/b/.."), "/a/");
        assert_eq!(normalise_path(""), "/");
    }

    #[test]
    fn encoded_dots_climb_like_plain_ones() {
        assert_eq!(normalise_path("/static/%2e%2E/account"), "/account");
    }

    #[test]
    fn percent_case_and_unreserved_are_normalised() {
        assert_eq!(normalise_path("/%7euser/%41%2f"), "/~user/A%2F");
        assert_eq!(normalise_path("/a%zz"), "/a%25zz");
    }

    #[test]
    fn query_policies() {
        assert_eq!(
            normalise_target("/p?b=2&a=1", &QueryPolicy::Keep),
            "/p?b=2&a=1"
        );
        assert_eq!(
            normalise_target("/p?b=2&a=1", &QueryPolicy::Sort),
            "/p?a=1&b=2"
        );
        assert_eq!(normalise_target("/p?b=2&a=1", &QueryPolicy::Drop), "/p");
        let allow = QueryPolicy::Allow(vec!["v".into()]);
        assert_eq!(normalise_target("/p?utm=x&v=3", &allow), "/p?v=3");
        assert_eq!(normalise_target("/p?utm=x", &allow), "/p");
    }

    proptest! {
        #[test]
        fn the_no_copy_path_agrees_with_building_the_target(
            target in "(/|[a-z%./?&=]){0,40}",
        ) {
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (target.as_str(), None),
            };
            for policy in [QueryPolicy::Keep, QueryPolicy::Sort, QueryPolicy::Drop] {
                let fast = normalise_target(&target, &policy);
                let built = normalise_target_copy(path, query, &policy);
                prop_assert_eq!(fast.as_ref(), built.as_str());
            }
        }

        #[test]
        fn normalisation_never_panics_and_is_idempotent(target in "[ -~]{0,80}") {
            for policy in [QueryPolicy::Keep, QueryPolicy::Sort, QueryPolicy::Drop] {
                let once = normalise_target(&target, &policy);
                prop_assert!(once.starts_with('/'));
                prop_assert_eq!(normalise_target(&once, &policy), once.clone());
            }
        }

        #[test]
        fn normalised_paths_have_no_dot_segments(path in "(/(\\.|\\.\\.|%2[eE]|[a-z]{1,3})){0,8}") {
            let out = normalise_path(&path);
            prop_assert!(!out.split('/').any(|s| s == "." || s == ".."), "{}", out);
        }
    }
}
