//! Content-coding negotiation: `Accept-Encoding` (RFC 9110 §12.5.3) → which of a
//! resource's stored [`Encoding`]s (RFC 9110 §8.4) to serve.

use serde::{Deserialize, Serialize};

use super::{is_tchar, split_list, trim};

/// A content coding this cache stores representations in (RFC 9110 §8.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Encoding {
    /// No coding: the canonical body.
    Identity,
    /// Brotli (RFC 7932).
    Br,
    /// Zstandard (RFC 8878).
    Zstd,
    /// gzip (RFC 9110 §8.4.1.3).
    Gzip,
}

impl Encoding {
    /// Every encoding, in declaration order.
    pub const ALL: [Encoding; 4] = [
        Encoding::Identity,
        Encoding::Br,
        Encoding::Zstd,
        Encoding::Gzip,
    ];

    /// The content-coding token, as sent in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// Reads a content-coding token, case-insensitively (RFC 9110 §8.4.1); `x-gzip` is
    /// gzip (§8.4.1.3). `None` for codings this cache does not store.
    pub fn from_token(token: &str) -> Option<Encoding> {
        let token = token.trim();
        Encoding::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(token))
            .or_else(|| {
                token
                    .eq_ignore_ascii_case("x-gzip")
                    .then_some(Encoding::Gzip)
            })
    }
}

/// A qvalue in thousandths, 0..=1000 (RFC 9110 §12.4.2).
type Q = u16;

/// Picks the encoding to serve from `available`, the codings this resource has in
/// the server's order of preference (identity included), given the request's
/// `Accept-Encoding` field value (RFC 9110 §12.5.3):
///
/// - No field: identity. Any coding would be acceptable, but identity is what a client
///   that sent nothing is sure to understand. (If `available` lacks identity, the
///   server's first choice.)
/// - An empty field: identity only ("the user agent does not want any content coding").
/// - Otherwise each `coding;q=x` member gives that coding's weight (case-insensitive;
///   a member with an invalid qvalue is ignored; a coding listed twice keeps its lower
///   weight). `*` weighs every coding not listed. Identity is acceptable unless
///   `identity;q=0`, or `*;q=0` without an identity member; when neither lists it, it
///   ranks below every weighted coding.
/// - The acceptable coding (q > 0) with the highest weight wins; ties go to the
///   earlier one in `available`.
///
/// `None` means nothing available is acceptable: the caller answers 406
/// (RFC 9110 §15.5.7). Never returns a coding outside `available` or one the client
/// did not accept.
pub fn negotiate(accept_encoding: Option<&[u8]>, available: &[Encoding]) -> Option<Encoding> {
    let Some(value) = accept_encoding else {
        let identity = available.iter().copied().find(|&e| e == Encoding::Identity);
        return identity.or_else(|| available.first().copied());
    };
    let mut listed: [Option<Q>; 4] = [None; 4];
    let mut star: Option<Q> = None;
    for member in split_list(value, false) {
        let Some((coding, q)) = parse_member(member) else {
            continue;
        };
        let slot = if coding == b"*" {
            &mut star
        } else {
            match std::str::from_utf8(coding)
                .ok()
                .and_then(Encoding::from_token)
            {
                Some(encoding) => &mut listed[encoding as usize],
                None => continue,
            }
        };
        *slot = Some(slot.map_or(q, |old| old.min(q)));
    }
    // Rank: 2 * q for a weight from the field, 1 for identity's implicit acceptability,
    // 0 for not acceptable.
    let rank = |encoding: Encoding| -> u32 {
        match (listed[encoding as usize], star, encoding) {
            (Some(q), _, _) | (None, Some(q), _) => 2 * u32::from(q),
            (None, None, Encoding::Identity) => 1,
            (None, None, _) => 0,
        }
    };
    let mut best: Option<(Encoding, u32)> = None;
    for &encoding in available {
        let r = rank(encoding);
        if r > 0 && best.is_none_or(|(_, best_rank)| r > best_rank) {
            best = Some((encoding, r));
        }
    }
    best.map(|(encoding, _)| encoding)
}

/// Parses `codings *( OWS ";" OWS "q=" qvalue )`; `None` when the coding is not a
/// token or a `q` parameter is invalid. Other parameters are ignored.
fn parse_member(member: &[u8]) -> Option<(&[u8], Q)> {
    let mut parts = member.split(|&b| b == b';');
    let coding = trim(parts.next()?);
    if coding.is_empty() || !coding.iter().copied().all(is_tchar) {
        return None;
    }
    let mut q = 1000;
    for param in parts.map(trim).filter(|p| !p.is_empty()) {
        if let Some(value) = param
            .strip_prefix(b"q=")
            .or_else(|| param.strip_prefix(b"Q="))
        {
            q = parse_qvalue(value)?;
        }
    }
    Some((coding, q))
}

/// Parses a qvalue (RFC 9110 §12.4.2): `0[.ddd]` or `1[.000]`, in thousandths.
fn parse_qvalue(value: &[u8]) -> Option<Q> {
    let (int, frac) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = frac
        .iter()
        .chain(b"000")
        .take(3)
        .fold(0, |n, &d| n * 10 + Q::from(d - b'0'));
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
