//! RFC 9111 §4.4: invalidation by unsafe methods.

use crate::common::{Route, TestEdge, TestOrigin, cache_status};

/// A successful unsafe method invalidates the target URI and a same-host Location, but
/// not a Location on another host.
#[tokio::test]
async fn successful_post_invalidates_target_and_same_host_location() {
    let origin = TestOrigin::start().await;
    for path in ["/form", "/list", "/other"] {
        origin.route(path, Route::ok(path));
    }
    let edge = TestEdge::start(&origin).await;
    for path in ["/form", "/list", "/other"] {
        edge.get(path).await;
    }
    origin.route(
        "/form",
        Route::ok("created")
            .status(201)
            .header("location", "/list")
            .header("content-location", "http://elsewhere.example/other"),
    );
    let r = edge.post("/form", "x").await;
    assert_eq!(r.status(), 201);
    origin.route("/form", Route::ok("/form"));
    assert!(!cache_status(&edge.get("/form").await).contains("hit"));
    assert!(!cache_status(&edge.get("/list").await).contains("hit"));
    assert!(cache_status(&edge.get("/other").await).contains("hit"));
}

/// DELETE invalidates every Vary variant of the URL.
#[tokio::test]
async fn delete_invalidates_every_variant() {
    let origin = TestOrigin::start().await;
    origin.route("/v", Route::ok("v").header("vary", "accept-language"));
    let edge = TestEdge::start(&origin).await;
    for lang in ["en", "fr"] {
        edge.get_with("/v", &[("accept-language", lang)]).await;
    }
    edge.client.delete(edge.url("/v")).send().await.unwrap();
    for lang in ["en", "fr"] {
        let r = edge.get_with("/v", &[("accept-language", lang)]).await;
        assert!(!cache_status(&r).contains("hit"), "{lang}");
    }
}
