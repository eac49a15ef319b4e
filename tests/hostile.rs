//! Hostile clients over real sockets: oversized heads, long targets, large bodies,
//! slow-drip and idle connections, concurrent misses on large objects. Each gets a
//! clear status or a closed connection, and nothing poisons the cache.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Misbehaviour, Route, TestEdge, TestOrigin, cache_status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn edge_with_limits(origin: &TestOrigin, server: &str) -> TestEdge {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"cache\"\n[[site]]\nhosts = [\"*\"]\norigin = \"{}\"\n",
        origin.url()
    );
    TestEdge::start_toml(&toml, dir).await
}

/// Sends raw bytes and returns what the server answered before closing (bounded).
async fn raw(edge: &TestEdge, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_http10_client_gets_a_large_chunked_miss_whole_with_its_length() {
    // HTTP/1.0 has no chunked coding: a body of unknown length ends with the
    // connection, so a streamed one cut short would look whole. It is read whole first.
    let origin = TestOrigin::start().await;
    let body: Bytes = (0..3usize << 19).map(|i| (i % 241) as u8).collect();
    origin.route(
        "/big",
        Route::ok(body.clone()).misbehave(Misbehaviour::ChunkedPause(Duration::ZERO)),
    );
    let edge = TestEdge::start(&origin).await;
    let answer = raw(&edge, b"GET /big HTTP/1.0\r\nhost: x\r\n\r\n").await;
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.0 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert!(head.contains("; stored"), "{head}");
}

#[tokio::test]
async fn a_pass_through_cut_short_resets_an_http10_client_instead_of_ending_cleanly() {
    // HTTP/1.0 has no chunked coding: a body of unknown length ends with the
    // connection. When the origin cuts it short, a clean close would make the part
    // sent look whole, so edge resets the connection instead.
    let origin = TestOrigin::start().await;
    let body: Bytes = (0..64 * 1024usize).map(|i| (i % 239) as u8).collect();
    // No freshness and no validator: passed through as it arrives.
    origin.route(
        "/api",
        Route::ok(body)
            .without("cache-control")
            .misbehave(Misbehaviour::TruncatedChunked),
    );
    let edge = TestEdge::start(&origin).await;
    let fetch = |version: &'static str| {
        let addr = edge.running.addr;
        async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request = format!("GET /api HTTP/{version}\r\nhost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
                .await
                .expect("the connection ends");
            (read, out)
        }
    };
    let (read, _) = fetch("1.0").await;
    let error = read.expect_err("a reset, not a clean end");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    // HTTP/1.1 is sent chunked: the missing last chunk tells the client, and the
    // connection closes as usual, keeping what the kernel still had to send.
    let (read, out) = fetch("1.1").await;
    read.expect("a clean close");
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{answer:.200}"
    );
    assert!(!answer.ends_with("0\r\n\r\n"), "no last chunk");
    // The connections that follow are served as usual.
    origin.route("/ok", Route::ok("fine"));
    assert_eq!(edge.get("/ok").await.text().await.unwrap(), "fine");
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(&origin, "max_header_bytes = \"8KiB\"").await;
    let big = "a".repeat(16 * 1024);
    let answer = raw(
        &edge,
        format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn too_many_header_fields_get_431() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(&origin, "max_headers = 10").await;
    let mut request = String::from("GET / HTTP/1.1\r\nhost: x\r\n");
    for i in 0..20 {
        request.push_str(&format!("x-h{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let answer = raw(&edge, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn overlong_uri_gets_414() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(&origin, "max_uri_length = 100").await;
    let r = edge.get(&format!("/{}", "p".repeat(200))).await;
    assert_eq!(r.status(), 414);
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn oversized_pass_through_body_gets_413() {
    let origin = TestOrigin::start().await;
    origin.route("/upload", Route::ok("ok"));
    let edge = edge_with_limits(&origin, "max_request_body = \"1KiB\"").await;
    let r = edge.post("/upload", vec![b'x'; 4096]).await;
    assert_eq!(r.status(), 413);
    assert_eq!(origin.hits(), 0);
    let small = edge.post("/upload", "tiny").await;
    assert_eq!(small.status(), 200);
}

#[tokio::test]
async fn two_host_lines_or_an_invalid_host_get_400_and_reach_nothing() {
    let origin = TestOrigin::start().await;
    origin.route("/a", Route::ok("a"));
    let edge = edge_with_limits(&origin, "").await;
    for head in [
        "Host: a.test\r\nHost: b.test",
        "Host: a.test\r\nHost: a.test",
        "Host: a test",
        "Host: a.test/x",
        "Host: user@a.test",
        "Host: a.test:http",
    ] {
        let answer = raw(
            &edge,
            format!("GET /a HTTP/1.1\r\n{head}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
    }
    // The absolute form names the host; two Host lines are refused there too.
    let answer = raw(
        &edge,
        b"GET http://a.test/a HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(origin.hits(), 0);
    let answer = raw(
        &edge,
        b"GET /a HTTP/1.1\r\nHost: A.test:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn an_http10_request_without_host_is_served_by_the_catch_all_site_only() {
    let origin = TestOrigin::start().await;
    origin.route("/a", Route::ok("a"));
    let edge = edge_with_limits(&origin, "").await;
    // A load balancer's health check: HTTP/1.0 names no host (RFC 9112 §3.2 asks it
    // of HTTP/1.1 only).
    let answer = raw(&edge, b"GET /a HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\na"), "{answer}");
    assert_eq!(origin.hits(), 1);
    let again = raw(&edge, b"GET /a HTTP/1.0\r\n\r\n").await;
    assert!(
        again.contains("edge; hit"),
        "stored under the empty host: {again}"
    );
    assert_eq!(origin.hits(), 1);

    // Without a `*` site there is no site for it: 421, as for any unknown host.
    let dir = tempfile::tempdir().unwrap();
    let named = TestEdge::start_toml(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"cache\"\n[[site]]\nhosts = [\"a.test\", \"*.a.test\"]\norigin = \"{}\"\n",
            origin.url()
        ),
        dir,
    )
    .await;
    let answer = raw(&named, b"GET /a HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 421"), "{answer}");
    let answer = raw(&named, b"GET /a HTTP/1.0\r\nHost: a.test\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert_eq!(origin.hits(), 2);
}

/// Starts a GET of `path`, whose origin pauses mid-body, and returns once the origin
/// is into its pause: the request's `Cache-Status` and body when it ends.
async fn get_in_pause(
    edge: &TestEdge,
    origin: &TestOrigin,
    path: &str,
) -> tokio::task::JoinHandle<(String, Bytes)> {
    let get = tokio::spawn({
        let (client, url) = (edge.client.clone(), edge.url(path));
        async move {
            let r = client.get(url).send().await.unwrap();
            (cache_status(&r), r.bytes().await.unwrap())
        }
    });
    while origin.hits_on(path) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    get
}

#[tokio::test]
async fn misses_past_fill_memory_stream_through_uncached_and_complete() {
    let origin = TestOrigin::start().await;
    let body = |seed: u8| -> Bytes {
        (0..3usize << 19)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    let (a, b) = (body(1), body(2));
    origin.route(
        "/a",
        Route::ok(a.clone()).misbehave(Misbehaviour::PauseMidBody(Duration::from_millis(1500))),
    );
    origin.route("/b", Route::ok(b.clone()));
    // Each body is 1.5 MiB: one fill alone may hold it, two may not.
    let edge = TestEdge::start_with(&origin, "fill_memory = \"1MiB\"").await;
    // /a's fill has its head (and has taken its declared length) once the origin is
    // into its pause.
    let slow = get_in_pause(&edge, &origin, "/a").await;

    let r = edge.get("/b").await;
    assert_eq!(r.status(), 200);
    let cs = cache_status(&r);
    assert!(
        cs.contains("detail=fill-memory") && !cs.contains("stored"),
        "{cs}"
    );
    assert_eq!(r.bytes().await.unwrap(), b, "streamed through whole");

    let (cs, got) = slow.await.unwrap();
    // Large enough to stream to its client while the fill reads it.
    assert!(cs.contains("detail=streaming"), "{cs}");
    assert_eq!(got, a);
    assert!(cache_status(&edge.get("/a").await).contains("hit"));
    // Alone now, /b is stored like any other miss (streamed to its client meanwhile).
    let r = edge.get("/b").await;
    assert!(
        cache_status(&r).contains("detail=streaming"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(r.bytes().await.unwrap(), b);
    assert!(cache_status(&edge.get("/b").await).contains("hit"));
    assert_eq!((origin.hits_on("/a"), origin.hits_on("/b")), (1, 2));
}

#[tokio::test]
async fn a_chunked_miss_stops_buffering_at_fill_memory() {
    let origin = TestOrigin::start().await;
    let body: Bytes = (0..3usize << 19).map(|i| (i % 251) as u8).collect();
    let slow = Misbehaviour::ChunkedPause(Duration::from_millis(1500));
    origin.route("/a", Route::ok(body.clone()).misbehave(slow.clone()));
    origin.route("/c", Route::ok(body.clone()).misbehave(slow));
    origin.route(
        "/b",
        Route::ok(body.clone()).misbehave(Misbehaviour::ChunkedPause(Duration::ZERO)),
    );
    let edge = TestEdge::start_with(&origin, "fill_memory = \"1MiB\"").await;
    let first = get_in_pause(&edge, &origin, "/a").await;
    // /a's fill holds its first 768 KiB: /b may buffer up to the rest of the budget,
    // then streams what it read and the remainder. (Conditional, so that /b is read
    // whole rather than streamed to its client after its first 256 KiB.)
    let r = edge.get_with("/b", &[("if-none-match", "\"other\"")]).await;
    let cs = cache_status(&r);
    assert!(
        cs.contains("detail=fill-memory") && !cs.contains("stored"),
        "{cs}"
    );
    assert_eq!(r.bytes().await.unwrap(), body);
    let (cs, got) = first.await.unwrap();
    assert!(cs.contains("detail=streaming"), "{cs}");
    assert_eq!(got, body);
    assert!(cache_status(&edge.get("/a").await).contains("hit"));

    // Streamed to its client, /b stops buffering at the budget all the same, and its
    // client still gets every byte.
    let first = get_in_pause(&edge, &origin, "/c").await;
    let r = edge.get("/b").await;
    let cs = cache_status(&r);
    assert!(!cs.contains("stored") && !cs.contains("hit"), "{cs}");
    assert_eq!(r.bytes().await.unwrap(), body);
    first.await.unwrap();
    let r = edge.get("/b").await;
    assert!(!cache_status(&r).contains("hit"), "{}", cache_status(&r));
    assert_eq!(origin.hits_on("/b"), 3, "neither earlier fill was stored");
}

#[tokio::test]
async fn a_miss_no_tier_can_hold_streams_through_unbuffered() {
    let origin = TestOrigin::start().await;
    let body: Bytes = (0..3usize << 19).map(|i| (i % 253) as u8).collect();
    origin.route("/big", Route::ok(body.clone()));
    origin.route("/small", Route::ok("small"));
    // No disk tier, and 1.5 MiB is more than the memory tier takes.
    let edge = TestEdge::start_with(&origin, "disk = \"0B\"\nmemory_object_max = \"1MiB\"").await;
    for _ in 0..2 {
        let r = edge.get("/big").await;
        let cs = cache_status(&r);
        assert!(
            cs.contains("detail=too-large") && !cs.contains("stored"),
            "{cs}"
        );
        assert_eq!(r.bytes().await.unwrap(), body);
    }
    assert_eq!(origin.hits_on("/big"), 2, "never stored, so never a hit");
    edge.get("/small").await;
    assert!(cache_status(&edge.get("/small").await).contains("hit"));
}

/// Reads until the peer closes (or `limit` passes): what the client was sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

#[tokio::test]
async fn slow_drip_request_head_gets_408_and_is_cut_off() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(&origin, "header_read_timeout = \"1s\"").await;
    let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let (mut reader, mut writer) = stream.split();
    let drip = async {
        // One header line every 100 ms: never a whole head, always some progress.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b"x-drip: 1\r\n").await.is_err() {
                break;
            }
        }
    };
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let answer = tokio::select! {
        answer = read => answer,
        _ = drip => panic!("the connection must be closed while the client drips"),
    };
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer:?}"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer:?}");
    assert!(
        answer.ends_with("request head not sent in time\n"),
        "{answer:?}"
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn connection_that_never_sends_is_closed_without_an_answer() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(
        &origin,
        "header_read_timeout = \"1s\"\nidle_timeout = \"30s\"",
    )
    .await;
    let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
    let (sent, closed) = read_until_closed(&mut stream, Duration::from_secs(4)).await;
    assert!(
        closed,
        "a silent connection is closed at header_read_timeout"
    );
    assert_eq!(sent, "", "nothing is sent to a client that asked nothing");
}

#[tokio::test]
async fn keep_alive_between_requests_is_bounded_by_idle_not_head_timeout() {
    let origin = TestOrigin::start().await;
    origin.route("/k", Route::ok("kept"));
    let edge = edge_with_limits(
        &origin,
        "header_read_timeout = \"1s\"\nidle_timeout = \"30s\"",
    )
    .await;
    let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
    let request = b"GET /k HTTP/1.1\r\nhost: x\r\n\r\n";
    for round in 0..2 {
        stream.write_all(request).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).ends_with("kept") {
            let n = tokio::time::timeout(Duration::from_secs(4), stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "round {round}: closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "round {round}: {:?}",
            String::from_utf8_lossy(&got)
        );
        // Longer than header_read_timeout, well inside idle_timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

#[tokio::test]
async fn a_body_waiting_on_a_slow_origin_is_not_cut_by_the_idle_timeout() {
    // The origin pauses mid-body for longer than idle_timeout: that is the origin's
    // silence (bounded by its own body_timeout), not the client idling.
    let origin = TestOrigin::start().await;
    let body: Bytes = (0..1usize << 20).map(|i| (i % 233) as u8).collect();
    let pause = Misbehaviour::ChunkedPause(Duration::from_millis(2500));
    // Stored: streams to its client once 512 KiB have come (a streaming fill).
    origin.route("/fill", Route::ok(body.clone()).misbehave(pause.clone()));
    // No freshness: passed through as it arrives.
    origin.route(
        "/pass",
        Route::ok(body.clone())
            .without("cache-control")
            .misbehave(pause),
    );
    let edge = edge_with_limits(
        &origin,
        "idle_timeout = \"1s\"\nheader_read_timeout = \"30s\"",
    )
    .await;
    for (path, detail) in [("/fill", "streaming"), ("/pass", "no-freshness")] {
        let r = edge.get(path).await;
        assert!(cache_status(&r).contains(detail), "{}", cache_status(&r));
        let got = r.bytes().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(got == body, "{path}: {} of {} bytes", got.len(), body.len());
    }
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(
        &origin,
        "idle_timeout = \"1s\"\nheader_read_timeout = \"30s\"",
    )
    .await;
    let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(4), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection must be closed: {read:?}"
    );
}

#[tokio::test]
async fn a_slow_client_does_not_block_others() {
    let origin = TestOrigin::start().await;
    origin.route("/fast", Route::ok("fast"));
    let edge = edge_with_limits(&origin, "header_read_timeout = \"30s\"").await;
    // Several clients that send half a request and stall.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(edge.running.addr).await.unwrap();
        s.write_all(b"GET /fast HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    let r = tokio::time::timeout(Duration::from_secs(2), edge.get("/fast"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "fast");
}

#[tokio::test]
async fn get_with_a_body_is_never_keyed_or_forwarded_on_it() {
    let origin = TestOrigin::start().await;
    origin.route("/k", Route::ok("true bytes"));
    let edge = edge_with_limits(&origin, "").await;
    let r = edge
        .client
        .get(edge.url("/k"))
        .body("poison")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "true bytes");
    assert!(
        origin.seen()[0].body.is_empty(),
        "the GET body never reaches the origin"
    );
    let clean = edge.get("/k").await;
    assert!(cache_status(&clean).contains("hit"));
    assert_eq!(clean.text().await.unwrap(), "true bytes");
}

#[tokio::test]
async fn url_rewriting_headers_never_reach_the_origin() {
    let origin = TestOrigin::start().await;
    origin.route("/page", Route::ok("page"));
    let edge = edge_with_limits(&origin, "").await;
    edge.get_with(
        "/page",
        &[
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-forwarded-host", "evil.example"),
            ("x-http-method-override", "DELETE"),
            ("forwarded", "host=evil.example;proto=http"),
            ("x-forwarded-scheme", "http"),
            ("x-forwarded-port", "8443"),
            ("x-forwarded-prefix", "/evil"),
            ("x-host", "evil.example"),
            ("x-forwarded-proto", "gopher"),
        ],
    )
    .await;
    let seen = &origin.seen()[0];
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-host",
        "x-http-method-override",
        "forwarded",
        "x-forwarded-scheme",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-host",
    ] {
        assert_eq!(seen.header(name), None, "{name}");
    }
    // The scheme the origin is told is edge's own, not the client's say-so.
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

/// Sends `head` and `body_start` of an upload, then waits up to `limit` for the answer
/// (the client sends nothing more).
async fn upload_then_wait(
    edge: &TestEdge,
    head: &str,
    body_start: &[u8],
    limit: Duration,
) -> String {
    let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body_start).await.unwrap();
    read_until_closed(&mut stream, limit).await.0
}

#[tokio::test]
async fn a_stalled_upload_is_the_clients_408_and_never_opens_the_origins_breaker() {
    let origin = TestOrigin::start().await;
    origin.route("/upload", Route::ok("stored"));
    origin.route(
        "/page",
        Route::ok("page").header("cache-control", "max-age=60"),
    );
    // The client's idle time is longer than the origin's first-byte time, which must
    // not run out while the origin is waiting for the client's bytes.
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nidle_timeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [cache]\ndir = \"cache\"\n[origin]\nfirst_byte_timeout = \"1s\"\nbreaker_failures = 2\n\
         [[site]]\nhosts = [\"*\"]\norigin = \"{}\"\n",
        origin.url()
    );
    let edge = TestEdge::start_toml(&toml, dir).await;
    let head = "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n";
    let stalled = (0..3).map(|_| upload_then_wait(&edge, head, b"abc", Duration::from_secs(10)));
    for answer in futures_util::future::join_all(stalled).await {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("detail=body-timeout"), "{answer}");
    }
    // Three stalled clients, breaker_failures = 2: the origin is still asked.
    let page = edge.get("/page").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), "page");
    // A slow but steady upload outlasts the origin's first-byte time, and the origin
    // answers it once it has it all.
    let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in [&b"abcd"[..], b"efg", b"hij"] {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let uploads: Vec<_> = origin
        .seen()
        .into_iter()
        .filter(|s| s.target == "/upload")
        .collect();
    assert_eq!(
        uploads.len(),
        1,
        "only the whole upload reached the origin's handler"
    );
    assert_eq!(uploads[0].body, b"abcdefghij");
}

#[tokio::test]
async fn a_malformed_chunked_upload_is_the_clients_400() {
    let origin = TestOrigin::start().await;
    origin.route("/upload", Route::ok("stored"));
    let edge = edge_with_limits(&origin, "").await;
    for body in [
        &b"zz\r\nhi\r\n0\r\n\r\n"[..],
        b"5\r\nhelloXX0\r\n\r\n",
        b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut request =
            b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        let answer = raw(&edge, &request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{body:?}: {answer}");
        assert!(answer.contains("detail=bad-request"), "{body:?}: {answer}");
    }
    assert!(
        origin.seen().iter().all(|s| s.target != "/upload"),
        "no broken upload reached the origin's handler"
    );
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_still_gets_the_answer() {
    let origin = TestOrigin::start().await;
    origin.route("/upload", Route::ok("stored"));
    origin.route(
        "/slow",
        Route::ok("slow page")
            .header("cache-control", "max-age=60")
            .misbehave(Misbehaviour::Slow(Duration::from_millis(300))),
    );
    origin.route(
        "/slow2",
        Route::ok("slow page")
            .header("cache-control", "max-age=60")
            .misbehave(Misbehaviour::Slow(Duration::from_millis(300))),
    );
    let edge = edge_with_limits(&origin, "").await;
    for request in [
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
        // A range (the connection handed to hyper), and a miss (lent to hyper by the
        // direct path).
        "GET /slow HTTP/1.1\r\nHost: a\r\nRange: bytes=0-3\r\n\r\n",
        "GET /slow2 HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 20"), "{request:?}: {answer:?}");
        assert!(closed, "{request:?}");
    }
}

#[tokio::test]
async fn connect_and_trace_get_405_and_options_star_is_answered_here() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(&origin, "").await;
    for request in [
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "TRACE / HTTP/1.1\r\nHost: a\r\nCookie: session=secret\r\nConnection: close\r\n\r\n",
    ] {
        let answer = raw(&edge, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{request:?}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("\r\nallow: get, head"),
            "{answer}"
        );
        assert!(!answer.contains("secret"), "{answer}");
    }
    let answer = raw(
        &edge,
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nallow: "),
        "{answer}"
    );
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
}

#[tokio::test]
async fn transfer_codings_other_than_one_chunked_are_refused_and_close() {
    let origin = TestOrigin::start().await;
    origin.route("/upload", Route::ok("stored"));
    let edge = edge_with_limits(&origin, "").await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    for (codings, status) in [
        ("Transfer-Encoding: identity, chunked\r\n", "501"),
        ("Transfer-Encoding: gzip, chunked\r\n", "501"),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "400",
        ),
        ("Transfer-Encoding: chunked, chunked\r\n", "400"),
    ] {
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: a\r\n{codings}\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"
        );
        let answer = raw(&edge, request.as_bytes()).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{codings:?}: {answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    }
    // One chunked coding is read as ever.
    let request = "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\
                   Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let answer = raw(&edge, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].body, b"hello");
}

#[tokio::test]
async fn an_absolute_target_with_userinfo_gets_400() {
    let origin = TestOrigin::start().await;
    origin.route("/page", Route::ok("page"));
    let edge = edge_with_limits(&origin, "").await;
    let answer = raw(
        &edge,
        b"GET http://evil.example@a/page HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(origin.seen().is_empty());
}

#[tokio::test]
async fn dot_segments_and_encoding_tricks_name_one_entry_and_one_origin_path() {
    let origin = TestOrigin::start().await;
    origin.route("/static/app.js", Route::ok("app"));
    let edge = edge_with_limits(&origin, "").await;
    edge.get("/static/app.js").await;
    for tricky in [
        "/static/./app.js",
        "/x/../static/app.js",
        "/static/%61pp.js",
        "/static/%2e/app.js",
    ] {
        let r = edge.get(tricky).await;
        assert!(
            cache_status(&r).contains("hit"),
            "{tricky}: {}",
            cache_status(&r)
        );
        assert_eq!(r.text().await.unwrap(), "app");
    }
    assert_eq!(origin.hits(), 1);
    assert!(origin.seen().iter().all(|s| s.target == "/static/app.js"));
}

#[tokio::test]
async fn query_policies_shape_the_key_and_the_forwarded_target() {
    let origin = TestOrigin::start().await;
    origin.route("/q?a=1&b=2", Route::ok("sorted"));
    origin.route("/d", Route::ok("dropped"));
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[site]]\nname = \"s\"\nhosts = [\"sort.test\"]\norigin = \"{0}\"\nquery = \"sort\"\n[[site]]\nname = \"d\"\nhosts = [\"drop.test\"]\norigin = \"{0}\"\nquery = \"drop\"\n",
        origin.url()
    );
    let edge = TestEdge::start_toml(&toml, dir).await;
    let get = |host: &'static str, path: &'static str| {
        edge.client.get(edge.url(path)).header("host", host).send()
    };
    assert_eq!(
        get("sort.test", "/q?b=2&a=1")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "sorted"
    );
    assert!(cache_status(&get("sort.test", "/q?a=1&b=2").await.unwrap()).contains("hit"));
    assert_eq!(
        get("drop.test", "/d?utm=1")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "dropped"
    );
    assert!(cache_status(&get("drop.test", "/d?utm=2").await.unwrap()).contains("hit"));
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn responses_setting_cookies_are_not_stored_by_default() {
    let origin = TestOrigin::start().await;
    origin.route("/c", Route::ok("c").header("set-cookie", "session=abc"));
    let edge = edge_with_limits(&origin, "").await;
    for _ in 0..2 {
        let r = edge.get("/c").await;
        assert_eq!(r.headers()["set-cookie"], "session=abc");
        assert!(cache_status(&r).contains("detail=set-cookie"));
    }
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn set_cookie_strip_stores_without_the_cookie() {
    let origin = TestOrigin::start().await;
    origin.route("/c", Route::ok("c").header("set-cookie", "session=abc"));
    let edge = TestEdge::start_site(&origin, "set_cookie = \"strip\"").await;
    edge.get("/c").await;
    let r = edge.get("/c").await;
    assert!(cache_status(&r).contains("hit"));
    assert!(!r.headers().contains_key("set-cookie"));
}

#[tokio::test]
async fn html_answered_for_a_static_extension_is_not_stored() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/account/settings.css",
        Route::ok("<html>Hello, Alice</html>").header("content-type", "text/html; charset=utf-8"),
    );
    let edge = edge_with_limits(&origin, "").await;
    edge.get("/account/settings.css").await;
    let r = edge.get("/account/settings.css").await;
    assert!(
        cache_status(&r).contains("detail=content-type-mismatch"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(origin.hits(), 2);
}
