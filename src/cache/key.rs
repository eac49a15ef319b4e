//! The cache key: site, host, and the normalised path and query of a request.

use std::borrow::Borrow;
use std::fmt;

/// Identifies one stored response: `site \x1f host \x1f path?query`.
///
/// The host is part of the key so that two hosts of one wildcard site never share an
/// entry unless the origin's bytes are identical (then they share a blob on disk).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

/// Separates the parts of a key; it cannot appear in a host or an HTTP path.
const SEP: char = '\u{1f}';

/// Separates a primary key from the `Vary` values of one variant.
const VARIANT: char = '\u{1e}';

impl CacheKey {
    /// Builds the key of a request for `site`.
    pub fn new(site: &str, host: &str, path_and_query: &str) -> Self {
        let mut s = String::with_capacity(site.len() + host.len() + path_and_query.len() + 2);
        s.push_str(site);
        s.push(SEP);
        s.push_str(host);
        s.push(SEP);
        s.push_str(path_and_query);
        CacheKey(s)
    }

    /// Writes the stored form of [`Self::new`]'s key into `out`: a lookup by text, in
    /// a buffer on the stack, needs no key of its own. Fails when `out` is full.
    pub fn write(
        out: &mut impl fmt::Write,
        site: &str,
        host: &str,
        path_and_query: &str,
    ) -> fmt::Result {
        out.write_str(site)?;
        out.write_char(SEP)?;
        out.write_str(host)?;
        out.write_char(SEP)?;
        out.write_str(path_and_query)
    }

    /// Rebuilds a key from its stored form (the disk index).
    pub fn from_stored(s: String) -> Self {
        CacheKey(s)
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The site part.
    pub fn site(&self) -> &str {
        self.0.split(SEP).next().unwrap_or("")
    }

    /// The host part.
    pub fn host(&self) -> &str {
        self.0.split(SEP).nth(1).unwrap_or("")
    }

    /// The path and query part (without any variant suffix).
    pub fn path_and_query(&self) -> &str {
        let rest = self.0.splitn(3, SEP).nth(2).unwrap_or("");
        rest.split(VARIANT).next().unwrap_or("")
    }

    /// The key of one `Vary` variant of this (primary) key.
    pub fn variant(&self, variant: &str) -> CacheKey {
        let mut s = String::with_capacity(self.0.len() + variant.len() + 1);
        s.push_str(self.primary_str());
        s.push(VARIANT);
        s.push_str(variant);
        CacheKey(s)
    }

    /// The primary key of a variant key (itself for a primary key).
    pub fn primary(&self) -> CacheKey {
        CacheKey(self.primary_str().to_owned())
    }

    /// Whether this is the key of a `Vary` variant.
    pub fn is_variant(&self) -> bool {
        self.0.contains(VARIANT)
    }

    /// The prefix every variant key of this primary key starts with.
    pub fn variant_prefix(&self) -> String {
        format!("{}{VARIANT}", self.primary_str())
    }

    pub(super) fn primary_str(&self) -> &str {
        self.0.split(VARIANT).next().unwrap_or("")
    }
}

/// Maps and caches keyed by `CacheKey` can be searched with the stored form: a key
/// hashes and compares exactly as its text does.
impl Borrow<str> for CacheKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}{}",
            self.site(),
            self.host(),
            self.path_and_query()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_round_trip() {
        let k = CacheKey::new("web", "example.com", "/a/b.css?v=1");
        assert_eq!(k.site(), "web");
        assert_eq!(k.host(), "example.com");
        assert_eq!(k.path_and_query(), "/a/b.css?v=1");
        assert_eq!(CacheKey::from_stored(k.as_str().to_owned()), k);
    }

    #[test]
    fn a_written_key_is_the_stored_form_and_hashes_alike() {
        use std::hash::BuildHasher;
        let key = CacheKey::new("web", "example.com", "/a.css");
        let mut text = String::new();
        CacheKey::write(&mut text, "web", "example.com", "/a.css").expect("a String grows");
        assert_eq!(text, key.as_str());
        let state = std::collections::hash_map::RandomState::new();
        let by_text: &str = key.borrow();
        assert_eq!(state.hash_one(&key), state.hash_one(by_text));
        assert_eq!(state.hash_one(&key), state.hash_one(text.as_str()));
    }

    #[test]
    fn different_hosts_make_different_keys() {
        assert_ne!(
            CacheKey::new("web", "a.example.com", "/x"),
            CacheKey::new("web", "b.example.com", "/x")
        );
    }
}
