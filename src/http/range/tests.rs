use std::time::{Duration, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;

const MODIFIED: u64 = 1_700_000_000;
const ETAG: &str = r#""v1""#;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn request(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn range(value: &str, len: u64) -> RangeOutcome {
    evaluate(
        &Method::GET,
        &request(&[("range", value)]),
        len,
        Some(ETAG),
        Some(at(MODIFIED)),
    )
}

fn partial(ranges: &[(u64, u64)]) -> RangeOutcome {
    RangeOutcome::Partial(
        ranges
            .iter()
            .map(|&(start, end)| ByteRange { start, end })
            .collect(),
    )
}

#[test]
fn no_range_is_full() {
    assert_eq!(
        evaluate(&Method::GET, &HeaderMap::new(), 10, None, None),
        RangeOutcome::Full
    );
}

#[test]
fn range_is_ignored_for_methods_other_than_get() {
    // RFC 9110 §14.2
    for method in [Method::HEAD, Method::POST, Method::PUT] {
        let outcome = evaluate(&method, &request(&[("range", "bytes=0-1")]), 10, None, None);
        assert_eq!(outcome, RangeOutcome::Full, "{method}");
    }
}

#[test]
fn single_ranges_resolve_per_rfc_9110() {
    // RFC 9110 §14.1.2 examples, for a 10000-byte representation.
    assert_eq!(range("bytes=0-499", 10_000), partial(&[(0, 499)]));
    assert_eq!(range("bytes=500-999", 10_000), partial(&[(500, 999)]));
    assert_eq!(range("bytes=-500", 10_000), partial(&[(9_500, 9_999)]));
    assert_eq!(range("bytes=9500-", 10_000), partial(&[(9_500, 9_999)]));
    assert_eq!(
        range("bytes=0-0,-1", 10_000),
        partial(&[(0, 0), (9_999, 9_999)])
    );
}

#[test]
fn end_past_the_representation_is_clamped() {
    // RFC 9110 §14.1.2: last-pos past the end means the end.
    assert_eq!(range("bytes=5-999", 10), partial(&[(5, 9)]));
    assert_eq!(
        range("bytes=0-99999999999999999999999", 10),
        partial(&[(0, 9)])
    );
}

#[test]
fn suffix_longer_than_the_representation_is_all_of_it() {
    // RFC 9110 §14.1.2
    assert_eq!(range("bytes=-50", 10), partial(&[(0, 9)]));
}

#[test]
fn unit_is_case_insensitive_and_whitespace_around_commas_is_allowed() {
    // RFC 9110 §14.1: range units are case-insensitive; §5.6.1 list syntax.
    assert_eq!(range("Bytes=0-1 ,\t5-6,,", 10), partial(&[(0, 1), (5, 6)]));
}

#[test]
fn unknown_unit_is_ignored() {
    // RFC 9110 §14.2: "MUST ignore a Range header field that contains a range unit it
    // does not understand".
    assert_eq!(range("items=0-1", 10), RangeOutcome::Full);
    assert_eq!(range("0-1", 10), RangeOutcome::Full);
}

#[test]
fn invalid_range_set_is_ignored() {
    // RFC 9110 §14.2: a server may ignore an invalid Range.
    for bad in [
        "bytes=",
        "bytes=5-1",
        "bytes=a-b",
        "bytes=1-2-3",
        "bytes= - ",
        "bytes=-",
        "bytes=0-1,x",
        "bytes=+1-2",
    ] {
        assert_eq!(range(bad, 10), RangeOutcome::Full, "{bad}");
    }
}

#[test]
fn ranges_starting_past_the_end_are_unsatisfiable() {
    // RFC 9110 §14.1.2, §15.5.17
    assert_eq!(range("bytes=10-20", 10), RangeOutcome::Unsatisfiable);
    assert_eq!(range("bytes=10-20, 3-4", 10), partial(&[(3, 4)]));
}

#[test]
fn zero_suffix_is_unsatisfiable() {
    // RFC 9110 §14.1.2: a suffix-range is satisfiable only with a non-zero length.
    assert_eq!(range("bytes=-0", 10), RangeOutcome::Unsatisfiable);
}

#[test]
fn any_range_of_an_empty_representation_is_unsatisfiable() {
    for value in ["bytes=0-", "bytes=-5", "bytes=0-0"] {
        assert_eq!(range(value, 0), RangeOutcome::Unsatisfiable, "{value}");
    }
}

#[test]
fn overlapping_and_adjacent_ranges_are_coalesced_in_order() {
    // RFC 9110 §14.2: a server may coalesce; this one always does.
    assert_eq!(
        range("bytes=50-60, 0-10, 5-20, 21-30", 100),
        partial(&[(0, 30), (50, 60)])
    );
    assert_eq!(range("bytes=0-, -10", 100), partial(&[(0, 99)]));
}

#[test]
fn too_many_ranges_are_ignored() {
    // RFC 9110 §17.15: many small ranges are a denial-of-service vector.
    let many: Vec<String> = (0..=MAX_RANGES as u64)
        .map(|i| format!("{}-{}", i * 2, i * 2))
        .collect();
    assert_eq!(
        range(&format!("bytes={}", many.join(",")), 1_000),
        RangeOutcome::Full
    );
    let allowed = &many[..MAX_RANGES];
    match range(&format!("bytes={}", allowed.join(",")), 1_000) {
        RangeOutcome::Partial(ranges) => assert_eq!(ranges.len(), MAX_RANGES),
        other => panic!("{other:?}"),
    }
}

#[test]
fn repeated_range_lines_are_ignored() {
    let req = request(&[("range", "bytes=0-1"), ("range", "bytes=2-3")]);
    assert_eq!(
        evaluate(&Method::GET, &req, 10, None, None),
        RangeOutcome::Full
    );
}

#[test]
fn if_range_with_matching_strong_etag_allows_the_range() {
    // RFC 9110 §13.1.5
    let req = request(&[("range", "bytes=0-1"), ("if-range", ETAG)]);
    assert_eq!(
        evaluate(&Method::GET, &req, 10, Some(ETAG), None),
        partial(&[(0, 1)])
    );
}

#[test]
fn if_range_with_other_etag_serves_full() {
    let req = request(&[("range", "bytes=0-1"), ("if-range", r#""v2""#)]);
    assert_eq!(
        evaluate(&Method::GET, &req, 10, Some(ETAG), None),
        RangeOutcome::Full
    );
    assert_eq!(
        evaluate(&Method::GET, &req, 10, None, None),
        RangeOutcome::Full
    );
}

#[test]
fn if_range_weak_etag_never_matches() {
    // RFC 9110 §13.1.5: the strong comparison.
    let req = request(&[("range", "bytes=0-1"), ("if-range", r#"W/"v1""#)]);
    assert_eq!(
        evaluate(&Method::GET, &req, 10, Some(ETAG), None),
        RangeOutcome::Full
    );
    let req = request(&[("range", "bytes=0-1"), ("if-range", ETAG)]);
    assert_eq!(
        evaluate(&Method::GET, &req, 10, Some(r#"W/"v1""#), None),
        RangeOutcome::Full
    );
}

#[test]
fn if_range_date_must_equal_last_modified() {
    // RFC 9110 §13.1.5
    let check = |secs: u64| {
        let req = request(&[
            ("range", "bytes=0-1"),
            ("if-range", &date::format(at(secs))),
        ]);
        evaluate(
            &Method::GET,
            &req,
            10,
            Some(ETAG),
            Some(at(MODIFIED) + Duration::from_millis(300)),
        )
    };
    assert_eq!(check(MODIFIED), partial(&[(0, 1)]));
    assert_eq!(check(MODIFIED + 1), RangeOutcome::Full);
    assert_eq!(check(MODIFIED - 1), RangeOutcome::Full);
}

#[test]
fn invalid_if_range_serves_full() {
    let req = request(&[("range", "bytes=0-1"), ("if-range", "garbage")]);
    assert_eq!(
        evaluate(&Method::GET, &req, 10, Some(ETAG), Some(at(MODIFIED))),
        RangeOutcome::Full
    );
}

#[test]
fn if_range_without_range_is_ignored() {
    // RFC 9110 §13.1.5: "MUST ignore an If-Range header field received in a request
    // that does not contain a Range header field".
    let req = request(&[("if-range", ETAG)]);
    assert_eq!(
        evaluate(&Method::GET, &req, 10, Some(ETAG), None),
        RangeOutcome::Full
    );
}

#[test]
fn content_range_values() {
    // RFC 9110 §14.4
    let r = ByteRange { start: 0, end: 99 };
    assert_eq!(r.len(), 100);
    assert!(!r.is_empty());
    assert_eq!(r.content_range(1_000), "bytes 0-99/1000");
    assert_eq!(unsatisfiable_content_range(1_000), "bytes */1000");
    assert_eq!(
        ByteRange {
            start: 0,
            end: u64::MAX
        }
        .len(),
        u64::MAX
    );
}

#[test]
fn outcome_has_log_tokens() {
    assert_eq!(RangeOutcome::Full.as_str(), "full");
    assert_eq!(partial(&[(0, 0)]).as_str(), "partial");
    assert_eq!(RangeOutcome::Unsatisfiable.as_str(), "unsatisfiable");
}

/// The set of byte offsets a list of requested specs covers within `len`, as sorted
/// disjoint inclusive intervals, computed independently of `evaluate`.
fn requested_union(specs: &[(Option<u64>, Option<u64>)], len: u64) -> Vec<(u64, u64)> {
    let mut covered = vec![false; len as usize];
    for &spec in specs {
        let (start, end) = match spec {
            (Some(a), b) => (a, b.unwrap_or(u64::MAX).min(len.saturating_sub(1))),
            (None, Some(n)) => (len.saturating_sub(n), len.saturating_sub(1)),
            (None, None) => unreachable!(),
        };
        if len == 0 || start >= len || matches!(spec, (None, Some(0))) {
            continue;
        }
        for b in start..=end {
            covered[b as usize] = true;
        }
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, &c) in covered.iter().enumerate() {
        let i = i as u64;
        match out.last_mut() {
            Some(last) if c && last.1 + 1 == i => last.1 = i,
            _ if c => out.push((i, i)),
            _ => {}
        }
    }
    out
}

fn spec() -> impl Strategy<Value = (Option<u64>, Option<u64>)> {
    prop_oneof![
        (0..300u64, proptest::option::of(0..300u64)).prop_map(|(a, b)| (Some(a), b.map(|b| a + b))),
        (0..300u64).prop_map(|n| (None, Some(n))),
    ]
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(
        value in proptest::collection::vec(any::<u8>(), 0..64),
        if_range in proptest::collection::vec(any::<u8>(), 0..40),
        len in any::<u64>(),
    ) {
        let mut map = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&value) { map.append(RANGE, v); }
        if let Ok(v) = HeaderValue::from_bytes(&if_range) { map.append(IF_RANGE, v); }
        if let RangeOutcome::Partial(ranges) = evaluate(&Method::GET, &map, len, Some(ETAG), Some(at(MODIFIED))) {
            for r in ranges {
                prop_assert!(r.start <= r.end && r.end < len);
            }
        }
    }

    #[test]
    fn never_panics_on_range_like_text(value in "[bB]ytes=[0-9, \t-]{0,40}", len in 0..1_000u64) {
        let _ = range(&value, len);
    }

    #[test]
    fn result_is_the_union_of_satisfiable_requested_ranges(
        specs in proptest::collection::vec(spec(), 1..10),
        len in 0..400u64,
    ) {
        let text: Vec<String> = specs.iter().map(|s| match s {
            (Some(a), Some(b)) => format!("{a}-{b}"),
            (Some(a), None) => format!("{a}-"),
            (None, Some(n)) => format!("-{n}"),
            (None, None) => unreachable!(),
        }).collect();
        let expected = requested_union(&specs, len);
        match range(&format!("bytes={}", text.join(", ")), len) {
            RangeOutcome::Unsatisfiable => prop_assert!(expected.is_empty()),
            RangeOutcome::Partial(ranges) => {
                for r in &ranges {
                    prop_assert!(!r.is_empty() && r.end < len);
                }
                // Sorted, disjoint and non-adjacent, hence equal to the canonical union.
                let got: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
                prop_assert_eq!(got, expected);
            }
            RangeOutcome::Full => prop_assert!(false, "valid ranges were ignored"),
        }
    }
}
