//! RFC 9110 §13: conditional requests, answered the same from a miss and a hit.

use crate::common::{Route, TestEdge, TestOrigin, cache_status};

const LM: &str = "Tue, 01 Sep 2026 10:00:00 GMT";

async fn edge_with_asset() -> (TestOrigin, TestEdge) {
    let origin = TestOrigin::start().await;
    origin.route(
        "/c.css",
        Route::ok("body{}")
            .header("cache-control", "max-age=600")
            .header("etag", "\"abc\"")
            .header("last-modified", LM)
            .header("content-type", "text/css"),
    );
    let edge = TestEdge::start(&origin).await;
    (origin, edge)
}

/// Runs `check` on a cold URL (origin miss) and again on a hit.
async fn on_miss_and_hit(headers: &[(&str, &str)], check: impl Fn(&reqwest::Response)) {
    let (_origin, edge) = edge_with_asset().await;
    let miss = edge.get_with("/c.css", headers).await;
    assert!(
        cache_status(&miss).contains("fwd=uri-miss"),
        "{}",
        cache_status(&miss)
    );
    check(&miss);
    let hit = edge.get_with("/c.css", headers).await;
    assert!(cache_status(&hit).contains("hit"), "{}", cache_status(&hit));
    check(&hit);
}

/// §13.1.2, §15.4.5: a matching If-None-Match gives 304 with ETag, Cache-Control,
/// Date and Last-Modified, and no body.
#[tokio::test]
async fn if_none_match_gives_304_with_the_required_headers() {
    on_miss_and_hit(&[("if-none-match", "\"abc\"")], |r| {
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["etag"], "\"abc\"");
        assert_eq!(r.headers()["cache-control"], "max-age=600");
        assert!(r.headers().contains_key("date"));
        assert_eq!(r.headers()["last-modified"], LM);
        assert!(!r.headers().contains_key("content-type"));
    })
    .await;
}

/// §8.8.3.2, §13.1.2: If-None-Match uses weak comparison and accepts lists and `*`.
#[tokio::test]
async fn if_none_match_uses_weak_comparison_lists_and_star() {
    for value in ["W/\"abc\"", "\"x\", \"abc\"", "*"] {
        on_miss_and_hit(&[("if-none-match", value)], |r| {
            assert_eq!(r.status(), 304, "{value}")
        })
        .await;
    }
    on_miss_and_hit(&[("if-none-match", "\"other\"")], |r| {
        assert_eq!(r.status(), 200)
    })
    .await;
}

/// §13.1.3: If-Modified-Since not earlier than Last-Modified gives 304.
#[tokio::test]
async fn if_modified_since_gives_304_when_not_modified() {
    on_miss_and_hit(&[("if-modified-since", LM)], |r| {
        assert_eq!(r.status(), 304)
    })
    .await;
    on_miss_and_hit(
        &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
        |r| assert_eq!(r.status(), 200),
    )
    .await;
}

/// RFC 9111 §4.3.2: a stored response without Last-Modified is compared with
/// If-Modified-Since by its Date.
#[tokio::test]
async fn without_last_modified_if_modified_since_compares_with_date() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/no-lm",
        Route::ok("body{}")
            .header("cache-control", "max-age=600")
            .header("etag", "\"n1\""),
    );
    let edge = TestEdge::start(&origin).await;
    let first = edge.get("/no-lm").await;
    assert!(first.headers().get("last-modified").is_none());
    let date = first.headers()["date"].to_str().unwrap().to_owned();
    let r = edge
        .get_with("/no-lm", &[("if-modified-since", &date)])
        .await;
    assert_eq!(r.status(), 304, "{}", cache_status(&r));
    let r = edge
        .get_with(
            "/no-lm",
            &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(origin.hits(), 1);
}

/// §13.2.1: preconditions are ignored where the response would not be 2xx: a stored
/// 404 is answered as a 404, whatever the validators say.
#[tokio::test]
async fn a_stored_404_ignores_preconditions() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/gone",
        Route::ok("not here")
            .status(404)
            .header("cache-control", "max-age=600")
            .header("etag", "\"g1\""),
    );
    let edge = TestEdge::start(&origin).await;
    let first = edge.get("/gone").await;
    assert_eq!(first.status(), 404);
    let date = first.headers()["date"].to_str().unwrap().to_owned();
    for condition in [
        ("if-none-match", "\"g1\""),
        ("if-none-match", "*"),
        ("if-modified-since", date.as_str()),
        ("if-match", "\"other\""),
    ] {
        let r = edge.get_with("/gone", &[condition]).await;
        assert_eq!(r.status(), 404, "{condition:?}: {}", cache_status(&r));
        assert!(cache_status(&r).contains("hit"));
    }
    assert_eq!(origin.hits(), 1);
}

/// §13.1.3: If-Modified-Since is ignored when If-None-Match is present.
#[tokio::test]
async fn if_modified_since_is_ignored_when_if_none_match_is_present() {
    on_miss_and_hit(
        &[("if-none-match", "\"other\""), ("if-modified-since", LM)],
        |r| assert_eq!(r.status(), 200),
    )
    .await;
}

/// §13.1.1: If-Match that does not match gives 412; a match proceeds.
#[tokio::test]
async fn if_match_mismatch_gives_412() {
    on_miss_and_hit(&[("if-match", "\"nope\"")], |r| assert_eq!(r.status(), 412)).await;
    on_miss_and_hit(&[("if-match", "\"abc\"")], |r| assert_eq!(r.status(), 200)).await;
}

/// §13.1.4: If-Unmodified-Since earlier than Last-Modified gives 412.
#[tokio::test]
async fn if_unmodified_since_earlier_than_last_modified_gives_412() {
    on_miss_and_hit(
        &[("if-unmodified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
        |r| assert_eq!(r.status(), 412),
    )
    .await;
}

/// §13.2.2: If-Match is evaluated before If-None-Match.
#[tokio::test]
async fn if_match_is_evaluated_before_if_none_match() {
    on_miss_and_hit(
        &[("if-match", "\"nope\""), ("if-none-match", "\"abc\"")],
        |r| assert_eq!(r.status(), 412),
    )
    .await;
}

/// Client conditionals never reach the origin on a fill: the edge needs the full body.
#[tokio::test]
async fn client_conditionals_are_not_forwarded_on_a_fill() {
    let (origin, edge) = edge_with_asset().await;
    edge.get_with(
        "/c.css",
        &[("if-none-match", "\"abc\""), ("range", "bytes=0-1")],
    )
    .await;
    let seen = &origin.seen()[0];
    assert_eq!(seen.header("if-none-match"), None);
    assert_eq!(seen.header("range"), None);
}

/// HEAD carries the same headers as GET (RFC 9110 §9.3.2).
#[tokio::test]
async fn head_carries_the_same_headers_as_get() {
    let (_origin, edge) = edge_with_asset().await;
    edge.get("/c.css").await;
    let get = edge.get("/c.css").await;
    let head = edge.client.head(edge.url("/c.css")).send().await.unwrap();
    for name in [
        "etag",
        "content-length",
        "content-type",
        "cache-control",
        "last-modified",
    ] {
        assert_eq!(get.headers().get(name), head.headers().get(name), "{name}");
    }
}
