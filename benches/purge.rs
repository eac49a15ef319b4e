//! Purge cost over a cache of 1,000,000 entries (memory tier and disk index both hold
//! all of them), beside a baseline that scans every entry once.
//!
//! - `prefix_*`: a hard purge of one "directory" of 1,000 entries (a range read of the
//!   disk index plus a pass over the memory tier).
//! - `tag_*`: a hard purge of 1,000 entries sharing a surrogate key, scattered over the
//!   key space (the tag index: no scan).
//! - `*_visible` stops when every lookup already misses (memory removed, removals
//!   queued in the disk overlay); `*_committed` also waits for the disk writer to commit
//!   them (fsync), which is when `POST /purge` answers.
//! - `scan_baseline`: one pass over the memory tier that matches nothing — the least an
//!   unindexed tag purge would cost, before touching the disk.
//!
//! Each timed purge removes the same 1,000 entries, re-inserted (and committed) before
//! it, untimed.
//!
//! ```sh
//! cargo bench --bench purge
//! ```
//!
//! Building the 1,000,000-entry index takes a while (every entry is committed to redb).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use edge::cache::Cache;
use edge::cache::key::CacheKey;
use edge::cache::meta::{BlobHash, Meta, Rep, to_unix};
use edge::config::Config;
use edge::http::encoding::Encoding;
use edge::http::freshness::Freshness;

const ENTRIES: usize = 1_000_000;
/// Entries per directory and per tag.
const GROUP: usize = 1_000;
const HOST: &str = "static.example.com";

fn key(i: usize) -> CacheKey {
    CacheKey::new("bench", HOST, &format!("/d{}/asset-{i}.js", i / GROUP))
}

/// Each entry is in directory `i / GROUP` and carries tag `mod{i % GROUP}`, so that one
/// tag's entries are spread over every directory.
fn meta(i: usize, body: &Bytes, now: SystemTime) -> Meta {
    let hash = BlobHash::of(body);
    let t = to_unix(now);
    Meta {
        url: format!("{HOST}/d{}/asset-{i}.js", i / GROUP),
        status: 200,
        headers: vec![("content-type".into(), b"text/javascript".to_vec())],
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
        last_modified: None,
        tags: vec![format!("mod{}", i % GROUP), "everything".into()],
        reps: vec![Rep {
            encoding: Encoding::Identity,
            hash,
            len: body.len() as u64,
            etag: format!("\"b3-{}\"", &hash.to_hex()[..32]),
        }],
        generation: 0,
        invalidated: false,
    }
}

fn open(dir: &Path) -> Cache {
    let config = Config::parse(
        r#"
        [cache]
        dir = "cache"
        memory = "4GiB"
        disk = "10GiB"
        write_queue = "4GiB"

        [[site]]
        name = "bench"
        hosts = ["*"]
        origin = "http://127.0.0.1:9"
        "#,
        dir,
    )
    .expect("the bench config is valid");
    Cache::open(&config.cache)
}

fn insert(cache: &Cache, indices: impl Iterator<Item = usize>, body: &Bytes, now: SystemTime) {
    for i in indices {
        cache.insert(key(i), meta(i, body, now), vec![body.clone()]);
    }
}

fn purge(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = open(dir.path());
    // One shared 1-byte blob: the index, not the blob store, is what is measured.
    let body = Bytes::from_static(b"x");
    let now = SystemTime::now();
    let started = Instant::now();
    insert(&cache, 0..ENTRIES, &body, now);
    runtime.block_on(cache.flush());
    eprintln!(
        "built {} entries in {:.1?} (memory {}, disk {})",
        ENTRIES,
        started.elapsed(),
        cache.memory().len(),
        cache.disk_entries()
    );
    assert_eq!(
        cache.disk_entries(),
        ENTRIES as u64,
        "every entry is in the disk index"
    );

    let mut group = c.benchmark_group("purge_1m");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));

    // Directory 500: entries 500_000 .. 500_999.
    let dir_start = 500 * GROUP;
    let prefix = CacheKey::new("bench", HOST, "/d500/").as_str().to_owned();
    // Tag mod7: entries 7, 1_007, 2_007, … — one in every directory.
    let tagged = || (7..ENTRIES).step_by(GROUP);

    for durable in [false, true] {
        let suffix = if durable { "committed" } else { "visible" };
        group.bench_function(format!("prefix_1000_of_1m_{suffix}"), |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let (cache, body, prefix) = (cache.clone(), body.clone(), prefix.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        insert(&cache, dir_start..dir_start + GROUP, &body, now);
                        cache.flush().await;
                        let t = Instant::now();
                        let n = cache.purge_prefix(&prefix, false).await;
                        if durable {
                            cache.flush().await;
                        }
                        total += t.elapsed();
                        assert_eq!(n, GROUP as u64);
                    }
                    total
                }
            })
        });
        group.bench_function(format!("tag_1000_of_1m_{suffix}"), |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let (cache, body) = (cache.clone(), body.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        insert(&cache, tagged(), &body, now);
                        cache.flush().await;
                        let t = Instant::now();
                        let n = cache.purge_tag("mod7", false).await;
                        if durable {
                            cache.flush().await;
                        }
                        total += t.elapsed();
                        assert_eq!(n, GROUP as u64);
                    }
                    total
                }
            })
        });
    }

    insert(&cache, dir_start..dir_start + GROUP, &body, now);
    insert(&cache, tagged(), &body, now);
    runtime.block_on(cache.flush());
    group.bench_function("scan_baseline_1m", |b| {
        b.iter(|| {
            let mut seen = 0usize;
            let removed = cache.memory().remove_where(|e| {
                seen += 1;
                e.meta.tags.iter().any(|t| t == "no-such-tag")
            });
            assert_eq!((removed, seen), (0, ENTRIES));
        })
    });
    group.finish();
}

criterion_group!(benches, purge);
criterion_main!(benches);
