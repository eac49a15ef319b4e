//! Misbehaving origins over real sockets: each fault ends in a clear 502/504 with
//! `Cache-Status` `fwd-status` and `detail`, nothing partial is stored, and the next
//! clean request gets the origin's true bytes.

mod common;

use std::time::{Duration, Instant};

use common::{Misbehaviour, Route, TestEdge, TestOrigin, cache_status};

async fn assert_fault_then_recovery(path: &str, fault: Misbehaviour, status: u16, detail: &str) {
    let origin = TestOrigin::start().await;
    let body = "true bytes ".repeat(500);
    origin.route(path, Route::ok(body.clone()).misbehave(fault));
    let edge = TestEdge::start(&origin).await;
    let r = edge.get(path).await;
    assert_eq!(r.status(), status, "{path}");
    let cs = cache_status(&r);
    assert!(cs.contains(&format!("fwd-status={status}")), "{path}: {cs}");
    assert!(cs.contains(&format!("detail={detail}")), "{path}: {cs}");
    origin.route(path, Route::ok(body.clone()));
    let r = edge.get(path).await;
    assert!(
        !cache_status(&r).contains("hit"),
        "{path}: nothing partial was stored"
    );
    assert_eq!(r.text().await.unwrap(), body);
    assert!(cache_status(&edge.get(path).await).contains("hit"));
}

#[tokio::test]
async fn reset_mid_body_is_a_502_and_nothing_is_stored() {
    assert_fault_then_recovery("/reset", Misbehaviour::ResetMidBody, 502, "origin-protocol").await;
}

#[tokio::test]
async fn content_length_mismatch_is_a_502() {
    assert_fault_then_recovery("/short", Misbehaviour::WrongLength, 502, "origin-protocol").await;
}

#[tokio::test]
async fn truncated_chunked_body_is_a_502() {
    assert_fault_then_recovery(
        "/chunks",
        Misbehaviour::TruncatedChunked,
        502,
        "origin-protocol",
    )
    .await;
}

#[tokio::test]
async fn a_response_head_over_the_limit_is_a_502_and_nothing_is_stored() {
    let origin = TestOrigin::start().await;
    let huge = "h".repeat(100 * 1024);
    origin.route("/fat", Route::ok("fat").header("x-padding", &huge));
    origin.route(
        "/fits",
        Route::ok("fits").header("x-padding", &"h".repeat(20 * 1024)),
    );
    let edge = TestEdge::start(&origin).await;
    for _ in 0..2 {
        let r = edge.get("/fat").await;
        assert_eq!(r.status(), 502);
        let cs = cache_status(&r);
        assert!(cs.contains("detail=origin-protocol"), "{cs}");
        assert!(r.headers().get("x-padding").is_none());
    }
    assert_eq!(origin.hits(), 2, "refused, so never stored");
    assert_eq!(edge.get("/fits").await.status(), 200);
    let r = edge.get("/fits").await;
    assert!(
        cache_status(&r).contains("hit"),
        "a head under the default 64 KiB is fine"
    );
    assert_eq!(r.headers()["x-padding"].len(), 20 * 1024);
}

#[tokio::test]
async fn a_configured_head_limit_is_the_one_applied() {
    let origin = TestOrigin::start().await;
    // Route::ok's other fields take well under 1 KiB.
    origin.route(
        "/under",
        Route::ok("under").header("x-padding", &"u".repeat(15 * 1024)),
    );
    origin.route(
        "/over",
        Route::ok("over").header("x-padding", &"o".repeat(16 * 1024)),
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[origin]\nmax_header_bytes = \"16KiB\"\n[[site]]\nhosts = [\"*\"]\norigin = \"{}\"\n",
        origin.url()
    );
    let edge = TestEdge::start_toml(&toml, dir).await;
    let r = edge.get("/under").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "under");
    let r = edge.get("/over").await;
    assert_eq!(r.status(), 502);
    assert!(cache_status(&r).contains("detail=origin-protocol"));
}

#[tokio::test]
async fn garbage_status_line_is_a_502() {
    assert_fault_then_recovery("/garbage", Misbehaviour::Garbage, 502, "origin-protocol").await;
}

#[tokio::test]
async fn timeout_before_headers_is_a_504() {
    assert_fault_then_recovery(
        "/slow",
        Misbehaviour::Slow(Duration::from_secs(5)),
        504,
        "origin-timeout",
    )
    .await;
}

#[tokio::test]
async fn slow_drip_body_is_cut_off_by_the_body_timeout() {
    // 5,500 bytes, 4 bytes every 20 ms: far past the 3 s body timeout.
    assert_fault_then_recovery(
        "/drip",
        Misbehaviour::Drip(Duration::from_millis(20)),
        504,
        "origin-timeout",
    )
    .await;
}

#[tokio::test]
async fn refused_connection_is_a_502() {
    // Bind and drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[site]]\nhosts = [\"*\"]\norigin = \"http://127.0.0.1:{port}\"\n"
    );
    let edge = TestEdge::start_toml(&toml, dir).await;
    let r = edge.get("/x").await;
    assert_eq!(r.status(), 502);
    assert!(
        cache_status(&r).contains("detail=origin-connect"),
        "{}",
        cache_status(&r)
    );
}

#[tokio::test]
async fn a_dead_origin_is_backed_off_by_the_circuit_breaker() {
    let origin = TestOrigin::start().await;
    for path in ["/x?0", "/x?1", "/x?2", "/x?fast"] {
        origin.route(
            path,
            Route::ok("x").misbehave(Misbehaviour::Slow(Duration::from_secs(10))),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[origin]\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"300ms\"\nbreaker_failures = 3\nbreaker_cooldown = \"60s\"\n[[site]]\nhosts = [\"*\"]\norigin = \"{}\"\n",
        origin.url()
    );
    let edge = TestEdge::start_toml(&toml, dir).await;
    for i in 0..3 {
        let r = edge.get(&format!("/x?{i}")).await;
        assert_eq!(r.status(), 504);
    }
    let hits = origin.hits();
    let started = Instant::now();
    let r = edge.get("/x?fast").await;
    assert_eq!(r.status(), 502);
    assert!(
        cache_status(&r).contains("detail=origin-circuit-open"),
        "{}",
        cache_status(&r)
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "fails fast, not after a timeout"
    );
    assert_eq!(
        origin.hits(),
        hits,
        "an open breaker sends nothing to the origin"
    );
}

#[tokio::test]
async fn a_101_to_a_request_that_asked_no_upgrade_is_a_502() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/switch",
        Route::ok("").status(101).header("upgrade", "websocket"),
    );
    let edge = TestEdge::start(&origin).await;
    let r = edge.get("/switch").await;
    assert_eq!(r.status(), 502);
    assert!(cache_status(&r).contains("detail=origin-protocol"));
    // A POST passed through gets the same answer.
    let r = edge.post("/switch", "x").await;
    assert_eq!(r.status(), 502);
}
