//! RFC 9111 §4.3: validation of stale responses.

use crate::common::{Route, TestEdge, TestOrigin, cache_status};

/// §4.3.1, §4.3.4: a stale entry is revalidated with If-None-Match; a 304 updates the
/// stored headers and freshness without refetching the body.
#[tokio::test]
async fn stale_entry_is_revalidated_and_a_304_updates_its_headers() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/r",
        Route::ok("the body")
            .header("cache-control", "max-age=10")
            .header("etag", "\"v1\"")
            .header("x-version", "1"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/r").await;
    edge.advance(20);
    origin.route(
        "/r",
        Route::ok("the body")
            .header("cache-control", "max-age=100")
            .header("etag", "\"v1\"")
            .header("x-version", "2"),
    );
    let r = edge.get("/r").await;
    let status = cache_status(&r);
    assert!(
        status.contains("fwd=stale") && status.contains("fwd-status=304"),
        "{status}"
    );
    assert_eq!(r.headers()["x-version"], "2");
    assert_eq!(r.text().await.unwrap(), "the body");
    let seen = origin.seen();
    assert_eq!(seen[1].header("if-none-match"), Some("\"v1\""));
    // Freshness now comes from the 304's max-age=100.
    edge.advance(50);
    assert!(cache_status(&edge.get("/r").await).contains("hit"));
    assert_eq!(origin.hits(), 2);
}

/// §4.3.1: Last-Modified is sent as If-Modified-Since.
#[tokio::test]
async fn last_modified_is_used_as_a_validator() {
    let origin = TestOrigin::start().await;
    let lm = "Tue, 01 Sep 2026 10:00:00 GMT";
    origin.route(
        "/lm",
        Route::ok("x")
            .header("cache-control", "max-age=1")
            .header("last-modified", lm),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/lm").await;
    edge.advance(5);
    let r = edge.get("/lm").await;
    assert!(
        cache_status(&r).contains("fwd-status=304"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(origin.seen()[1].header("if-modified-since"), Some(lm));
}

/// §4.3.3: a full 200 response to a revalidation replaces the entry.
#[tokio::test]
async fn a_200_to_revalidation_replaces_the_entry() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/v",
        Route::ok("old")
            .header("cache-control", "max-age=1")
            .header("etag", "\"a\""),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/v").await;
    edge.advance(5);
    origin.route(
        "/v",
        Route::ok("new")
            .header("cache-control", "max-age=60")
            .header("etag", "\"b\""),
    );
    assert_eq!(edge.get("/v").await.text().await.unwrap(), "new");
    let r = edge.get("/v").await;
    assert!(cache_status(&r).contains("hit"));
    assert_eq!(r.headers()["etag"], "\"b\"");
    assert_eq!(r.text().await.unwrap(), "new");
}

/// A derived ETag (origin sent none) is never sent to the origin as a validator.
#[tokio::test]
async fn derived_etag_is_not_sent_to_the_origin() {
    let origin = TestOrigin::start().await;
    origin.route("/d", Route::ok("x").header("cache-control", "max-age=1"));
    let edge = TestEdge::start(&origin).await;
    let first = edge.get("/d").await;
    assert!(
        first.headers()["etag"]
            .to_str()
            .unwrap()
            .starts_with("\"b3-")
    );
    edge.advance(5);
    edge.get("/d").await;
    assert_eq!(origin.seen()[1].header("if-none-match"), None);
}

/// Concurrent requests for one stale entry make one revalidation.
#[tokio::test]
async fn concurrent_revalidations_are_coalesced() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/c",
        Route::ok("x")
            .header("cache-control", "max-age=1")
            .header("etag", "\"c\"")
            .misbehave(crate::common::Misbehaviour::Slow(
                std::time::Duration::from_millis(200),
            )),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/c").await;
    edge.advance(5);
    let requests = (0..50).map(|_| edge.client.get(edge.url("/c")).send());
    for r in futures_util::future::join_all(requests).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "x");
    }
    assert_eq!(origin.hits(), 2);
}
