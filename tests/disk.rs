//! The disk tier over real sockets: the same answers from an origin miss, a memory hit
//! and a disk hit; restarts; corrupt, missing and shared blobs; the disk budget; large
//! objects streamed from disk; a SIGKILL mid-fill; and a full disk.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Route, TestEdge, TestOrigin, blob_of, cache_status, incompressible};
use reqwest::header::HeaderMap;

/// A route that is stored for an hour and never gets compressed variants.
fn asset(body: &[u8]) -> Route {
    Route::ok(body.to_vec())
        .header("content-type", "application/octet-stream")
        .header("etag", "\"v1\"")
}

/// One response, read whole (or the error that cut it short).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Result<Bytes, String>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    fn body(&self) -> &[u8] {
        self.body.as_ref().expect("a complete body")
    }
}

async fn send(edge: &TestEdge, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = edge.client.request(method.parse().unwrap(), edge.url(path));
    for (n, v) in headers {
        request = request.header(*n, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| format!("{e:?}"));
    Answer {
        status,
        headers,
        body,
    }
}

/// How an answer was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    OriginMiss,
    MemoryHit,
    DiskHit,
}

/// Sends the same request three times — to a cold edge (an origin miss), again (a
/// memory hit, or a disk hit for an object too big for memory), and to a fresh edge on
/// the same cache directory (a disk hit) — runs `expect` on each answer, and checks that
/// the three answers are the same.
async fn on_every_tier(
    body: &[u8],
    cache_extra: &str,
    method: &str,
    headers: &[(&str, &str)],
    expect: impl Fn(Served, &Answer),
) {
    let origin = TestOrigin::start().await;
    origin.route("/asset.bin", asset(body));
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start_in(&origin, dir.path(), cache_extra).await;

    let miss = send(&edge, method, "/asset.bin", headers).await;
    assert!(
        miss.header("cache-status").contains("fwd=uri-miss"),
        "{}",
        miss.header("cache-status")
    );
    expect(Served::OriginMiss, &miss);
    edge.running.state.cache.flush().await;

    let in_memory = edge.running.state.cache.memory().len() == 1;
    let second = send(&edge, method, "/asset.bin", headers).await;
    let served = if in_memory {
        Served::MemoryHit
    } else {
        Served::DiskHit
    };
    assert!(
        second.header("cache-status").contains("hit"),
        "{served:?}: {}",
        second.header("cache-status")
    );
    expect(served, &second);
    edge.stop().await;

    let restarted = TestEdge::start_in(&origin, dir.path(), cache_extra).await;
    assert!(restarted.running.state.cache.memory().is_empty());
    let third = send(&restarted, method, "/asset.bin", headers).await;
    assert!(
        third.header("cache-status").contains("hit"),
        "disk: {}",
        third.header("cache-status")
    );
    expect(Served::DiskHit, &third);
    assert_eq!(
        origin.hits(),
        1,
        "only the first request reached the origin"
    );

    for (served, other) in [(served, &second), (Served::DiskHit, &third)] {
        assert_eq!(other.status, miss.status, "{served:?}");
        assert_eq!(other.body, miss.body, "{served:?}");
        for name in [
            "content-type",
            "content-length",
            "content-range",
            "etag",
            "accept-ranges",
        ] {
            assert_eq!(other.header(name), miss.header(name), "{served:?}: {name}");
        }
    }
    restarted.stop().await;
}

const SMALL: &str = "memory_object_max = \"64KiB\"";

#[tokio::test]
async fn full_body_is_the_same_from_origin_memory_and_disk() {
    let body = incompressible(1, 40_000);
    on_every_tier(&body, SMALL, "GET", &[], |served, a| {
        assert_eq!(a.status, 200, "{served:?}");
        assert_eq!(a.body(), &body[..], "{served:?}");
        assert_eq!(a.header("content-length"), "40000");
        assert_eq!(a.header("etag"), "\"v1\"");
    })
    .await;
}

#[tokio::test]
async fn range_is_the_same_from_origin_memory_and_disk() {
    let body = incompressible(2, 40_000);
    on_every_tier(
        &body,
        SMALL,
        "GET",
        &[("range", "bytes=100-199")],
        |served, a| {
            assert_eq!(a.status, 206, "{served:?}");
            assert_eq!(a.body(), &body[100..200], "{served:?}");
            assert_eq!(a.header("content-range"), "bytes 100-199/40000");
        },
    )
    .await;
}

#[tokio::test]
async fn multipart_ranges_are_the_same_from_origin_memory_and_disk() {
    let body = incompressible(3, 40_000);
    on_every_tier(
        &body,
        SMALL,
        "GET",
        &[("range", "bytes=0-9, 30000-30009")],
        |served, a| {
            assert_eq!(a.status, 206, "{served:?}");
            assert!(
                a.header("content-type")
                    .starts_with("multipart/byteranges; boundary=")
            );
            let text = a.body();
            assert_eq!(a.header("content-length"), text.len().to_string());
            let has = |part: &[u8]| text.windows(part.len()).any(|w| w == part);
            assert!(has(&body[0..10]) && has(&body[30000..30010]), "{served:?}");
            assert!(has(b"Content-Range: bytes 30000-30009/40000"));
        },
    )
    .await;
}

#[tokio::test]
async fn conditional_and_head_are_the_same_from_origin_memory_and_disk() {
    let body = incompressible(4, 40_000);
    on_every_tier(
        &body,
        SMALL,
        "GET",
        &[("if-none-match", "\"v1\"")],
        |served, a| {
            assert_eq!(a.status, 304, "{served:?}");
            assert!(a.body().is_empty());
        },
    )
    .await;
    on_every_tier(&body, SMALL, "HEAD", &[], |served, a| {
        assert_eq!(a.status, 200, "{served:?}");
        assert_eq!(a.header("content-length"), "40000");
        assert!(a.body().is_empty());
    })
    .await;
}

#[tokio::test]
async fn large_object_streams_the_same_from_disk() {
    // 3 MiB against memory_object_max 256 KiB: stored on disk only, streamed from it.
    let body = incompressible(5, 3 << 20);
    let extra = "memory_object_max = \"256KiB\"";
    on_every_tier(&body, extra, "GET", &[], |served, a| {
        assert_ne!(served, Served::MemoryHit, "too big for memory");
        assert_eq!(a.status, 200);
        assert!(a.body() == &body[..], "{served:?}: whole body");
    })
    .await;
    on_every_tier(
        &body,
        extra,
        "GET",
        &[("range", "bytes=1000-1999, 3000000-3000099")],
        |served, a| {
            assert_eq!(a.status, 206, "{served:?}");
            let text = a.body();
            assert!(text.windows(100).any(|w| w == &body[3_000_000..3_000_100]));
        },
    )
    .await;
}

#[tokio::test]
async fn a_memory_hit_of_many_turns_arrives_whole() {
    // Above 128 KiB a memory body goes to hyper in turns, with a yield between them.
    let body = incompressible(6, (1 << 20) + 1);
    let from_memory = std::cell::Cell::new(false);
    on_every_tier(&body, "", "GET", &[], |served, a| {
        from_memory.set(from_memory.get() || served == Served::MemoryHit);
        assert_eq!(a.status, 200, "{served:?}");
        assert!(a.body() == &body[..], "{served:?}: whole body, in order");
    })
    .await;
    assert!(from_memory.get(), "the second request was a memory hit");
    on_every_tier(
        &body,
        "",
        "GET",
        &[("range", "bytes=131000-393300")],
        |served, a| {
            assert_eq!(a.status, 206, "{served:?}");
            assert!(
                a.body() == &body[131_000..=393_300],
                "{served:?}: across turns"
            );
        },
    )
    .await;
}

fn blob_files(cache_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![cache_dir.join("blobs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test]
async fn restart_keeps_entries_without_asking_the_origin() {
    let origin = TestOrigin::start().await;
    let bodies: Vec<Vec<u8>> = (0..20)
        .map(|i| incompressible(100 + i, 1000 + 500 * i as usize))
        .collect();
    for (i, b) in bodies.iter().enumerate() {
        origin.route(&format!("/r{i}"), asset(b));
    }
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start_in(&origin, dir.path(), "").await;
    for i in 0..bodies.len() {
        assert_eq!(edge.get(&format!("/r{i}")).await.status(), 200);
    }
    edge.stop().await;
    assert_eq!(origin.hits(), 20);

    let edge = TestEdge::start_in(&origin, dir.path(), "").await;
    assert_eq!(edge.running.state.cache.disk_entries(), 20);
    for (i, b) in bodies.iter().enumerate() {
        let r = edge.get(&format!("/r{i}")).await;
        assert!(cache_status(&r).contains("hit"), "{}", cache_status(&r));
        assert_eq!(r.bytes().await.unwrap(), &b[..]);
    }
    assert_eq!(origin.hits(), 20, "a restart sends nothing to the origin");
    edge.stop().await;
}

#[tokio::test]
async fn flipped_byte_in_a_blob_is_detected_and_refetched() {
    let origin = TestOrigin::start().await;
    let body = incompressible(6, 20_000);
    origin.route("/f.bin", asset(&body));
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start_in(&origin, dir.path(), "").await;
    edge.get("/f.bin").await.bytes().await.unwrap();
    edge.stop().await;

    let path = blob_of(dir.path(), &body);
    let mut stored = std::fs::read(&path).unwrap();
    stored[12_345] ^= 0x20;
    std::fs::write(&path, stored).unwrap();

    let edge = TestEdge::start_in(&origin, dir.path(), "").await;
    let r = edge.get("/f.bin").await;
    assert_eq!(r.status(), 200);
    assert!(
        cache_status(&r).contains("fwd=uri-miss"),
        "{}",
        cache_status(&r)
    );
    assert!(r.bytes().await.unwrap() == body, "the origin's true bytes");
    assert_eq!(edge.running.state.cache.corrupt_blobs(), 1);
    assert_eq!(origin.hits(), 2);
    edge.running.state.cache.flush().await;
    assert_eq!(
        std::fs::read(&path).unwrap(),
        body,
        "the blob was rewritten whole"
    );
    edge.stop().await;
}

#[tokio::test]
async fn deleted_blob_file_is_a_miss_not_an_error() {
    let origin = TestOrigin::start().await;
    let body = incompressible(7, 5_000);
    origin.route("/d.bin", asset(&body));
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start_in(&origin, dir.path(), "").await;
    edge.get("/d.bin").await.bytes().await.unwrap();
    edge.stop().await;
    std::fs::remove_file(blob_of(dir.path(), &body)).unwrap();

    let edge = TestEdge::start_in(&origin, dir.path(), "").await;
    let r = edge.get("/d.bin").await;
    assert_eq!(r.status(), 200);
    assert!(
        cache_status(&r).contains("fwd=uri-miss"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(r.bytes().await.unwrap(), &body[..]);
    assert_eq!(edge.running.state.cache.corrupt_blobs(), 1);
    let again = edge.get("/d.bin").await;
    assert!(cache_status(&again).contains("hit"));
    edge.stop().await;
}

#[tokio::test]
async fn disk_budget_holds_after_many_fills() {
    let origin = TestOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    // 200 × 10 KiB offered to a 256 KiB disk.
    let edge = TestEdge::start_in(&origin, dir.path(), "disk = \"256KiB\"").await;
    let cache = &edge.running.state.cache;
    for i in 0..200u64 {
        let body = incompressible(1000 + i, 10 << 10);
        origin.route(&format!("/b{i}"), asset(&body));
        assert_eq!(
            edge.get(&format!("/b{i}")).await.bytes().await.unwrap(),
            &body[..]
        );
        cache.flush().await;
        assert!(
            cache.disk_bytes() <= 256 << 10,
            "{} bytes indexed",
            cache.disk_bytes()
        );
    }
    let on_disk: u64 = blob_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= 256 << 10, "{on_disk} bytes of blob files");
    assert!(cache.disk_evictions() >= 170, "{}", cache.disk_evictions());
    edge.stop().await;
}

#[tokio::test]
async fn identical_bodies_under_two_urls_share_one_blob() {
    let origin = TestOrigin::start().await;
    let body = incompressible(8, 30_000);
    origin.route("/one.bin", asset(&body));
    origin.route("/two.bin", asset(&body));
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start_in(&origin, dir.path(), "").await;
    edge.get("/one.bin").await.bytes().await.unwrap();
    edge.get("/two.bin").await.bytes().await.unwrap();
    edge.running.state.cache.flush().await;
    assert_eq!(edge.running.state.cache.disk_entries(), 2);
    assert_eq!(edge.running.state.cache.disk_bytes(), 30_000);
    assert_eq!(blob_files(dir.path()), vec![blob_of(dir.path(), &body)]);

    // The blob goes only with its last reference.
    assert!(
        edge.running
            .state
            .cache
            .remove(&edge::cache::key::CacheKey::new(
                "test",
                "127.0.0.1",
                "/one.bin"
            ))
    );
    edge.running.state.cache.flush().await;
    assert_eq!(blob_files(dir.path()).len(), 1);
    assert!(
        edge.running
            .state
            .cache
            .remove(&edge::cache::key::CacheKey::new(
                "test",
                "127.0.0.1",
                "/two.bin"
            ))
    );
    edge.running.state.cache.flush().await;
    assert!(blob_files(dir.path()).is_empty());
    edge.stop().await;
}

#[tokio::test]
async fn corrupt_large_blob_aborts_the_response_instead_of_completing_it() {
    let origin = TestOrigin::start().await;
    let body = incompressible(9, 2 << 20);
    origin.route("/big.bin", asset(&body));
    let dir = tempfile::tempdir().unwrap();
    let extra = "memory_object_max = \"256KiB\"";
    let edge = TestEdge::start_in(&origin, dir.path(), extra).await;
    assert_eq!(
        edge.get("/big.bin").await.bytes().await.unwrap().len(),
        body.len()
    );
    edge.running.state.cache.flush().await;

    // Same length, one byte near the end changed: only the streamed hash can tell.
    let path = blob_of(dir.path(), &body);
    let mut stored = std::fs::read(&path).unwrap();
    stored[(2 << 20) - 10] ^= 1;
    std::fs::write(&path, stored).unwrap();

    let r = edge.get("/big.bin").await;
    assert_eq!(
        r.status(),
        200,
        "the head went before the corruption was found"
    );
    assert!(cache_status(&r).contains("hit"));
    let read = r.bytes().await;
    assert!(
        read.is_err(),
        "the body must be cut short, not completed: {:?}",
        read.map(|b| b.len())
    );
    assert_eq!(edge.running.state.cache.corrupt_blobs(), 1);

    let r = edge.get("/big.bin").await;
    assert!(
        cache_status(&r).contains("fwd=uri-miss"),
        "{}",
        cache_status(&r)
    );
    assert!(r.bytes().await.unwrap() == body);
    edge.stop().await;
}

#[tokio::test]
async fn a_verified_blob_is_trusted_only_while_its_file_is_unchanged() {
    let origin = TestOrigin::start().await;
    let body = incompressible(11, 2 << 20);
    origin.route("/big.bin", asset(&body));
    let dir = tempfile::tempdir().unwrap();
    let extra = "memory_object_max = \"256KiB\"\nverify_interval = \"1h\"";
    let edge = TestEdge::start_in(&origin, dir.path(), extra).await;
    assert!(edge.get("/big.bin").await.bytes().await.unwrap() == body);
    edge.running.state.cache.flush().await;

    // The first read from disk hashes the whole file; the next ones trust it.
    for _ in 0..2 {
        let r = edge.get("/big.bin").await;
        assert!(cache_status(&r).contains("hit"));
        assert!(r.bytes().await.unwrap() == body);
    }
    // Trusted, it is kept open in the memory tier (`cache.open_blobs`).
    assert_eq!(edge.gauge("edge_open_blobs").await, 1);
    // A trusted range reads only its bytes, and they are the right ones.
    let r = edge
        .get_with("/big.bin", &[("range", "bytes=1500000-1500099")])
        .await;
    assert_eq!(r.status(), 206);
    assert!(r.bytes().await.unwrap() == body[1_500_000..1_500_100]);
    let r = edge
        .get_with("/big.bin", &[("range", "bytes=10-19, 2000000-2000009")])
        .await;
    assert_eq!(r.status(), 206);
    let multipart = r.bytes().await.unwrap();
    assert!(multipart.windows(10).any(|w| w == &body[10..20]));
    assert!(
        multipart
            .windows(10)
            .any(|w| w == &body[2_000_000..2_000_010])
    );
    assert_eq!(edge.running.state.cache.corrupt_blobs(), 0);

    // Rewritten in place (same length): its stamp changes, so it is hashed again and
    // the corruption is caught.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let path = blob_of(dir.path(), &body);
    let mut stored = std::fs::read(&path).unwrap();
    stored[(2 << 20) - 10] ^= 1;
    std::fs::write(&path, stored).unwrap();
    let r = edge.get("/big.bin").await;
    assert!(r.bytes().await.is_err(), "the body must be cut short");
    assert_eq!(edge.running.state.cache.corrupt_blobs(), 1);
    assert_eq!(
        edge.gauge("edge_open_blobs").await,
        0,
        "the changed file let go"
    );
    let r = edge.get("/big.bin").await;
    assert!(cache_status(&r).contains("fwd=uri-miss"));
    assert!(r.bytes().await.unwrap() == body);
    edge.stop().await;
}

/// The real `edge` binary on a config in `dir`, killed with SIGKILL on drop.
struct EdgeProcess {
    child: Child,
    port: u16,
}

impl EdgeProcess {
    fn start(dir: &Path, cache: &Path, origin: &TestOrigin, round: usize) -> Self {
        let port = free_port();
        let config = dir.join(format!("edge-{round}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n[cache]\ndir = \"{}\"\nmemory = \"1MiB\"\nmemory_object_max = \"64KiB\"\ndisk = \"256MiB\"\n[origin]\nconnect_timeout = \"2s\"\nfirst_byte_timeout = \"5s\"\nbody_timeout = \"10s\"\n[[site]]\nname = \"test\"\nhosts = [\"*\"]\norigin = \"{}\"\n",
                free_port(),
                cache.display(),
                origin.url()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("edge-{round}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_edge"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn,edge::disk=info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "edge did not start; see {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        EdgeProcess { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Requests every object with `workers` concurrent clients; SIGKILLs the edge once
/// `kill_after` responses have completed. Returns the complete responses and hits.
async fn fill(
    edge: &mut EdgeProcess,
    bodies: &Arc<Vec<Vec<u8>>>,
    kill_after: Option<usize>,
) -> (usize, usize) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, next, done, hits, bodies) = (
                client.clone(),
                next.clone(),
                done.clone(),
                hits.clone(),
                bodies.clone(),
            );
            let base = edge.url("");
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= bodies.len() {
                        return;
                    }
                    let Ok(r) = client.get(format!("{base}/c{i}")).send().await else {
                        return; // killed
                    };
                    let status = r.status().as_u16();
                    let hit = cache_status(&r).contains("hit");
                    let Ok(got) = r.bytes().await else {
                        return; // killed mid-body: the client sees an error, never a short body
                    };
                    // Whatever the edge completes must be whole and right.
                    assert_eq!(status, 200, "/c{i}");
                    assert!(
                        got == bodies[i],
                        "/c{i}: {} bytes, expected {}",
                        got.len(),
                        bodies[i].len()
                    );
                    if hit {
                        hits.fetch_add(1, Ordering::SeqCst);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    if let Some(n) = kill_after {
        while done.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        edge.kill();
    }
    for w in workers {
        w.await.unwrap();
    }
    (done.load(Ordering::SeqCst), hits.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_fill_the_restarted_edge_serves_only_complete_objects() {
    let origin = TestOrigin::start().await;
    // Sizes from 1 KB to ~300 KB: both memory-sized and disk-only (streamed) objects.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..300)
            .map(|i| incompressible(5000 + i, 1000 + (i as usize * 7919) % 300_000))
            .collect(),
    );
    for (i, b) in bodies.iter().enumerate() {
        origin.route(&format!("/c{i}"), asset(b));
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");

    let mut edge = EdgeProcess::start(dir.path(), &cache, &origin, 0);
    let (done, _) = fill(&mut edge, &bodies, Some(150)).await;
    assert!(done >= 150);

    // Killed again while it serves (and refills) everything.
    let mut edge = EdgeProcess::start(dir.path(), &cache, &origin, 1);
    fill(&mut edge, &bodies, Some(100)).await;

    let mut edge = EdgeProcess::start(dir.path(), &cache, &origin, 2);
    assert_eq!(
        std::fs::read_dir(cache.join("tmp")).unwrap().count(),
        0,
        "temp files of the killed writers were removed at start"
    );
    let (done, hits) = fill(&mut edge, &bodies, None).await;
    assert_eq!(
        done,
        bodies.len(),
        "every object served, complete and right"
    );
    assert!(hits > 0, "committed entries survived the kills");
}

/// Unmounts a filesystem mounted for a test, even when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn full_disk_keeps_serving_and_stores_nothing_partial() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    // A 4 MiB filesystem: mounting needs root (CI runs as root); skip where impossible.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "SKIPPED full_disk_keeps_serving_and_stores_nothing_partial: cannot mount a tmpfs here (needs root)"
        );
        return;
    }
    let _unmount = Unmount(small.clone());
    let cache_dir = small.join("cache");

    let origin = TestOrigin::start().await;
    // 40 objects, 64 KiB to 448 KiB (~10 MiB) offered to 4 MiB, with a 1 GiB budget:
    // only the filesystem stops the writes.
    let bodies: Vec<Vec<u8>> = (0..40)
        .map(|i| incompressible(9000 + i, (64 << 10) * (1 + i as usize % 7)))
        .collect();
    for (i, b) in bodies.iter().enumerate() {
        origin.route(&format!("/x{i}"), asset(b));
    }
    let extra = "memory = \"1MiB\"\nmemory_object_max = \"128KiB\"\ndisk = \"1GiB\"";
    let edge = TestEdge::start_in(&origin, &cache_dir, extra).await;
    let cache = edge.running.state.cache.clone();
    assert!(
        cache.has_disk(),
        "the disk tier opened on the small filesystem"
    );
    for round in 0..2 {
        for (i, b) in bodies.iter().enumerate() {
            let r = edge.get(&format!("/x{i}")).await;
            assert_eq!(r.status(), 200, "round {round}, /x{i}");
            assert!(
                r.bytes().await.unwrap() == b[..],
                "round {round}, /x{i}: right bytes"
            );
            cache.flush().await;
        }
    }
    assert!(cache.disk_entries() > 0, "some objects fit");
    assert!(
        cache.disk_skipped() > 0 || !cache.has_disk(),
        "the full filesystem stopped some writes"
    );
    drop(cache);
    edge.stop().await;

    assert_eq!(
        std::fs::read_dir(cache_dir.join("tmp")).unwrap().count(),
        0,
        "no temp file left"
    );
    for path in blob_files(&cache_dir) {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(
            blake3::hash(&data).to_hex().as_str(),
            name,
            "no partial blob"
        );
    }
}
