//! RFC 9111 §3 (storing) and §4.2 (freshness).

use crate::common::{Route, TestEdge, TestOrigin, cache_status};

fn is_hit(r: &reqwest::Response) -> bool {
    cache_status(r).contains("; hit")
}

/// §4.2.1, §5.2.2.1: max-age gives the freshness lifetime.
#[tokio::test]
async fn max_age_response_is_fresh_until_it_expires() {
    let origin = TestOrigin::start().await;
    origin.route("/a", Route::ok("a").header("cache-control", "max-age=60"));
    let edge = TestEdge::start(&origin).await;
    edge.get("/a").await;
    edge.advance(59);
    assert!(is_hit(&edge.get("/a").await));
    edge.advance(2);
    let r = edge.get("/a").await;
    assert!(!is_hit(&r), "{}", cache_status(&r));
    assert_eq!(origin.hits(), 2);
}

/// §5.2.2.10: s-maxage overrides max-age for a shared cache.
#[tokio::test]
async fn s_maxage_overrides_max_age_for_a_shared_cache() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/s",
        Route::ok("s").header("cache-control", "max-age=1, s-maxage=100"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/s").await;
    edge.advance(50);
    assert!(is_hit(&edge.get("/s").await));
}

/// §4.2.1, §5.3: Expires in the past (relative to Date) means already stale.
#[tokio::test]
async fn expires_in_the_past_is_not_served_from_cache() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/e",
        Route::ok("e")
            .without("cache-control")
            .header("expires", "Thu, 01 Jan 1998 00:00:00 GMT"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/e").await;
    assert!(!is_hit(&edge.get("/e").await));
    assert_eq!(origin.hits(), 2);
}

/// §5.3: an invalid Expires (e.g. "0") is treated as in the past.
#[tokio::test]
async fn invalid_expires_is_treated_as_already_expired() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/e0",
        Route::ok("e")
            .without("cache-control")
            .header("expires", "0"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/e0").await;
    assert!(!is_hit(&edge.get("/e0").await));
}

/// §4.2.1: Expires relative to the origin's Date, not our clock.
#[tokio::test]
async fn expires_counts_from_the_origin_date() {
    let origin = TestOrigin::start().await;
    let now = std::time::SystemTime::now();
    let date = httpdate::fmt_http_date(now);
    let expires = httpdate::fmt_http_date(now + std::time::Duration::from_secs(100));
    origin.route(
        "/ex",
        Route::ok("x")
            .without("cache-control")
            .header("date", &date)
            .header("expires", &expires),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/ex").await;
    edge.advance(50);
    assert!(is_hit(&edge.get("/ex").await));
    edge.advance(60);
    assert!(!is_hit(&edge.get("/ex").await));
}

/// §4.2.3: the origin's Age header counts toward the current age.
#[tokio::test]
async fn origin_age_counts_toward_current_age() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/age",
        Route::ok("x")
            .header("cache-control", "max-age=100")
            .header("age", "90"),
    );
    let edge = TestEdge::start(&origin).await;
    let first = edge.get("/age").await;
    let age: u64 = first.headers()["age"].to_str().unwrap().parse().unwrap();
    assert!(age >= 90, "Age {age} must include the origin's 90");
    edge.advance(5);
    assert!(is_hit(&edge.get("/age").await));
    edge.advance(10);
    assert!(!is_hit(&edge.get("/age").await));
}

/// §4.2.2: heuristic freshness from Last-Modified for a heuristically cacheable status.
#[tokio::test]
async fn heuristic_freshness_uses_last_modified() {
    let origin = TestOrigin::start().await;
    let lm = httpdate::fmt_http_date(
        std::time::SystemTime::now() - std::time::Duration::from_secs(1000),
    );
    origin.route(
        "/h",
        Route::ok("h")
            .without("cache-control")
            .header("last-modified", &lm),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/h").await;
    // 10% of 1000 s.
    edge.advance(90);
    assert!(is_hit(&edge.get("/h").await));
    edge.advance(20);
    assert!(!is_hit(&edge.get("/h").await));
}

/// §4.2.2: no heuristics for a status that is not heuristically cacheable.
#[tokio::test]
async fn no_heuristic_freshness_for_a_302() {
    let origin = TestOrigin::start().await;
    let lm = httpdate::fmt_http_date(
        std::time::SystemTime::now() - std::time::Duration::from_secs(100_000),
    );
    origin.route(
        "/r",
        Route::ok("")
            .status(302)
            .without("cache-control")
            .header("location", "/x")
            .header("last-modified", &lm),
    );
    let edge = TestEdge::start(&origin).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..2 {
        let r = client.get(edge.url("/r")).send().await.unwrap();
        assert_eq!(r.status(), 302);
    }
    assert_eq!(origin.hits_on("/r"), 2);
}

/// §3: any status with explicit freshness may be stored (here a 404).
#[tokio::test]
async fn a_404_with_max_age_is_stored() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/gone",
        Route::ok("no")
            .status(404)
            .header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/gone").await;
    let r = edge.get("/gone").await;
    assert_eq!(r.status(), 404);
    assert!(is_hit(&r));
}

/// §5.2.2.4: no-cache responses are stored but revalidated before every reuse.
#[tokio::test]
async fn no_cache_response_is_revalidated_before_every_reuse() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/nc",
        Route::ok("body")
            .header("cache-control", "no-cache")
            .header("etag", "\"v1\""),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/nc").await;
    for _ in 0..2 {
        let r = edge.get("/nc").await;
        assert_eq!(r.status(), 200);
        assert!(
            cache_status(&r).contains("fwd-status=304"),
            "{}",
            cache_status(&r)
        );
        assert_eq!(r.text().await.unwrap(), "body");
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].header("if-none-match"), Some("\"v1\""));
}

/// §3.5: a response to a request with Authorization is not stored unless allowed.
#[tokio::test]
async fn authorization_request_is_not_stored_without_explicit_permission() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/auth",
        Route::ok("mine").header("cache-control", "max-age=60"),
    );
    origin.route(
        "/auth-pub",
        Route::ok("shared").header("cache-control", "public, max-age=60"),
    );
    let edge = TestEdge::start(&origin).await;
    for _ in 0..2 {
        edge.get_with("/auth", &[("authorization", "Bearer x")])
            .await;
        edge.get_with("/auth-pub", &[("authorization", "Bearer x")])
            .await;
    }
    assert_eq!(origin.hits_on("/auth"), 2);
    assert_eq!(origin.hits_on("/auth-pub"), 1);
}

/// §3, §5.2.2.7: must-understand with an understood status overrides no-store.
#[tokio::test]
async fn must_understand_overrides_no_store_for_an_understood_status() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/mu",
        Route::ok("x").header("cache-control", "max-age=60, no-store, must-understand"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/mu").await;
    assert!(is_hit(&edge.get("/mu").await));
}
