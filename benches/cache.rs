//! The store's lookup cost by tier, beside bare baselines, and the start-up time of the
//! cache with 100,000 entries in its disk index.
//!
//! - `cache_lookup/baseline: Bytes clone` and `…/baseline: HashMap get + Arc clone`: the
//!   least any hit can cost.
//! - `cache_lookup/memory hit`: `Cache::lookup` answered by the memory tier.
//! - `cache_lookup/disk hit 16 KiB`: answered by the disk tier, page cache warm: the
//!   overlay check, a hop to the blocking pool, a redb read, the blob read and its blake3
//!   verification (the memory tier is too small to promote into, so every lookup goes
//!   to disk).
//! - `cache_lookup/disk hit 1 MiB, streamed`: a disk-only object: lookup (open the
//!   blob) and the verified stream read to its end.
//! - `cache_startup/Cache::open, 100000 entries`: opening the index (no blob scan) and
//!   starting the writer; `cache_startup/open + first disk hit` adds one lookup.
//!
//! ```sh
//! cargo bench --bench cache
//! # keep the 100,000-entry cache directory, e.g. to time the edge binary starting on it:
//! EDGE_BENCH_CACHE_DIR=/var/tmp/edge-100k cargo bench --bench cache -- cache_startup
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::{FutureExt as _, StreamExt as _};
use http::HeaderMap;

use edge::cache::key::CacheKey;
use edge::cache::meta::{BlobHash, Meta, Rep, to_unix};
use edge::cache::{Body, Cache, Lookup, Segment};
use edge::config::CacheConfig;
use edge::http::encoding::Encoding;

const STARTUP_ENTRIES: usize = 100_000;

fn key(i: usize) -> CacheKey {
    CacheKey::new(
        "bench",
        "static.example.com",
        &format!("/assets/{i:08x}.js"),
    )
}

fn meta(body: &[u8], now: SystemTime) -> Meta {
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", "public, max-age=31536000".parse().unwrap());
    Meta {
        url: "static.example.com/asset".into(),
        status: 200,
        headers: vec![("content-type".into(), b"text/javascript".to_vec())],
        request_time: to_unix(now),
        response_time: to_unix(now),
        freshness: edge::http::freshness::analyze(200, &headers, now, now),
        last_modified: None,
        tags: Vec::new(),
        reps: vec![Rep {
            encoding: Encoding::Identity,
            hash: BlobHash::of(body),
            len: body.len() as u64,
            etag: "\"bench\"".into(),
        }],
        generation: 0,
        invalidated: false,
    }
}

fn config(dir: &Path, memory: u64) -> CacheConfig {
    CacheConfig {
        memory,
        dir: dir.to_path_buf(),
        disk: 10 << 30,
        max_object_size: 1 << 30,
        memory_object_max: 64 << 10,
        write_queue: 256 << 20,
        fill_memory: 1 << 30,
        verify_interval: edge::config::DEFAULT_VERIFY_INTERVAL,
        sendfile_memory: 0,
        open_blobs: 0,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn body_of(seed: usize, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i.wrapping_mul(31) ^ seed) as u8)
            .collect::<Vec<_>>(),
    )
}

fn lookup(c: &mut Criterion) {
    let rt = runtime();
    let now = SystemTime::now();
    let small = body_of(1, 16 << 10);
    let large = body_of(2, 1 << 20);
    let mut group = c.benchmark_group("cache_lookup");

    group.bench_function("baseline: Bytes clone", |b| {
        b.iter(|| black_box(&small).clone())
    });
    let map: HashMap<CacheKey, Arc<Bytes>> = (0..1000)
        .map(|i| (key(i), Arc::new(small.clone())))
        .collect();
    let probe = key(500);
    group.bench_function("baseline: HashMap get + Arc clone", |b| {
        b.iter(|| map.get(black_box(&probe)).cloned())
    });

    // Memory hit: a memory tier big enough for everything.
    let memory_dir = tempfile::tempdir().expect("a temporary directory");
    let cache = Cache::open(&config(memory_dir.path(), 256 << 20));
    for i in 0..1000 {
        cache.insert(key(i), meta(&small, now), vec![small.clone()]);
    }
    rt.block_on(cache.flush());
    assert!(matches!(
        cache.lookup(&probe, now).now_or_never(),
        Some(Lookup::Fresh(_))
    ));
    group.bench_function("memory hit", |b| {
        b.iter(
            || match cache.lookup(black_box(&probe), now).now_or_never() {
                Some(Lookup::Fresh(hit)) => hit,
                _ => unreachable!("checked above"),
            },
        )
    });
    drop(cache);

    // Disk hits: no memory to promote into, so every lookup reads and verifies the blob.
    let disk_dir = tempfile::tempdir().expect("a temporary directory");
    let cache = Cache::open(&config(disk_dir.path(), 0));
    for i in 0..1000 {
        cache.insert(key(i), meta(&small, now), vec![small.clone()]);
    }
    let big = key(1_000_000);
    cache.insert(big.clone(), meta(&large, now), vec![large.clone()]);
    rt.block_on(cache.flush());
    assert!(
        matches!(rt.block_on(cache.lookup(&probe, now)), Lookup::Fresh(h) if h.tier == edge::cache::Tier::Disk)
    );
    group.bench_function("disk hit 16 KiB", |b| {
        b.to_async(&rt).iter(|| async {
            match cache.lookup(black_box(&probe), now).await {
                Lookup::Fresh(hit) => hit,
                _ => unreachable!("checked above"),
            }
        })
    });
    group.bench_function("disk hit 1 MiB, streamed", |b| {
        b.to_async(&rt).iter(|| async {
            let Lookup::Fresh(hit) = cache.lookup(black_box(&big), now).await else {
                unreachable!("stored above")
            };
            let Body::Disk(disk) = hit.entry.body(0) else {
                unreachable!("1 MiB is above memory_object_max")
            };
            let whole = vec![Segment::Range {
                start: 0,
                end: disk.len() - 1,
            }];
            let mut stream = std::pin::pin!(disk.stream(whole));
            let mut n = 0;
            while let Some(piece) = stream.next().await {
                n += piece.expect("a verified blob").len();
            }
            assert_eq!(n, 1 << 20);
        })
    });
    group.finish();
}

fn startup(c: &mut Criterion) {
    let rt = runtime();
    let temp = tempfile::tempdir().expect("a temporary directory");
    let dir = match std::env::var_os("EDGE_BENCH_CACHE_DIR") {
        Some(kept) => std::path::PathBuf::from(kept),
        None => temp.path().to_path_buf(),
    };
    let dir = dir.as_path();
    let now = SystemTime::now();
    // 100,000 entries over 1,000 distinct 4 KiB bodies: the index is full size, the
    // blob store stays small (start-up never reads blobs anyway).
    let bodies: Vec<Bytes> = (0..1000).map(|i| body_of(i, 4096)).collect();
    let built = Instant::now();
    {
        let cache = Cache::open(&config(dir, 64 << 20));
        for i in 0..STARTUP_ENTRIES {
            let body = &bodies[i % bodies.len()];
            cache.insert(key(i), meta(body, now), vec![body.clone()]);
            if i % 5_000 == 4_999 {
                rt.block_on(cache.flush());
            }
        }
        rt.block_on(cache.flush());
        assert_eq!(cache.disk_entries(), STARTUP_ENTRIES as u64);
    }
    let index = std::fs::metadata(dir.join("index.redb")).map_or(0, |m| m.len());
    eprintln!(
        "built {STARTUP_ENTRIES} entries in {:.1?}; index.redb is {} MiB",
        built.elapsed(),
        index >> 20
    );

    let mut group = c.benchmark_group("cache_startup");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function(format!("Cache::open, {STARTUP_ENTRIES} entries"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let cache = Cache::open(&config(dir, 64 << 20));
                total += started.elapsed();
                assert_eq!(cache.disk_entries(), STARTUP_ENTRIES as u64);
                drop(cache);
            }
            total
        })
    });
    let probe = key(STARTUP_ENTRIES / 2);
    group.bench_function("open + first disk hit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let cache = Cache::open(&config(dir, 64 << 20));
                let hit = rt.block_on(cache.lookup(&probe, now));
                total += started.elapsed();
                assert!(matches!(hit, Lookup::Fresh(_)));
                drop(cache);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, lookup, startup);
criterion_main!(benches);
