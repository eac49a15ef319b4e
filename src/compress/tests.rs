use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_compression::tokio::bufread::{DeflateEncoder, ZlibEncoder};
use tokio::io::AsyncBufRead;

use super::*;

fn compressor(edit: impl FnOnce(&mut CompressionConfig)) -> Compressor {
    let mut config = CompressionConfig::default();
    edit(&mut config);
    Compressor::new(&config)
}

/// Script-like text: compressible, but not trivially.
fn script(len: usize) -> Bytes {
    let mut out = String::with_capacity(len + 80);
    let mut i = 0u64;
    while out.len() < len {
        out.push_str(&format!(
            "function handler{i}(event, state) {{ return state.items[{}] ?? event.target.value * {i}; }}\n",
            i * 7919 % 1000
        ));
        i += 1;
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Incompressible bytes (xorshift64).
fn random(len: usize) -> Bytes {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Decompresses with async-compression's decoders directly, independently of
/// [`Compressor::decode`].
async fn decompress(encoding: Encoding, body: &[u8]) -> Vec<u8> {
    async fn all(reader: impl AsyncRead) -> Vec<u8> {
        let mut out = Vec::new();
        std::pin::pin!(reader).read_to_end(&mut out).await.unwrap();
        out
    }
    match encoding {
        Encoding::Identity => body.to_vec(),
        Encoding::Br => all(BrotliDecoder::new(body)).await,
        Encoding::Zstd => all(ZstdDecoder::new(body)).await,
        Encoding::Gzip => all(GzipDecoder::new(body)).await,
    }
}

async fn compress_with(encoder: impl AsyncRead) -> Bytes {
    let mut out = Vec::new();
    std::pin::pin!(encoder).read_to_end(&mut out).await.unwrap();
    Bytes::from(out)
}

fn gzip(body: &[u8]) -> impl AsyncRead + '_ {
    GzipEncoder::new(body)
}

fn as_reader(body: &[u8]) -> impl AsyncBufRead + '_ {
    body
}

#[tokio::test]
async fn every_variant_decompresses_to_exactly_the_identity_bytes() {
    let c = compressor(|_| {});
    let identity = script(64 << 10);
    let variants = c.variants(identity.clone()).await;
    let codings: Vec<_> = variants.iter().map(|(e, _)| *e).collect();
    assert_eq!(codings, [Encoding::Br, Encoding::Zstd, Encoding::Gzip]);
    for (encoding, body) in &variants {
        assert!(
            body.len() < identity.len() / 4,
            "{encoding:?}: {}",
            body.len()
        );
        assert_eq!(
            decompress(*encoding, body).await,
            identity,
            "{encoding:?} round trip"
        );
    }
}

/// `encode_blocking` off the async thread, as the pool runs it.
async fn encode_at(encoding: Encoding, levels: CompressionLevels, input: Bytes) -> Vec<u8> {
    tokio::task::spawn_blocking(move || encode_blocking(encoding, levels, &input))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn bodies_above_strong_max_size_use_the_large_levels_and_still_round_trip() {
    let identity = script(48 << 10);
    let config = CompressionConfig {
        strong_max_size: 1024,
        ..CompressionConfig::default()
    };
    let large = Compressor::new(&config);
    for encoding in [Encoding::Br, Encoding::Zstd, Encoding::Gzip] {
        // The encoders are deterministic, so the level used shows in the bytes.
        let made = large.encode(encoding, identity.clone()).await.unwrap();
        let at_large = encode_at(encoding, config.large_levels, identity.clone()).await;
        let at_strong = encode_at(encoding, config.levels, identity.clone()).await;
        assert_eq!(made, at_large, "{encoding:?} at the large-body level");
        assert_ne!(made, at_strong, "{encoding:?} not at the strong level");
    }
    for (encoding, body) in large.variants(identity.clone()).await {
        assert_eq!(decompress(encoding, &body).await, identity, "{encoding:?}");
    }
}

#[tokio::test]
async fn incompressible_bodies_keep_no_variants() {
    let c = compressor(|_| {});
    assert!(c.variants(random(32 << 10)).await.is_empty());
}

#[tokio::test]
async fn a_variant_is_kept_only_within_keep_ratio() {
    // Half random, half text: compresses to a bit over half.
    let mut mixed = random(16 << 10).to_vec();
    mixed.extend_from_slice(&script(16 << 10));
    let mixed = Bytes::from(mixed);
    assert_eq!(compressor(|_| {}).variants(mixed.clone()).await.len(), 3);
    let strict = compressor(|c| c.keep_ratio = 0.3);
    assert!(strict.variants(mixed).await.is_empty());
}

#[tokio::test]
async fn variants_follow_the_configured_preference_and_omit_unlisted_codings() {
    let c = compressor(|c| c.preference = vec!["gzip".into(), "br".into()]);
    assert_eq!(
        c.preference(),
        [Encoding::Gzip, Encoding::Br, Encoding::Identity]
    );
    let codings: Vec<_> = c
        .variants(script(8 << 10))
        .await
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    assert_eq!(codings, [Encoding::Gzip, Encoding::Br]);
}

#[tokio::test]
async fn disabled_compression_makes_nothing_compressible_and_no_variants() {
    let c = compressor(|c| c.enabled = false);
    assert!(!c.is_compressible(Some("text/css"), 1 << 20));
    assert!(c.variants(script(8 << 10)).await.is_empty());
    assert_eq!(
        c.preference(),
        [
            Encoding::Br,
            Encoding::Zstd,
            Encoding::Gzip,
            Encoding::Identity
        ]
    );
}

#[test]
fn compressible_types_match_ignoring_parameters_and_case() {
    let c = compressor(|_| {});
    for t in [
        "text/css",
        "text/html; charset=utf-8",
        "TEXT/Plain",
        "application/javascript",
        "text/javascript;charset=UTF-8",
        "application/json",
        "application/ld+json",
        "application/manifest+json",
        "application/xml",
        "application/rss+xml",
        "image/svg+xml",
        "application/wasm",
        "font/ttf",
        "font/otf",
        "application/vnd.ms-fontobject",
        "font/collection",
    ] {
        assert!(c.is_compressible(Some(t), 10_000), "{t}");
    }
    for t in [
        "image/png",
        "image/jpeg",
        "font/woff2",
        "font/woff",
        "application/octet-stream",
        "application/zip",
        "video/mp4",
        "application/jsonx",
        "application/+json",
        "text",
        "",
    ] {
        assert!(!c.is_compressible(Some(t), 10_000), "{t}");
    }
    assert!(!c.is_compressible(None, 10_000));
}

#[test]
fn bodies_below_min_size_are_not_compressible() {
    let c = compressor(|_| {});
    assert!(!c.is_compressible(Some("text/css"), 255));
    assert!(c.is_compressible(Some("text/css"), 256));
}

#[test]
fn brotli_window_is_the_smallest_that_covers_the_input_as_the_cli_picks_it() {
    assert_eq!(brotli_window_bits(0), 10);
    assert_eq!(brotli_window_bits(1008), 10);
    assert_eq!(brotli_window_bits(1009), 11);
    assert_eq!(brotli_window_bits(100_000), 17);
    assert_eq!(brotli_window_bits(1 << 30), 24);
}

#[tokio::test]
async fn decode_round_trips_every_coding() {
    let c = compressor(|_| {});
    let identity = script(40 << 10);
    let limit = 1 << 20;
    let cases: Vec<(&str, Bytes)> = vec![
        ("gzip", compress_with(gzip(&identity)).await),
        ("x-gzip", compress_with(gzip(&identity)).await),
        ("GZIP", compress_with(gzip(&identity)).await),
        (
            "deflate",
            compress_with(ZlibEncoder::new(as_reader(&identity))).await,
        ),
        (
            "deflate",
            compress_with(DeflateEncoder::new(as_reader(&identity))).await,
        ),
        (
            "br",
            compress_with(BrotliEncoder::new(as_reader(&identity))).await,
        ),
        (
            "zstd",
            compress_with(ZstdEncoder::new(as_reader(&identity))).await,
        ),
        ("identity", identity.clone()),
    ];
    for (coding, body) in cases {
        let decoded = c.decode(coding, body, limit).await;
        assert_eq!(decoded.unwrap(), identity, "{coding}");
    }
}

#[tokio::test]
async fn a_list_of_codings_is_undone_in_reverse_order() {
    let c = compressor(|_| {});
    let identity = script(20 << 10);
    let gzipped = compress_with(gzip(&identity)).await;
    let gzip_then_br = compress_with(BrotliEncoder::new(as_reader(&gzipped))).await;
    let decoded = c.decode("gzip, br", gzip_then_br.clone(), 1 << 20).await;
    assert_eq!(decoded.unwrap(), identity);
    assert!(
        c.decode("br, gzip", gzip_then_br, 1 << 20).await.is_err(),
        "the wrong order must not decode"
    );
}

#[tokio::test]
async fn multi_member_gzip_decodes_every_member() {
    let c = compressor(|_| {});
    let mut body = compress_with(gzip(b"first half, ")).await.to_vec();
    body.extend_from_slice(&compress_with(gzip(b"second half")).await);
    let decoded = c.decode("gzip", Bytes::from(body), 1024).await.unwrap();
    assert_eq!(decoded, "first half, second half");
}

#[tokio::test]
async fn a_decompression_bomb_over_the_limit_is_refused() {
    let c = compressor(|_| {});
    let zeros = vec![0u8; 8 << 20];
    let bombs = [
        ("gzip", compress_with(gzip(&zeros)).await),
        (
            "br",
            compress_with(BrotliEncoder::new(as_reader(&zeros))).await,
        ),
        (
            "zstd",
            compress_with(ZstdEncoder::new(as_reader(&zeros))).await,
        ),
        (
            "deflate",
            compress_with(ZlibEncoder::new(as_reader(&zeros))).await,
        ),
    ];
    for (coding, bomb) in bombs {
        assert!(bomb.len() < 64 << 10, "{coding} bomb is small");
        let result = c.decode(coding, bomb.clone(), 1 << 20).await;
        assert!(
            matches!(result, Err(DecodeError::TooLarge { limit, .. }) if limit == 1 << 20),
            "{coding}: {result:?}"
        );
        // Exactly at the limit is fine.
        let exact = c.decode(coding, bomb, 8 << 20).await.unwrap();
        assert_eq!(exact.len(), 8 << 20);
    }
}

#[tokio::test]
async fn max_decoded_size_caps_the_callers_limit() {
    let c = compressor(|c| c.max_decoded_size = 1000);
    let body = compress_with(gzip(&[b'a'; 2000])).await;
    assert!(matches!(
        c.decode("gzip", body, u64::MAX).await,
        Err(DecodeError::TooLarge { limit: 1000, .. })
    ));
    assert!(matches!(
        c.decode("identity", Bytes::from(vec![0; 1001]), u64::MAX)
            .await,
        Err(DecodeError::TooLarge { limit: 1000, .. })
    ));
}

#[tokio::test]
async fn unknown_and_corrupt_bodies_are_errors() {
    let c = compressor(|_| {});
    let identity = script(4 << 10);
    assert!(matches!(
        c.decode("compress", identity.clone(), 1 << 20).await,
        Err(DecodeError::Unsupported(coding)) if coding == "compress"
    ));
    assert!(matches!(
        c.decode("gzip, lzma", identity.clone(), 1 << 20).await,
        Err(DecodeError::Unsupported(_))
    ));
    let encoded = [
        ("gzip", compress_with(gzip(&identity)).await),
        (
            "br",
            compress_with(BrotliEncoder::new(as_reader(&identity))).await,
        ),
        (
            "zstd",
            compress_with(ZstdEncoder::new(as_reader(&identity))).await,
        ),
        (
            "deflate",
            compress_with(ZlibEncoder::new(as_reader(&identity))).await,
        ),
    ];
    for (coding, body) in encoded {
        let truncated = body.slice(..body.len() / 2);
        let result = c.decode(coding, truncated, 1 << 20).await;
        assert!(
            matches!(result, Err(DecodeError::Corrupt { coding: failed, .. }) if failed == coding),
            "truncated {coding}: {result:?}"
        );
    }
    // Not gzip at all (bad magic), and a deflate block of the reserved type 11.
    assert!(matches!(
        c.decode("gzip", identity, 1 << 20).await,
        Err(DecodeError::Corrupt { coding: "gzip", .. })
    ));
    assert!(matches!(
        c.decode("deflate", Bytes::from_static(&[0xff; 64]), 1 << 20)
            .await,
        Err(DecodeError::Corrupt {
            coding: "deflate",
            ..
        })
    ));
}

#[tokio::test]
async fn an_empty_body_is_empty_in_any_coding() {
    let c = compressor(|_| {});
    for coding in ["gzip", "br", "zstd", "deflate", "identity", ""] {
        assert_eq!(c.decode(coding, Bytes::new(), 10).await.unwrap(), "");
    }
}

/// Runs two jobs on `permits` at once; returns the most that were running together.
async fn most_concurrent_jobs(permits: usize, rendezvous: bool) -> usize {
    let pool = Arc::new(Semaphore::new(permits));
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let job = || {
        let (active, most, barrier) = (active.clone(), most.clone(), barrier.clone());
        move || {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            if rendezvous {
                // Only passes when both jobs run at the same time.
                barrier.wait();
            } else {
                std::thread::sleep(Duration::from_millis(100));
            }
            active.fetch_sub(1, Ordering::SeqCst);
        }
    };
    let (a, b) = tokio::join!(run(&pool, job()), run(&pool, job()));
    a.unwrap();
    b.unwrap();
    most.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_runs_at_most_workers_jobs_at_once() {
    assert_eq!(most_concurrent_jobs(1, false).await, 1);
    assert_eq!(most_concurrent_jobs(2, true).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fills_share_one_worker_and_return_its_permit() {
    let c = compressor(|_| {});
    let (a, b) = (script(32 << 10), script(33 << 10));
    let (va, vb) = tokio::join!(c.variants(a.clone()), c.variants(b.clone()));
    assert_eq!(va.len(), 3);
    assert_eq!(vb.len(), 3);
    assert_eq!(c.inner.encoders.available_permits(), 1);
    for (encoding, body) in va {
        assert_eq!(decompress(encoding, &body).await, a);
    }
}
