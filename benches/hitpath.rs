//! The pieces of a cache hit, each beside a baseline that does the least work the piece
//! could do: building the key (beside one `String` copy), finding a memory hit (beside a
//! `HashMap` get and a `Mutex<HashMap>` get; over a large index with zipf-distributed
//! keys, also beside a strict LRU that relinks on every hit), choosing an encoding
//! (beside a substring search) and building the response (beside cloning a prebuilt
//! header block and a `Bytes` body).
//!
//! ```sh
//! cargo bench --bench hitpath            # full run
//! cargo bench --bench hitpath -- --quick # a quick look
//! cargo bench --bench hitpath -- respond # one group
//! ```
//!
//! The distance between a piece and its baseline is what the hit path can still win.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edge::body::ResponseBody;
use edge::cache::key::CacheKey;
use edge::cache::meta::{BlobHash, Meta, Rep, to_unix};
use edge::cache::{Cache, Entry, Lookup};
use edge::config::Config;
use edge::http::encoding::{self, Encoding};
use edge::http::freshness::Freshness;
use edge::respond::{CacheStatus, Presentation, respond};
use edge::server::AppState;
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, request};

const SITE: &str = "bench";
const HOST: &str = "static.example.com";
const PATH: &str = "/assets/js/app.3f9a2c1d7e.js?v=2";

/// A memory-only edge (no disk tier) whose cache the benches fill directly.
fn cache() -> (tokio::runtime::Runtime, Cache) {
    cache_of("1GiB")
}

/// [`cache`] with a memory budget of `memory`.
fn cache_of(memory: &str) -> (tokio::runtime::Runtime, Cache) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let config = Config::parse(
        r#"
        [cache]
        memory = "MEMORY"
        disk = "0B"

        [[site]]
        name = "bench"
        hosts = ["*"]
        origin = "http://127.0.0.1:9"
        "#
        .replace("MEMORY", memory)
        .as_str(),
        Path::new("."),
    )
    .expect("the bench config is valid");
    let state = {
        let _inside = runtime.enter();
        AppState::new(Arc::new(config))
    };
    (runtime, state.cache)
}

/// Metadata of a fresh 200 with `bodies.len()` representations (identity first).
fn meta(url: &str, bodies: &[(Encoding, &Bytes)], now: SystemTime) -> Meta {
    let reps = bodies
        .iter()
        .map(|(encoding, bytes)| {
            let hash = BlobHash::of(bytes);
            Rep {
                encoding: *encoding,
                hash,
                len: bytes.len() as u64,
                etag: format!("\"b3-{}\"", &hash.to_hex()[..32]),
            }
        })
        .collect();
    let t = to_unix(now);
    Meta {
        url: url.to_owned(),
        status: 200,
        headers: vec![
            ("content-type".into(), b"text/javascript".to_vec()),
            (
                "cache-control".into(),
                b"public, max-age=31536000, immutable".to_vec(),
            ),
            (
                "last-modified".into(),
                b"Tue, 03 Jun 2025 10:00:00 GMT".to_vec(),
            ),
            ("date".into(), httpdate::fmt_http_date(now).into_bytes()),
            ("via".into(), b"1.1 edge".to_vec()),
        ],
        request_time: t,
        response_time: t,
        freshness: Freshness {
            lifetime: 31_536_000,
            initial_age: 0,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            must_revalidate: false,
            no_cache: false,
            heuristic: false,
        },
        last_modified: Some(1_748_944_800),
        tags: Vec::new(),
        reps,
        generation: 0,
        invalidated: false,
    }
}

fn bodies() -> (Bytes, Bytes, Bytes) {
    let identity = Bytes::from(vec![b'a'; 100 * 1024]);
    let br = Bytes::from(vec![b'b'; 24 * 1024]);
    let gzip = Bytes::from(vec![b'g'; 30 * 1024]);
    (identity, br, gzip)
}

fn key_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("key");
    let joined = format!("{SITE}\u{1f}{HOST}\u{1f}{PATH}");
    group.bench_function("CacheKey::new", |b| {
        b.iter(|| CacheKey::new(black_box(SITE), black_box(HOST), black_box(PATH)))
    });
    group.bench_function("baseline: String::from (one copy)", |b| {
        b.iter(|| String::from(black_box(joined.as_str())))
    });
    group.finish();
}

fn lookup_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    let now = SystemTime::now();
    let body = Bytes::from(vec![b'x'; 1024]);
    for entries in [1_000usize, 100_000] {
        let (_runtime, cache) = cache();
        let mut plain: HashMap<CacheKey, Arc<Entry>> = HashMap::with_capacity(entries);
        let mut probe = None;
        for i in 0..entries {
            let path = format!("/assets/{i:08x}.css");
            let key = CacheKey::new(SITE, HOST, &path);
            let m = meta(&path, &[(Encoding::Identity, &body)], now);
            let entry = cache.insert(key.clone(), m, vec![body.clone()]);
            if i == entries / 2 {
                probe = Some(key.clone());
            }
            plain.insert(key, entry);
        }
        let key = probe.expect("a probe key");
        match cache.lookup(&key, now).now_or_never() {
            Some(Lookup::Fresh(_)) => {}
            Some(other) => panic!(
                "the probe key should be a fresh memory hit, got {}",
                other.as_str()
            ),
            None => panic!("a memory hit should not wait"),
        }
        let locked = Mutex::new(plain.clone());

        group.bench_with_input(
            BenchmarkId::new("Cache::lookup (memory hit)", entries),
            &key,
            |b, key| {
                b.iter(|| match cache.lookup(black_box(key), now).now_or_never() {
                    Some(Lookup::Fresh(hit)) => hit,
                    _ => unreachable!("checked above"),
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("baseline: HashMap get + Arc clone", entries),
            &key,
            |b, key| b.iter(|| plain.get(black_box(key)).cloned()),
        );
        group.bench_with_input(
            BenchmarkId::new("baseline: Mutex<HashMap> get + Arc clone", entries),
            &key,
            |b, key| {
                b.iter(|| {
                    locked
                        .lock()
                        .expect("not poisoned")
                        .get(black_box(key))
                        .cloned()
                })
            },
        );
    }
    group.bench_function("baseline: Bytes clone", |b| {
        b.iter(|| black_box(&body).clone())
    });
    group.finish();
}

/// `count` indices in `0..n`, drawn with P(k) proportional to 1/(k+1) (zipf, s = 1) from
/// a fixed seed, as a popular site's requests fall on its assets.
fn zipf_indices(n: usize, count: usize) -> Vec<usize> {
    let mut cumulative = Vec::with_capacity(n);
    let mut total = 0.0f64;
    for k in 1..=n {
        total += 1.0 / k as f64;
        cumulative.push(total);
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..count)
        .map(|_| {
            // xorshift64*: deterministic and good enough to spread draws.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let unit =
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
            cumulative.partition_point(|&c| c < unit * total).min(n - 1)
        })
        .collect()
}

/// Hits spread zipf-wise over many entries, so that most touch memory no cache level
/// holds: what a hit costs on a node with a large index. `Cache::lookup` (second-chance
/// eviction: a hit sets a flag) beside a strict LRU that relinks the entry on each hit
/// (what the memory tier did before) and beside a plain locked `HashMap`.
fn lookup_zipf_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup_zipf");
    let now = SystemTime::now();
    let body = Bytes::from(vec![b'x'; 512]);
    for entries in [1_000usize, 1_000_000] {
        let (_runtime, cache) = cache_of("8GiB");
        let mut lru = lru::LruCache::unbounded();
        let mut plain: HashMap<CacheKey, Arc<Entry>> = HashMap::with_capacity(entries);
        let mut keys = Vec::with_capacity(entries);
        for i in 0..entries {
            let path = format!("/assets/{i:08x}.css");
            let key = CacheKey::new(SITE, HOST, &path);
            let m = meta(&path, &[(Encoding::Identity, &body)], now);
            let entry = cache.insert(key.clone(), m, vec![body.clone()]);
            lru.put(key.clone(), entry.clone());
            plain.insert(key.clone(), entry);
            keys.push(key);
        }
        assert_eq!(cache.memory().len(), entries, "every entry fits the budget");
        // As on a serving node, every entry has answered once: its header block exists.
        let request = parts(&[]);
        let presentation = Presentation {
            preference: &[Encoding::Identity],
            compressible: &|_: &Meta| false,
            cache_control: None,
        };
        for key in &keys {
            let Some(Lookup::Fresh(hit)) = cache.lookup(key, now).now_or_never() else {
                unreachable!("every key was just stored")
            };
            respond(&hit.entry, &request, now, CacheStatus::hit(), &presentation);
        }
        let order: Vec<CacheKey> = zipf_indices(entries, 1 << 20)
            .into_iter()
            .map(|i| keys[i].clone())
            .collect();
        drop(keys);
        let lru = Mutex::new(lru);
        let plain = Mutex::new(plain);
        let mut next = 0usize;
        let mut key = move || {
            next = (next + 1) & ((1 << 20) - 1);
            next
        };
        group.bench_function(
            BenchmarkId::new("Cache::lookup (memory hit)", entries),
            |b| {
                b.iter(|| match cache.lookup(&order[key()], now).now_or_never() {
                    Some(Lookup::Fresh(hit)) => hit,
                    _ => unreachable!("every key is a fresh memory hit"),
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("Cache::lookup + respond (200, dropped)", entries),
            |b| {
                b.iter(|| match cache.lookup(&order[key()], now).now_or_never() {
                    Some(Lookup::Fresh(hit)) => {
                        respond(&hit.entry, &request, now, CacheStatus::hit(), &presentation)
                    }
                    _ => unreachable!("every key is a fresh memory hit"),
                })
            },
        );
        group.bench_function(
            BenchmarkId::new(
                "baseline: Mutex<LruCache> get (relinks) + Arc clone",
                entries,
            ),
            |b| {
                b.iter(|| {
                    lru.lock()
                        .expect("not poisoned")
                        .get(&order[key()])
                        .cloned()
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("baseline: Mutex<HashMap> get + Arc clone", entries),
            |b| {
                b.iter(|| {
                    plain
                        .lock()
                        .expect("not poisoned")
                        .get(&order[key()])
                        .cloned()
                })
            },
        );
    }
    group.finish();
}

fn negotiate_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("negotiate");
    let available = [
        Encoding::Identity,
        Encoding::Br,
        Encoding::Zstd,
        Encoding::Gzip,
    ];
    let cases: [(&str, Option<&[u8]>); 4] = [
        ("absent", None),
        ("br, gzip", Some(b"br, gzip")),
        ("browser", Some(b"gzip, deflate, br, zstd")),
        (
            "q-values",
            Some(b"gzip;q=1.0, identity; q=0.5, br;q=0.9, *;q=0"),
        ),
    ];
    for (name, accept) in cases {
        group.bench_with_input(BenchmarkId::new("negotiate", name), &accept, |b, accept| {
            b.iter(|| encoding::negotiate(black_box(*accept), black_box(&available)))
        });
        group.bench_with_input(
            BenchmarkId::new("baseline: substring search", name),
            &accept,
            |b, accept| {
                b.iter(|| {
                    let value = black_box(*accept).unwrap_or_default();
                    if value.windows(2).any(|w| w == b"br") {
                        Encoding::Br
                    } else if value.windows(4).any(|w| w == b"gzip") {
                        Encoding::Gzip
                    } else {
                        Encoding::Identity
                    }
                })
            },
        );
    }
    group.finish();
}

fn parts(headers: &[(&str, &str)]) -> request::Parts {
    let mut builder = Request::get(format!("http://{HOST}{PATH}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("a valid request").into_parts().0
}

fn respond_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("respond");
    let now = SystemTime::now();
    let (_runtime, cache) = cache();
    let (identity, br, gzip) = bodies();
    let key = CacheKey::new(SITE, HOST, PATH);
    let m = meta(
        PATH,
        &[
            (Encoding::Identity, &identity),
            (Encoding::Br, &br),
            (Encoding::Gzip, &gzip),
        ],
        now,
    );
    let identity_etag = m.reps[0].etag.clone();
    let entry = cache.insert(key, m, vec![identity.clone(), br.clone(), gzip]);

    let cases = [
        ("200 identity", parts(&[])),
        ("200 br", parts(&[("accept-encoding", "br, gzip")])),
        (
            "304 if-none-match",
            parts(&[("if-none-match", identity_etag.as_str())]),
        ),
        ("206 range", parts(&[("range", "bytes=1000-1999")])),
    ];
    // What proxy passes for a fingerprinted, compressible asset.
    let immutable = HeaderValue::from_static("public, max-age=31536000, immutable");
    let presentation = Presentation {
        preference: &[
            Encoding::Br,
            Encoding::Zstd,
            Encoding::Gzip,
            Encoding::Identity,
        ],
        compressible: &|_: &Meta| true,
        cache_control: Some(&immutable),
    };
    for (name, request) in &cases {
        group.bench_with_input(BenchmarkId::new("respond", name), request, |b, request| {
            b.iter(|| {
                respond(
                    black_box(&entry),
                    black_box(request),
                    now,
                    CacheStatus::hit(),
                    &presentation,
                )
            })
        });
    }

    // What a hit costs when the header block was built at fill time: clone it, set the
    // two per-hit fields, attach the body.
    let mut prebuilt = HeaderMap::new();
    prebuilt.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript"),
    );
    prebuilt.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    prebuilt.insert(
        header::ETAG,
        HeaderValue::from_str(&identity_etag).expect("ASCII"),
    );
    prebuilt.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_static("Tue, 03 Jun 2025 10:00:00 GMT"),
    );
    prebuilt.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    prebuilt.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
    prebuilt.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    prebuilt.insert(header::CONTENT_LENGTH, HeaderValue::from(br.len()));
    group.bench_function("baseline: prebuilt headers clone + Bytes body", |b| {
        b.iter(|| {
            let mut response = Response::new(ResponseBody::whole(black_box(&br).clone()));
            *response.headers_mut() = black_box(&prebuilt).clone();
            let headers = response.headers_mut();
            headers.insert(header::AGE, HeaderValue::from(0u64));
            headers.insert(
                "cache-status",
                HeaderValue::from_static("edge; hit; ttl=31535999"),
            );
            response
        })
    });
    group.bench_function("baseline: Bytes clone", |b| {
        b.iter(|| black_box(&identity).clone())
    });
    group.finish();
}

criterion_group!(
    benches,
    key_bench,
    lookup_bench,
    lookup_zipf_bench,
    negotiate_bench,
    respond_bench
);
criterion_main!(benches);
