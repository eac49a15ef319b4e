//! RFC 9110 §14: range requests, from a miss and a hit.

use crate::common::{Route, TestEdge, TestOrigin, cache_status};

const BODY: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

async fn edge() -> (TestOrigin, TestEdge) {
    let origin = TestOrigin::start().await;
    origin.route(
        "/r.bin",
        Route::ok(BODY)
            .header("cache-control", "max-age=600")
            .header("etag", "\"r1\"")
            .header("content-type", "application/octet-stream"),
    );
    let edge = TestEdge::start(&origin).await;
    (origin, edge)
}

async fn range(edge: &TestEdge, value: &str) -> reqwest::Response {
    edge.get_with("/r.bin", &[("range", value)]).await
}

/// §14.1.2: a single range gives 206 with Content-Range; a cold URL is fetched whole
/// once and answered with the range.
#[tokio::test]
async fn single_range_gives_206_even_on_a_cold_url() {
    let (origin, edge) = edge().await;
    for _ in 0..2 {
        let r = range(&edge, "bytes=0-9").await;
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 0-9/36");
        assert_eq!(r.text().await.unwrap(), "0123456789");
    }
    assert_eq!(origin.hits(), 1);
    assert_eq!(origin.seen()[0].header("range"), None);
}

/// §14.1.2: suffix and open-ended ranges.
#[tokio::test]
async fn suffix_and_open_ended_ranges() {
    let (_origin, edge) = edge().await;
    let r = range(&edge, "bytes=-6").await;
    assert_eq!(r.headers()["content-range"], "bytes 30-35/36");
    assert_eq!(r.text().await.unwrap(), "uvwxyz");
    let r = range(&edge, "bytes=30-").await;
    assert_eq!(r.text().await.unwrap(), "uvwxyz");
    let r = range(&edge, "bytes=30-1000").await;
    assert_eq!(r.headers()["content-range"], "bytes 30-35/36");
}

/// §14.6: several ranges give multipart/byteranges.
#[tokio::test]
async fn several_ranges_give_multipart_byteranges() {
    let (_origin, edge) = edge().await;
    let r = range(&edge, "bytes=0-1, 10-11").await;
    assert_eq!(r.status(), 206);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/byteranges; boundary="), "{ct}");
    let boundary = ct.split("boundary=").nth(1).unwrap().to_owned();
    let body = r.text().await.unwrap();
    assert!(body.contains(&format!("--{boundary}\r\n")));
    assert!(body.contains("Content-Range: bytes 0-1/36\r\n\r\n01"));
    assert!(body.contains("Content-Range: bytes 10-11/36\r\n\r\nab"));
    assert!(body.ends_with(&format!("--{boundary}--\r\n")));
}

/// §15.5.17: an unsatisfiable range gives 416 with `Content-Range: bytes */len`.
#[tokio::test]
async fn unsatisfiable_range_gives_416() {
    let (_origin, edge) = edge().await;
    let r = range(&edge, "bytes=100-200").await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */36");
}

/// §14.2: a syntactically invalid Range is ignored.
#[tokio::test]
async fn invalid_range_is_ignored() {
    let (_origin, edge) = edge().await;
    let r = range(&edge, "bytes=z-q").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), BODY);
}

/// §13.1.5: If-Range with the current strong ETag gives the range, otherwise the whole.
#[tokio::test]
async fn if_range_with_an_etag_or_a_date() {
    let (_origin, edge) = edge().await;
    let r = edge
        .get_with("/r.bin", &[("range", "bytes=0-0"), ("if-range", "\"r1\"")])
        .await;
    assert_eq!(r.status(), 206);
    let r = edge
        .get_with("/r.bin", &[("range", "bytes=0-0"), ("if-range", "\"old\"")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), BODY);
    let r = edge
        .get_with(
            "/r.bin",
            &[
                ("range", "bytes=0-0"),
                ("if-range", "Mon, 01 Jan 2001 00:00:00 GMT"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(cache_status(&r).contains("hit"));
}
