//! How many heap allocations a cache hit costs, end to end: a real edge on 127.0.0.1,
//! a keep-alive client over a real socket, and a counting global allocator around the
//! system one. Issue 7 asks for no per-hit allocation that can be avoided; this is the
//! check that one does not creep back in. It counts, it does not time.
//!
//! A plain HTTP/1.1 hit on the listener's direct path (`[server] direct_hits`, the
//! default) allocates nothing: its request head is parsed in the connection's buffer,
//! its response head written into the connection's own buffer from the entry's stored
//! bytes, and its body is the stored `Bytes` itself. Measured: 0.00 per 200 hit and per
//! 304.
//!
//! Through hyper (`direct_hits = false`, and every request the direct path leaves to
//! hyper), what is left per hit, measured (a 200 hit: 4.9, a 304: 5.0):
//! - the response's header map, cloned from the entry's block: its index and its
//!   entries (2);
//! - `Age` and `Cache-Status`, which change per response, in one buffer (1);
//! - hyper's read buffer, split off per request head and grown back (about 2).
//!
//! On both paths the host is held inline and the key is looked up by its text, written
//! into a buffer on the stack. The bounds below leave a quarter of an allocation for
//! hyper's read pattern and rare background allocations.

mod common;

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::{Route, TestEdge, TestOrigin};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Requests measured per case: enough that a rare background allocation (a timer
/// wheel level, a metrics bucket) does not move the average by a whole allocation.
const REQUESTS: u64 = 2_000;

/// One response read off a keep-alive connection, without allocating.
struct Answer {
    status: u16,
    hit: bool,
    body_len: usize,
}

/// Reads exactly one response (with a `Content-Length`, as every cache hit has) into
/// `buf`, which must hold it whole.
fn read_answer(stream: &mut TcpStream, buf: &mut [u8]) -> Answer {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).expect("read a response");
        assert!(n > 0, "the edge closed the connection");
        filled += n;
        let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = &buf[..end];
        let status = std::str::from_utf8(&head[9..12])
            .expect("a status code")
            .parse()
            .expect("a status code");
        let mut body_len = 0;
        let mut hit = false;
        for line in head.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(v) = strip_name(line, b"content-length:") {
                body_len = std::str::from_utf8(v).unwrap().trim().parse().unwrap();
            }
            if let Some(v) = strip_name(line, b"cache-status:") {
                hit = v.windows(5).any(|w| w == b"; hit");
            }
        }
        let total = end + 4 + if status == 304 { 0 } else { body_len };
        assert!(total <= buf.len(), "the buffer holds the response");
        while filled < total {
            let n = stream.read(&mut buf[filled..]).expect("read the body");
            assert!(n > 0, "the edge closed the connection mid-body");
            filled += n;
        }
        assert_eq!(filled, total, "one response at a time on this connection");
        return Answer {
            status,
            hit,
            body_len,
        };
    }
}

/// The value of a header line whose (lower-case) name and colon are `name`.
fn strip_name<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    (line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name))
        .then(|| &line[name.len()..])
}

/// Sends `request` [`REQUESTS`] times on one connection after a few warm-up rounds,
/// checks every answer with `check`, and returns the allocations (and reallocations)
/// made in the whole process per request meanwhile.
fn allocations_per_request(addr: SocketAddr, request: &[u8], check: impl Fn(&Answer)) -> f64 {
    let mut stream = TcpStream::connect(addr).expect("connect to the edge");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut buf = vec![0u8; 256 * 1024];
    for _ in 0..50 {
        stream.write_all(request).expect("send");
        check(&read_answer(&mut stream, &mut buf));
    }
    let region = Region::new(GLOBAL);
    for _ in 0..REQUESTS {
        stream.write_all(request).expect("send");
        check(&read_answer(&mut stream, &mut buf));
    }
    let change = region.change();
    (change.allocations + change.reallocations) as f64 / REQUESTS as f64
}

/// An edge with `/app.css` (1 KB) stored, in memory, and answered once; `direct` is
/// its `[server] direct_hits`.
async fn edge_with_one_hit(direct: bool) -> (TestOrigin, TestEdge, String) {
    let origin = TestOrigin::start().await;
    origin.route(
        "/app.css",
        Route::ok(vec![b'a'; 1024])
            .header("content-type", "text/css")
            .header("last-modified", "Tue, 03 Jun 2025 10:00:00 GMT"),
    );
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndirect_hits = {direct}\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"cache\"\n[[site]]\nname = \"test\"\nhosts = [\"*\"]\norigin = \"{}\"\n",
        origin.url()
    );
    let edge = TestEdge::start_toml(&toml, tempfile::tempdir().unwrap()).await;
    let first = edge.get("/app.css").await;
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(first.bytes().await.unwrap().len(), 1024);
    // Its compressed variants are made in the background after the fill; they and every
    // disk write are done before anything is counted.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = edge
            .get_with("/app.css", &[("accept-encoding", "br")])
            .await;
        if r.headers()
            .get("content-encoding")
            .is_some_and(|v| v == "br")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no br variant in 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    edge.running.state.cache.flush().await;
    (origin, edge, etag)
}

/// The allocations per 200 hit and per 304 of an edge with `direct_hits = direct`.
async fn measure(direct: bool) -> (f64, f64) {
    let (origin, edge, etag) = edge_with_one_hit(direct).await;
    let addr = edge.running.addr;
    let hit = tokio::task::spawn_blocking(move || {
        let request = format!("GET /app.css HTTP/1.1\r\nhost: {addr}\r\n\r\n");
        allocations_per_request(addr, request.as_bytes(), |a| {
            assert_eq!((a.status, a.hit, a.body_len), (200, true, 1024));
        })
    })
    .await
    .unwrap();
    let not_modified = tokio::task::spawn_blocking(move || {
        let request =
            format!("GET /app.css HTTP/1.1\r\nhost: {addr}\r\nif-none-match: {etag}\r\n\r\n");
        allocations_per_request(addr, request.as_bytes(), |a| {
            assert_eq!((a.status, a.hit), (304, true));
        })
    })
    .await
    .unwrap();
    assert_eq!(origin.hits(), 1, "every counted request was a hit");
    edge.stop().await;
    eprintln!(
        "direct_hits = {direct}: 200 hit {hit:.2}, 304 {not_modified:.2} allocations per request"
    );
    (hit, not_modified)
}

/// One test, not several: the counter is the whole process's, so two measurements
/// running at once (as `cargo test` runs tests, on threads) would count each other's
/// requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hits_and_304s_allocate_only_what_the_response_needs() {
    let (hit, not_modified) = measure(true).await;
    assert!(hit <= 0.25, "{hit:.2} allocations per direct 200 hit");
    assert!(
        not_modified <= 0.25,
        "{not_modified:.2} allocations per direct 304"
    );
    let (hit, not_modified) = measure(false).await;
    assert!(
        hit <= 5.25,
        "{hit:.2} allocations per 200 hit through hyper"
    );
    assert!(
        not_modified <= 5.25,
        "{not_modified:.2} allocations per 304 through hyper"
    );
}
