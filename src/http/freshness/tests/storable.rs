//! Storability (RFC 9111 §3) and the fields addressed to this cache alone.

use super::*;

fn store(status: u16, response: &[(&str, &str)]) -> Storability {
    storable(&Method::GET, &HeaderMap::new(), status, &headers(response))
}

#[test]
fn get_with_explicit_freshness_is_stored() {
    // RFC 9111 §3
    assert_eq!(
        store(200, &[("cache-control", "max-age=60")]),
        Storability::Store
    );
    assert_eq!(
        store(302, &[("expires", &http_date(NOW + 5))]),
        Storability::Store
    );
    assert_eq!(
        store(500, &[("cache-control", "s-maxage=5")]),
        Storability::Store
    );
}

#[test]
fn head_and_unsafe_methods_are_not_stored() {
    // RFC 9111 §3: "the request method is understood by the cache".
    let response = headers(&[("cache-control", "max-age=60")]);
    let none = HeaderMap::new();
    assert_eq!(
        storable(&Method::HEAD, &none, 200, &response),
        Storability::DontStore("head")
    );
    assert_eq!(
        storable(&Method::POST, &none, 200, &response),
        Storability::DontStore("method")
    );
}

#[test]
fn non_final_partial_and_not_modified_responses_are_not_stored() {
    // RFC 9111 §3: final status only; 206 and 304 are never stored here.
    let cc = [("cache-control", "max-age=60")];
    assert_eq!(store(100, &cc), Storability::DontStore("informational"));
    assert_eq!(store(206, &cc), Storability::DontStore("partial"));
    assert_eq!(store(304, &cc), Storability::DontStore("not-modified"));
    assert_eq!(store(600, &cc), Storability::DontStore("status"));
}

#[test]
fn request_no_store_prevents_storing() {
    // RFC 9111 §5.2.1.5
    let request = headers(&[("cache-control", "no-store")]);
    let response = headers(&[("cache-control", "max-age=60")]);
    assert_eq!(
        storable(&Method::GET, &request, 200, &response),
        Storability::DontStore("no-store")
    );
}

#[test]
fn response_no_store_prevents_storing() {
    // RFC 9111 §5.2.2.5
    assert_eq!(
        store(200, &[("cache-control", "max-age=60, no-store")]),
        Storability::DontStore("no-store")
    );
}

#[test]
fn cdn_cache_control_no_store_wins_over_cacheable_cache_control() {
    // RFC 9213 §2.2
    let r = store(
        200,
        &[
            ("cache-control", "public, max-age=60"),
            ("cdn-cache-control", "no-store"),
        ],
    );
    assert_eq!(r, Storability::DontStore("no-store"));
}

#[test]
fn cache_control_no_store_is_ignored_when_cdn_cache_control_allows_storing() {
    // RFC 9213 §3 example: browsers must not store, the CDN may.
    let r = store(
        200,
        &[
            ("cache-control", "no-store, private"),
            ("cdn-cache-control", "max-age=600"),
        ],
    );
    assert_eq!(r, Storability::Store);
}

#[test]
fn surrogate_control_no_store_prevents_storing() {
    let r = store(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("surrogate-control", "no-store"),
        ],
    );
    assert_eq!(r, Storability::DontStore("no-store"));
}

#[test]
fn private_response_is_not_stored_by_shared_cache() {
    // RFC 9111 §5.2.2.7, including the qualified form.
    assert_eq!(
        store(200, &[("cache-control", "private, max-age=60")]),
        Storability::DontStore("private")
    );
    assert_eq!(
        store(
            200,
            &[("cache-control", r#"private="set-cookie", max-age=60"#)]
        ),
        Storability::DontStore("private")
    );
}

#[test]
fn authorization_request_needs_public_or_s_maxage() {
    // RFC 9111 §3.5
    let request = headers(&[("authorization", "Bearer x")]);
    let check = |cc: &str| {
        storable(
            &Method::GET,
            &request,
            200,
            &headers(&[("cache-control", cc)]),
        )
    };
    assert_eq!(check("max-age=60"), Storability::DontStore("authorization"));
    assert_eq!(check("public, max-age=60"), Storability::Store);
    assert_eq!(check("s-maxage=60"), Storability::Store);
    assert_eq!(check("must-revalidate, max-age=60"), Storability::Store);
}

#[test]
fn vary_star_is_not_stored() {
    // RFC 9110 §12.5.5, RFC 9111 §4.1
    assert_eq!(
        store(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("vary", "accept-encoding, *")
            ]
        ),
        Storability::DontStore("vary-star")
    );
    assert_eq!(
        store(
            200,
            &[("cache-control", "max-age=60"), ("vary", "accept-encoding")]
        ),
        Storability::Store
    );
}

#[test]
fn response_without_freshness_needs_a_heuristically_cacheable_status() {
    // RFC 9111 §3 with RFC 9110 §15.1
    assert_eq!(store(200, &[]), Storability::Store);
    assert_eq!(store(404, &[]), Storability::Store);
    assert_eq!(store(302, &[]), Storability::DontStore("no-freshness"));
    assert_eq!(
        store(500, &[("cache-control", "must-revalidate")]),
        Storability::DontStore("no-freshness")
    );
}

#[test]
fn public_makes_any_final_status_storable() {
    // RFC 9111 §3: "a public response directive".
    assert_eq!(
        store(302, &[("cache-control", "public")]),
        Storability::Store
    );
}

#[test]
fn no_cache_response_is_stored_for_revalidation() {
    // RFC 9111 §5.2.2.4: no-cache permits storing; every reuse revalidates.
    assert_eq!(
        store(302, &[("cache-control", "no-cache")]),
        Storability::Store
    );
}

#[test]
fn must_understand_overrides_no_store_only_for_understood_status() {
    // RFC 9111 §5.2.2.3
    let cc = [("cache-control", "must-understand, no-store, max-age=60")];
    assert_eq!(store(200, &cc), Storability::Store);
    assert_eq!(store(299, &cc), Storability::DontStore("must-understand"));
}

#[test]
fn storability_has_log_tokens() {
    assert_eq!(Storability::Store.as_str(), "store");
    assert_eq!(Storability::DontStore("private").as_str(), "private");
}

#[test]
fn cdn_cache_control_comes_before_surrogate_control() {
    let names: Vec<&str> = targeted_fields().iter().map(HeaderName::as_str).collect();
    assert_eq!(names, ["cdn-cache-control", "surrogate-control"]);
}
