//! RFC 9213 targeted cache control (`CDN-Cache-Control`) and `Surrogate-Control`.

use crate::common::{Route, TestEdge, TestOrigin, cache_status};

/// RFC 9213 §2.1: CDN-Cache-Control replaces Cache-Control for this cache, and is not
/// forwarded to clients; clients still get the origin's Cache-Control.
#[tokio::test]
async fn cdn_cache_control_takes_precedence_and_is_not_forwarded() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/t",
        Route::ok("t")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "max-age=600"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/t").await;
    let r = edge.get("/t").await;
    assert!(cache_status(&r).contains("hit"), "{}", cache_status(&r));
    assert!(!r.headers().contains_key("cdn-cache-control"));
    assert_eq!(r.headers()["cache-control"], "no-store");
}

/// RFC 9213 §2.1: a CDN-Cache-Control no-store wins over a permissive Cache-Control.
#[tokio::test]
async fn cdn_cache_control_no_store_prevents_storing() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/t",
        Route::ok("t")
            .header("cache-control", "public, max-age=600")
            .header("cdn-cache-control", "no-store"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/t").await;
    edge.get("/t").await;
    assert_eq!(origin.hits(), 2);
}

/// Surrogate-Control max-age governs this cache and is stripped.
#[tokio::test]
async fn surrogate_control_governs_the_edge_and_is_stripped() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/sc",
        Route::ok("t")
            .header("cache-control", "max-age=0")
            .header("surrogate-control", "max-age=300"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/sc").await;
    edge.advance(100);
    let r = edge.get("/sc").await;
    assert!(cache_status(&r).contains("hit"));
    assert!(!r.headers().contains_key("surrogate-control"));
}
