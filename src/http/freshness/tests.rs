use std::time::{Duration, UNIX_EPOCH};

use http::header::HeaderValue;
use proptest::prelude::*;

use super::*;

const NOW: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// Freshness of a response requested and received at `NOW`.
fn fresh(status: u16, pairs: &[(&str, &str)]) -> Freshness {
    analyze(status, &headers(pairs), at(NOW), at(NOW))
}

fn http_date(secs: u64) -> String {
    date::format(at(secs))
}

// ---- freshness lifetime -------------------------------------------------------------

#[test]
fn max_age_sets_the_lifetime() {
    // RFC 9111 §5.2.2.1
    let f = fresh(200, &[("cache-control", "max-age=60")]);
    assert_eq!(
        (f.lifetime, f.heuristic, f.must_revalidate),
        (60, false, false)
    );
}

#[test]
fn s_maxage_overrides_max_age_for_shared_cache() {
    // RFC 9111 §5.2.2.10, §4.2.1
    let f = fresh(200, &[("cache-control", "max-age=60, s-maxage=600")]);
    assert_eq!(f.lifetime, 600);
}

#[test]
fn s_maxage_implies_proxy_revalidate() {
    // RFC 9111 §5.2.2.10: s-maxage "incorporates the semantics of proxy-revalidate".
    assert!(fresh(200, &[("cache-control", "s-maxage=10")]).must_revalidate);
}

#[test]
fn must_revalidate_and_proxy_revalidate_set_must_revalidate() {
    // RFC 9111 §5.2.2.2, §5.2.2.8
    assert!(fresh(200, &[("cache-control", "max-age=5, must-revalidate")]).must_revalidate);
    assert!(fresh(200, &[("cache-control", "max-age=5, proxy-revalidate")]).must_revalidate);
}

#[test]
fn expires_minus_date_is_the_lifetime() {
    // RFC 9111 §4.2.1: freshness_lifetime = Expires - Date.
    let f = fresh(
        200,
        &[
            ("date", &http_date(NOW - 30)),
            ("expires", &http_date(NOW + 70)),
        ],
    );
    assert_eq!(f.lifetime, 100);
    assert!(!f.heuristic);
}

#[test]
fn expires_in_the_past_is_stale() {
    // RFC 9111 §4.2.1
    let f = fresh(
        200,
        &[
            ("date", &http_date(NOW)),
            ("expires", &http_date(NOW - 3600)),
        ],
    );
    assert_eq!(f.lifetime, 0);
    assert!(!f.is_fresh(at(NOW), at(NOW)));
}

#[test]
fn invalid_expires_is_treated_as_expired() {
    // RFC 9111 §5.3: "A cache recipient MUST interpret invalid date formats,
    // especially the value "0", as representing a time in the past".
    let f = fresh(
        200,
        &[
            ("expires", "0"),
            ("last-modified", &http_date(NOW - 86_400)),
        ],
    );
    assert_eq!((f.lifetime, f.heuristic), (0, false));
}

#[test]
fn conflicting_expires_lines_are_stale() {
    // RFC 9111 §4.2.1: more than one value → considered stale.
    let f = fresh(
        200,
        &[
            ("expires", &http_date(NOW + 60)),
            ("expires", &http_date(NOW + 90)),
        ],
    );
    assert_eq!(f.lifetime, 0);
}

#[test]
fn missing_or_invalid_date_uses_response_time() {
    // RFC 9110 §6.6.1: a recipient with a clock assigns Date on receipt.
    assert_eq!(
        fresh(200, &[("expires", &http_date(NOW + 50))]).lifetime,
        50
    );
    assert_eq!(
        fresh(
            200,
            &[("date", "yesterday"), ("expires", &http_date(NOW + 50))]
        )
        .lifetime,
        50
    );
}

#[test]
fn max_age_overrides_expires() {
    // RFC 9111 §5.3: if max-age is present, Expires is ignored.
    let f = fresh(
        200,
        &[
            ("cache-control", "max-age=5"),
            ("expires", &http_date(NOW + 500)),
        ],
    );
    assert_eq!(f.lifetime, 5);
}

// ---- targeted fields ---------------------------------------------------------------

#[test]
fn cdn_cache_control_takes_precedence_over_cache_control() {
    // RFC 9213 §2.2: the targeted field is used and Cache-Control is ignored.
    let f = fresh(
        200,
        &[
            ("cache-control", "max-age=60, must-revalidate"),
            ("cdn-cache-control", "max-age=600"),
        ],
    );
    assert_eq!((f.lifetime, f.must_revalidate), (600, false));
}

#[test]
fn cdn_cache_control_ignores_expires() {
    // RFC 9213 §2.2: Expires is ignored too; without max-age there is no lifetime.
    let f = fresh(
        200,
        &[
            ("cdn-cache-control", "must-revalidate"),
            ("expires", &http_date(NOW + 500)),
        ],
    );
    assert_eq!(f.lifetime, 0);
    assert!(f.must_revalidate);
}

#[test]
fn a_valid_cdn_cache_control_of_unknown_directives_still_sets_cache_control_aside() {
    // RFC 9213 §2.2 uses the first "valid, non-empty" targeted field; §3.1's example
    // `CDN-Cache-Control: none` exists to set Cache-Control aside.
    let f = fresh(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "x-unknown"),
        ],
    );
    assert_eq!(f.lifetime, 0);
}

#[test]
fn an_invalid_or_empty_cdn_cache_control_falls_back_to_cache_control() {
    // RFC 9213 §2.1: a field that fails Structured Field parsing, or is empty, is
    // ignored as if it were absent.
    for field in ["max-age=600, &&&", "max-age = 600", "", "max-age=600,"] {
        let f = fresh(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", field),
            ],
        );
        assert_eq!(f.lifetime, 60, "{field:?}");
    }
}

#[test]
fn an_empty_cdn_cache_control_line_adds_nothing_wherever_it_comes() {
    for lines in [["max-age=600", ""], ["", "max-age=600"]] {
        let f = fresh(
            200,
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", lines[0]),
                ("cdn-cache-control", lines[1]),
            ],
        );
        assert_eq!(f.lifetime, 600, "{lines:?}");
    }
}

#[test]
fn cdn_cache_control_values_of_the_wrong_type_are_not_used() {
    // RFC 9213 §2.1: max-age is an Integer; a String or Decimal is not consumed.
    for field in [
        r#"max-age="600""#,
        "max-age=600.0",
        "max-age=-1",
        "no-store=?0",
    ] {
        let f = fresh(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", field),
            ],
        );
        assert_eq!(f.lifetime, 0, "{field:?}");
    }
    let f = fresh(
        200,
        &[("cdn-cache-control", r#"max-age=600, private="set-cookie""#)],
    );
    assert_eq!(f.lifetime, 600);
}

#[test]
fn cdn_cache_control_supplies_stale_directives() {
    // RFC 9213 §2.2 with RFC 5861 directives.
    let f = fresh(
        200,
        &[
            ("cache-control", "max-age=1, stale-if-error=1"),
            (
                "cdn-cache-control",
                "max-age=60, stale-if-error=300, stale-while-revalidate=30",
            ),
        ],
    );
    assert_eq!(
        (f.lifetime, f.stale_if_error, f.stale_while_revalidate),
        (60, 300, 30)
    );
}

#[test]
fn cdn_cache_control_beats_surrogate_control() {
    let f = fresh(
        200,
        &[
            ("surrogate-control", "max-age=10"),
            ("cdn-cache-control", "max-age=20"),
        ],
    );
    assert_eq!(f.lifetime, 20);
}

#[test]
fn surrogate_control_max_age_replaces_cache_control_and_expires() {
    let f = fresh(
        200,
        &[
            ("cache-control", "max-age=5, must-revalidate"),
            ("expires", "0"),
            ("surrogate-control", "max-age=300"),
        ],
    );
    assert_eq!((f.lifetime, f.must_revalidate), (300, false));
}

#[test]
fn surrogate_control_stale_suffix_is_ignored() {
    assert_eq!(
        fresh(
            200,
            &[("surrogate-control", r#"content="ESI/1.0", max-age=30+60"#)]
        )
        .lifetime,
        30
    );
}

#[test]
fn surrogate_control_without_understood_directives_falls_back() {
    let f = fresh(
        200,
        &[
            ("surrogate-control", r#"content="ESI/1.0""#),
            ("cache-control", "max-age=7"),
        ],
    );
    assert_eq!(f.lifetime, 7);
}

// ---- heuristic freshness -----------------------------------------------------------

#[test]
fn heuristic_is_ten_percent_of_time_since_last_modified() {
    // RFC 9111 §4.2.2
    let f = fresh(
        200,
        &[
            ("date", &http_date(NOW)),
            ("last-modified", &http_date(NOW - 10_000)),
        ],
    );
    assert_eq!((f.lifetime, f.heuristic), (1_000, true));
}

#[test]
fn heuristic_is_capped_at_one_day() {
    let f = fresh(
        200,
        &[
            ("date", &http_date(NOW)),
            ("last-modified", &http_date(NOW - 365 * 86_400)),
        ],
    );
    assert_eq!(f.lifetime, HEURISTIC_MAX_SECS);
}

#[test]
fn heuristic_freshness_only_for_heuristically_cacheable_status() {
    // RFC 9111 §4.2.2 with RFC 9110 §15.1: 404 is heuristically cacheable, 302 and 500
    // are not.
    let lm = http_date(NOW - 10_000);
    assert_eq!(fresh(404, &[("last-modified", &lm)]).lifetime, 1_000);
    for status in [302, 500, 503] {
        let f = fresh(status, &[("last-modified", &lm)]);
        assert_eq!((f.lifetime, f.heuristic), (0, false), "{status}");
    }
}

#[test]
fn public_response_gets_heuristic_freshness() {
    // RFC 9111 §4.2.2: heuristics also apply to responses "marked as explicitly
    // cacheable (e.g., with a public response directive)".
    let f = fresh(
        302,
        &[
            ("cache-control", "public"),
            ("last-modified", &http_date(NOW - 10_000)),
        ],
    );
    assert_eq!((f.lifetime, f.heuristic), (1_000, true));
}

#[test]
fn explicit_freshness_disables_heuristic() {
    // RFC 9111 §4.2.2: "MUST NOT use heuristics ... when an explicit expiration time
    // is present".
    let f = fresh(
        200,
        &[
            ("cache-control", "max-age=0"),
            ("last-modified", &http_date(NOW - 100_000)),
        ],
    );
    assert_eq!((f.lifetime, f.heuristic), (0, false));
}

#[test]
fn no_freshness_information_means_lifetime_zero() {
    // DESIGN.md: no default TTL.
    assert_eq!(
        fresh(200, &[]),
        Freshness {
            lifetime: 0,
            initial_age: 0,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            must_revalidate: false,
            no_cache: false,
            heuristic: false,
        }
    );
}

#[test]
fn last_modified_after_date_gives_zero_heuristic() {
    let f = fresh(
        200,
        &[
            ("date", &http_date(NOW)),
            ("last-modified", &http_date(NOW + 100)),
        ],
    );
    assert_eq!(f.lifetime, 0);
}

// ---- age -------------------------------------------------------------------------

#[test]
fn age_header_from_origin_counts_toward_current_age() {
    // RFC 9111 §4.2.3: corrected_age_value = age_value + response_delay.
    let f = fresh(200, &[("cache-control", "max-age=100"), ("age", "40")]);
    assert_eq!(f.initial_age, 40);
    assert_eq!(f.current_age(at(NOW), at(NOW + 10)), 50);
    assert!(f.is_fresh(at(NOW), at(NOW + 59)));
    assert!(!f.is_fresh(at(NOW), at(NOW + 60)));
}

#[test]
fn response_delay_is_added_to_age() {
    // RFC 9111 §4.2.3: response_delay = response_time - request_time.
    let f = analyze(200, &headers(&[("age", "10")]), at(NOW - 3), at(NOW));
    assert_eq!(f.initial_age, 13);
}

#[test]
fn apparent_age_from_date_counts_when_larger() {
    // RFC 9111 §4.2.3: apparent_age = max(0, response_time - date_value).
    assert_eq!(
        fresh(200, &[("date", &http_date(NOW - 25)), ("age", "5")]).initial_age,
        25
    );
    // A Date in the future gives no negative age.
    assert_eq!(fresh(200, &[("date", &http_date(NOW + 25))]).initial_age, 0);
}

#[test]
fn invalid_age_is_ignored() {
    // RFC 9111 §5.1
    for bad in ["-5", "abc", "1.5", ""] {
        assert_eq!(fresh(200, &[("age", bad)]).initial_age, 0, "{bad}");
    }
}

#[test]
fn first_age_value_is_used() {
    // RFC 9111 §5.1: Age is a single value; of several, the first is used.
    assert_eq!(fresh(200, &[("age", "7"), ("age", "900")]).initial_age, 7);
    assert_eq!(fresh(200, &[("age", "7, 900")]).initial_age, 7);
}

#[test]
fn huge_age_saturates_instead_of_overflowing() {
    // RFC 9111 §1.2.2
    let f = fresh(200, &[("age", "999999999999999999999999")]);
    assert_eq!(f.initial_age, 1 << 31);
    let f = Freshness {
        initial_age: u64::MAX,
        ..f
    };
    assert_eq!(f.current_age(at(NOW), at(NOW + 10)), u64::MAX);
    assert_eq!(f.ttl(at(NOW), at(NOW)), -i64::MAX);
}

#[test]
fn clock_going_backwards_adds_no_resident_time() {
    let f = fresh(200, &[("cache-control", "max-age=10")]);
    assert_eq!(f.current_age(at(NOW), at(NOW - 100)), 0);
}

#[test]
fn ttl_goes_negative_when_stale() {
    // RFC 9211 §2.5: ttl may be negative.
    let f = fresh(200, &[("cache-control", "max-age=10")]);
    assert_eq!(f.ttl(at(NOW), at(NOW + 4)), 6);
    assert_eq!(f.ttl(at(NOW), at(NOW + 25)), -15);
}

// ---- serving stale -----------------------------------------------------------------

#[test]
fn stale_while_revalidate_allows_serving_within_its_window() {
    // RFC 5861 §3
    let f = fresh(
        200,
        &[("cache-control", "max-age=10, stale-while-revalidate=20")],
    );
    assert!(
        !f.within_stale_while_revalidate(at(NOW), at(NOW + 5)),
        "fresh is not stale"
    );
    assert!(f.within_stale_while_revalidate(at(NOW), at(NOW + 10)));
    assert!(f.within_stale_while_revalidate(at(NOW), at(NOW + 29)));
    assert!(!f.within_stale_while_revalidate(at(NOW), at(NOW + 30)));
    assert!(!f.within_stale_if_error(at(NOW), at(NOW + 10)));
}

#[test]
fn stale_if_error_allows_serving_within_its_window() {
    // RFC 5861 §4
    let f = fresh(200, &[("cache-control", "max-age=10, stale-if-error=100")]);
    assert!(f.within_stale_if_error(at(NOW), at(NOW + 109)));
    assert!(!f.within_stale_if_error(at(NOW), at(NOW + 110)));
}

#[test]
fn must_revalidate_zeroes_stale_allowances() {
    // RFC 9111 §4.2.4: no stale responses when must-revalidate, proxy-revalidate or
    // s-maxage applies.
    for cc in ["must-revalidate", "proxy-revalidate", "s-maxage=10"] {
        let f = fresh(
            200,
            &[(
                "cache-control",
                &format!("max-age=10, {cc}, stale-while-revalidate=60, stale-if-error=60"),
            )],
        );
        assert_eq!((f.stale_while_revalidate, f.stale_if_error), (0, 0), "{cc}");
        assert!(!f.within_stale_if_error(at(NOW), at(NOW + 11)));
    }
}

#[test]
fn no_cache_is_never_fresh_and_never_served_stale() {
    // RFC 9111 §5.2.2.4
    let f = fresh(
        200,
        &[("cache-control", "no-cache, max-age=600, stale-if-error=600")],
    );
    assert!(f.no_cache);
    assert!(!f.is_fresh(at(NOW), at(NOW)));
    assert_eq!(f.stale_if_error, 0);
    assert!(!f.within_stale_if_error(at(NOW), at(NOW + 700)));
}

#[test]
fn freshness_round_trips_through_serde() {
    let f = fresh(
        200,
        &[
            ("cache-control", "max-age=10, stale-if-error=5"),
            ("age", "3"),
        ],
    );
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(serde_json::from_str::<Freshness>(&json).unwrap(), f);
}

mod storable;

proptest! {
    #[test]
    fn analyze_and_storable_never_panic(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 7),
        status in any::<u16>(),
        elapsed in any::<u32>(),
    ) {
        let names = ["cache-control", "cdn-cache-control", "surrogate-control", "expires", "date", "age", "last-modified"];
        let mut map = HeaderMap::new();
        for (name, value) in names.iter().zip(&values) {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                map.append(HeaderName::from_static(name), value);
            }
        }
        let f = analyze(status, &map, at(NOW), at(NOW + 1));
        let age = f.current_age(at(NOW + 1), at(NOW + 1 + u64::from(elapsed)));
        prop_assert!(age >= f.initial_age);
        prop_assert_eq!(f.is_fresh(at(NOW + 1), at(NOW + 1 + u64::from(elapsed))), !f.no_cache && f.ttl(at(NOW + 1), at(NOW + 1 + u64::from(elapsed))) > 0);
        let _ = storable(&Method::GET, &map, status, &map);
    }
}
