//! The foundation: misses, hits, coalescing, storability, unknown hosts, pass-through,
//! eviction, hop-by-hop hygiene and cut-off bodies — over real sockets.

mod common;

use std::time::Duration;

use common::{Misbehaviour, Route, TestEdge, TestOrigin, cache_status};

#[tokio::test]
async fn miss_then_hit() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/a.css",
        Route::ok("body { color: red }").header("content-type", "text/css"),
    );
    let edge = TestEdge::start(&origin).await;

    let first = edge.get("/a.css").await;
    assert_eq!(first.status(), 200);
    let status = cache_status(&first);
    assert!(
        status.contains("fwd=uri-miss") && status.contains("stored"),
        "{status}"
    );
    assert_eq!(first.text().await.unwrap(), "body { color: red }");

    let second = edge.get("/a.css").await;
    assert_eq!(second.status(), 200);
    assert!(
        cache_status(&second).contains("hit"),
        "{}",
        cache_status(&second)
    );
    assert!(second.headers().contains_key("age"));
    assert_eq!(second.headers()["content-type"], "text/css");
    assert_eq!(second.text().await.unwrap(), "body { color: red }");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn thousand_concurrent_cold_requests_make_one_origin_request() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/cold.js",
        Route::ok("x".repeat(10_000)).misbehave(Misbehaviour::Slow(Duration::from_millis(300))),
    );
    let edge = TestEdge::start(&origin).await;
    let url = edge.url("/cold.js");
    let requests = (0..1000).map(|_| {
        let client = edge.client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().len())
        })
    });
    let results = futures_util::future::join_all(requests).await;
    for r in results {
        assert_eq!(r.unwrap(), (200, 10_000));
    }
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn no_store_and_private_responses_are_never_stored() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/ns",
        Route::ok("secret").header("cache-control", "no-store"),
    );
    origin.route(
        "/p",
        Route::ok("mine").header("cache-control", "private, max-age=60"),
    );
    let edge = TestEdge::start(&origin).await;
    for path in ["/ns", "/p"] {
        for _ in 0..3 {
            let r = edge.get(path).await;
            assert_eq!(r.status(), 200);
            assert!(!cache_status(&r).contains("hit"), "{}", cache_status(&r));
            assert!(!cache_status(&r).contains("stored"), "{}", cache_status(&r));
        }
        assert_eq!(origin.hits_on(path), 3);
    }
}

#[tokio::test]
async fn response_without_freshness_gets_no_default_ttl() {
    let origin = TestOrigin::start().await;
    // 200 without Cache-Control, Expires or Last-Modified: nothing says it may be reused.
    origin.route("/bare", Route::ok("bare").without("cache-control"));
    let edge = TestEdge::start(&origin).await;
    edge.get("/bare").await;
    let r = edge.get("/bare").await;
    assert!(!cache_status(&r).contains("hit"), "{}", cache_status(&r));
    assert_eq!(origin.hits_on("/bare"), 2);
}

#[tokio::test]
async fn a_response_nothing_can_reuse_streams_through_before_its_body_ends() {
    let origin = TestOrigin::start().await;
    let body = "dynamic ".repeat(4096);
    let pause = Duration::from_millis(1500);
    origin.route(
        "/api",
        Route::ok(body.clone())
            .without("cache-control")
            .misbehave(Misbehaviour::PauseMidBody(pause)),
    );
    // With a validator it may be stored (revalidated before reuse): read whole.
    origin.route(
        "/tagged",
        Route::ok(body.clone())
            .without("cache-control")
            .header("etag", "\"v1\"")
            .misbehave(Misbehaviour::PauseMidBody(pause)),
    );
    let edge = TestEdge::start(&origin).await;
    let started = std::time::Instant::now();
    let r = edge.get("/api").await;
    let head_after = started.elapsed();
    assert!(
        head_after < pause,
        "the head came after {head_after:?}: the body was read first"
    );
    assert!(
        cache_status(&r).contains("detail=no-freshness"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(r.text().await.unwrap(), body);

    let started = std::time::Instant::now();
    let r = edge.get("/tagged").await;
    assert!(
        started.elapsed() >= pause,
        "a storable response is read whole first"
    );
    assert!(cache_status(&r).contains("stored"), "{}", cache_status(&r));
    assert_eq!(r.text().await.unwrap(), body);
}

/// A body of `len` bytes that no shift of itself matches, so a byte out of place shows.
fn patterned(len: usize) -> bytes::Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8)
        .collect()
}

/// An origin that answers `path` with `body`, misbehaving as `misbehaviour`, and an
/// edge in front of it with `cache_extra` in `[cache]`.
async fn serving(
    path: &str,
    body: &bytes::Bytes,
    misbehaviour: Misbehaviour,
    cache_extra: &str,
) -> (TestOrigin, TestEdge) {
    let origin = TestOrigin::start().await;
    origin.route(path, Route::ok(body.clone()).misbehave(misbehaviour));
    let edge = TestEdge::start_with(&origin, cache_extra).await;
    (origin, edge)
}

/// GETs `path`, whose answer must be streaming while its fill reads.
async fn get_streaming(edge: &TestEdge, path: &str) -> reqwest::Response {
    let r = edge.get(path).await;
    assert!(cache_status(&r).contains("detail=streaming"), "{path}");
    r
}

#[tokio::test]
async fn a_large_miss_streams_to_its_client_while_it_is_stored() {
    let origin = TestOrigin::start().await;
    let body = patterned(3 << 19);
    let pause = Duration::from_millis(1500);
    origin.route(
        "/big.bin",
        Route::ok(body.clone()).misbehave(Misbehaviour::PauseMidBody(pause)),
    );
    origin.route(
        "/chunked.bin",
        Route::ok(body.clone()).misbehave(Misbehaviour::ChunkedPause(pause)),
    );
    let edge = TestEdge::start(&origin).await;
    for (path, length) in [("/big.bin", Some(body.len())), ("/chunked.bin", None)] {
        let started = std::time::Instant::now();
        let r = edge.get(path).await;
        let head_after = started.elapsed();
        assert!(
            head_after < pause,
            "{path}: the head came after {head_after:?}: the body was read whole first"
        );
        let cs = cache_status(&r);
        assert!(
            cs.contains("fwd=uri-miss") && cs.contains("detail=streaming"),
            "{cs}"
        );
        let declared = r
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
        assert_eq!(declared, length, "{path}");
        assert_eq!(r.headers()["accept-ranges"], "bytes");
        assert!(
            r.headers().get("etag").is_none(),
            "a derived ETag needs the whole body"
        );
        assert_eq!(r.bytes().await.unwrap(), body, "{path}");

        // Stored whole: the next request is a hit with every field, its ETag included.
        let r = edge.get(path).await;
        assert!(cache_status(&r).contains("hit"), "{}", cache_status(&r));
        assert!(r.headers().get("etag").is_some());
        assert_eq!(r.bytes().await.unwrap(), body, "{path}");
        assert_eq!(origin.hits_on(path), 1);
    }
}

#[tokio::test]
async fn a_small_miss_or_a_conditional_or_partial_one_is_read_whole_first_a_head_is_not() {
    let origin = TestOrigin::start().await;
    let pause = Duration::from_millis(1000);
    let big = patterned(3 << 19);
    origin.route(
        "/small",
        Route::ok(patterned(100_000)).misbehave(Misbehaviour::PauseMidBody(pause)),
    );
    for path in ["/ranged", "/conditional", "/head"] {
        origin.route(
            path,
            Route::ok(big.clone()).misbehave(Misbehaviour::PauseMidBody(pause)),
        );
    }
    let edge = TestEdge::start(&origin).await;
    let r = edge.get("/small").await;
    assert!(cache_status(&r).contains("stored"), "{}", cache_status(&r));
    assert!(r.headers().get("etag").is_some());

    let r = edge.get_with("/ranged", &[("range", "bytes=10-19")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), big.slice(10..20));

    let r = edge
        .get_with("/conditional", &[("if-none-match", "\"nope\"")])
        .await;
    assert_eq!(r.status(), 200);
    assert!(cache_status(&r).contains("stored"), "{}", cache_status(&r));
    assert_eq!(r.bytes().await.unwrap(), big);

    // HEAD takes the same head as GET: it need not wait for the body.
    let started = std::time::Instant::now();
    let r = edge.client.head(edge.url("/head")).send().await.unwrap();
    assert!(started.elapsed() < pause);
    assert_eq!(r.status(), 200);
    let cs = cache_status(&r);
    assert!(cs.contains("detail=streaming"), "{cs}");
    assert_eq!(
        r.headers()["content-length"],
        big.len().to_string().as_str()
    );
    assert!(r.bytes().await.unwrap().is_empty());
    // The fill goes on without a body to feed, and stores it.
    tokio::time::sleep(pause + Duration::from_millis(300)).await;
    let r = edge.get("/head").await;
    assert!(cache_status(&r).contains("hit"), "{}", cache_status(&r));
    assert_eq!(r.bytes().await.unwrap(), big);
}

#[tokio::test]
async fn a_streamed_miss_the_origin_cuts_off_fails_its_client_and_is_not_stored() {
    let origin = TestOrigin::start().await;
    let body = patterned(3 << 19);
    for (path, m) in [
        (
            "/reset",
            Misbehaviour::PauseThenReset(Duration::from_millis(300)),
        ),
        ("/short", Misbehaviour::WrongLength),
        ("/chunks", Misbehaviour::TruncatedChunked),
    ] {
        origin.route(path, Route::ok(body.clone()).misbehave(m));
    }
    let edge = TestEdge::start(&origin).await;
    for path in ["/reset", "/short", "/chunks"] {
        let r = edge.get(path).await;
        assert_eq!(
            r.status(),
            200,
            "{path}: the head went before the body ended"
        );
        assert!(cache_status(&r).contains("detail=streaming"), "{path}");
        assert!(
            r.bytes().await.is_err(),
            "{path}: a cut-off body must not look complete"
        );
        origin.route(path, Route::ok(body.clone()));
        let r = edge.get(path).await;
        assert!(
            !cache_status(&r).contains("hit"),
            "{path}: nothing partial was stored: {}",
            cache_status(&r)
        );
        assert_eq!(r.bytes().await.unwrap(), body, "{path}");
    }
}

#[tokio::test]
async fn requests_during_a_streamed_fill_stream_it_too_or_wait_for_the_entry() {
    let body = patterned(3 << 19);
    let pause = Duration::from_millis(1000);
    let (origin, edge) = serving("/big", &body, Misbehaviour::PauseMidBody(pause), "").await;
    let started = std::time::Instant::now();
    let first = get_streaming(&edge, "/big").await;
    // A follower that takes the whole response streams it from the same fill, from
    // its first byte, before the origin has sent the rest.
    let second = edge.get("/big").await;
    assert!(
        started.elapsed() < pause,
        "the follower waited for the whole body"
    );
    let cs = cache_status(&second);
    assert!(
        cs.contains("collapsed") && cs.contains("detail=streaming"),
        "{cs}"
    );
    assert_eq!(
        second.headers()["content-length"],
        body.len().to_string().as_str()
    );
    // A HEAD joins it too, without a body.
    let head = edge.client.head(edge.url("/big")).send().await.unwrap();
    let cs = cache_status(&head);
    assert!(
        cs.contains("collapsed") && cs.contains("detail=streaming"),
        "{cs}"
    );
    assert_eq!(
        head.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    assert!(
        started.elapsed() < pause,
        "the HEAD waited for the whole body"
    );
    // One that needs the stored entry (a range, here) waits for it.
    let ranged = edge.get_with("/big", &[("range", "bytes=1000-1999")]).await;
    assert_eq!(ranged.status(), 206);
    let cs = cache_status(&ranged);
    assert!(
        cs.contains("collapsed") && !cs.contains("streaming"),
        "{cs}"
    );
    assert_eq!(ranged.bytes().await.unwrap(), body.slice(1000..2000));
    assert_eq!(second.bytes().await.unwrap(), body);
    assert_eq!(first.bytes().await.unwrap(), body);
    assert_eq!(origin.hits_on("/big"), 1);
}

#[tokio::test]
async fn a_cut_off_streamed_fill_fails_its_followers_too() {
    let body = patterned(3 << 19);
    let reset = Misbehaviour::PauseThenReset(Duration::from_millis(500));
    let (origin, edge) = serving("/reset", &body, reset, "").await;
    let first = edge.get("/reset").await;
    let second = edge.get("/reset").await;
    assert!(cache_status(&second).contains("collapsed"));
    assert!(first.bytes().await.is_err());
    assert!(
        second.bytes().await.is_err(),
        "a follower's body is cut short too"
    );
    origin.route("/reset", Route::ok(body.clone()));
    let r = edge.get("/reset").await;
    assert!(!cache_status(&r).contains("hit"), "{}", cache_status(&r));
    assert_eq!(r.bytes().await.unwrap(), body);
}

#[tokio::test]
async fn a_streamed_fill_goes_on_when_its_client_leaves_or_lags() {
    let origin = TestOrigin::start().await;
    let body = patterned(3 << 19);
    origin.route(
        "/left",
        Route::ok(body.clone()).misbehave(Misbehaviour::PauseMidBody(Duration::from_millis(500))),
    );
    // Larger than the 1 MiB a streaming client may lag by, many times over.
    let large = patterned(12 << 20);
    origin.route("/lagged", Route::ok(large.clone()));
    let edge = TestEdge::start_with(&origin, "memory_object_max = \"32MiB\"").await;

    let r = edge.get("/left").await;
    assert!(cache_status(&r).contains("detail=streaming"));
    drop(r);
    let mut stored = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = edge.get("/left").await;
        if cache_status(&r).contains("hit") {
            assert_eq!(r.bytes().await.unwrap(), body);
            stored = true;
            break;
        }
    }
    assert!(stored, "the fill went on without its client");
    assert_eq!(origin.hits_on("/left"), 1);

    // A client that reads nothing for a second, then everything: every byte in place.
    // (The socket buffers on loopback take megabytes, so whether it falls behind the
    // fill here depends on the host: the unit tests in `fill.rs` drive that path.)
    let r = edge.get("/lagged").await;
    assert!(cache_status(&r).contains("detail=streaming"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(r.bytes().await.unwrap(), large);
    assert!(cache_status(&edge.get("/lagged").await).contains("hit"));

    // One that lags while the origin sends the first half and reads while it pauses.
    origin.route(
        "/paused",
        Route::ok(large.clone()).misbehave(Misbehaviour::PauseMidBody(Duration::from_millis(1000))),
    );
    let r = edge.get("/paused").await;
    assert!(cache_status(&r).contains("detail=streaming"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.bytes().await.unwrap(), large);
    assert!(cache_status(&edge.get("/paused").await).contains("hit"));
}

#[tokio::test]
async fn a_revalidation_streams_a_new_large_body_unless_stale_if_error_may_answer() {
    let origin = TestOrigin::start().await;
    let pause = Duration::from_millis(1000);
    let version = |n: u8| {
        let body = patterned(3 << 19)
            .iter()
            .map(|b| b ^ n)
            .collect::<bytes::Bytes>();
        let route = Route::ok(body.clone())
            .without("cache-control")
            .header("cache-control", "max-age=10")
            .misbehave(Misbehaviour::PauseMidBody(pause));
        (body, route)
    };
    for (site, streams) in [("", true), ("stale_if_error = \"1h\"", false)] {
        let (v1, route) = version(1);
        origin.route("/v", route);
        let edge = TestEdge::start_site(&origin, site).await;
        assert_eq!(edge.get("/v").await.bytes().await.unwrap(), v1);
        edge.advance(60);
        let (v2, route) = version(2);
        origin.route("/v", route);
        let started = std::time::Instant::now();
        let r = edge.get("/v").await;
        let cs = cache_status(&r);
        assert!(
            cs.contains("fwd=stale") && cs.contains("fwd-status=200"),
            "{cs}"
        );
        assert_eq!(cs.contains("detail=streaming"), streams, "{site}: {cs}");
        assert_eq!(
            started.elapsed() < pause,
            streams,
            "{site}: head after the pause?"
        );
        assert_eq!(r.bytes().await.unwrap(), v2, "{site}");
        let r = edge.get("/v").await;
        assert!(
            cache_status(&r).contains("hit"),
            "{site}: {}",
            cache_status(&r)
        );
        assert_eq!(r.bytes().await.unwrap(), v2, "{site}");
    }
}

#[tokio::test]
async fn a_streamed_miss_found_too_large_releases_its_followers_at_once() {
    let body = patterned(3 << 20);
    let pause = Duration::from_millis(1500);
    let chunked = Misbehaviour::ChunkedPause(pause);
    let (origin, edge) = serving("/huge", &body, chunked, "max_object_size = \"1MiB\"").await;
    let started = std::time::Instant::now();
    let first = get_streaming(&edge, "/huge").await;
    // The first half (1.5 MiB) is in: the fill knows it cannot store the body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = edge.get("/huge").await;
    assert!(
        started.elapsed() < pause,
        "the second request waited for the first client to take the rest"
    );
    assert!(!cache_status(&second).contains("collapsed"));
    assert_eq!(second.bytes().await.unwrap(), body);
    assert_eq!(first.bytes().await.unwrap(), body);
    assert_eq!(origin.hits_on("/huge"), 2);
}

#[tokio::test]
async fn a_streamed_chunked_miss_past_the_largest_storable_size_completes_uncached() {
    let body = patterned(3 << 20);
    let chunked = Misbehaviour::ChunkedPause(Duration::ZERO);
    let (origin, edge) = serving("/huge", &body, chunked, "max_object_size = \"2MiB\"").await;
    let r = get_streaming(&edge, "/huge").await;
    assert_eq!(r.bytes().await.unwrap(), body);
    let r = edge.get("/huge").await;
    assert!(!cache_status(&r).contains("hit"), "{}", cache_status(&r));
    assert_eq!(r.bytes().await.unwrap(), body);
    assert_eq!(origin.hits_on("/huge"), 2);
}

#[tokio::test]
async fn unknown_host_gets_421_and_never_reaches_origin() {
    let origin = TestOrigin::start().await;
    origin.route("/", Route::ok("home"));
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[site]]\nhosts = [\"assets.example.com\", \"*.cdn.example.com\"]\norigin = \"{}\"\n",
        origin.url()
    );
    let edge = TestEdge::start_toml(&toml, dir).await;
    let r = edge
        .client
        .get(edge.url("/"))
        .header("host", "evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let ok = edge
        .client
        .get(edge.url("/"))
        .header("host", "img.cdn.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bare = edge
        .client
        .get(edge.url("/"))
        .header("host", "cdn.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        bare.status(),
        421,
        "a wildcard does not match its bare domain"
    );
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn post_passes_through_with_its_body_and_invalidates_the_url() {
    let origin = TestOrigin::start().await;
    origin.route("/doc", Route::ok("v1"));
    let edge = TestEdge::start(&origin).await;
    edge.get("/doc").await;
    assert!(cache_status(&edge.get("/doc").await).contains("hit"));

    let posted = edge.post("/doc", "payload").await;
    assert_eq!(posted.status(), 200);
    assert!(cache_status(&posted).contains("fwd=method"));
    let seen = origin.seen();
    let post = seen
        .iter()
        .find(|s| s.method == "POST")
        .expect("origin saw the POST");
    assert_eq!(post.body, b"payload");

    origin.route("/doc", Route::ok("v2"));
    let after = edge.get("/doc").await;
    assert!(
        !cache_status(&after).contains("hit"),
        "{}",
        cache_status(&after)
    );
    assert_eq!(after.text().await.unwrap(), "v2");
}

#[tokio::test]
async fn failed_post_does_not_invalidate() {
    let origin = TestOrigin::start().await;
    origin.route("/doc", Route::ok("v1"));
    let edge = TestEdge::start(&origin).await;
    edge.get("/doc").await;
    origin.route("/doc", Route::ok("nope").status(500));
    let posted = edge.post("/doc", "x").await;
    assert_eq!(posted.status(), 500);
    // An origin that does not answer at all: a 502 that says why it went forward.
    origin.route("/doc", Route::ok("x").misbehave(Misbehaviour::Garbage));
    let broken = edge.post("/doc", "x").await;
    assert_eq!(broken.status(), 502);
    let status = cache_status(&broken);
    assert!(
        status.contains("fwd=method") && status.contains("detail=origin-protocol"),
        "{status}"
    );
    // The GET entry is untouched because the POSTs failed.
    origin.route("/doc", Route::ok("v2"));
    let r = edge.get("/doc").await;
    assert!(cache_status(&r).contains("hit"));
    assert_eq!(r.text().await.unwrap(), "v1");
}

#[tokio::test]
async fn eviction_keeps_stored_bytes_under_the_memory_budget() {
    let origin = TestOrigin::start().await;
    let body = "z".repeat(64 * 1024);
    for i in 0..64 {
        origin.route(&format!("/o{i}"), Route::ok(body.clone()));
    }
    // 1 MiB budget, 64 × 64 KiB = 4 MiB offered.
    let edge = TestEdge::start_with(&origin, "memory = \"1MiB\"").await;
    for i in 0..64 {
        let r = edge.get(&format!("/o{i}")).await;
        assert_eq!(r.bytes().await.unwrap().len(), body.len());
        let memory = edge.running.state.cache.memory();
        assert!(memory.bytes() <= 1 << 20, "{} bytes held", memory.bytes());
    }
    assert!(edge.running.state.cache.memory().evictions() > 0);
    // The most recent object is still a hit.
    assert!(cache_status(&edge.get("/o63").await).contains("hit"));
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_leak_either_way() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/h",
        Route::ok("h")
            .header("connection", "x-origin-secret")
            .header("x-origin-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic"),
    );
    let edge = TestEdge::start(&origin).await;
    for _ in 0..2 {
        let r = edge
            .client
            .get(edge.url("/h"))
            .header("connection", "x-client-secret")
            .header("x-client-secret", "1")
            .header("proxy-authorization", "Basic Zm9vOmJhcg==")
            .header("te", "trailers")
            .send()
            .await
            .unwrap();
        assert!(!r.headers().contains_key("x-origin-secret"));
        assert!(!r.headers().contains_key("keep-alive"));
        assert!(!r.headers().contains_key("proxy-authenticate"));
    }
    let seen = &origin.seen()[0];
    assert_eq!(seen.header("x-client-secret"), None);
    assert_eq!(seen.header("proxy-authorization"), None);
    assert_eq!(seen.header("te"), None);
    assert!(seen.header("via").is_some_and(|v| v.contains("edge")));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn body_cut_off_mid_transfer_is_not_stored() {
    let origin = TestOrigin::start().await;
    let body = "0123456789".repeat(1000);
    for (path, m) in [
        ("/reset", Misbehaviour::ResetMidBody),
        ("/short", Misbehaviour::WrongLength),
        ("/chunks", Misbehaviour::TruncatedChunked),
    ] {
        origin.route(path, Route::ok(body.clone()).misbehave(m));
    }
    let edge = TestEdge::start(&origin).await;
    for path in ["/reset", "/short", "/chunks"] {
        let r = edge.get(path).await;
        assert_eq!(r.status(), 502, "{path}");
        assert!(
            cache_status(&r).contains("fwd-status=502"),
            "{}",
            cache_status(&r)
        );
        // Now the origin behaves: the next request gets the true, whole body.
        origin.route(path, Route::ok(body.clone()));
        let r = edge.get(path).await;
        assert_eq!(r.status(), 200);
        assert!(
            !cache_status(&r).contains("hit"),
            "{path}: nothing partial was stored"
        );
        assert_eq!(r.text().await.unwrap(), body);
    }
}

#[tokio::test]
async fn origin_errors_are_passed_through_uncached() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/boom",
        Route::ok("boom").status(503).without("cache-control"),
    );
    let edge = TestEdge::start(&origin).await;
    for _ in 0..2 {
        let r = edge.get("/boom").await;
        assert_eq!(r.status(), 503);
    }
    assert_eq!(origin.hits_on("/boom"), 2);
}

#[tokio::test]
async fn slow_origin_times_out_with_504() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/slow",
        Route::ok("late").misbehave(Misbehaviour::Slow(Duration::from_secs(5))),
    );
    let edge = TestEdge::start(&origin).await;
    let r = edge.get("/slow").await;
    assert_eq!(r.status(), 504);
    assert!(
        cache_status(&r).contains("detail=origin-timeout"),
        "{}",
        cache_status(&r)
    );
}

#[tokio::test]
async fn head_is_answered_from_the_stored_get() {
    let origin = TestOrigin::start().await;
    origin.route("/h.txt", Route::ok("twelve bytes"));
    let edge = TestEdge::start(&origin).await;
    let head = edge.client.head(edge.url("/h.txt")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "12");
    let get = edge.get("/h.txt").await;
    assert!(cache_status(&get).contains("hit"));
    assert_eq!(origin.seen()[0].method, "GET");
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn default_config_serves_the_sample_site_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("edge.toml")).unwrap();
    let text = text
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "origin = \"dir:assets\"",
            &format!("origin = \"dir:{}\"", root.join("assets").display()),
        );
    let edge = TestEdge::start_toml(&text, dir).await;
    let first = edge.get("/").await;
    assert_eq!(first.status(), 200);
    assert!(
        cache_status(&first).contains("stored"),
        "{}",
        cache_status(&first)
    );
    let second = edge.get("/").await;
    assert!(
        cache_status(&second).contains("hit"),
        "{}",
        cache_status(&second)
    );
    assert!(second.text().await.unwrap().contains("edge sample site"));
}

/// Regression: a request that missed just before the leader stored the object, and
/// joined just after the leader left the flight table, must not fetch again.
#[tokio::test]
async fn staggered_stampede_on_a_cold_url_makes_one_origin_request() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/wave.css",
        Route::ok("w".repeat(2_000)).misbehave(Misbehaviour::Slow(Duration::from_millis(40))),
    );
    let edge = TestEdge::start(&origin).await;
    let url = edge.url("/wave.css");
    let mut requests = Vec::new();
    for i in 0..600 {
        let client = edge.client.clone();
        let url = url.clone();
        requests.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(100 * (i % 800))).await;
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().len())
        }));
    }
    for r in futures_util::future::join_all(requests).await {
        assert_eq!(r.unwrap(), (200, 2_000));
    }
    assert_eq!(origin.hits(), 1);
}
