//! RFC 9213 targeted cache control (`CDN-Cache-Control`) and `Surrogate-Control`.

use crate::common::{Route, TestEdge, TestOrigin, cache_status};

/// RFC 9213 §2.2: CDN-Cache-Control replaces Cache-Control for this cache; §3: it is
/// forwarded (for CDNs downstream), and clients still get the origin's Cache-Control.
#[tokio::test]
async fn cdn_cache_control_takes_precedence_and_is_forwarded() {
    let origin = TestOrigin::start().await;
    origin.route("/t", with_fields("no-store", "max-age=600"));
    let edge = TestEdge::start(&origin).await;
    let first = edge.get("/t").await;
    assert_eq!(first.headers()["cdn-cache-control"], "max-age=600");
    let r = edge.get("/t").await;
    assert!(cache_status(&r).contains("hit"), "{}", cache_status(&r));
    assert_eq!(r.headers()["cdn-cache-control"], "max-age=600");
    assert_eq!(r.headers()["cache-control"], "no-store");
}

/// A route answering with both fields.
fn with_fields(cache_control: &str, cdn: &str) -> Route {
    Route::ok("t")
        .header("cache-control", cache_control)
        .header("cdn-cache-control", cdn)
}

/// Asserts that each of `paths`, fetched twice, reached the origin twice.
async fn assert_never_reused(origin: &TestOrigin, edge: &TestEdge, paths: &[&str]) {
    for path in paths {
        let before = origin.hits();
        edge.get(path).await;
        let r = edge.get(path).await;
        assert_eq!(origin.hits(), before + 2, "{path}: {}", cache_status(&r));
    }
}

/// RFC 9213 §2.1: a CDN-Cache-Control that is not a valid Structured Field Dictionary
/// is ignored whole; Cache-Control (here no-store) governs instead.
#[tokio::test]
async fn an_invalid_cdn_cache_control_is_ignored_whole() {
    let origin = TestOrigin::start().await;
    origin.route("/junk", with_fields("no-store", "max-age=600, &&&&&"));
    origin.route("/space", with_fields("no-store", "max-age =600"));
    origin.route("/upper", with_fields("no-store", "Max-Age=600"));
    let edge = TestEdge::start(&origin).await;
    assert_never_reused(&origin, &edge, &["/junk", "/space", "/upper"]).await;
}

/// RFC 9213 §2.1: a directive whose value has the wrong type (max-age as a String or a
/// Decimal) is not used; the field itself still sets Cache-Control aside.
#[tokio::test]
async fn a_cdn_cache_control_value_of_the_wrong_type_is_not_used() {
    let origin = TestOrigin::start().await;
    origin.route("/quoted", with_fields("max-age=600", "max-age=\"600\""));
    origin.route("/decimal", with_fields("max-age=600", "max-age=600.0"));
    let edge = TestEdge::start(&origin).await;
    assert_never_reused(&origin, &edge, &["/quoted", "/decimal"]).await;
}

/// RFC 9213 §3.1: `CDN-Cache-Control: none` (a valid field with no known directive)
/// still sets `Cache-Control: no-store` aside for CDN caches.
#[tokio::test]
async fn a_valid_cdn_cache_control_without_known_directives_sets_cache_control_aside() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/none",
        Route::ok("t")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "none")
            .header("etag", "\"v1\""),
    );
    let edge = TestEdge::start(&origin).await;
    let first = edge.get("/none").await;
    assert!(
        cache_status(&first).contains("stored"),
        "{}",
        cache_status(&first)
    );
}

/// RFC 9213 §2.1: a CDN-Cache-Control no-store wins over a permissive Cache-Control.
#[tokio::test]
async fn cdn_cache_control_no_store_prevents_storing() {
    let origin = TestOrigin::start().await;
    origin.route("/t", with_fields("public, max-age=600", "no-store"));
    let edge = TestEdge::start(&origin).await;
    edge.get("/t").await;
    edge.get("/t").await;
    assert_eq!(origin.hits(), 2);
}

/// Surrogate-Control max-age governs this cache and is stripped, also from responses
/// that are not stored.
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

    origin.route(
        "/passed",
        Route::ok("t")
            .header("cache-control", "no-store")
            .header("surrogate-control", "no-store")
            .header("surrogate-key", "a b"),
    );
    let r = edge.get("/passed").await;
    assert!(!cache_status(&r).contains("stored"));
    assert!(!r.headers().contains_key("surrogate-control"));
    assert!(!r.headers().contains_key("surrogate-key"));
}
