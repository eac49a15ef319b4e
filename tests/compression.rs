//! Precompression, content negotiation and immutable headers, end to end: variants are
//! made once at fill time, each decodes to exactly the identity bytes, and clients get
//! the smallest representation they accept.

mod common;

use std::time::Duration;

use common::{Misbehaviour, Route, TestEdge, TestOrigin, cache_status};
use tokio::io::AsyncReadExt as _;

/// A JavaScript body that compresses well.
fn script() -> String {
    (0..400)
        .map(|i| format!("function f{i}(a, b) {{ return a * {i} + b; }}\n"))
        .collect()
}

async fn edge_with_script() -> (TestOrigin, TestEdge, String) {
    let origin = TestOrigin::start().await;
    let body = script();
    origin.route(
        "/app.3f9a2c1e.js",
        Route::ok(body.clone())
            .header("content-type", "application/javascript")
            .header("etag", "\"js1\""),
    );
    origin.route(
        "/page.js",
        Route::ok(body.clone()).header("content-type", "application/javascript"),
    );
    let edge = TestEdge::start(&origin).await;
    (origin, edge, body)
}

/// Waits (bounded) until the variants of `path` are served.
async fn wait_for_variants(edge: &TestEdge, path: &str) {
    for _ in 0..300 {
        let r = edge.get_with(path, &[("accept-encoding", "br")]).await;
        if r.headers().get("content-encoding").is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("variants of {path} never became ready");
}

async fn decode(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "br" => {
            async_compression::tokio::bufread::BrotliDecoder::new(bytes)
                .read_to_end(&mut out)
                .await
                .unwrap();
        }
        "zstd" => {
            async_compression::tokio::bufread::ZstdDecoder::new(bytes)
                .read_to_end(&mut out)
                .await
                .unwrap();
        }
        "gzip" => {
            async_compression::tokio::bufread::GzipDecoder::new(bytes)
                .read_to_end(&mut out)
                .await
                .unwrap();
        }
        other => panic!("unexpected encoding {other}"),
    }
    out
}

#[tokio::test]
async fn first_response_is_identity_and_not_held_up_by_compression() {
    let (_origin, edge, body) = edge_with_script().await;
    let r = edge
        .get_with("/page.js", &[("accept-encoding", "br, gzip")])
        .await;
    assert!(cache_status(&r).contains("stored"));
    assert_eq!(r.headers().get("content-encoding"), None);
    assert_eq!(r.headers()["vary"], "accept-encoding");
    assert_eq!(r.text().await.unwrap(), body);
}

#[tokio::test]
async fn every_variant_decompresses_to_exactly_the_identity_bytes() {
    let (_origin, edge, body) = edge_with_script().await;
    edge.get("/page.js").await;
    wait_for_variants(&edge, "/page.js").await;
    for encoding in ["br", "zstd", "gzip"] {
        let r = edge
            .get_with("/page.js", &[("accept-encoding", encoding)])
            .await;
        assert_eq!(r.headers()["content-encoding"], encoding);
        assert_eq!(r.headers()["vary"], "accept-encoding");
        let bytes = r.bytes().await.unwrap();
        assert!(
            bytes.len() < body.len() / 2,
            "{encoding}: {} bytes",
            bytes.len()
        );
        assert_eq!(
            decode(encoding, &bytes).await,
            body.as_bytes(),
            "{encoding}"
        );
    }
}

#[tokio::test]
async fn accept_encoding_matrix_picks_the_right_representation() {
    let (_origin, edge, _body) = edge_with_script().await;
    edge.get("/page.js").await;
    wait_for_variants(&edge, "/page.js").await;
    let cases: &[(Option<&str>, Option<&str>)] = &[
        (None, None),
        (Some(""), None),
        (Some("gzip"), Some("gzip")),
        (Some("gzip, deflate, br"), Some("br")),
        (Some("gzip, deflate, br, zstd"), Some("br")),
        (Some("br;q=0.5, gzip;q=0.8"), Some("gzip")),
        (Some("zstd"), Some("zstd")),
        (Some("*"), Some("br")),
        (Some("identity"), None),
        (Some("gzip;q=0, *"), Some("br")),
        (Some("br;q=0, zstd;q=0, gzip;q=0"), None),
        (Some("BR"), Some("br")),
        (Some("deflate"), None),
    ];
    for (accept, expected) in cases {
        let mut request = edge.client.get(edge.url("/page.js"));
        if let Some(accept) = accept {
            request = request.header("accept-encoding", *accept);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200, "{accept:?}");
        let got = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got.as_deref(), *expected, "Accept-Encoding: {accept:?}");
    }
}

#[tokio::test]
async fn identity_refused_and_nothing_else_acceptable_gives_406() {
    let origin = TestOrigin::start().await;
    origin.route("/tiny.txt", Route::ok("tiny"));
    let edge = TestEdge::start(&origin).await;
    let r = edge
        .get_with("/tiny.txt", &[("accept-encoding", "identity;q=0")])
        .await;
    assert_eq!(r.status(), 406);
}

#[tokio::test]
async fn each_representation_has_its_own_etag_and_any_of_them_gives_304() {
    let (_origin, edge, _body) = edge_with_script().await;
    edge.get("/app.3f9a2c1e.js").await;
    wait_for_variants(&edge, "/app.3f9a2c1e.js").await;
    let mut etags = Vec::new();
    for encoding in ["identity", "br", "zstd", "gzip"] {
        let r = edge
            .get_with("/app.3f9a2c1e.js", &[("accept-encoding", encoding)])
            .await;
        etags.push(r.headers()["etag"].to_str().unwrap().to_owned());
    }
    assert_eq!(etags[0], "\"js1\"");
    assert_eq!(etags[1], "\"js1-br\"");
    let unique: std::collections::HashSet<_> = etags.iter().collect();
    assert_eq!(unique.len(), 4, "{etags:?}");
    for etag in &etags {
        let r = edge
            .get_with(
                "/app.3f9a2c1e.js",
                &[("accept-encoding", "br"), ("if-none-match", etag)],
            )
            .await;
        assert_eq!(r.status(), 304, "{etag}");
        assert_eq!(r.headers()["etag"], "\"js1-br\"");
    }
}

#[tokio::test]
async fn head_and_304_carry_the_same_headers_as_the_200() {
    let (_origin, edge, _body) = edge_with_script().await;
    edge.get("/app.3f9a2c1e.js").await;
    wait_for_variants(&edge, "/app.3f9a2c1e.js").await;
    let get = edge
        .get_with("/app.3f9a2c1e.js", &[("accept-encoding", "br")])
        .await;
    let head = edge
        .client
        .head(edge.url("/app.3f9a2c1e.js"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    for name in [
        "etag",
        "content-encoding",
        "content-length",
        "vary",
        "cache-control",
        "content-type",
    ] {
        assert_eq!(
            get.headers().get(name),
            head.headers().get(name),
            "HEAD {name}"
        );
    }
    let not_modified = edge
        .get_with(
            "/app.3f9a2c1e.js",
            &[("accept-encoding", "br"), ("if-none-match", "\"js1-br\"")],
        )
        .await;
    for name in ["etag", "vary", "cache-control"] {
        assert_eq!(
            get.headers().get(name),
            not_modified.headers().get(name),
            "304 {name}"
        );
    }
}

#[tokio::test]
async fn fingerprinted_names_get_the_immutable_header_and_others_do_not() {
    let (_origin, edge, _body) = edge_with_script().await;
    for _ in 0..2 {
        let r = edge.get("/app.3f9a2c1e.js").await;
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let r = edge.get("/page.js").await;
        assert_eq!(r.headers()["cache-control"], "max-age=3600");
    }
}

#[tokio::test]
async fn immutable_header_only_for_responses_that_were_storable() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/app.3f9a2c1e.js",
        Route::ok("x").header("cache-control", "no-store"),
    );
    let edge = TestEdge::start(&origin).await;
    let r = edge.get("/app.3f9a2c1e.js").await;
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn an_origin_that_sends_gzip_is_decoded_and_reencoded() {
    let origin = TestOrigin::start().await;
    let body = script();
    let gz = gzip(body.as_bytes()).await;
    origin.route(
        "/gz.js",
        Route::ok(gz)
            .header("content-type", "application/javascript")
            .header("content-encoding", "gzip"),
    );
    let edge = TestEdge::start(&origin).await;
    let first = edge.get("/gz.js").await;
    assert!(
        cache_status(&first).contains("stored"),
        "{}",
        cache_status(&first)
    );
    assert_eq!(first.headers().get("content-encoding"), None);
    assert_eq!(first.text().await.unwrap(), body);
    wait_for_variants(&edge, "/gz.js").await;
    for encoding in ["br", "gzip"] {
        let r = edge
            .get_with("/gz.js", &[("accept-encoding", encoding)])
            .await;
        assert_eq!(r.headers()["content-encoding"], encoding);
        let bytes = r.bytes().await.unwrap();
        assert_eq!(decode(encoding, &bytes).await, body.as_bytes());
    }
}

#[tokio::test]
async fn an_undecodable_body_is_passed_through_uncached() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/bad.js",
        Route::ok("not gzip at all").header("content-encoding", "gzip"),
    );
    let edge = TestEdge::start(&origin).await;
    for _ in 0..2 {
        let r = edge.get("/bad.js").await;
        assert!(
            cache_status(&r).contains("detail=undecodable"),
            "{}",
            cache_status(&r)
        );
        assert_eq!(r.headers()["content-encoding"], "gzip");
    }
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn a_body_that_would_decode_past_the_fill_memory_left_passes_through_uncached() {
    // Decoding makes a second buffer, which takes its share of fill_memory like the
    // first: concurrent decompression bombs cannot each grow to max_object_size.
    let origin = TestOrigin::start().await;
    // 768 KiB of a 1 MiB fill_memory, held while its origin pauses half-way.
    let slow: Vec<u8> = (0..768 * 1024usize).map(|i| (i % 251) as u8).collect();
    origin.route(
        "/slow.bin",
        Route::ok(slow.clone()).misbehave(Misbehaviour::PauseMidBody(Duration::from_millis(1500))),
    );
    // A few KiB of gzip that decode to about 500 KiB: more than the room left.
    let body = script().repeat(24);
    let gz = gzip(body.as_bytes()).await;
    assert!(gz.len() < 64 * 1024 && body.len() > 400 * 1024);
    origin.route(
        "/gz.js",
        Route::ok(gz.clone())
            .header("content-type", "application/javascript")
            .header("content-encoding", "gzip"),
    );
    let edge = TestEdge::start_with(&origin, "fill_memory = \"1MiB\"").await;
    let pending = tokio::spawn({
        let (client, url) = (edge.client.clone(), edge.url("/slow.bin"));
        async move { client.get(url).send().await.unwrap().bytes().await.unwrap() }
    });
    while origin.hits_on("/slow.bin") == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let r = edge.get("/gz.js").await;
    let cs = cache_status(&r);
    assert!(
        cs.contains("detail=fill-memory") && !cs.contains("stored"),
        "{cs}"
    );
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.bytes().await.unwrap(), gz, "the origin's bytes, whole");

    assert_eq!(pending.await.unwrap(), slow);
    // Alone now, the body is decoded and stored.
    let r = edge.get("/gz.js").await;
    assert!(cache_status(&r).contains("stored"), "{}", cache_status(&r));
    assert_eq!(r.headers().get("content-encoding"), None);
    assert_eq!(r.text().await.unwrap(), body);
}

/// RFC 9111 §3.1: a body in a coding edge does not decode is stored as the origin
/// sent it, with its Content-Encoding, served as is (ranges of the stored bytes) and
/// never compressed again; a 304 keeps the coding.
#[tokio::test]
async fn a_body_in_an_unknown_coding_is_stored_as_sent() {
    let origin = TestOrigin::start().await;
    let body = "0123456789 opaque bytes in an encoding edge cannot read ".repeat(20);
    origin.route(
        "/opaque.js",
        Route::ok(body.clone())
            .header("content-encoding", "x-custom")
            .header("cache-control", "max-age=60")
            .header("etag", "\"op1\""),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/opaque.js").await;
    for accept in ["br", "identity", "gzip, x-custom", "identity;q=0"] {
        let r = edge
            .get_with("/opaque.js", &[("accept-encoding", accept)])
            .await;
        assert!(cache_status(&r).contains("hit"), "{}", cache_status(&r));
        assert_eq!(r.headers()["content-encoding"], "x-custom");
        assert_eq!(r.headers()["etag"], "\"op1\"");
        assert!(r.headers().get("vary").is_none());
        assert_eq!(r.text().await.unwrap(), body);
    }
    let r = edge.get_with("/opaque.js", &[("range", "bytes=0-9")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-encoding"], "x-custom");
    assert_eq!(r.text().await.unwrap(), &body[..10]);
    assert_eq!(origin.hits(), 1);

    // Stale, revalidated by a 304: the stored coding is kept.
    edge.advance(120);
    let r = edge.get("/opaque.js").await;
    assert!(
        cache_status(&r).contains("fwd-status=304"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(r.headers()["content-encoding"], "x-custom");
    assert_eq!(r.text().await.unwrap(), body);
}

/// Every Content-Encoding line counts (RFC 9110 §5.3): `x-custom` then `gzip` is
/// stored with both codings, never as `x-custom` alone; an unreadable (non-ASCII)
/// coding cannot be labelled, so that body is passed through uncached.
#[tokio::test]
async fn content_encoding_lines_are_read_together() {
    let origin = TestOrigin::start().await;
    let mut two_lines = Route::ok("layered").header("content-encoding", "x-custom");
    two_lines
        .headers
        .push(("content-encoding".into(), "gzip".into()));
    origin.route("/two.js", two_lines);
    origin.route(
        "/odd.js",
        Route::ok("odd").header("content-encoding", "x-c\u{fc}stom"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/two.js").await;
    let r = edge.get("/two.js").await;
    assert!(cache_status(&r).contains("hit"), "{}", cache_status(&r));
    let codings: Vec<&str> = r
        .headers()
        .get_all("content-encoding")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(codings, ["x-custom, gzip"]);
    for _ in 0..2 {
        let r = edge.get("/odd.js").await;
        assert!(
            cache_status(&r).contains("detail=undecodable"),
            "{}",
            cache_status(&r)
        );
        assert_eq!(
            r.headers()["content-encoding"].as_bytes(),
            "x-c\u{fc}stom".as_bytes()
        );
    }
}

/// An unknown coding the origin chose per client (`Vary: Accept-Encoding`) is not
/// shared: edge cannot tell what another client would have been sent.
#[tokio::test]
async fn an_unknown_coding_chosen_per_client_is_not_stored() {
    let origin = TestOrigin::start().await;
    origin.route(
        "/neg.js",
        Route::ok("opaque")
            .header("content-encoding", "x-custom")
            .header("vary", "accept-encoding")
            .header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin).await;
    edge.get("/neg.js").await;
    let r = edge.get("/neg.js").await;
    assert!(
        cache_status(&r).contains("detail=undecodable"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn a_range_request_is_answered_from_the_identity_representation() {
    let (_origin, edge, body) = edge_with_script().await;
    edge.get("/page.js").await;
    wait_for_variants(&edge, "/page.js").await;
    let r = edge
        .get_with(
            "/page.js",
            &[("accept-encoding", "br"), ("range", "bytes=0-9")],
        )
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers().get("content-encoding"), None);
    assert_eq!(r.text().await.unwrap(), &body[..10]);
}

#[tokio::test]
async fn content_type_is_guessed_from_the_path_when_the_origin_sends_none() {
    let origin = TestOrigin::start().await;
    origin.route("/style.css", Route::ok("body{}").without("content-type"));
    let edge = TestEdge::start(&origin).await;
    let r = edge.get("/style.css").await;
    assert_eq!(r.headers()["content-type"], "text/css");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

/// gzip for the test origin, with the same encoder family edge uses.
async fn gzip(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(input)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}
