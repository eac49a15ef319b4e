//! Hostile clients over real sockets: oversized heads, long targets, large bodies,
//! slow-drip and idle connections. Each gets a clear status or a closed connection,
//! and nothing poisons the cache.

mod common;

use std::time::Duration;

use common::{Route, TestEdge, TestOrigin, cache_status};
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
async fn oversized_request_head_gets_431() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(&origin, "max_header_bytes = \"8KiB\"").await;
    let big = "a".repeat(16 * 1024);
    let answer = raw(&edge, format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes()).await;
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
    let r = edge
        .client
        .post(edge.url("/upload"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(origin.hits(), 0);
    let small = edge.client.post(edge.url("/upload")).body("tiny").send().await.unwrap();
    assert_eq!(small.status(), 200);
}

#[tokio::test]
async fn slow_drip_request_head_is_cut_off() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(&origin, "header_read_timeout = \"1s\"").await;
    let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream.write_all(b"x-drip: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the connection must be closed");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let origin = TestOrigin::start().await;
    let edge = edge_with_limits(&origin, "idle_timeout = \"1s\"\nheader_read_timeout = \"30s\"").await;
    let mut stream = TcpStream::connect(edge.running.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(4), stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "idle connection must be closed: {read:?}");
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
        s.write_all(b"GET /fast HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        stalled.push(s);
    }
    let r = tokio::time::timeout(Duration::from_secs(2), edge.get("/fast")).await.unwrap();
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
    assert!(origin.seen()[0].body.is_empty(), "the GET body never reaches the origin");
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
        ],
    )
    .await;
    let seen = &origin.seen()[0];
    for name in ["x-original-url", "x-rewrite-url", "x-forwarded-host", "x-http-method-override"] {
        assert_eq!(seen.header(name), None, "{name}");
    }
}
