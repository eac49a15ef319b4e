//! RFC 9111 §5.2.1: request directives, and the per-site policy for them.

use crate::common::{Route, TestEdge, TestOrigin, cache_status};

/// By default (`client_cache_control = "ignore"`) clients cannot force origin load.
#[tokio::test]
async fn client_no_cache_is_ignored_by_default() {
    let origin = TestOrigin::start().await;
    origin.route("/x", Route::ok("x"));
    let edge = TestEdge::start(&origin).await;
    edge.get("/x").await;
    for cc in ["no-cache", "max-age=0", "no-store"] {
        let r = edge.get_with("/x", &[("cache-control", cc)]).await;
        assert!(cache_status(&r).contains("hit"), "{cc}");
    }
    let r = edge.get_with("/x", &[("pragma", "no-cache")]).await;
    assert!(cache_status(&r).contains("hit"));
    assert_eq!(origin.hits(), 1);
    assert_eq!(origin.seen()[0].header("cache-control"), None);
}

/// §5.2.1.4, §5.2.1.1: with `honor`, no-cache and max-age=0 revalidate.
#[tokio::test]
async fn client_no_cache_revalidates_when_the_site_honours_it() {
    let origin = TestOrigin::start().await;
    origin.route("/x", Route::ok("x").header("etag", "\"e\""));
    let edge = TestEdge::start_site(&origin, "client_cache_control = \"honor\"").await;
    edge.get("/x").await;
    let r = edge.get_with("/x", &[("cache-control", "no-cache")]).await;
    assert!(
        cache_status(&r).contains("fwd=request"),
        "{}",
        cache_status(&r)
    );
    edge.advance(10);
    let r = edge.get_with("/x", &[("cache-control", "max-age=5")]).await;
    assert!(
        cache_status(&r).contains("fwd=request"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(origin.hits(), 3);
}

/// §5.2.1.2: with `honor`, max-stale accepts a stale response.
#[tokio::test]
async fn max_stale_accepts_a_stale_response_when_honoured() {
    let origin = TestOrigin::start().await;
    origin.route("/ms", Route::ok("x").header("cache-control", "max-age=1"));
    let edge = TestEdge::start_site(&origin, "client_cache_control = \"honor\"").await;
    edge.get("/ms").await;
    edge.advance(10);
    let r = edge
        .get_with("/ms", &[("cache-control", "max-stale=60")])
        .await;
    assert!(cache_status(&r).contains("hit"), "{}", cache_status(&r));
    assert_eq!(origin.hits(), 1);
}

/// §5.2.1.7: only-if-cached answers 504 when nothing usable is stored.
#[tokio::test]
async fn only_if_cached_gives_504_on_a_miss_and_the_entry_on_a_hit() {
    let origin = TestOrigin::start().await;
    origin.route("/o", Route::ok("o"));
    let edge = TestEdge::start(&origin).await;
    let r = edge
        .get_with("/o", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(r.status(), 504);
    assert_eq!(origin.hits(), 0);
    edge.get("/o").await;
    let r = edge
        .get_with("/o", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(r.status(), 200);
}
