use proptest::prelude::*;

use super::*;
use Encoding::{Br, Gzip, Identity, Zstd};

/// What this cache typically holds, in server preference order.
const ALL_STORED: &[Encoding] = &[Br, Zstd, Gzip, Identity];

fn pick(header: &str) -> Option<Encoding> {
    negotiate(Some(header.as_bytes()), ALL_STORED)
}

#[test]
fn tokens_round_trip_and_are_case_insensitive() {
    // RFC 9110 §8.4.1: content-coding values are case-insensitive.
    for e in Encoding::ALL {
        assert_eq!(Encoding::from_token(e.as_str()), Some(e));
        assert_eq!(Encoding::from_token(&e.as_str().to_uppercase()), Some(e));
    }
    // RFC 9110 §8.4.1.3: x-gzip is gzip.
    assert_eq!(Encoding::from_token("X-GZIP"), Some(Gzip));
    assert_eq!(Encoding::from_token("deflate"), None);
    assert_eq!(Encoding::from_token("*"), None);
}

#[test]
fn absent_header_gets_identity() {
    // RFC 9110 §12.5.3: no preference stated; identity is the safe choice.
    assert_eq!(negotiate(None, ALL_STORED), Some(Identity));
    assert_eq!(negotiate(None, &[Br, Gzip]), Some(Br));
    assert_eq!(negotiate(None, &[]), None);
}

#[test]
fn empty_header_gets_identity_only() {
    // RFC 9110 §12.5.3: an empty value means no content coding is wanted.
    assert_eq!(pick(""), Some(Identity));
    assert_eq!(pick("  "), Some(Identity));
    assert_eq!(negotiate(Some(b""), &[Br, Gzip]), None);
}

#[test]
fn header_matrix() {
    // RFC 9110 §12.5.3 with server preference br > zstd > gzip > identity.
    let matrix: &[(&str, Option<Encoding>)] = &[
        ("gzip, deflate, br", Some(Br)),
        ("gzip, deflate, br, zstd", Some(Br)),
        ("br;q=0.5, gzip;q=0.8", Some(Gzip)),
        ("br;q=1.0, gzip;q=0.999", Some(Br)),
        ("*", Some(Br)),
        ("*;q=0", None),
        ("*;q=0, identity", Some(Identity)),
        ("*;q=0, identity;q=0.1", Some(Identity)),
        ("identity;q=0", None),
        ("gzip, identity;q=0", Some(Gzip)),
        ("gzip;q=0, *", Some(Br)),
        ("br;q=0, zstd;q=0, *", Some(Gzip)),
        ("br;q=0, zstd;q=0, gzip;q=0", Some(Identity)),
        ("BR", Some(Br)),
        ("zstd", Some(Zstd)),
        ("x-gzip", Some(Gzip)),
        ("deflate", Some(Identity)),
        ("compress, deflate;q=0.5", Some(Identity)),
        ("gzip;q=0.001", Some(Gzip)),
        ("identity", Some(Identity)),
        ("identity, gzip", Some(Gzip)),
        ("identity;q=1, gzip;q=0.5", Some(Identity)),
        (";;;,q=", Some(Identity)),
        ("gzip;q=2", Some(Identity)),
        ("gzip;q=0.5000", Some(Identity)),
        ("gzip;q=abc, br;q=-1", Some(Identity)),
        ("gzip;Q=0.5, br;q=0.4", Some(Gzip)),
        ("gzip ; q=0.5 , br ;q=0.6", Some(Br)),
        ("gzip;level=9", Some(Gzip)),
        ("br;q=0.5, br;q=0", Some(Identity)),
    ];
    for (header, expected) in matrix {
        assert_eq!(pick(header), *expected, "{header:?}");
    }
}

#[test]
fn ties_go_to_server_preference() {
    assert_eq!(
        negotiate(Some(b"gzip, br"), &[Gzip, Br, Identity]),
        Some(Gzip)
    );
    assert_eq!(
        negotiate(Some(b"gzip, br"), &[Br, Gzip, Identity]),
        Some(Br)
    );
}

#[test]
fn only_available_encodings_are_chosen() {
    assert_eq!(negotiate(Some(b"br"), &[Gzip, Identity]), Some(Identity));
    assert_eq!(
        negotiate(Some(b"br, identity;q=0"), &[Gzip, Identity]),
        None
    );
}

#[test]
fn qvalues_follow_rfc_9110_grammar() {
    // RFC 9110 §12.4.2: "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]
    for (text, q) in [
        ("0", 0),
        ("0.", 0),
        ("0.5", 500),
        ("0.125", 125),
        ("1", 1000),
        ("1.000", 1000),
    ] {
        assert_eq!(parse_qvalue(text.as_bytes()), Some(q), "{text}");
    }
    for bad in ["", "1.001", "2", "0.1234", ".5", "-0", "0.a", "01"] {
        assert_eq!(parse_qvalue(bad.as_bytes()), None, "{bad}");
    }
}

fn available() -> impl Strategy<Value = Vec<Encoding>> {
    Just(vec![Br, Zstd, Gzip])
        .prop_shuffle()
        .prop_flat_map(|codings| {
            (0..=codings.len()).prop_map(move |n| {
                let mut list = codings[..n].to_vec();
                list.push(Identity);
                list
            })
        })
}

/// The weight the header gives `e`, or `None` when it is not listed (by name or `*`).
fn explicit_q(header: &str, e: Encoding) -> Option<u16> {
    let mut named = None;
    let mut star = None;
    for member in split_list(header.as_bytes(), false) {
        if let Some((coding, q)) = parse_member(member) {
            let coding = std::str::from_utf8(coding).unwrap();
            if coding == "*" {
                star = Some(star.map_or(q, |s: u16| s.min(q)));
            } else if Encoding::from_token(coding) == Some(e) {
                named = Some(named.map_or(q, |s: u16| s.min(q)));
            }
        }
    }
    named.or(star)
}

/// RFC 9110 §12.5.3: listed (by name or `*`) with q > 0, or identity when unlisted.
fn acceptable(header: &str, e: Encoding) -> bool {
    match explicit_q(header, e) {
        Some(q) => q > 0,
        None => e == Identity,
    }
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(header in proptest::collection::vec(any::<u8>(), 0..64), available in available()) {
        if let Some(e) = negotiate(Some(&header), &available) {
            prop_assert!(available.contains(&e));
        }
    }

    #[test]
    fn result_is_available_and_never_refused(
        header in r"((br|BR|zstd|gzip|x-gzip|identity|deflate|\*|;|q=)( ?; ?q=(0(\.[0-9]{0,3})?|1(\.0{0,3})?))?, ?){0,6}",
        available in available(),
    ) {
        match negotiate(Some(header.as_bytes()), &available) {
            Some(e) => {
                prop_assert!(available.contains(&e));
                prop_assert!(acceptable(&header, e), "{:?} was not accepted", e);
                // The highest weight wins; unlisted identity ranks below any weight.
                let weight = |e: Encoding| explicit_q(&header, e).map_or(u32::from(e == Identity), |q| 2 * u32::from(q));
                prop_assert!(available.iter().all(|&other| weight(other) <= weight(e)));
            }
            // None only when nothing available is acceptable, identity included.
            None => prop_assert!(!available.iter().any(|&e| acceptable(&header, e))),
        }
    }
}
