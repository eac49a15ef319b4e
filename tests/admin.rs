//! The admin API over real sockets: purge by URL, prefix, tag and everything (hard and
//! soft), durability across restarts, auth, malformed bodies, stats, metrics, health.

mod common;

use common::{Route, TestEdge, TestOrigin, cache_status};
use serde_json::{Value, json};

/// POSTs `body` to `/purge` with an optional bearer token; the status and JSON answer.
async fn purge_as(edge: &TestEdge, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = edge
        .client
        .post(edge.admin_url("/purge"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&bytes) }));
    (status, json)
}

async fn purge(edge: &TestEdge, body: Value) -> Value {
    let (status, answer) = purge_as(edge, None, &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// GETs `path` and says whether the cache answered it.
async fn is_hit(edge: &TestEdge, path: &str) -> bool {
    let r = edge.get(path).await;
    assert_eq!(r.status(), 200, "{path}");
    cache_status(&r).contains("; hit")
}

/// Fetches each path twice, so that each is stored and known to hit.
async fn warm(edge: &TestEdge, paths: &[&str]) {
    for path in paths {
        edge.get(path).await;
        assert!(is_hit(edge, path).await, "{path} is stored");
    }
}

async fn origin_with(paths: &[(&str, Route)]) -> TestOrigin {
    let origin = TestOrigin::start().await;
    for (path, route) in paths {
        origin.route(path, route.clone());
    }
    origin
}

#[tokio::test]
async fn url_purge_removes_the_url_and_its_vary_variants_and_nothing_else() {
    let origin = origin_with(&[
        ("/a.css", Route::ok("a")),
        ("/b.css", Route::ok("b")),
        ("/v", Route::ok("v").header("vary", "accept-language")),
    ])
    .await;
    let edge = TestEdge::start(&origin).await;
    warm(&edge, &["/a.css", "/b.css"]).await;
    for lang in ["en", "fr"] {
        edge.get_with("/v", &[("accept-language", lang)]).await;
        let r = edge.get_with("/v", &[("accept-language", lang)]).await;
        assert!(
            cache_status(&r).contains("; hit"),
            "variant {lang} is stored"
        );
    }

    let answer = purge(
        &edge,
        json!({ "urls": ["http://127.0.0.1/a.css", "https://127.0.0.1:8443/v"] }),
    )
    .await;
    assert_eq!(
        answer["purged"]["url"], 3,
        "a.css and two variants of /v: {answer}"
    );
    assert_eq!(answer["soft"], false);
    assert!(answer["duration_us"].is_u64(), "{answer}");
    assert_eq!(answer["peers"], json!([]));

    assert!(!is_hit(&edge, "/a.css").await, "purged URL misses");
    assert_eq!(origin.hits_on("/a.css"), 2);
    assert!(is_hit(&edge, "/b.css").await, "other URLs still hit");
    for lang in ["en", "fr"] {
        let r = edge.get_with("/v", &[("accept-language", lang)]).await;
        assert!(
            !cache_status(&r).contains("; hit"),
            "variant {lang} was purged"
        );
    }
}

#[tokio::test]
async fn prefix_purge_removes_only_urls_under_the_prefix() {
    let origin = origin_with(&[
        ("/static/a.js", Route::ok("a")),
        ("/static/b/c.js", Route::ok("c")),
        ("/staticky.js", Route::ok("s")),
        ("/other.js", Route::ok("o")),
    ])
    .await;
    let edge = TestEdge::start(&origin).await;
    warm(
        &edge,
        &[
            "/static/a.js",
            "/static/b/c.js",
            "/staticky.js",
            "/other.js",
        ],
    )
    .await;

    let answer = purge(&edge, json!({ "prefixes": ["http://127.0.0.1/static/"] })).await;
    assert_eq!(answer["purged"]["prefix"], 2, "{answer}");

    assert!(!is_hit(&edge, "/static/a.js").await);
    assert!(!is_hit(&edge, "/static/b/c.js").await);
    assert!(
        is_hit(&edge, "/staticky.js").await,
        "a prefix is a path prefix, not a word"
    );
    assert!(is_hit(&edge, "/other.js").await);
}

/// Two sites on one origin, told apart by `Host`.
async fn two_sites(origin: &TestOrigin) -> TestEdge {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"cache\"\n\
         [[site]]\nname = \"one\"\nhosts = [\"one.test\"]\norigin = \"{url}\"\n\
         [[site]]\nname = \"two\"\nhosts = [\"two.test\"]\norigin = \"{url}\"\n",
        url = origin.url()
    );
    TestEdge::start_toml(&toml, dir).await
}

async fn get_on(edge: &TestEdge, host: &str, path: &str) -> reqwest::Response {
    edge.get_with(path, &[("host", host)]).await
}

async fn hit_on(edge: &TestEdge, host: &str, path: &str) -> bool {
    let r = get_on(edge, host, path).await;
    assert_eq!(r.status(), 200, "{host}{path}");
    cache_status(&r).contains("; hit")
}

#[tokio::test]
async fn tag_purge_removes_tagged_entries_in_every_site() {
    let origin = origin_with(&[
        (
            "/red-blue",
            Route::ok("rb").header("surrogate-key", "red blue"),
        ),
        ("/red", Route::ok("r").header("cache-tag", "red,shoes")),
        ("/green", Route::ok("g").header("surrogate-key", "green")),
    ])
    .await;
    let edge = two_sites(&origin).await;
    for host in ["one.test", "two.test"] {
        for path in ["/red-blue", "/red", "/green"] {
            get_on(&edge, host, path).await;
            assert!(hit_on(&edge, host, path).await, "{host}{path} stored");
        }
    }

    let answer = purge(&edge, json!({ "tags": ["red"] })).await;
    assert_eq!(
        answer["purged"]["tag"], 4,
        "two URLs on two sites: {answer}"
    );

    for host in ["one.test", "two.test"] {
        assert!(
            !hit_on(&edge, host, "/red-blue").await,
            "{host}/red-blue purged"
        );
        assert!(!hit_on(&edge, host, "/red").await, "{host}/red purged");
        assert!(
            hit_on(&edge, host, "/green").await,
            "{host}/green untouched"
        );
    }
    // Stored again, they carry their tags again.
    let again = purge(&edge, json!({ "tags": ["blue", "shoes"] })).await;
    assert_eq!(again["purged"]["tag"], 4, "{again}");
}

#[tokio::test]
async fn purges_by_url_and_tag_survive_a_restart() {
    let origin = origin_with(&[
        ("/a", Route::ok("a")),
        ("/b", Route::ok("b")),
        ("/t", Route::ok("t").header("surrogate-key", "news")),
        ("/u", Route::ok("u").header("surrogate-key", "news")),
    ])
    .await;
    let edge = TestEdge::start(&origin).await;
    warm(&edge, &["/a", "/b", "/t"]).await;
    purge(&edge, json!({ "urls": ["http://127.0.0.1/a"] })).await;
    purge(&edge, json!({ "tags": ["news"] })).await;

    let edge = edge.restart().await;
    assert!(
        !is_hit(&edge, "/a").await,
        "a URL purge is not undone by a restart"
    );
    assert!(
        !is_hit(&edge, "/t").await,
        "a tag purge is not undone by a restart"
    );
    assert!(
        is_hit(&edge, "/b").await,
        "unpurged entries come back from disk"
    );

    // The tag index itself is persisted: an entry stored before a restart is found by a
    // tag purge after it.
    edge.get("/u").await;
    let edge = edge.restart().await;
    let answer = purge(&edge, json!({ "tags": ["news"] })).await;
    assert_eq!(
        answer["purged"]["tag"], 2,
        "/t and /u, both from disk: {answer}"
    );
    assert!(!is_hit(&edge, "/u").await);
}

#[tokio::test]
async fn purge_all_then_restart_keeps_everything_purged() {
    let origin = origin_with(&[
        ("/a", Route::ok("a")),
        ("/b", Route::ok("b")),
        ("/c", Route::ok("c")),
    ])
    .await;
    let edge = TestEdge::start(&origin).await;
    warm(&edge, &["/a", "/b"]).await;

    let answer = purge(&edge, json!({ "all": true })).await;
    assert_eq!(answer["purged"]["all"], true, "{answer}");
    let generation = answer["generation"]
        .as_u64()
        .expect("a hard purge-all reports its generation");
    assert!(generation >= 1);
    warm(&edge, &["/c"]).await;

    let edge = edge.restart().await;
    assert_eq!(
        edge.running.state.cache.generation(),
        generation,
        "the generation persisted"
    );
    assert!(
        is_hit(&edge, "/c").await,
        "stored after the purge: served from disk"
    );
    assert!(
        !is_hit(&edge, "/a").await,
        "stored before the purge: still purged"
    );
    assert!(!is_hit(&edge, "/b").await);
    assert_eq!(origin.hits_on("/a"), 2);
}

fn etagged(body: &str, etag: &str) -> Route {
    Route::ok(body.to_owned()).header("etag", etag)
}

/// The `If-None-Match` of the origin's last request for `path`.
fn last_if_none_match(origin: &TestOrigin, path: &str) -> Option<String> {
    origin
        .seen()
        .iter()
        .rev()
        .find(|s| s.target == path)
        .and_then(|s| s.header("if-none-match").map(str::to_owned))
}

#[tokio::test]
async fn soft_purge_makes_the_next_request_revalidate_with_the_origin() {
    let origin = origin_with(&[
        ("/u", etagged("u", "\"u1\"")),
        ("/p/x", etagged("x", "\"x1\"")),
        ("/t", etagged("t", "\"t1\"").header("surrogate-key", "soft")),
        ("/other", etagged("o", "\"o1\"")),
    ])
    .await;
    let edge = TestEdge::start(&origin).await;
    warm(&edge, &["/u", "/p/x", "/t", "/other"]).await;

    let answer = purge(
        &edge,
        json!({ "urls": ["http://127.0.0.1/u"], "prefixes": ["http://127.0.0.1/p/"], "tags": ["soft"], "soft": true }),
    )
    .await;
    assert_eq!(answer["soft"], true);
    assert_eq!(
        (
            answer["purged"]["url"].as_u64(),
            answer["purged"]["prefix"].as_u64(),
            answer["purged"]["tag"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{answer}"
    );

    for (path, etag) in [("/u", "\"u1\""), ("/p/x", "\"x1\""), ("/t", "\"t1\"")] {
        let before = origin.hits_on(path);
        let r = edge.get(path).await;
        assert_eq!(r.status(), 200);
        let status = cache_status(&r);
        assert!(
            status.contains("fwd=stale") && status.contains("fwd-status=304"),
            "{path}: {status}"
        );
        assert_eq!(origin.hits_on(path), before + 1);
        assert_eq!(
            last_if_none_match(&origin, path).as_deref(),
            Some(etag),
            "{path} revalidated conditionally"
        );
        assert_eq!(r.text().await.unwrap().len(), 1, "the kept body is served");
        assert!(
            is_hit(&edge, path).await,
            "{path} is fresh again after the 304"
        );
    }
    assert!(is_hit(&edge, "/other").await, "not purged");
}

#[tokio::test]
async fn soft_purge_of_everything_revalidates_every_entry_and_survives_a_restart() {
    let origin = origin_with(&[
        ("/a", etagged("a", "\"a1\"")),
        ("/b", etagged("b", "\"b1\"")),
    ])
    .await;
    let edge = TestEdge::start(&origin).await;
    warm(&edge, &["/a", "/b"]).await;
    let generation = edge.running.state.cache.generation();

    let answer = purge(&edge, json!({ "all": true, "soft": true })).await;
    assert_eq!(answer["purged"]["all"], true);
    assert!(
        answer.get("generation").is_none(),
        "a soft purge-all keeps the generation: {answer}"
    );
    assert_eq!(edge.running.state.cache.generation(), generation);

    let edge = edge.restart().await;
    // Stored a second or more after the purge, a revalidated entry is fresh again.
    edge.advance(2);
    for (path, etag) in [("/a", "\"a1\""), ("/b", "\"b1\"")] {
        let r = edge.get(path).await;
        let status = cache_status(&r);
        assert!(status.contains("fwd-status=304"), "{path}: {status}");
        assert_eq!(last_if_none_match(&origin, path).as_deref(), Some(etag));
        assert!(is_hit(&edge, path).await, "{path}");
    }
}

#[tokio::test]
async fn a_soft_purged_entry_is_still_served_stale_if_the_origin_fails() {
    let origin = origin_with(&[("/s", etagged("s", "\"s1\""))]).await;
    let edge = TestEdge::start_site(&origin, "stale_if_error = \"60s\"").await;
    warm(&edge, &["/s"]).await;
    purge(
        &edge,
        json!({ "urls": ["http://127.0.0.1/s"], "soft": true }),
    )
    .await;

    origin.route("/s", Route::ok("down").status(503).without("cache-control"));
    let r = edge.get("/s").await;
    assert_eq!(r.status(), 200);
    let status = cache_status(&r);
    assert!(status.contains("stale-if-error"), "{status}");
    assert_eq!(r.text().await.unwrap(), "s");
}

const TOKEN: &str = "correct-horse-battery-staple";

async fn edge_with_token(origin: &TestOrigin) -> TestEdge {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\
         [cache]\ndir = \"cache\"\n[[site]]\nname = \"test\"\nhosts = [\"*\"]\norigin = \"{}\"\n",
        origin.url()
    );
    TestEdge::start_toml(&toml, dir).await
}

#[tokio::test]
async fn a_missing_or_wrong_token_gets_401_and_purges_nothing() {
    let origin = origin_with(&[("/a", Route::ok("a"))]).await;
    let edge = edge_with_token(&origin).await;
    warm(&edge, &["/a"]).await;
    let body = r#"{"urls": ["http://127.0.0.1/a"], "all": true}"#;

    for token in [
        None,
        Some("wrong"),
        Some("correct-horse-battery-stapl"),
        Some(""),
    ] {
        let (status, answer) = purge_as(&edge, token, body).await;
        assert_eq!(status, 401, "{token:?}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let raw = edge
        .client
        .post(edge.admin_url("/purge"))
        .header("authorization", format!("Basic {TOKEN}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401, "only the Bearer scheme is accepted");
    assert!(raw.headers().contains_key("www-authenticate"));
    for path in ["/stats", "/metrics"] {
        let r = edge.client.get(edge.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    assert!(is_hit(&edge, "/a").await, "nothing was purged");
    assert_eq!(edge.running.state.cache.generation(), 0);

    for path in ["/healthz", "/readyz"] {
        let r = edge.client.get(edge.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} needs no token");
    }
    let (status, answer) = purge_as(&edge, Some(TOKEN), body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(!is_hit(&edge, "/a").await);
    let r = edge
        .client
        .get(edge.admin_url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_purge_bodies_get_400_naming_the_problem_and_purge_nothing() {
    let origin = origin_with(&[("/a", Route::ok("a"))]).await;
    let edge = TestEdge::start(&origin).await;
    warm(&edge, &["/a"]).await;

    let cases = [
        ("not json", "expected"),
        (r#"{"url": ["http://127.0.0.1/a"]}"#, "unknown field `url`"),
        (r#"{"urls": "http://127.0.0.1/a"}"#, "invalid type"),
        ("{}", "nothing to purge"),
        (r#"{"all": "yes"}"#, "invalid type"),
        (r#"{"urls": ["/a"]}"#, "absolute"),
        (
            r#"{"urls": ["http://127.0.0.1/a", "ftp://127.0.0.1/a"]}"#,
            "ftp://127.0.0.1/a",
        ),
        (r#"{"prefixes": ["not a url"]}"#, "prefixes"),
        (r#"{"tags": ["two words"]}"#, "surrogate key"),
        (r#"{"tags": [""], "all": true}"#, "surrogate key"),
    ];
    for (body, expected) in cases {
        let (status, answer) = purge_as(&edge, None, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{body}: `{message}` should mention `{expected}`"
        );
    }
    assert!(
        is_hit(&edge, "/a").await,
        "a rejected request purges nothing"
    );
    assert_eq!(edge.running.state.cache.generation(), 0);
}

#[tokio::test]
async fn stats_report_tiers_requests_hit_ratio_and_origin_fetches() {
    let origin = origin_with(&[("/a", Route::ok("aaaa")), ("/b", Route::ok("bb"))]).await;
    let edge = TestEdge::start(&origin).await;
    warm(&edge, &["/a", "/b"]).await; // 2 misses, 2 hits
    edge.running.state.cache.flush().await;

    let r = edge
        .client
        .get(edge.admin_url("/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stats: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(stats["tiers"]["memory"]["entries"], 2, "{stats}");
    assert_eq!(stats["tiers"]["memory"]["bytes"], 6, "{stats}");
    let charged = stats["tiers"]["memory"]["charged"].as_u64().unwrap();
    assert!(
        charged > 6,
        "entry overhead is charged to the budget: {stats}"
    );
    assert_eq!(stats["tiers"]["disk"]["entries"], 2, "{stats}");
    assert_eq!(stats["requests"]["hit"], 2, "{stats}");
    assert_eq!(stats["requests"]["miss"], 2, "{stats}");
    assert_eq!(stats["hit_ratio"], 0.5, "{stats}");
    assert_eq!(stats["origin"]["fetches"], 2, "{stats}");
    assert_eq!(stats["origin"]["errors"], 0, "{stats}");
    assert_eq!(stats["fills_in_flight"], 0, "{stats}");
    assert_eq!(
        stats["fill_memory_bytes"], 0,
        "nothing held once fills end: {stats}"
    );
    assert_eq!(stats["disk"]["open"], true, "{stats}");
    assert_eq!(stats["disk"]["corrupt_blobs"], 0, "{stats}");
}

/// Checks the Prometheus text exposition format line by line: comments are `# HELP` or
/// `# TYPE`, and every sample is `name{labels} value` with a float value. Returns the
/// samples as (name, labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_default();
            assert!(matches!(kind, "HELP" | "TYPE"), "comment: {line}");
            assert!(is_name(name), "metric name in: {line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap_or_default();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line}"
                );
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value is not a float: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let labels = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("label without =: {line}"));
                    assert!(is_name(k), "label name `{k}` in: {line}");
                    assert!(v.starts_with('"'), "label value is quoted: {line}");
                }
                (name, labels)
            }
            None => (series, ""),
        };
        assert!(is_name(name), "metric name `{name}` in: {line}");
        samples.push((name.to_owned(), labels.to_owned(), value));
    }
    samples
}

#[tokio::test]
async fn a_purge_while_a_miss_is_read_keeps_what_it_read_out_of_the_cache() {
    // The operator updates the origin and purges while a miss is reading the old body:
    // that body reaches the clients waiting for it, but the purge is not undone by
    // storing it, whatever kind of purge it was, and whether the miss was read whole
    // (14 KB) or streamed to its client while read (700 KB).
    use common::Misbehaviour;
    let purges = |n: usize| {
        [
            json!({ "urls": [format!("http://127.0.0.1/k{n}")] }),
            json!({ "urls": [format!("http://127.0.0.1/k{}", n + 1)], "soft": true }),
            json!({ "prefixes": [format!("http://127.0.0.1/k{}", n + 2)] }),
            json!({ "tags": [format!("t{}", n + 3)] }),
            json!({ "all": true }),
            json!({ "all": true, "soft": true }),
        ]
    };
    let origin = TestOrigin::start().await;
    let edge = TestEdge::start(&origin).await;
    let cases = (purges(0).into_iter().map(|p| (p, 2_000, "detail=purged"))).chain(
        purges(6)
            .into_iter()
            .map(|p| (p, 100_000, "detail=streaming")),
    );
    for (i, (body, repeat, detail)) in cases.enumerate() {
        let path = format!("/k{i}");
        let old =
            Route::ok(format!("old {i} ").repeat(repeat)).header("surrogate-key", &format!("t{i}"));
        origin.route(
            &path,
            old.clone().misbehave(Misbehaviour::PauseMidBody(
                std::time::Duration::from_millis(800),
            )),
        );
        let reading = tokio::spawn({
            let (client, url) = (edge.client.clone(), edge.url(&path));
            async move {
                let r = client.get(url).send().await.unwrap();
                (cache_status(&r), r.text().await.unwrap())
            }
        });
        while origin.hits_on(&path) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let new = format!("new {i}");
        origin.route(&path, Route::ok(new.clone()));
        purge(&edge, body.clone()).await;

        let (cs, got) = reading.await.unwrap();
        assert_eq!(
            got,
            String::from_utf8_lossy(&old.body),
            "{body}: the read body, whole"
        );
        assert!(
            cs.contains(detail) && !cs.contains("stored"),
            "{body}: {cs}"
        );
        let r = edge.get(&path).await;
        assert!(
            cache_status(&r).contains("stored"),
            "{body}: {}",
            cache_status(&r)
        );
        assert_eq!(
            r.text().await.unwrap(),
            new,
            "{body}: the origin's body after the purge"
        );
        if body.get("soft").is_some() && body.get("all").is_some() {
            // A soft purge of everything marks stale what was validated up to its
            // second, so an entry stored in that same second revalidates once first.
            tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
            edge.get(&path).await;
        }
        assert!(is_hit(&edge, &path).await, "{body}: stored again");
    }
}

#[tokio::test]
async fn a_decoded_body_kept_out_by_a_purge_is_sent_without_the_origin_coding() {
    // The origin sends gzip despite `Accept-Encoding: identity`; edge decodes it, and a
    // purge lands while it is read: the decoded bytes go out as identity.
    use tokio::io::AsyncReadExt as _;
    let text = "decoded, not stored ".repeat(500);
    let mut gz = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(text.as_bytes())
        .read_to_end(&mut gz)
        .await
        .unwrap();
    let pause = common::Misbehaviour::PauseMidBody(std::time::Duration::from_millis(800));
    let origin = origin_with(&[(
        "/gz",
        Route::ok(gz)
            .header("content-encoding", "gzip")
            .misbehave(pause),
    )])
    .await;
    let edge = TestEdge::start(&origin).await;
    let reading = tokio::spawn({
        let (client, url) = (edge.client.clone(), edge.url("/gz"));
        async move {
            let r = client.get(url).send().await.unwrap();
            let coding = r.headers().get("content-encoding").cloned();
            (cache_status(&r), coding, r.text().await.unwrap())
        }
    });
    while origin.hits_on("/gz") == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    purge(&edge, json!({ "urls": ["http://127.0.0.1/gz"] })).await;
    let (cs, coding, got) = reading.await.unwrap();
    assert!(cs.contains("detail=purged"), "{cs}");
    assert_eq!(coding, None);
    assert_eq!(got, text);
}

#[tokio::test]
async fn a_purge_while_a_revalidation_waits_is_not_undone_by_its_304() {
    // The origin answers 304 for the old version, then is updated and purged before
    // that 304 arrives: the 304 must not bring the purged entry back.
    let old = |misbehaviour| {
        Route::ok("old")
            .header("cache-control", "max-age=1")
            .header("etag", "\"e1\"")
            .misbehave(misbehaviour)
    };
    let origin = origin_with(&[("/r", old(common::Misbehaviour::None))]).await;
    let edge = TestEdge::start(&origin).await;
    warm(&edge, &["/r"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    origin.route(
        "/r",
        old(common::Misbehaviour::Slow(
            std::time::Duration::from_millis(800),
        )),
    );
    let revalidating = tokio::spawn({
        let (client, url) = (edge.client.clone(), edge.url("/r"));
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    });
    let hits = origin.hits_on("/r");
    while origin.hits_on("/r") == hits {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The origin has chosen its 304 and waits before sending it.
    origin.route(
        "/r",
        Route::ok("new")
            .header("cache-control", "max-age=60")
            .header("etag", "\"e2\""),
    );
    purge(&edge, json!({ "urls": ["http://127.0.0.1/r"] })).await;
    assert_eq!(
        revalidating.await.unwrap(),
        "new",
        "fetched whole after the purge"
    );
    let r = edge.get("/r").await;
    assert!(cache_status(&r).contains("; hit"), "{}", cache_status(&r));
    assert_eq!(r.text().await.unwrap(), "new");
}

#[tokio::test]
async fn a_url_purge_names_the_entry_a_request_for_that_url_would_use() {
    // Dot segments, percent-encoding and the site's query policy are applied to a
    // purged URL as to a request, so another spelling of the same URL purges it.
    let origin = origin_with(&[
        ("/n/a-b", Route::ok("ab")),
        ("/n/a-b?a=1&b=2", Route::ok("ab, a and b")),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"cache\"\n[[site]]\nhosts = [\"*\"]\norigin = \"{}\"\nquery = \"sort\"\n",
        origin.url()
    );
    let edge = TestEdge::start_toml(&toml, dir).await;
    for (stored, purged) in [
        ("/n/a-b", "http://127.0.0.1/n/x/../a%2Db"),
        ("/n/a-b?a=1&b=2", "http://127.0.0.1/n/a-b?b=2&a=1"),
    ] {
        warm(&edge, &[stored]).await;
        let answer = purge(&edge, json!({ "urls": [purged] })).await;
        assert_eq!(answer["purged"]["url"], 1, "{purged}: {answer}");
        let r = edge.get(stored).await;
        assert!(
            !cache_status(&r).contains("; hit"),
            "{purged}: {}",
            cache_status(&r)
        );
    }
}

/// What a `tracing` subscriber writes, kept in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    /// Waits up to 5 s for an access log line for `method` and `path`, and returns it.
    async fn access_line(&self, method: &str, path: &str) -> String {
        let field = format!("method={method} host=\"127.0.0.1\" path=\"{path}\" ");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
            if let Some(line) = text.lines().find(|l| l.contains(&field)) {
                return line.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no access log line for {path} in:\n{text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn bodies_of_no_declared_length_are_counted_and_logged_as_they_are_sent() {
    use common::Misbehaviour;
    // The edge runs on this test's one thread, so this thread's subscriber sees its
    // access log.
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let chunked = Misbehaviour::ChunkedPause(std::time::Duration::ZERO);
    let origin = origin_with(&[
        // No freshness and no validator: passed through as the origin sends it.
        (
            "/api",
            Route::ok(vec![b'a'; 10_000])
                .without("cache-control")
                .misbehave(chunked.clone()),
        ),
        // Large: streamed to its client while it is stored.
        ("/big", Route::ok(vec![b'b'; 300_000]).misbehave(chunked)),
    ])
    .await;
    let edge = TestEdge::start(&origin).await;
    // An answer edge makes itself knows its length and keeps its Content-Length.
    origin.route("/garbage", Route::ok("x").misbehave(Misbehaviour::Garbage));
    let r = edge.get("/garbage").await;
    assert_eq!(r.status(), 502);
    let length: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), length);
    for (path, len, detail) in [
        ("/api", 10_000, "no-freshness"),
        ("/big", 300_000, "streaming"),
    ] {
        let r = edge.get(path).await;
        assert!(cache_status(&r).contains(detail), "{}", cache_status(&r));
        assert!(r.headers().get("content-length").is_none(), "chunked");
        assert_eq!(r.bytes().await.unwrap().len(), len);
        // Logged once the body is sent, with the bytes it had.
        let line = log.access_line("GET", path).await;
        assert!(line.contains(&format!(" bytes={len} ")), "{line}");
    }
    let line = log.access_line("GET", "/garbage").await;
    assert!(line.contains(&format!(" bytes={length} ")), "{line}");
    // A HEAD answer sends no body, whatever its Content-Length says.
    let r = edge.client.head(edge.url("/big")).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], "300000");
    let line = log.access_line("HEAD", "/big").await;
    assert!(line.contains(" bytes=0 "), "{line}");
    let text = edge.metrics_text().await;
    let identity: f64 = parse_prometheus(&text)
        .iter()
        .filter(|(n, l, _)| n == "edge_response_body_bytes_total" && l.contains("identity"))
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(identity, 310_000.0 + length as f64, "{text}");
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let origin = origin_with(&[("/a", Route::ok("aaaa").header("surrogate-key", "k"))]).await;
    let edge = TestEdge::start(&origin).await;
    warm(&edge, &["/a"]).await;
    edge.get("/missing").await;
    purge(&edge, json!({ "tags": ["k"] })).await;

    let r = edge
        .client
        .get(edge.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "Prometheus text content type"
    );
    let text = r.text().await.unwrap();
    let samples = parse_prometheus(&text);
    let value = |name: &str, labels: &[&str]| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|want| l.contains(want)))
            .map(|(_, _, v)| v)
            .sum()
    };
    for family in [
        "edge_requests_total",
        "edge_response_body_bytes_total",
        "edge_origin_request_duration_seconds_bucket",
        "edge_origin_request_duration_seconds_count",
        "edge_coalesced_waits_total",
        "edge_purges_total",
        "edge_purge_duration_seconds_bucket",
        "edge_cache_entries",
        "edge_cache_bytes",
        "edge_cache_evictions_total",
        "edge_fills_in_flight",
        "edge_ready",
    ] {
        assert!(
            samples.iter().any(|(n, _, _)| n == family),
            "{family} missing from:\n{text}"
        );
    }
    assert_eq!(
        value("edge_requests_total", &["cache=\"hit\"", "status=\"2xx\""]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value("edge_requests_total", &["cache=\"miss\""]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value("edge_requests_total", &["status=\"4xx\""]),
        1.0,
        "{text}"
    );
    assert!(
        value("edge_response_body_bytes_total", &["encoding=\"identity\""]) >= 8.0,
        "{text}"
    );
    assert_eq!(
        value(
            "edge_origin_request_duration_seconds_count",
            &["site=\"test\""]
        ),
        2.0
    );
    assert_eq!(value("edge_purges_total", &["kind=\"tag\""]), 1.0);
    assert_eq!(value("edge_purged_objects_total", &["kind=\"tag\""]), 1.0);
    assert_eq!(value("edge_ready", &[]), 1.0);
}

#[tokio::test]
async fn healthz_and_readyz_answer_when_the_edge_is_up() {
    let origin = TestOrigin::start().await;
    let edge = TestEdge::start(&origin).await;
    let r = edge
        .client
        .get(edge.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = edge
        .client
        .get(edge.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ready\n");
    edge.running.state.metrics.set_ready(false);
    let r = edge
        .client
        .get(edge.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}
