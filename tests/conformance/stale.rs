//! RFC 5861: stale-while-revalidate and stale-if-error; RFC 9111 §4.2.4.

use std::time::Duration;

use crate::common::{Misbehaviour, Route, TestEdge, TestOrigin, cache_status};

/// RFC 5861 §3: answer at once with the stale response and refresh in the background.
#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_background() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/swr",
        Route::ok("v1").header("cache-control", "max-age=1, stale-while-revalidate=60"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/swr").await;
    edge.advance(10);
    origin.route(
        "/swr",
        Route::ok("v2").header("cache-control", "max-age=100"),
    );
    let r = edge.get("/swr").await;
    assert!(
        cache_status(&r).contains("detail=stale-while-revalidate"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(r.text().await.unwrap(), "v1");
    // The background refresh lands; poll, bounded, for its effect.
    for _ in 0..100 {
        if origin.hits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut body = String::new();
    for _ in 0..100 {
        let r = edge.get("/swr").await;
        body = r.text().await.unwrap();
        if body == "v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(body, "v2");
    assert_eq!(origin.hits(), 2, "one refresh, then hits");
}

/// RFC 5861 §4: stale-if-error serves stale on 5xx, protocol errors and timeouts.
#[tokio::test]
async fn stale_if_error_serves_stale_when_origin_fails() {
    let origin = TestOrigin::start().await;
    let edge = TestEdge::start(&origin).await;
    for (path, failure) in [
        (
            "/503",
            Route::ok("down").status(503).without("cache-control"),
        ),
        ("/garbage", Route::ok("x").misbehave(Misbehaviour::Garbage)),
        (
            "/slow",
            Route::ok("x").misbehave(Misbehaviour::Slow(Duration::from_secs(4))),
        ),
    ] {
        origin.route(
            path,
            Route::ok("good").header("cache-control", "max-age=1, stale-if-error=600"),
        );
        edge.get(path).await;
        edge.advance(10);
        origin.route(path, failure);
        let r = edge.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let status = cache_status(&r);
        assert!(status.contains("detail=stale-if-error"), "{path}: {status}");
        assert_eq!(r.text().await.unwrap(), "good");
    }
}

/// RFC 9111 §4.2.4: must-revalidate forbids serving stale, even on error.
#[tokio::test]
async fn must_revalidate_forbids_stale_if_error() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/mr",
        Route::ok("good").header(
            "cache-control",
            "max-age=1, must-revalidate, stale-if-error=600",
        ),
    );
    let edge = TestEdge::start_site(&origin, "stale_if_error = \"1h\"").await;
    edge.get("/mr").await;
    edge.advance(10);
    origin.route(
        "/mr",
        Route::ok("down").status(503).without("cache-control"),
    );
    let r = edge.get("/mr").await;
    assert_eq!(r.status(), 503);
}

/// A site-level default lets operators serve stale through an origin outage.
#[tokio::test]
async fn site_default_stale_if_error_applies_when_the_response_names_none() {
    let origin = TestOrigin::start().await;
    origin.route("/d", Route::ok("good").header("cache-control", "max-age=1"));
    let edge = TestEdge::start_site(&origin, "stale_if_error = \"1h\"").await;
    edge.get("/d").await;
    edge.advance(10);
    origin.route("/d", Route::ok("x").status(502).without("cache-control"));
    let r = edge.get("/d").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "good");
    // Beyond the window the error goes through.
    edge.advance(4000);
    assert_eq!(edge.get("/d").await.status(), 502);
}

/// Without any stale allowance, a stale entry and a failing origin give the error.
#[tokio::test]
async fn without_stale_if_error_the_origin_error_goes_through() {
    let origin = TestOrigin::start().await;
    origin.route("/n", Route::ok("good").header("cache-control", "max-age=1"));
    let edge = TestEdge::start(&origin).await;
    edge.get("/n").await;
    edge.advance(10);
    origin.route("/n", Route::ok("x").misbehave(Misbehaviour::Garbage));
    let r = edge.get("/n").await;
    assert_eq!(r.status(), 502);
    // RFC 9211 §2.2: the request went forward because the entry was stale.
    let status = cache_status(&r);
    assert!(
        status.contains("fwd=stale") && status.contains("detail=origin-protocol"),
        "{status}"
    );
}
