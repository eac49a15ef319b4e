//! The listener's direct path (HTTP/1.1 memory hits answered without hyper; here plain), over
//! real sockets: the same answer as hyper gives, byte for byte but for field order;
//! pipelined requests answered in order across the hand-over to hyper; heads split
//! across reads; and connections closed by a graceful shutdown. `differential` asks
//! generated requests both ways and compares the answers.

mod common;
#[path = "direct/differential.rs"]
mod differential;

use std::time::Duration;

use common::{Route, TestEdge, TestOrigin, blob_of, cache_status, incompressible};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

/// One response read off a connection: status line, header lines (lower-cased names,
/// sorted) and body, and what followed it; equal to another whatever the order of
/// their fields.
#[derive(Debug)]
struct Answer {
    status: String,
    fields: Vec<String>,
    /// The field names in the order they were sent (the two paths order them apart).
    names: Vec<String>,
    body: Vec<u8>,
    /// The bytes sent after the answer until the connection closed, once it was the
    /// last ([`the_rest`]): none, unless more was sent than its head framed.
    after: Vec<u8>,
}

impl PartialEq for Answer {
    fn eq(&self, other: &Self) -> bool {
        let this = (&self.status, &self.fields, &self.body, &self.after);
        this == (&other.status, &other.fields, &other.body, &other.after)
    }
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.fields
            .iter()
            .find_map(|f| f.strip_prefix(prefix.as_str()))
    }
}

/// Reads one response with a `Content-Length` (or none, for HEAD and 304).
async fn read_answer(reader: &mut BufReader<OwnedReadHalf>, head_request: bool) -> Answer {
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    let mut fields = Vec::new();
    let mut names = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end_matches("\r\n");
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(": ").expect("name: value");
        fields.push(format!("{}: {value}", name.to_ascii_lowercase()));
        names.push(name.to_ascii_lowercase());
    }
    fields.sort();
    let mut answer = Answer {
        status: status.trim_end().to_owned(),
        fields,
        names,
        body: Vec::new(),
        after: Vec::new(),
    };
    let len: usize = match (head_request, answer.field("content-length")) {
        (false, Some(len)) if !answer.status.contains(" 304 ") => len.parse().unwrap(),
        _ => 0,
    };
    answer.body = vec![0; len];
    reader.read_exact(&mut answer.body).await.unwrap();
    answer
}

/// A connection to `edge`, split so that requests can be written while answers are
/// read.
async fn connect(edge: &TestEdge) -> (BufReader<OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf) {
    let stream = TcpStream::connect(edge.running.addr).await.unwrap();
    let (read, write) = stream.into_split();
    (BufReader::new(read), write)
}

fn get(path: &str, fields: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{fields}\r\n")
}

/// The answer to `request`, sent alone on a fresh connection.
async fn ask(edge: &TestEdge, request: &str, head: bool) -> Answer {
    ask_after(edge, "", request, head).await
}

/// The answer to `request`, sent on a fresh connection right behind `before` (a GET,
/// if not empty), in one write.
async fn ask_after(edge: &TestEdge, before: &str, request: &str, head: bool) -> Answer {
    let (mut reader, mut writer) = connect(edge).await;
    writer
        .write_all([before, request].concat().as_bytes())
        .await
        .unwrap();
    if !before.is_empty() {
        read_answer(&mut reader, false).await;
    }
    let mut answer = read_answer(&mut reader, head).await;
    answer.after = the_rest(reader, writer).await;
    answer
}

/// What the server sends after the answers read, until it closes the connection once
/// the client has closed its side (or resets it: what came before the reset).
async fn the_rest(
    mut reader: BufReader<OwnedReadHalf>,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
) -> Vec<u8> {
    // The server may have closed first (HTTP/1.0, an error): then this may fail.
    let _ = writer.shutdown().await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut rest));
    assert!(
        read.await.is_ok(),
        "not closed after the client closed its side"
    );
    rest
}

/// `request` answered on a fresh connection (the direct path, for a hit) and on one
/// that a first request handed to hyper (`If-Match: *` is true of any stored
/// response, and the direct path leaves preconditions other than `If-None-Match` to
/// hyper), each with what followed it ([`Answer::after`]).
///
/// Asked again, up to twice, when the clock moved between the two: `Age` (and the
/// `ttl` in `Cache-Status`) count whole seconds since the entry was stored, and
/// `Date` whole seconds of the wall clock, so two answers a millisecond apart can
/// straddle either boundary (and did, in CI).
async fn both_ways(edge: &TestEdge, request: &str, head: bool) -> (Answer, Answer) {
    both_ways_after(edge, "", request, head).await
}

/// [`both_ways`], with the fresh connection's `request` sent right behind `before` (a
/// GET, if not empty: a hit, so that the direct path reads `request` from what is left
/// of its first read).
async fn both_ways_after(
    edge: &TestEdge,
    before: &str,
    request: &str,
    head: bool,
) -> (Answer, Answer) {
    let mut tries = 0;
    loop {
        let direct = ask_after(edge, before, request, head).await;

        let (mut reader, mut writer) = connect(edge).await;
        let to_hyper = get("/warm", "If-Match: *\r\n");
        writer.write_all(to_hyper.as_bytes()).await.unwrap();
        read_answer(&mut reader, false).await;
        writer.write_all(request.as_bytes()).await.unwrap();
        let mut by_hyper = read_answer(&mut reader, head).await;
        by_hyper.after = the_rest(reader, writer).await;

        tries += 1;
        let ticked = ["age", "date"]
            .iter()
            .any(|name| direct.field(name) != by_hyper.field(name));
        if !ticked || tries == 3 {
            return (direct, by_hyper);
        }
    }
}

async fn edge_with_assets() -> (TestOrigin, TestEdge) {
    let origin = TestOrigin::start().await;
    let css = "body { color: red; }\n".repeat(200);
    origin.route(
        "/site.css",
        Route::ok(css)
            .header("content-type", "text/css")
            .header("cache-control", "max-age=600")
            .header("etag", "\"css-1\""),
    );
    origin.route(
        "/warm",
        Route::ok("warm").header("cache-control", "max-age=600"),
    );
    origin.route(
        "/app.0123abcd.js",
        Route::ok("let x = 1;\n".repeat(300))
            .header("content-type", "text/javascript")
            .header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin).await;
    for path in ["/site.css", "/warm", "/app.0123abcd.js"] {
        edge.get(path).await.bytes().await.unwrap();
    }
    // Wait for the compressed variants, so that both ways see the same entry.
    for path in ["/site.css", "/app.0123abcd.js"] {
        for _ in 0..200 {
            let r = edge.get_with(path, &[("accept-encoding", "br")]).await;
            if r.headers().get("content-encoding").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (origin, edge)
}

#[tokio::test]
async fn a_hit_is_answered_the_same_by_the_direct_path_and_by_hyper() {
    let (_origin, edge) = edge_with_assets().await;
    let cases = [
        (get("/site.css", ""), false),
        (get("/site.css", "Accept-Encoding: gzip, br\r\n"), false),
        (
            get("/site.css", "Accept-Encoding: zstd;q=1, gzip;q=0.5\r\n"),
            false,
        ),
        (get("/site.css", "Accept-Encoding: identity\r\n"), false),
        (get("/site.css", "If-None-Match: \"css-1\"\r\n"), false),
        (
            get("/site.css", "If-None-Match: W/\"nope\", \"css-1\"\r\n"),
            false,
        ),
        (get("/site.css", "If-None-Match: *\r\n"), false),
        (get("/site.css", "If-None-Match: \"other\"\r\n"), false),
        // A browser's revalidation: If-Modified-Since is ignored beside If-None-Match.
        (
            get(
                "/site.css",
                "If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT\r\nIf-None-Match: \"other\"\r\n",
            ),
            false,
        ),
        (
            get(
                "/site.css",
                "If-None-Match: \"css-1\"\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
            ),
            false,
        ),
        (
            get("/site.css", "Connection: keep-alive\r\nUser-Agent: t\r\n"),
            false,
        ),
        // A browser's reload, to a site that ignores the client's Cache-Control.
        (get("/site.css", "Cache-Control: max-age=0\r\n"), false),
        (
            get(
                "/site.css",
                "Pragma: no-cache\r\nCache-Control: no-cache\r\n",
            ),
            false,
        ),
        (
            "HEAD /site.css HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: br\r\n\r\n".into(),
            true,
        ),
        // HTTP/1.0 that keeps its connection (ApacheBench -k).
        (
            "GET /site.css HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: Keep-Alive\r\n\r\n".into(),
            false,
        ),
        (
            "GET /site.css HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\
             Accept-Encoding: gzip\r\nIf-None-Match: \"css-1\"\r\n\r\n"
                .into(),
            false,
        ),
        (
            "HEAD /site.css HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n".into(),
            true,
        ),
        // A fingerprinted path: the immutable rule's Cache-Control replaces the origin's.
        (get("/app.0123abcd.js", "Accept-Encoding: br\r\n"), false),
        (get("/app.0123abcd.js", ""), false),
    ];
    for (request, head) in cases {
        // Age and the ttl move with the clock: a pair straddling a second is retried.
        let mut tries = 0;
        let (direct, by_hyper) = loop {
            let (direct, by_hyper) = both_ways(&edge, &request, head).await;
            tries += 1;
            if direct == by_hyper || tries == 5 {
                break (direct, by_hyper);
            }
        };
        assert_eq!(direct, by_hyper, "{request:?}");
        assert!(
            direct
                .field("cache-status")
                .is_some_and(|s| s.contains("hit")),
            "{request:?}: {direct:?}"
        );
    }
    let immutable = both_ways(&edge, &get("/app.0123abcd.js", ""), false)
        .await
        .0;
    assert_eq!(
        immutable.field("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let not_modified = both_ways(
        &edge,
        &get("/site.css", "If-None-Match: \"css-1\"\r\n"),
        false,
    )
    .await
    .0;
    assert!(
        not_modified.status.starts_with("HTTP/1.1 304"),
        "{not_modified:?}"
    );
    assert_eq!(not_modified.field("content-length"), None);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_the_hand_over() {
    let (origin, edge) = edge_with_assets().await;
    origin.route(
        "/fresh",
        Route::ok("fresh").header("cache-control", "max-age=60"),
    );
    let (mut reader, mut writer) = connect(&edge).await;
    // Two hits, a miss (the direct path hands it and what follows to hyper), a hit.
    let all = [
        get("/warm", ""),
        get("/site.css", ""),
        get("/fresh", ""),
        get("/warm", ""),
    ]
    .concat();
    writer.write_all(all.as_bytes()).await.unwrap();
    let answers = [
        read_answer(&mut reader, false).await,
        read_answer(&mut reader, false).await,
        read_answer(&mut reader, false).await,
        read_answer(&mut reader, false).await,
    ];
    let bodies: Vec<&[u8]> = answers.iter().map(|a| &a.body[..]).collect();
    assert_eq!(bodies[0], b"warm");
    assert_eq!(bodies[1], "body { color: red; }\n".repeat(200).as_bytes());
    assert_eq!(bodies[2], b"fresh");
    assert_eq!(bodies[3], b"warm");
    let statuses: Vec<&str> = answers
        .iter()
        .map(|a| a.field("cache-status").unwrap())
        .collect();
    assert!(statuses[2].contains("fwd=uri-miss"), "{statuses:?}");
    for s in [statuses[0], statuses[1], statuses[3]] {
        assert!(s.contains("hit"), "{statuses:?}");
    }
}

/// The order of a hit's fields on a connection whose first request is `first` (empty:
/// none), with what `first` was answered.
async fn hit_after(edge: &TestEdge, first: &str) -> (Option<Answer>, Vec<String>) {
    let (mut reader, mut writer) = connect(edge).await;
    let mut before = None;
    if !first.is_empty() {
        writer.write_all(first.as_bytes()).await.unwrap();
        before = Some(read_answer(&mut reader, first.starts_with("HEAD")).await);
    }
    writer.write_all(get("/warm", "").as_bytes()).await.unwrap();
    let hit = read_answer(&mut reader, false).await;
    assert_eq!(hit.body, b"warm");
    assert!(hit.field("cache-status").unwrap().contains("hit"));
    (before, hit.names)
}

#[tokio::test]
async fn http10_keep_alive_hits_are_direct_and_keep_the_connection() {
    let (_origin, edge) = edge_with_assets().await;
    let (_, direct) = hit_after(&edge, "").await;
    let old = "GET /warm HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n";
    let (mut reader, mut writer) = connect(&edge).await;
    writer.write_all(old.repeat(2).as_bytes()).await.unwrap();
    for _ in 0..2 {
        let answer = read_answer(&mut reader, false).await;
        assert_eq!(answer.status, "HTTP/1.0 200 OK");
        assert_eq!(answer.field("connection"), Some("keep-alive"));
        assert_eq!(answer.body, b"warm");
        let names: Vec<String> = answer
            .names
            .into_iter()
            .filter(|n| n != "connection")
            .collect();
        assert_eq!(names, direct, "answered on the direct path");
    }
    // Without keep-alive, HTTP/1.0 is hyper's, which closes after the answer.
    let (mut reader, mut writer) = connect(&edge).await;
    let closing = "GET /warm HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    writer.write_all(closing.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut reader, false).await.body, b"warm");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "closed after the answer");
}

#[tokio::test]
async fn a_miss_is_lent_to_hyper_and_the_next_hit_is_direct_again() {
    let (origin, edge) = edge_with_assets().await;
    origin.route(
        "/cold",
        Route::ok("cold").header("cache-control", "max-age=600"),
    );
    let (_, direct) = hit_after(&edge, "").await;
    // A request the direct path never reads (If-Match) leaves the connection to hyper.
    let (_, by_hyper) = hit_after(&edge, &get("/warm", "If-Match: *\r\n")).await;
    assert_ne!(direct, by_hyper, "the two paths cannot be told apart here");

    // A miss, a stale entry: hyper answers, and the connection comes back.
    let (miss, after_miss) = hit_after(&edge, &get("/cold", "")).await;
    let miss = miss.unwrap();
    assert_eq!(miss.body, b"cold");
    assert!(
        miss.field("cache-status").unwrap().contains("fwd=uri-miss"),
        "{miss:?}"
    );
    assert_eq!(miss.field("connection"), None);
    assert_eq!(after_miss, direct);
    let head = "HEAD /unknown HTTP/1.1\r\nHost: t\r\n\r\n";
    let (head, after_head) = hit_after(&edge, head).await;
    assert!(head.unwrap().status.starts_with("HTTP/1.1 404"));
    assert_eq!(after_head, direct);
}

#[tokio::test]
async fn requests_sent_while_hyper_answers_a_lent_one_are_answered_after_it() {
    let (origin, edge) = edge_with_assets().await;
    // Cacheable, with a pause halfway through the body.
    let paused = |body: String| {
        let pause = common::Misbehaviour::PauseMidBody(Duration::from_millis(300));
        Route::ok(body)
            .header("cache-control", "max-age=600")
            .misbehave(pause)
    };
    origin.route("/slow", paused("slow".repeat(50_000)));
    let (mut reader, mut writer) = connect(&edge).await;
    writer.write_all(get("/slow", "").as_bytes()).await.unwrap();
    // Sent while the miss is still being answered, in pieces.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = [get("/warm", ""), get("/site.css", "")].concat();
    let (one, two) = next.split_at(20);
    writer.write_all(one.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer.write_all(two.as_bytes()).await.unwrap();
    let slow = read_answer(&mut reader, false).await;
    assert_eq!(slow.body, "slow".repeat(50_000).as_bytes());
    assert_eq!(read_answer(&mut reader, false).await.body, b"warm");
    let css = read_answer(&mut reader, false).await;
    assert_eq!(css.body, "body { color: red; }\n".repeat(200).as_bytes());

    // A client that sends a miss and a hit, then closes its side while the miss is
    // answered, gets both answers, then the close.
    origin.route("/slow-again", paused("again".repeat(50_000)));
    let (mut reader, mut writer) = connect(&edge).await;
    let both = [get("/slow-again", ""), get("/warm", "")].concat();
    writer.write_all(both.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer.shutdown().await.unwrap();
    let slow = read_answer(&mut reader, false).await;
    assert_eq!(slow.body, "again".repeat(50_000).as_bytes());
    assert_eq!(read_answer(&mut reader, false).await.body, b"warm");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok() && rest.is_empty(),
        "closed after the two answers"
    );
}

/// An edge whose site honours the client's `Cache-Control`, with `/page` stored.
async fn honouring_edge() -> (TestOrigin, TestEdge) {
    let origin = TestOrigin::start().await;
    origin.route(
        "/page",
        Route::ok("page").header("cache-control", "max-age=600"),
    );
    let edge = TestEdge::start_site(&origin, "client_cache_control = \"honor\"").await;
    edge.get("/page").await.bytes().await.unwrap();
    (origin, edge)
}

#[tokio::test]
async fn a_connection_whose_lent_requests_are_answered_at_once_is_left_to_hyper() {
    let (origin, edge) = honouring_edge().await;
    // `max-age` on a site that honours it: hyper reads it, and answers from memory.
    let honoured = get("/page", "Cache-Control: max-age=600\r\n");
    let order_after = |lent: usize| {
        let (edge, honoured) = (&edge, &honoured);
        async move {
            let (mut reader, mut writer) = connect(edge).await;
            for _ in 0..lent {
                writer.write_all(honoured.as_bytes()).await.unwrap();
                let answer = read_answer(&mut reader, false).await;
                assert!(answer.field("cache-status").unwrap().contains("hit"));
            }
            writer.write_all(get("/page", "").as_bytes()).await.unwrap();
            read_answer(&mut reader, false).await.names
        }
    };
    let direct = order_after(0).await;
    let by_hyper = {
        let (mut reader, mut writer) = connect(&edge).await;
        writer
            .write_all(get("/page", "If-Match: *\r\n").as_bytes())
            .await
            .unwrap();
        read_answer(&mut reader, false).await;
        writer.write_all(get("/page", "").as_bytes()).await.unwrap();
        read_answer(&mut reader, false).await.names
    };
    assert_ne!(direct, by_hyper);
    // Three in a row come back; the fourth leaves the connection to hyper.
    assert_eq!(order_after(3).await, direct);
    assert_eq!(order_after(4).await, by_hyper);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn large_hits_are_sent_from_their_sealed_copies_byte_for_byte() {
    let origin = TestOrigin::start().await;
    let big = incompressible(1, 300_000);
    let mid = incompressible(2, 20_000);
    for (path, body) in [("/big.bin", &big), ("/mid.bin", &mid)] {
        origin.route(
            path,
            Route::ok(body.clone())
                .header("content-type", "application/octet-stream")
                .header("cache-control", "max-age=600"),
        );
    }
    origin.route(
        "/small",
        Route::ok("small").header("cache-control", "max-age=600"),
    );
    let edge = TestEdge::start(&origin).await;
    for path in ["/big.bin", "/mid.bin", "/small"] {
        edge.get(path).await.bytes().await.unwrap();
    }
    assert_eq!(
        edge.gauge("edge_sendfile_bytes").await,
        0,
        "made on the first direct hit"
    );
    // The same answers as hyper's, field for field and byte for byte.
    for path in ["/big.bin", "/mid.bin"] {
        let (direct, by_hyper) = both_ways(&edge, &get(path, ""), false).await;
        assert_eq!(direct.body.len(), by_hyper.body.len());
        assert!(direct.body == by_hyper.body, "{path}: the bodies differ");
        assert_eq!(direct.fields.len(), by_hyper.fields.len(), "{direct:?}");
    }
    assert_eq!(
        edge.gauge("edge_sendfile_bytes").await,
        303_104 + 20_480,
        "whole pages"
    );
    // Pipelined, mixed with a short body and a HEAD, on one connection.
    let (mut reader, mut writer) = connect(&edge).await;
    let all = [
        get("/big.bin", ""),
        get("/small", ""),
        "HEAD /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
        get("/mid.bin", ""),
        get("/big.bin", ""),
    ]
    .concat();
    writer.write_all(all.as_bytes()).await.unwrap();
    assert!(read_answer(&mut reader, false).await.body == big);
    assert_eq!(read_answer(&mut reader, false).await.body, b"small");
    let head = read_answer(&mut reader, true).await;
    assert_eq!(head.field("content-length"), Some("300000"));
    assert!(head.body.is_empty());
    assert!(read_answer(&mut reader, false).await.body == mid);
    assert!(read_answer(&mut reader, false).await.body == big);
    // A purge lets go of the copies.
    edge.purge_urls(&["http://127.0.0.1/big.bin", "http://127.0.0.1/mid.bin"])
        .await;
    assert_eq!(edge.gauge("edge_sendfile_bytes").await, 0);
}

#[tokio::test]
async fn without_sendfile_memory_large_hits_are_written_from_memory() {
    let origin = TestOrigin::start().await;
    let big = incompressible(3, 100_000);
    origin.route(
        "/big.bin",
        Route::ok(big.clone()).header("cache-control", "max-age=600"),
    );
    let edge = TestEdge::start_with(&origin, "sendfile_memory = \"0B\"").await;
    edge.get("/big.bin").await.bytes().await.unwrap();
    let (direct, by_hyper) = both_ways(&edge, &get("/big.bin", ""), false).await;
    assert!(direct.body == big && by_hyper.body == big);
    assert_eq!(edge.gauge("edge_sendfile_bytes").await, 0);
}

#[tokio::test]
async fn a_trusted_blob_on_disk_is_sent_from_its_open_file_byte_for_byte() {
    let origin = TestOrigin::start().await;
    let big = incompressible(4, 600_000);
    origin.route(
        "/big.bin",
        Route::ok(big.clone()).header("content-type", "application/octet-stream"),
    );
    for path in ["/small", "/warm"] {
        origin.route(path, Route::ok(&path[1..]));
    }
    // Above memory_object_max, so the body stays on disk.
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start_in(&origin, dir.path(), "memory_object_max = \"256KiB\"").await;
    for path in ["/big.bin", "/small", "/warm"] {
        edge.get(path).await.bytes().await.unwrap();
    }
    edge.running.state.cache.flush().await;
    // The first read from disk hashes the blob; a lookup after that holds it open in
    // the memory tier.
    for _ in 0..50 {
        let r = edge.get("/big.bin").await;
        assert!(cache_status(&r).contains("hit"), "{r:?}");
        assert!(r.bytes().await.unwrap() == big);
        if edge.gauge("edge_open_blobs").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(edge.gauge("edge_open_blobs").await, 1);
    assert_eq!(edge.gauge("edge_sendfile_bytes").await, 0, "no sealed copy");

    // Answered on the direct path (its fields come in another order than hyper's),
    // with the same fields and bytes.
    let (direct, by_hyper) = both_ways(&edge, &get("/big.bin", ""), false).await;
    assert!(direct.body == big, "the direct body differs");
    assert!(by_hyper.body == big, "hyper's body differs");
    assert_eq!(direct, by_hyper);
    assert_ne!(direct.names, by_hyper.names, "the direct path answered");

    // Its pages dropped from the page cache but the first and last (so the direct
    // path still takes it, as after a client's range requests at both ends):
    // `sendfile` reads the pages between from the disk, and every byte arrives.
    let blob = std::fs::File::open(blob_of(dir.path(), &big)).unwrap();
    rustix::fs::fadvise(&blob, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    for at in [0, big.len() as u64 - 1] {
        std::os::unix::fs::FileExt::read_exact_at(&blob, &mut [0], at).unwrap();
    }
    let cold = ask(&edge, &get("/big.bin", ""), false).await;
    assert!(cold.body == big, "the body read in differs");
    assert_eq!(cold.names, direct.names, "the direct path answered");

    let (direct, by_hyper) = both_ways(
        &edge,
        "HEAD /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        true,
    )
    .await;
    assert_eq!(direct, by_hyper);
    assert_ne!(direct.names, by_hyper.names, "the direct path answered");
    assert_eq!(direct.field("content-length"), Some("600000"));

    // Pipelined with a short body and a HEAD, on one connection.
    let (mut reader, mut writer) = connect(&edge).await;
    let all = [
        get("/big.bin", ""),
        get("/small", ""),
        "HEAD /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
        get("/big.bin", ""),
    ]
    .concat();
    writer.write_all(all.as_bytes()).await.unwrap();
    assert!(read_answer(&mut reader, false).await.body == big);
    assert_eq!(read_answer(&mut reader, false).await.body, b"small");
    assert!(read_answer(&mut reader, true).await.body.is_empty());
    assert!(read_answer(&mut reader, false).await.body == big);
    assert_eq!(origin.hits(), 3, "every answer came from the cache");

    // A purge lets go of the file.
    edge.purge_urls(&["http://127.0.0.1/big.bin"]).await;
    assert_eq!(edge.gauge("edge_open_blobs").await, 0);
}

#[tokio::test]
async fn a_head_split_across_reads_is_answered_once_whole() {
    let (_origin, edge) = edge_with_assets().await;
    let (mut reader, mut writer) = connect(&edge).await;
    for part in ["GE", "T /warm HTTP/1.1\r\nHo", "st: 127.0.0.1\r\n", "\r\n"] {
        writer.write_all(part.as_bytes()).await.unwrap();
        writer.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let answer = read_answer(&mut reader, false).await;
    assert_eq!(answer.body, b"warm");
    assert!(
        answer.field("cache-status").unwrap().contains("hit"),
        "{answer:?}"
    );
    // Then a second request on the same connection, in one piece.
    writer.write_all(get("/warm", "").as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut reader, false).await.body, b"warm");
}

#[tokio::test]
async fn requests_the_direct_path_leaves_are_answered_by_hyper_as_before() {
    let (_origin, edge) = edge_with_assets().await;
    // Malformed, a missing Host, and `Connection: close`, each on a fresh connection.
    let (mut reader, mut writer) = connect(&edge).await;
    writer
        .write_all(b"GET /warm HTTP/1.1\r\nHost test\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), reader.read_to_string(&mut out)).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    let no_host = ask(&edge, "GET /warm HTTP/1.1\r\n\r\n", false).await;
    assert!(no_host.status.contains(" 400 "));

    let (mut reader, mut writer) = connect(&edge).await;
    writer
        .write_all(get("/warm", "Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    let answer = read_answer(&mut reader, false).await;
    assert_eq!(answer.body, b"warm");
    assert_eq!(answer.field("connection"), Some("close"));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "closed after the answer");
}

#[tokio::test]
async fn a_site_that_honours_cache_control_reads_it_on_every_connection() {
    let (origin, edge) = honouring_edge().await;
    assert_eq!(origin.hits(), 1);
    let answer = ask(&edge, &get("/page", "Cache-Control: no-cache\r\n"), false).await;
    let status = answer.field("cache-status").unwrap();
    assert!(status.contains("fwd=request"), "{status}");
    assert_eq!(origin.hits(), 2, "no-cache revalidated at the origin");
}

#[tokio::test]
async fn direct_hits_are_counted_like_any_other() {
    let (_origin, edge) = edge_with_assets().await;
    let before = edge.running.state.metrics.totals().outcome("hit");
    let (mut reader, mut writer) = connect(&edge).await;
    for _ in 0..3 {
        writer.write_all(get("/warm", "").as_bytes()).await.unwrap();
        read_answer(&mut reader, false).await;
    }
    assert_eq!(
        edge.running.state.metrics.totals().outcome("hit"),
        before + 3
    );
    assert!(cache_status(&edge.get("/warm").await).contains("hit"));
}

#[tokio::test]
async fn a_graceful_shutdown_closes_an_idle_direct_connection_at_once() {
    let (_origin, edge) = edge_with_assets().await;
    let (mut reader, mut writer) = connect(&edge).await;
    writer.write_all(get("/warm", "").as_bytes()).await.unwrap();
    read_answer(&mut reader, false).await;
    let started = std::time::Instant::now();
    edge.stop().await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    // The default grace is far longer: the connection did not hold the shutdown.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
