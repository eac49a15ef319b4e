use http::HeaderMap;
use http::header::{CACHE_CONTROL, HeaderValue};
use proptest::prelude::*;

use super::*;

fn cc(line: &str) -> CacheControl {
    CacheControl::parse([line.as_bytes()])
}

#[test]
fn parses_common_response_directives() {
    // RFC 9111 §5.2.2
    let parsed = cc("public, max-age=60, s-maxage=300, must-revalidate, immutable");
    assert_eq!(
        parsed,
        CacheControl {
            public: true,
            max_age: Some(60),
            s_maxage: Some(300),
            must_revalidate: true,
            immutable: true,
            ..CacheControl::default()
        }
    );
}

#[test]
fn parses_request_directives() {
    // RFC 9111 §5.2.1
    let parsed = cc("max-stale=10, min-fresh=5, only-if-cached, no-transform");
    assert_eq!(parsed.max_stale, Some(10));
    assert_eq!(parsed.min_fresh, Some(5));
    assert!(parsed.only_if_cached);
    assert!(parsed.no_transform);
}

#[test]
fn max_stale_without_value_accepts_any_staleness() {
    // RFC 9111 §5.2.1.2
    assert_eq!(cc("max-stale").max_stale, Some(u64::MAX));
}

#[test]
fn directive_names_are_case_insensitive() {
    // RFC 9111 §5.2: "Cache directives are identified by a token ... case-insensitive"
    let parsed = cc("No-Store, MAX-AGE=5, Private");
    assert!(parsed.no_store && parsed.private);
    assert_eq!(parsed.max_age, Some(5));
}

#[test]
fn directives_span_multiple_field_lines() {
    // RFC 9110 §5.3: field lines combine into one list.
    let parsed = CacheControl::parse([&b"public"[..], b"max-age=10", b""]);
    assert!(parsed.public);
    assert_eq!(parsed.max_age, Some(10));
}

#[test]
fn quoted_delta_seconds_are_accepted() {
    // RFC 9111 §5.2: arguments may be a quoted-string; senders should use the token
    // form, but recipients accept both.
    assert_eq!(cc(r#"max-age="60""#).max_age, Some(60));
    assert_eq!(cc(r#"stale-if-error = "30" "#).stale_if_error, Some(30));
}

#[test]
fn qualified_no_cache_and_private_are_read_unqualified() {
    // RFC 9111 §5.2.2.4 and §5.2.2.7; the quoted list may hold commas.
    let parsed = cc(r#"no-cache="Set-Cookie, X-Foo", private="Authorization", max-age=5"#);
    assert!(parsed.no_cache);
    assert!(parsed.private);
    assert_eq!(parsed.max_age, Some(5));
}

#[test]
fn huge_delta_seconds_clamp_to_two_to_the_31() {
    // RFC 9111 §1.2.2
    assert_eq!(cc("max-age=2147483649").max_age, Some(DELTA_SECONDS_MAX));
    assert_eq!(
        cc("max-age=99999999999999999999999999").max_age,
        Some(DELTA_SECONDS_MAX)
    );
    assert_eq!(cc("max-age=2147483647").max_age, Some(2_147_483_647));
}

#[test]
fn invalid_max_age_is_treated_as_stale() {
    // RFC 9111 §4.2.1: "Caches are encouraged to consider responses that have invalid
    // freshness information (e.g., a max-age directive with non-integer content) to be
    // stale."
    for bad in [
        "max-age=-1",
        "max-age=abc",
        "max-age=1.5",
        "max-age",
        "max-age=",
        "max-age=+5",
    ] {
        assert_eq!(cc(bad).max_age, Some(0), "{bad}");
    }
    assert_eq!(cc("s-maxage=soon").s_maxage, Some(0));
}

#[test]
fn invalid_stale_extensions_are_ignored() {
    // RFC 5861: an invalid allowance grants nothing.
    let parsed = cc("stale-while-revalidate=-5, stale-if-error=x, min-fresh=, max-stale=y");
    assert_eq!(parsed.stale_while_revalidate, None);
    assert_eq!(parsed.stale_if_error, None);
    assert_eq!(parsed.min_fresh, None);
    assert_eq!(parsed.max_stale, None);
}

#[test]
fn conflicting_max_age_makes_the_response_stale() {
    // RFC 9111 §4.2.1: "either the first occurrence should be used or the response
    // should be considered stale" — this cache considers it stale.
    assert_eq!(cc("max-age=60, max-age=120").max_age, Some(0));
    assert_eq!(
        CacheControl::parse([&b"s-maxage=1"[..], b"s-maxage=2"]).s_maxage,
        Some(0)
    );
}

#[test]
fn repeated_identical_max_age_is_not_a_conflict() {
    assert_eq!(cc("max-age=60, max-age=60").max_age, Some(60));
}

#[test]
fn repeated_stale_allowances_keep_the_most_conservative() {
    let parsed =
        cc("stale-while-revalidate=60, stale-while-revalidate=10, min-fresh=1, min-fresh=9");
    assert_eq!(parsed.stale_while_revalidate, Some(10));
    assert_eq!(parsed.min_fresh, Some(9));
    assert_eq!(cc("max-stale, max-stale=30").max_stale, Some(30));
}

#[test]
fn unknown_directives_and_garbage_are_ignored() {
    // RFC 9111 §5.2.3
    let parsed = cc(r#"community="UCI", foo=bar=baz, ,,, =, "max-age=5", public"#);
    assert_eq!(
        parsed,
        CacheControl {
            public: true,
            ..CacheControl::default()
        }
    );
}

#[test]
fn unterminated_quote_invalidates_only_its_argument() {
    assert_eq!(cc(r#"public, max-age="60"#).max_age, Some(0));
    assert!(cc(r#"public, max-age="60"#).public);
}

#[test]
fn from_headers_distinguishes_absent_from_empty() {
    let mut headers = HeaderMap::new();
    assert_eq!(CacheControl::from_headers(&headers, &CACHE_CONTROL), None);
    headers.append(CACHE_CONTROL, HeaderValue::from_static("x-unknown"));
    let parsed = CacheControl::from_headers(&headers, &CACHE_CONTROL).unwrap();
    assert!(parsed.is_empty());
    headers.append(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    assert!(
        CacheControl::from_headers(&headers, &CACHE_CONTROL)
            .unwrap()
            .no_store
    );
}

#[test]
fn display_is_canonical() {
    let parsed = cc("MAX-AGE=\"5\", Public, max-stale");
    assert_eq!(parsed.to_string(), "public, max-age=5, max-stale");
    assert_eq!(CacheControl::default().to_string(), "");
}

fn delta() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(0..=DELTA_SECONDS_MAX)
}

prop_compose! {
    fn any_cache_control()(
        flags in proptest::collection::vec(any::<bool>(), 10),
        max_age in delta(), s_maxage in delta(), swr in delta(), sie in delta(),
        min_fresh in delta(),
        max_stale in proptest::option::of(prop_oneof![Just(u64::MAX), 0..=DELTA_SECONDS_MAX]),
    ) -> CacheControl {
        CacheControl {
            max_age, s_maxage, stale_while_revalidate: swr, stale_if_error: sie,
            min_fresh, max_stale,
            no_store: flags[0], no_cache: flags[1], private: flags[2], public: flags[3],
            must_revalidate: flags[4], proxy_revalidate: flags[5], immutable: flags[6],
            no_transform: flags[7], only_if_cached: flags[8], must_understand: flags[9],
        }
    }
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4)) {
        let parsed = CacheControl::parse(lines.iter().map(Vec::as_slice));
        // Whatever was parsed is within the clamped range.
        for v in [parsed.max_age, parsed.s_maxage, parsed.stale_while_revalidate, parsed.stale_if_error, parsed.min_fresh].into_iter().flatten() {
            prop_assert!(v <= DELTA_SECONDS_MAX);
        }
    }

    #[test]
    fn never_panics_on_directive_like_text(line in r#"([a-zA-Z-]{0,16}(=("[^"]{0,8}"?|[0-9a-z-]{0,12}))?[ ,]{0,3}){0,8}"#) {
        let _ = cc(&line);
    }

    #[test]
    fn display_round_trips(value in any_cache_control()) {
        prop_assert_eq!(cc(&value.to_string()), value);
    }
}
