use std::time::{Duration, UNIX_EPOCH};

use http::header::HeaderValue;
use proptest::prelude::*;

use super::*;

const MODIFIED: u64 = 1_700_000_000;

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

const OTHERS: &[&str] = &[r#""abc-br""#, r#"W/"abc-gz""#];

fn validators() -> Validators<'static> {
    Validators {
        etag: Some(r#""abc""#),
        other_etags: OTHERS,
        last_modified: Some(at(MODIFIED)),
        generated: None,
    }
}

fn get(pairs: &[(&str, &str)]) -> Precondition {
    evaluate(&Method::GET, &request(pairs), &validators())
}

fn put(pairs: &[(&str, &str)]) -> Precondition {
    evaluate(&Method::PUT, &request(pairs), &validators())
}

fn http_date(secs: u64) -> String {
    date::format(at(secs))
}

#[test]
fn no_preconditions_proceed() {
    assert_eq!(get(&[]), Precondition::Proceed);
}

#[test]
fn if_match_with_strong_match_proceeds() {
    // RFC 9110 §13.1.1
    assert_eq!(
        put(&[("if-match", r#""xyz", "abc""#)]),
        Precondition::Proceed
    );
    assert_eq!(put(&[("if-match", "*")]), Precondition::Proceed);
}

#[test]
fn if_match_without_match_fails() {
    // RFC 9110 §13.1.1: the strong comparison, so a weak tag never matches.
    assert_eq!(put(&[("if-match", r#""xyz""#)]), Precondition::Failed);
    assert_eq!(put(&[("if-match", r#"W/"abc""#)]), Precondition::Failed);
    assert_eq!(
        get(&[("if-match", r#""abc-br""#)]),
        Precondition::Failed,
        "other representations do not count"
    );
}

#[test]
fn if_match_against_a_weak_current_etag_fails() {
    let v = Validators {
        etag: Some(r#"W/"abc""#),
        ..validators()
    };
    assert_eq!(
        evaluate(&Method::PUT, &request(&[("if-match", r#""abc""#)]), &v),
        Precondition::Failed
    );
}

#[test]
fn if_match_with_only_malformed_members_fails() {
    // Malformed members are ignored, leaving nothing to match.
    assert_eq!(put(&[("if-match", "abc, W/abc")]), Precondition::Failed);
}

#[test]
fn if_match_spans_field_lines() {
    assert_eq!(
        put(&[("if-match", r#""x""#), ("if-match", r#""abc""#)]),
        Precondition::Proceed
    );
}

#[test]
fn if_unmodified_since_fails_when_modified_later() {
    // RFC 9110 §13.1.4
    assert_eq!(
        put(&[("if-unmodified-since", &http_date(MODIFIED - 1))]),
        Precondition::Failed
    );
    assert_eq!(
        put(&[("if-unmodified-since", &http_date(MODIFIED))]),
        Precondition::Proceed
    );
}

#[test]
fn if_unmodified_since_is_ignored_when_if_match_is_present() {
    // RFC 9110 §13.2.2 step 2: only "when If-Match is not present".
    let pairs = [
        ("if-match", r#""abc""#),
        ("if-unmodified-since", &http_date(MODIFIED - 100)),
    ];
    assert_eq!(put(&pairs), Precondition::Proceed);
}

#[test]
fn invalid_if_unmodified_since_is_ignored() {
    // RFC 9110 §13.1.4: invalid date, or a list of dates, is ignored.
    assert_eq!(
        put(&[("if-unmodified-since", "yesterday")]),
        Precondition::Proceed
    );
    let old = http_date(MODIFIED - 100);
    assert_eq!(
        put(&[("if-unmodified-since", &old), ("if-unmodified-since", &old)]),
        Precondition::Proceed
    );
}

#[test]
fn if_none_match_hit_on_get_is_not_modified() {
    // RFC 9110 §13.1.2: the weak comparison.
    assert_eq!(
        get(&[("if-none-match", r#""abc""#)]),
        Precondition::NotModified
    );
    assert_eq!(
        get(&[("if-none-match", r#"W/"abc""#)]),
        Precondition::NotModified
    );
    assert_eq!(get(&[("if-none-match", "*")]), Precondition::NotModified);
    assert_eq!(
        evaluate(
            &Method::HEAD,
            &request(&[("if-none-match", r#""abc""#)]),
            &validators()
        ),
        Precondition::NotModified
    );
}

#[test]
fn if_none_match_matches_other_encoded_representations() {
    // DESIGN.md: each encoding has its own ETag; If-None-Match uses weak comparison
    // over any representation of the same content.
    assert_eq!(
        get(&[("if-none-match", r#""abc-br""#)]),
        Precondition::NotModified
    );
    assert_eq!(
        get(&[("if-none-match", r#""abc-gz""#)]),
        Precondition::NotModified
    );
}

#[test]
fn if_none_match_hit_on_unsafe_method_fails() {
    // RFC 9110 §13.1.2: "412 (Precondition Failed) for other methods".
    assert_eq!(put(&[("if-none-match", "*")]), Precondition::Failed);
}

#[test]
fn if_none_match_miss_proceeds_and_overrides_if_modified_since() {
    // RFC 9110 §13.2.2 step 4 applies only "when If-None-Match is not present".
    let pairs = [
        ("if-none-match", r#""old""#),
        ("if-modified-since", &http_date(MODIFIED + 10)),
    ];
    assert_eq!(get(&pairs), Precondition::Proceed);
}

#[test]
fn if_none_match_handles_commas_inside_tags_and_whitespace() {
    let v = Validators {
        etag: Some(r#""a,b""#),
        other_etags: &[],
        last_modified: None,
        generated: None,
    };
    let req = request(&[("if-none-match", r#"  "x" ,"a,b",W/"y"  "#)]);
    assert_eq!(evaluate(&Method::GET, &req, &v), Precondition::NotModified);
    let req = request(&[("if-none-match", r#""a", "b""#)]);
    assert_eq!(evaluate(&Method::GET, &req, &v), Precondition::Proceed);
}

#[test]
fn if_none_match_ignores_malformed_members() {
    assert_eq!(
        get(&[("if-none-match", r#"abc, "abc"#)]),
        Precondition::Proceed
    );
    assert_eq!(
        get(&[("if-none-match", r#"abc, w/"x", "abc""#)]),
        Precondition::NotModified
    );
}

#[test]
fn if_modified_since_not_modified_when_unchanged() {
    // RFC 9110 §13.1.3
    assert_eq!(
        get(&[("if-modified-since", &http_date(MODIFIED))]),
        Precondition::NotModified
    );
    assert_eq!(
        get(&[("if-modified-since", &http_date(MODIFIED + 60))]),
        Precondition::NotModified
    );
    assert_eq!(
        get(&[("if-modified-since", &http_date(MODIFIED - 1))]),
        Precondition::Proceed
    );
}

#[test]
fn if_modified_since_compares_whole_seconds() {
    // HTTP-date has one-second resolution (RFC 9110 §5.6.7).
    let v = Validators {
        last_modified: Some(at(MODIFIED) + Duration::from_millis(700)),
        ..validators()
    };
    let req = request(&[("if-modified-since", &http_date(MODIFIED))]);
    assert_eq!(evaluate(&Method::GET, &req, &v), Precondition::NotModified);
}

#[test]
fn if_modified_since_only_for_get_and_head() {
    // RFC 9110 §13.1.3: "MUST ignore If-Modified-Since if the request method is
    // neither GET nor HEAD".
    assert_eq!(
        put(&[("if-modified-since", &http_date(MODIFIED))]),
        Precondition::Proceed
    );
}

#[test]
fn invalid_if_modified_since_is_ignored() {
    // RFC 9110 §13.1.3
    for bad in ["0", "not a date", ""] {
        assert_eq!(
            get(&[("if-modified-since", bad)]),
            Precondition::Proceed,
            "{bad}"
        );
    }
}

#[test]
fn date_conditions_need_a_last_modified() {
    let v = Validators {
        last_modified: None,
        ..validators()
    };
    let req = request(&[("if-modified-since", &http_date(MODIFIED))]);
    assert_eq!(evaluate(&Method::GET, &req, &v), Precondition::Proceed);
    let req = request(&[("if-unmodified-since", &http_date(0))]);
    assert_eq!(evaluate(&Method::PUT, &req, &v), Precondition::Proceed);
}

#[test]
fn without_last_modified_if_modified_since_compares_with_the_generation_time() {
    // RFC 9111 §4.3.2: a cache uses the stored response's Date (or receipt time).
    let v = Validators {
        last_modified: None,
        generated: Some(at(MODIFIED)),
        ..validators()
    };
    let req = request(&[("if-modified-since", &http_date(MODIFIED))]);
    assert_eq!(evaluate(&Method::GET, &req, &v), Precondition::NotModified);
    let req = request(&[("if-modified-since", &http_date(MODIFIED - 1))]);
    assert_eq!(evaluate(&Method::GET, &req, &v), Precondition::Proceed);
    // If-Unmodified-Since is not evaluated against it.
    let req = request(&[("if-unmodified-since", &http_date(0))]);
    assert_eq!(evaluate(&Method::PUT, &req, &v), Precondition::Proceed);
}

#[test]
fn strong_and_weak_comparison_follow_rfc_9110_table() {
    // RFC 9110 §8.8.3.2, the example table.
    let table = [
        (r#"W/"1""#, r#"W/"1""#, false, true),
        (r#"W/"1""#, r#"W/"2""#, false, false),
        (r#"W/"1""#, r#""1""#, false, true),
        (r#""1""#, r#""1""#, true, true),
    ];
    for (a, b, strong, weak) in table {
        assert_eq!(strong_eq(a, b), strong, "strong {a} {b}");
        assert_eq!(weak_eq(a, b), weak, "weak {a} {b}");
    }
    assert!(!weak_eq("1", "1"), "unquoted tags are malformed");
    assert!(
        !strong_eq(r#"w/"1""#, r#"w/"1""#),
        "the W/ prefix is case-sensitive"
    );
}

#[test]
fn precondition_has_log_tokens() {
    assert_eq!(Precondition::Proceed.as_str(), "proceed");
    assert_eq!(Precondition::NotModified.as_str(), "not-modified");
    assert_eq!(Precondition::Failed.as_str(), "failed");
}

#[test]
fn not_modified_headers_follow_rfc_9110() {
    // RFC 9110 §15.4.5
    let names: Vec<&str> = not_modified_headers()
        .iter()
        .map(HeaderName::as_str)
        .collect();
    for required in [
        "cache-control",
        "content-location",
        "date",
        "etag",
        "expires",
        "vary",
        "last-modified",
    ] {
        assert!(names.contains(&required), "{required}");
    }
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_header_bytes(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 4),
        etag in proptest::collection::vec(any::<u8>(), 0..16),
        method in prop_oneof![Just(Method::GET), Just(Method::HEAD), Just(Method::PUT)],
    ) {
        let names = [IF_MATCH, IF_NONE_MATCH, IF_MODIFIED_SINCE, IF_UNMODIFIED_SINCE];
        let mut map = HeaderMap::new();
        for (name, value) in names.into_iter().zip(&values) {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                map.append(name, value);
            }
        }
        let etag = String::from_utf8_lossy(&etag);
        let v = Validators { etag: Some(&etag), other_etags: &[], last_modified: Some(at(MODIFIED)), generated: None };
        let outcome = evaluate(&method, &map, &v);
        if method == Method::PUT {
            prop_assert_ne!(outcome, Precondition::NotModified);
        }
    }

    #[test]
    fn an_etag_always_weakly_matches_itself(opaque in "[!#-~]{0,12}", weak in any::<bool>()) {
        let tag = format!("{}\"{opaque}\"", if weak { "W/" } else { "" });
        prop_assert!(weak_eq(&tag, &tag));
        prop_assert_eq!(strong_eq(&tag, &tag), !weak);
        let req = request(&[("if-none-match", &format!("\"zz\", {tag}"))]);
        let v = Validators { etag: Some(&tag), other_etags: &[], last_modified: None, generated: None };
        prop_assert_eq!(evaluate(&Method::GET, &req, &v), Precondition::NotModified);
    }
}
