//! Unit tests of the store: eviction decisions, index round-trips, and the cache over a
//! real directory (restart, verification, streaming, damaged index).

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::HeaderMap;

use super::disk::index::{self, IndexWriter, Indexed};
use super::eviction::{Admission, Candidate, admit};
use super::key::CacheKey;
use super::meta::{BlobHash, Meta, Rep, to_unix};
use super::{Body, Cache, Hit, Lookup, Segment, Tier};
use crate::config::CacheConfig;
use crate::http::encoding::Encoding;

fn h(n: u8) -> BlobHash {
    BlobHash([n; 32])
}

fn candidate(key: &'static str, blobs: &[(u8, u64)]) -> Candidate<&'static str> {
    Candidate {
        key,
        blobs: blobs.iter().map(|&(n, len)| (h(n), len)).collect(),
    }
}

#[test]
fn admit_within_budget_evicts_nothing() {
    let decision = admit(100, 100, 10, vec![candidate("a", &[(1, 50)])], |_| 1);
    assert_eq!(decision, Admission::Admit(vec![]));
}

#[test]
fn admit_evicts_least_recently_used_until_within_budget() {
    let candidates = vec![
        candidate("oldest", &[(1, 30)]),
        candidate("older", &[(2, 30)]),
        candidate("recent", &[(3, 30)]),
    ];
    // 150 used, budget 100: the two oldest (60 bytes) must go, not the recent one.
    let decision = admit(100, 150, 40, candidates, |_| 1);
    assert_eq!(decision, Admission::Admit(vec!["oldest", "older"]));
}

#[test]
fn admit_rejects_an_entry_larger_than_the_budget() {
    let decision = admit(100, 250, 150, vec![candidate("a", &[(1, 100)])], |_| 1);
    assert_eq!(decision, Admission::Reject);
}

#[test]
fn admit_counts_a_shared_blob_as_freed_only_when_every_reference_goes() {
    // Blob 1 (60 bytes) is referenced by "a", "b" and the new entry: evicting both
    // frees nothing of it, so "c" must go too.
    let candidates = vec![
        candidate("a", &[(1, 60)]),
        candidate("b", &[(1, 60)]),
        candidate("c", &[(2, 20)]),
    ];
    let refs = |hash: &BlobHash| if *hash == h(1) { 3 } else { 1 };
    assert_eq!(
        admit(100, 120, 20, candidates, refs),
        Admission::Admit(vec!["a", "b", "c"])
    );
    // Referenced by "a" and "b" only: evicting both frees it.
    let candidates = vec![candidate("a", &[(1, 60)]), candidate("b", &[(1, 60)])];
    let refs = |hash: &BlobHash| if *hash == h(1) { 2 } else { 1 };
    assert_eq!(
        admit(100, 150, 90, candidates, refs),
        Admission::Admit(vec!["a", "b"])
    );
}

#[test]
fn admit_rejects_when_evicting_everything_is_not_enough() {
    let decision = admit(100, 190, 90, vec![candidate("a", &[(1, 50)])], |_| 1);
    assert_eq!(decision, Admission::Reject);
}

pub(super) fn meta_for(bodies: &[&[u8]]) -> Meta {
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", "max-age=3600".parse().unwrap());
    let now = SystemTime::now();
    let encodings = [Encoding::Identity, Encoding::Gzip, Encoding::Br];
    Meta {
        url: "example.com/x".into(),
        status: 200,
        headers: vec![("content-type".into(), b"text/plain".to_vec())],
        request_time: to_unix(now),
        response_time: to_unix(now),
        freshness: crate::http::freshness::analyze(200, &headers, now, now),
        last_modified: None,
        tags: vec!["t1".into()],
        reps: bodies
            .iter()
            .zip(encodings)
            .map(|(b, encoding)| Rep {
                encoding,
                hash: BlobHash::of(b),
                len: b.len() as u64,
                etag: "\"e\"".into(),
            })
            .collect(),
        generation: 0,
        invalidated: false,
    }
}

fn test_db(dir: &Path) -> redb::Database {
    let db = redb::Database::create(dir.join("index.redb")).unwrap();
    index::create_tables(&db).unwrap();
    db
}

/// Runs `f` in one committed write transaction.
fn write<T>(
    db: &redb::Database,
    f: impl FnOnce(&mut IndexWriter<'_>) -> T,
) -> (T, index::Finished) {
    let txn = db.begin_write().unwrap();
    let (out, finished) = {
        let mut ix = IndexWriter::open(&txn).unwrap();
        let out = f(&mut ix);
        (out, ix.finish().unwrap())
    };
    txn.commit().unwrap();
    (out, finished)
}

#[test]
fn index_round_trips_meta_and_counts_a_shared_blob_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path());
    let meta = meta_for(&[b"same bytes"]);
    let (incoming, finished) = write(&db, |ix| {
        (ix.put("k1", &meta).unwrap(), ix.put("k2", &meta).unwrap())
    });
    assert_eq!(incoming, (10, 0), "the second key adds no new blob bytes");
    assert_eq!(finished.counters.blob_bytes, 10);
    assert_eq!(finished.entries, 2);
    assert_eq!(index::blob(&db, &meta.reps[0].hash).unwrap(), Some((2, 10)));
    match index::read_entry(&db, "k1").unwrap() {
        Indexed::Entry(read) => assert_eq!(read, meta),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        index::read_entry(&db, "nope").unwrap(),
        Indexed::Absent
    ));
}

#[test]
fn removing_the_last_reference_releases_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path());
    let meta = meta_for(&[b"shared"]);
    write(&db, |ix| {
        ix.put("a", &meta).unwrap();
        ix.put("b", &meta).unwrap();
    });
    let (_, finished) = write(&db, |ix| ix.remove("a").unwrap());
    assert!(finished.dead.is_empty(), "b still references it");
    let (_, finished) = write(&db, |ix| ix.remove("b").unwrap());
    assert_eq!(finished.dead, vec![meta.reps[0].hash]);
    assert_eq!(finished.counters.blob_bytes, 0);
    assert_eq!(index::blob(&db, &meta.reps[0].hash).unwrap(), None);
}

#[test]
fn replacing_an_entry_with_the_same_body_keeps_its_blob() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path());
    let meta = meta_for(&[b"body"]);
    write(&db, |ix| ix.put("a", &meta).unwrap());
    let mut newer = meta.clone();
    newer.status = 203;
    let (incoming, finished) = write(&db, |ix| ix.put("a", &newer).unwrap());
    assert_eq!(incoming, 0);
    assert!(finished.dead.is_empty());
    assert_eq!(index::blob(&db, &meta.reps[0].hash).unwrap(), Some((1, 4)));
}

#[test]
fn evict_to_removes_the_least_recently_touched_entries() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path());
    let (a, b, c) = (
        meta_for(&[b"aaaa"]),
        meta_for(&[b"bbbb"]),
        meta_for(&[b"cccc"]),
    );
    write(&db, |ix| {
        ix.put("a", &a).unwrap();
        ix.put("b", &b).unwrap();
        ix.touch("a").unwrap();
    });
    // Budget 8: adding c (4 bytes) to 8 needs one eviction; b is least recently used.
    let (admission, finished) = write(&db, |ix| {
        let incoming = ix.put("c", &c).unwrap();
        ix.evict_to(8, "c", incoming).unwrap()
    });
    assert_eq!(admission, Admission::Admit(vec!["b".to_owned()]));
    assert_eq!(finished.dead, vec![b.reps[0].hash]);
    assert_eq!(finished.counters.blob_bytes, 8);
    assert!(matches!(
        index::read_entry(&db, "b").unwrap(),
        Indexed::Absent
    ));
    assert!(matches!(
        index::read_entry(&db, "a").unwrap(),
        Indexed::Entry(_)
    ));
}

#[test]
fn remove_prefix_removes_only_matching_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(dir.path());
    let meta = meta_for(&[b"v"]);
    write(&db, |ix| {
        for k in ["p/1", "p/2", "p\u{1e}x", "q/1"] {
            ix.put(k, &meta).unwrap();
        }
    });
    assert_eq!(index::keys_with_prefix(&db, "p/").unwrap(), ["p/1", "p/2"]);
    let (removed, finished) = write(&db, |ix| ix.remove_prefix("p").unwrap());
    assert_eq!(removed.len(), 3);
    assert_eq!(finished.entries, 1);
}

#[test]
fn counters_and_vary_specs_survive_reopening_the_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = test_db(dir.path());
        write(&db, |ix| {
            ix.set_generation(7);
            ix.set_vary(
                "site\u{1f}h\u{1f}/v",
                &["accept-language".into(), "x-device".into()],
            )
            .unwrap();
        });
    }
    let db = test_db(dir.path());
    let (counters, entries) = index::load_counters(&db).unwrap();
    assert_eq!((counters.generation, entries), (7, 0));
    assert_eq!(
        index::load_vary(&db).unwrap(),
        vec![(
            "site\u{1f}h\u{1f}/v".to_owned(),
            vec!["accept-language".to_owned(), "x-device".to_owned()]
        )]
    );
}

fn config(dir: &Path) -> CacheConfig {
    CacheConfig {
        memory: 16 << 20,
        dir: dir.to_path_buf(),
        disk: 64 << 20,
        max_object_size: 64 << 20,
        memory_object_max: 64 << 10,
        write_queue: 64 << 20,
        fill_memory: 64 << 20,
        verify_interval: crate::config::DEFAULT_VERIFY_INTERVAL,
        sendfile_memory: 1 << 20,
        open_blobs: crate::config::DEFAULT_OPEN_BLOBS,
    }
}

pub(super) fn key(path: &str) -> CacheKey {
    CacheKey::new("s", "example.com", path)
}

async fn stored(cache: &Cache, path: &str, body: &[u8]) {
    cache.insert(
        key(path),
        meta_for(&[body]),
        vec![Bytes::copy_from_slice(body)],
    );
    cache.flush().await;
}

/// Stores `body` under `path`, drops it from memory, and looks it up again: a disk hit.
async fn disk_hit(cache: &Cache, path: &str, body: &[u8]) -> Hit {
    stored(cache, path, body).await;
    cache.memory().remove(&key(path));
    let Lookup::Fresh(hit) = cache.lookup(&key(path), SystemTime::now()).await else {
        panic!("expected a disk hit")
    };
    hit
}

/// One range over the whole of a `len`-byte body.
fn whole(len: usize) -> Vec<Segment> {
    vec![Segment::Range {
        start: 0,
        end: len as u64 - 1,
    }]
}

async fn collect(body: &Body, segments: Vec<Segment>) -> (Vec<u8>, Option<std::io::Error>) {
    let Body::Disk(disk) = body else {
        panic!("expected a disk body")
    };
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(disk.stream(segments));
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn blob_path(dir: &Path, body: &[u8]) -> std::path::PathBuf {
    super::disk::blob::Layout::new(dir).blob(&BlobHash::of(body))
}

#[tokio::test]
async fn entries_survive_a_restart_and_are_promoted_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = Cache::open(&config(dir.path()));
        stored(&cache, "/a", b"persisted").await;
        assert_eq!(cache.disk_entries(), 1);
    }
    let cache = Cache::open(&config(dir.path()));
    let Lookup::Fresh(hit) = cache.lookup(&key("/a"), SystemTime::now()).await else {
        panic!("expected a fresh disk hit")
    };
    assert_eq!(hit.tier, Tier::Disk);
    assert!(matches!(hit.entry.body(0), Body::Memory(b) if b == "persisted"));
    let Lookup::Fresh(again) = cache.lookup(&key("/a"), SystemTime::now()).await else {
        panic!("expected a fresh memory hit")
    };
    assert_eq!(again.tier, Tier::Memory);
}

#[tokio::test]
async fn a_flipped_byte_is_a_counted_miss_and_the_entry_goes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = Cache::open(&config(dir.path()));
        stored(&cache, "/c", b"clean bytes").await;
    }
    let path = blob_path(dir.path(), b"clean bytes");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let cache = Cache::open(&config(dir.path()));
    assert!(matches!(
        cache.lookup(&key("/c"), SystemTime::now()).await,
        Lookup::Miss
    ));
    assert_eq!(cache.corrupt_blobs(), 1);
    cache.flush().await;
    assert_eq!(cache.disk_entries(), 0);
    assert!(!path.exists(), "the corrupt blob is deleted");
}

#[tokio::test]
async fn a_large_object_stays_on_disk_and_streams_ranges_verified() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&config(dir.path()));
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let hit = disk_hit(&cache, "/big", &body).await;
    assert!(
        cache.memory().peek(&key("/big")).is_none(),
        "too big for memory"
    );
    let (out, error) = collect(hit.entry.body(0), whole(body.len())).await;
    assert!(error.is_none(), "{error:?}");
    assert!(out == body, "the whole body streams back");
    let parts = vec![
        Segment::Bytes(Bytes::from_static(b"<")),
        Segment::Range { start: 10, end: 19 },
        Segment::Bytes(Bytes::from_static(b"|")),
        Segment::Range {
            start: 70_000,
            end: 200_000,
        },
        Segment::Bytes(Bytes::from_static(b">")),
    ];
    let mut expected = b"<".to_vec();
    expected.extend_from_slice(&body[10..20]);
    expected.push(b'|');
    expected.extend_from_slice(&body[70_000..=200_000]);
    expected.push(b'>');
    let (out, error) = collect(hit.entry.body(0), parts).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(out, expected);
}

#[tokio::test]
async fn a_corrupt_large_blob_ends_its_stream_with_an_error_before_the_last_byte() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&config(dir.path()));
    let body = vec![7u8; 200_000];
    stored(&cache, "/big", &body).await;
    cache.memory().remove(&key("/big"));
    let path = blob_path(dir.path(), &body);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[150_000] = 8;
    std::fs::write(&path, bytes).unwrap();
    let Lookup::Fresh(hit) = cache.lookup(&key("/big"), SystemTime::now()).await else {
        panic!("the length is right, so the lookup opens it")
    };
    let (out, error) = collect(hit.entry.body(0), whole(200_000)).await;
    assert!(error.is_some(), "the stream must fail");
    assert!(
        out.len() < body.len(),
        "never complete: {} bytes",
        out.len()
    );
    assert_eq!(cache.corrupt_blobs(), 1);
    cache.flush().await;
    assert!(matches!(
        cache.lookup(&key("/big"), SystemTime::now()).await,
        Lookup::Miss
    ));
}

#[tokio::test]
async fn a_blob_cut_short_while_open_ends_its_stream_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&config(dir.path()));
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let hit = disk_hit(&cache, "/big", &body).await;
    // Cut inside the second chunk, after the lookup checked the length: the page-cache
    // read stops at the new end and the blocking read after it finds the file short.
    std::fs::OpenOptions::new()
        .write(true)
        .open(blob_path(dir.path(), &body))
        .unwrap()
        .set_len(200_000)
        .unwrap();
    let (out, error) = collect(hit.entry.body(0), whole(body.len())).await;
    assert!(error.is_some(), "the stream must fail");
    assert!(
        out.len() < 200_000,
        "never past the cut: {} bytes",
        out.len()
    );
    assert!(
        out == body[..out.len()],
        "what did go out is the true prefix"
    );
    assert_eq!(cache.corrupt_blobs(), 1);
}

/// A disk hit on `path` whose blob was hashed in full before (the first full read of a
/// blob verifies it): the lookup after that trusts it.
async fn trusted_disk_hit(cache: &Cache, path: &str, body: &[u8]) -> Hit {
    let first = disk_hit(cache, path, body).await;
    let (out, error) = collect(first.entry.body(0), whole(body.len())).await;
    assert!(error.is_none() && out == body, "{error:?}");
    let Lookup::Fresh(hit) = cache.lookup(&key(path), SystemTime::now()).await else {
        panic!("expected a disk hit")
    };
    hit
}

#[tokio::test]
async fn a_trusted_large_blob_is_held_open_in_the_memory_tier() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&config(dir.path()));
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 247) as u8).collect();

    // Not yet hashed: the memory tier does not keep it.
    let hit = disk_hit(&cache, "/big", &body).await;
    assert!(cache.memory().peek(&key("/big")).is_none());
    assert_eq!(cache.sealer().blobs(), 0);
    let (out, _) = collect(hit.entry.body(0), whole(body.len())).await;
    assert!(out == body);
    drop(hit);

    // Hashed: the next lookup keeps the entry, its blob open, in the memory tier, and a
    // memory lookup finds it there (as a disk hit) without the index.
    let Lookup::Fresh(hit) = cache.lookup(&key("/big"), SystemTime::now()).await else {
        panic!("expected a disk hit")
    };
    assert_eq!(hit.tier, Tier::Disk);
    assert_eq!(cache.sealer().blobs(), 1);
    let Some(Lookup::Fresh(held)) = cache.lookup_memory(key("/big").as_str(), SystemTime::now())
    else {
        panic!("expected the memory tier to hold it")
    };
    assert_eq!(held.tier, Tier::Disk);
    assert!(std::sync::Arc::ptr_eq(&held.entry, &hit.entry));
    assert!(matches!(held.entry.body(0), Body::Disk(d) if d.is_trusted()));
    assert_eq!(cache.memory().bytes(), 0, "no body bytes in memory");
    let (out, error) = collect(held.entry.body(0), whole(body.len())).await;
    assert!(error.is_none() && out == body, "{error:?}");

    // A revalidation keeps it held; a removal lets its file go.
    let updated = cache.update_meta(&held.entry, meta_for(&[&body]));
    drop((hit, held));
    assert_eq!(cache.sealer().blobs(), 1);
    assert!(
        cache
            .memory()
            .peek(&key("/big"))
            .is_some_and(|e| std::sync::Arc::ptr_eq(&e, &updated))
    );
    drop(updated);
    assert!(cache.remove(&key("/big")));
    // The disk tier's queue held the revalidated entry until written.
    cache.flush().await;
    assert_eq!(cache.sealer().blobs(), 0);
}

#[tokio::test]
async fn a_held_blob_whose_file_changes_is_let_go_and_hashed_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&config(dir.path()));
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    drop(trusted_disk_hit(&cache, "/big", &body).await);
    assert_eq!(cache.sealer().blobs(), 1);

    // Touched (the bytes are the same; the stamp is not): no longer trusted, so the
    // memory tier lets it go, and the lookup after it opens the file untrusted.
    let file = std::fs::File::options()
        .write(true)
        .open(blob_path(dir.path(), &body))
        .unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    assert!(
        cache
            .lookup_memory(key("/big").as_str(), SystemTime::now())
            .is_none()
    );
    assert!(cache.memory().peek(&key("/big")).is_none());
    assert_eq!(cache.sealer().blobs(), 0);
    let Lookup::Fresh(hit) = cache.lookup(&key("/big"), SystemTime::now()).await else {
        panic!("expected a disk hit")
    };
    assert!(matches!(hit.entry.body(0), Body::Disk(d) if !d.is_trusted()));
    assert!(cache.memory().peek(&key("/big")).is_none());
}

#[tokio::test]
async fn a_held_blob_whose_file_is_unlinked_is_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&config(dir.path()));
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 239) as u8).collect();
    drop(trusted_disk_hit(&cache, "/big", &body).await);
    assert_eq!(cache.sealer().blobs(), 1);

    // Unlinked behind the entry's back (as the disk tier's eviction does): the open
    // file still reads, but the memory tier lets it go rather than serve it.
    std::fs::remove_file(blob_path(dir.path(), &body)).unwrap();
    assert!(
        cache
            .lookup_memory(key("/big").as_str(), SystemTime::now())
            .is_none()
    );
    assert_eq!(cache.sealer().blobs(), 0);
}

#[tokio::test]
async fn a_blob_evicted_for_space_is_let_go_by_the_entry_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&CacheConfig {
        disk: 700_000,
        ..config(dir.path())
    });
    let body = |n: u32| -> Vec<u8> { (0..300_000u32).map(|i| ((i + n) % 233) as u8).collect() };
    let held = body(0);
    drop(trusted_disk_hit(&cache, "/a", &held).await);
    assert_eq!(cache.sealer().blobs(), 1);
    cache.flush().await; // its hits' recency

    // Two more objects: /a, the least recently used, is evicted from disk, and the
    // memory tier lets go of its open file at once, so its disk space is freed.
    stored(&cache, "/b", &body(1)).await;
    stored(&cache, "/c", &body(2)).await;
    assert_eq!(cache.disk_evictions(), 1);
    assert!(!blob_path(dir.path(), &held).exists());
    assert!(cache.memory().peek(&key("/a")).is_none());
    assert_eq!(cache.sealer().blobs(), 0);
    assert!(matches!(
        cache.lookup(&key("/a"), SystemTime::now()).await,
        Lookup::Miss
    ));
}

#[tokio::test]
async fn open_blobs_bounds_the_held_files_and_zero_holds_none() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&CacheConfig {
        open_blobs: 1,
        ..config(dir.path())
    });
    let a = vec![1u8; 100_000];
    let b = vec![2u8; 100_000];
    let first = trusted_disk_hit(&cache, "/a", &a).await;
    let second = trusted_disk_hit(&cache, "/b", &b).await;
    assert_eq!(cache.sealer().blobs(), 1);
    assert!(cache.memory().peek(&key("/a")).is_some());
    assert!(
        cache.memory().peek(&key("/b")).is_none(),
        "beyond open_blobs"
    );
    let (out, error) = collect(second.entry.body(0), whole(b.len())).await;
    assert!(error.is_none() && out == b, "served from disk all the same");
    drop((first, second));

    for (name, off) in [
        (
            "open_blobs 0",
            CacheConfig {
                open_blobs: 0,
                ..config(dir.path())
            },
        ),
        (
            "verify_interval 0",
            CacheConfig {
                verify_interval: Duration::ZERO,
                ..config(dir.path())
            },
        ),
    ] {
        let elsewhere = tempfile::tempdir().unwrap();
        let off = CacheConfig {
            dir: elsewhere.path().to_path_buf(),
            ..off
        };
        let cache = Cache::open(&off);
        drop(trusted_disk_hit(&cache, "/a", &a).await);
        assert_eq!(cache.sealer().blobs(), 0, "{name}");
        assert!(cache.memory().peek(&key("/a")).is_none(), "{name}");
    }
}

#[tokio::test]
async fn purge_all_and_vary_specs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let primary = key("/v");
    {
        let cache = Cache::open(&config(dir.path()));
        stored(&cache, "/old", b"old").await;
        assert_eq!(cache.purge_all(), 1);
        cache.set_vary(&primary, vec!["accept-language".into()]);
        cache.flush().await;
    }
    let cache = Cache::open(&config(dir.path()));
    assert_eq!(cache.generation(), 1);
    assert!(matches!(
        cache.lookup(&key("/old"), SystemTime::now()).await,
        Lookup::Miss
    ));
    assert_eq!(
        cache.vary(&primary).as_deref(),
        Some(&["accept-language".to_owned()][..])
    );
}

#[tokio::test]
async fn removals_are_visible_at_once_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = Cache::open(&config(dir.path()));
        stored(&cache, "/p/1", b"1").await;
        stored(&cache, "/p/2", b"2").await;
        stored(&cache, "/q", b"q").await;
        cache.memory().remove(&key("/p/1"));
        assert_eq!(cache.remove_prefix(key("/p/").as_str()), 2);
        assert!(matches!(
            cache.lookup(&key("/p/1"), SystemTime::now()).await,
            Lookup::Miss
        ));
        assert!(cache.remove(&key("/q")));
        assert!(matches!(
            cache.lookup(&key("/q"), SystemTime::now()).await,
            Lookup::Miss
        ));
    }
    let cache = Cache::open(&config(dir.path()));
    assert_eq!(cache.disk_entries(), 0);
}

#[tokio::test]
async fn an_unreadable_index_is_moved_aside_and_the_cache_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.redb"), vec![0xA5; 64 << 10]).unwrap();
    let cache = Cache::open(&config(dir.path()));
    assert!(cache.has_disk());
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("index.redb.corrupt-")
        });
    assert!(aside, "the bad index is kept for inspection");
    stored(&cache, "/n", b"new").await;
    assert_eq!(cache.disk_entries(), 1);
}

#[tokio::test]
async fn a_directory_that_cannot_be_created_means_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let cache = Cache::open(&config(&file.join("cache")));
    assert!(!cache.has_disk());
    cache.insert(key("/m"), meta_for(&[b"m"]), vec![Bytes::from_static(b"m")]);
    assert!(matches!(
        cache.lookup(&key("/m"), SystemTime::now()).await,
        Lookup::Fresh(_)
    ));
}

#[tokio::test]
async fn leftover_temp_files_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    drop(Cache::open(&config(dir.path())));
    std::fs::write(dir.path().join("tmp").join("123-4.tmp"), b"partial").unwrap();
    let _cache = Cache::open(&config(dir.path()));
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn the_disk_budget_holds_and_recent_entries_stay() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&CacheConfig {
        disk: 10_000,
        ..config(dir.path())
    });
    for i in 0..50u32 {
        let body = vec![i as u8; 1000];
        stored(&cache, &format!("/f{i}"), &body).await;
        assert!(cache.disk_bytes() <= 10_000, "{} bytes", cache.disk_bytes());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(cache.disk_evictions() >= 40);
    cache.memory().remove(&key("/f49"));
    assert!(matches!(
        cache.lookup(&key("/f49"), SystemTime::now()).await,
        Lookup::Fresh(_)
    ));
}

#[tokio::test]
async fn insert_says_whether_a_tier_kept_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let small = vec![b's'; 1024];
    let large = vec![b'l'; 128 << 10];
    let insert = |cache: &Cache, path: &str, body: &[u8]| {
        cache
            .insert_kept(
                key(path),
                meta_for(&[body]),
                vec![Bytes::copy_from_slice(body)],
            )
            .1
    };
    // Memory takes up to 64 KiB, the disk tier 64 MiB.
    let both = Cache::open(&config(dir.path()));
    assert!(insert(&both, "/small", &small));
    assert!(insert(&both, "/large", &large), "queued for the disk tier");
    assert_eq!(both.largest_storable(u64::MAX), 64 << 20);
    both.flush().await;
    drop(both);

    // A disk budget below the body: neither tier keeps it.
    let tight = tempfile::tempdir().unwrap();
    let cache = Cache::open(&CacheConfig {
        disk: 100 << 10,
        ..config(tight.path())
    });
    assert!(!insert(&cache, "/large", &large));
    assert!(insert(&cache, "/small", &small));
    assert_eq!(cache.largest_storable(u64::MAX), 100 << 10);

    // No disk tier: only what memory takes.
    let none = tempfile::tempdir().unwrap();
    let cache = Cache::open(&CacheConfig {
        disk: 0,
        ..config(none.path())
    });
    assert!(!insert(&cache, "/large", &large));
    assert!(insert(&cache, "/small", &small));
    assert_eq!(cache.largest_storable(u64::MAX), 64 << 10);
    assert_eq!(
        cache.largest_storable(1000),
        1000,
        "max_object_size caps it"
    );
}
