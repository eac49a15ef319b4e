//! Which `Cache-Control` a stored response is sent to clients with, by path: per-site
//! rules, first match wins. The default rule recognises fingerprinted file names
//! (`app.3f9a2c1e.js`) and answers them with `public, max-age=31536000, immutable`
//! (RFC 8246), since their bytes can never change under that name.
//!
//! Pure: no IO. The caller applies the result only to responses that were storable in
//! the first place; paths no rule names keep the origin's header.

use http::HeaderValue;

/// The pattern keyword for the built-in fingerprint recogniser, [`is_fingerprinted`].
pub const FINGERPRINTED: &str = "fingerprinted";

/// The `Cache-Control` of the default rule: a year, and never revalidate.
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Shortest hash that counts as a fingerprint, in characters.
const MIN_HASH_LEN: usize = 8;

/// A site's rules, compiled: path → the `Cache-Control` sent to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pattern: Pattern,
    /// `None` when the configured value is empty: matching paths keep the origin's
    /// header, so a narrow rule can exempt paths from a broader one after it. Held as a
    /// header value: cloned per response, never re-validated.
    cache_control: Option<HeaderValue>,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// File names carrying a content hash ([`is_fingerprinted`]).
    Fingerprinted,
    /// A path glob: literal bytes, and `*` for any run of characters (`/` included).
    Glob(String),
}

/// A rule that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The pattern is neither `fingerprinted` nor a path glob.
    #[error("`{0}` is not a pattern (use `fingerprinted`, a path like `/static/*`, or `*.woff2`)")]
    BadPattern(String),
    /// The `Cache-Control` value is not a valid header value.
    #[error("`{0}` is not a valid header value")]
    BadCacheControl(String),
}

impl ImmutableRules {
    /// Compiles `(pattern, cache_control)` pairs, in order. A pattern is `fingerprinted`
    /// or a path glob starting with `/` or `*`; an empty `cache_control` makes matching
    /// paths keep the origin's header.
    pub fn new<P, C>(rules: impl IntoIterator<Item = (P, C)>) -> Result<Self, RuleError>
    where
        P: AsRef<str>,
        C: AsRef<str>,
    {
        let rules = rules
            .into_iter()
            .map(|(pattern, cache_control)| {
                let (pattern, cache_control) = (pattern.as_ref(), cache_control.as_ref());
                Ok(Rule {
                    pattern: Pattern::parse(pattern)?,
                    cache_control: parse_cache_control(cache_control)?,
                })
            })
            .collect::<Result<_, RuleError>>()?;
        Ok(ImmutableRules { rules })
    }

    /// No rules: every path keeps the origin's header.
    pub fn none() -> Self {
        ImmutableRules { rules: Vec::new() }
    }

    /// The `Cache-Control` to send for `path` (without query), from the first rule
    /// that matches; `None` when no rule matches or the matching rule's value is empty,
    /// and the origin's header stands.
    pub fn cache_control_for(&self, path: &str) -> Option<&str> {
        self.header_for(path).and_then(|v| v.to_str().ok())
    }

    /// [`ImmutableRules::cache_control_for`] as the header value to send.
    pub fn header_for(&self, path: &str) -> Option<&HeaderValue> {
        self.rules
            .iter()
            .find(|rule| rule.pattern.matches(path))
            .and_then(|rule| rule.cache_control.as_ref())
    }
}

impl Default for ImmutableRules {
    /// One rule: fingerprinted file names → `public, max-age=31536000, immutable`.
    fn default() -> Self {
        ImmutableRules {
            rules: vec![Rule {
                pattern: Pattern::Fingerprinted,
                cache_control: Some(HeaderValue::from_static(IMMUTABLE_CACHE_CONTROL)),
            }],
        }
    }
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, RuleError> {
        if text == FINGERPRINTED {
            return Ok(Pattern::Fingerprinted);
        }
        if !is_valid_glob(text) {
            return Err(RuleError::BadPattern(text.to_owned()));
        }
        Ok(Pattern::Glob(text.to_owned()))
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Fingerprinted => is_fingerprinted(path),
            Pattern::Glob(glob) => glob_matches(glob.as_bytes(), path.as_bytes()),
        }
    }
}

/// Whether `text` is a usable path glob: it starts with `/` or `*` (a path pattern, not
/// a host or a bare word) and has no whitespace or control characters.
pub fn is_valid_glob(text: &str) -> bool {
    (text.starts_with('/') || text.starts_with('*'))
        && !text
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
}

fn parse_cache_control(text: &str) -> Result<Option<HeaderValue>, RuleError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // A header value (RFC 9110 §5.5): visible ASCII, SP and HTAB; no CR, LF or NUL.
    if text.bytes().any(|b| b.is_ascii_control() && b != b'\t') || !text.is_ascii() {
        return Err(RuleError::BadCacheControl(text.to_owned()));
    }
    HeaderValue::from_str(text)
        .map(Some)
        .map_err(|_| RuleError::BadCacheControl(text.to_owned()))
}

/// Matches `text` against `glob`, where `*` stands for any run of bytes (`/` included)
/// and every other byte for itself. Case-sensitive, as paths are. Linear-time greedy
/// matching with one backtrack point, so hostile paths cannot make it slow.
fn glob_matches(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    // The position after the last `*` seen, and where in `text` it started matching.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g + 1, t));
            g += 1;
        } else if g < glob.len() && glob[g] == text[t] {
            g += 1;
            t += 1;
        } else if let Some((after_star, start)) = star {
            // Let the last `*` swallow one more byte and retry from there.
            g = after_star;
            t = start + 1;
            star = Some((after_star, start + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

/// Whether the file name of `path` (its last segment) carries a content hash as a
/// distinct segment, so the bytes behind that name can never change.
///
/// The name is split at `.` into segments; the last one is the extension and is not
/// considered (unless it is the only one). A segment, and each piece of it between
/// `-` or `_`, is a hash when it is 8 or more characters and either
///
/// - hex (`0-9a-f`, or `0-9A-F`) with at least one digit and one letter
///   (`app.3f9a2c1e.js`, `main-5d41402abc4b2a76.css`), or
/// - base64url (`A-Za-z0-9-_`) with a digit, upper- and lower-case letters, and a
///   digit followed by a letter, as random strings have and words with version
///   numbers do not (`chunk.Ab3_x-9Qz.js`, `index-CnB9vB8K.js`; not `bootstrap-5`,
///   `Setup-Win64`).
///
/// UUID-named files (`550e8400-e29b-41d4-a716-446655440000.json`) are not fingerprints:
/// a UUID names a thing, not its bytes. The rules err towards "not fingerprinted": a
/// miss only keeps the origin's header, while a false match would pin changing content
/// in browsers for a year. So an all-digit or all-letter hex hash, or a base64url hash
/// without a digit, is missed; hashes in directory names (`/_app/immutable/…`) need a
/// path rule.
pub fn is_fingerprinted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    // Every dot-separated segment but the extension (the whole name when it has none).
    let stem = name
        .rsplit_once('.')
        .map_or(name, |(stem, _extension)| stem);
    stem.split('.').any(|segment| {
        !is_uuid(segment) && (is_hash(segment) || segment.split(['-', '_']).any(is_hash))
    })
}

/// Whether `s` looks like a content hash; see [`is_fingerprinted`].
fn is_hash(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < MIN_HASH_LEN
        || !b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        || !b.iter().any(u8::is_ascii_digit)
    {
        return false;
    }
    let has_lower = b.iter().any(u8::is_ascii_lowercase);
    let has_upper = b.iter().any(u8::is_ascii_uppercase);
    let hex = b.iter().all(u8::is_ascii_hexdigit) && !(has_lower && has_upper);
    if hex {
        return has_lower || has_upper;
    }
    let digit_then_letter = b
        .windows(2)
        .any(|w| w[0].is_ascii_digit() && w[1].is_ascii_alphabetic());
    has_lower && has_upper && digit_then_letter
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(s: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    s.len() == 36
        && s.split('-').count() == GROUPS.len()
        && s.split('-')
            .zip(GROUPS)
            .all(|(g, len)| g.len() == len && g.bytes().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests;
