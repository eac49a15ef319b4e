//! RFC 9111 §4.1: Vary and secondary keys.

use crate::common::{Route, TestEdge, TestOrigin, cache_status};

/// Each Accept-Language value gets its own stored variant.
#[tokio::test]
async fn vary_on_accept_language_keeps_variants_apart() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/v",
        Route::ok("en or fr").header("vary", "Accept-Language"),
    );
    let edge = TestEdge::start(&origin).await;
    let en = edge.get_with("/v", &[("accept-language", "en")]).await;
    assert!(cache_status(&en).contains("stored"));
    let fr = edge.get_with("/v", &[("accept-language", "fr")]).await;
    assert!(
        cache_status(&fr).contains("fwd=vary-miss"),
        "{}",
        cache_status(&fr)
    );
    assert!(cache_status(&edge.get_with("/v", &[("accept-language", "en")]).await).contains("hit"));
    assert!(cache_status(&edge.get_with("/v", &[("accept-language", "fr")]).await).contains("hit"));
    // Whitespace differences select the same variant.
    let en2 = edge.get_with("/v", &[("accept-language", "en , fr")]).await;
    assert!(cache_status(&en2).contains("vary-miss"));
    assert!(
        cache_status(&edge.get_with("/v", &[("accept-language", "en,fr")]).await).contains("hit")
    );
    // Language ranges are case-insensitive (RFC 4647 §2): so is the variant.
    assert!(
        cache_status(&edge.get_with("/v", &[("accept-language", "EN, Fr")]).await).contains("hit")
    );
    assert_eq!(origin.hits(), 3);
}

/// RFC 9110 §12.5.5: `Vary: *` never matches, so it is never served from cache.
#[tokio::test]
async fn vary_star_is_not_served_from_cache() {
    let origin = TestOrigin::start().await;
    origin.route("/star", Route::ok("x").header("vary", "*"));
    let edge = TestEdge::start(&origin).await;
    edge.get("/star").await;
    edge.get("/star").await;
    assert_eq!(origin.hits(), 2);
}

/// Vary: Accept-Encoding is handled by edge's own negotiation, not a secondary key.
#[tokio::test]
async fn vary_accept_encoding_is_not_a_secondary_key() {
    let origin = TestOrigin::start().await;
    origin.route("/ae", Route::ok("x").header("vary", "Accept-Encoding"));
    let edge = TestEdge::start(&origin).await;
    edge.get_with("/ae", &[("accept-encoding", "gzip")]).await;
    let r = edge.get_with("/ae", &[("accept-encoding", "br")]).await;
    assert!(cache_status(&r).contains("hit"));
}

/// A header with unbounded values cannot flood the cache: past `max_variants`, new
/// variants are served from the origin without being stored.
#[tokio::test]
async fn variants_per_url_are_capped() {
    let origin = TestOrigin::start().await;
    origin.route("/cap", Route::ok("x").header("vary", "x-token"));
    let edge = TestEdge::start_site(&origin, "max_variants = 2").await;
    for token in ["a", "b", "c"] {
        edge.get_with("/cap", &[("x-token", token)]).await;
    }
    let c = edge.get_with("/cap", &[("x-token", "c")]).await;
    assert!(
        cache_status(&c).contains("detail=vary-limit"),
        "{}",
        cache_status(&c)
    );
    assert!(cache_status(&edge.get_with("/cap", &[("x-token", "a")]).await).contains("hit"));
}
