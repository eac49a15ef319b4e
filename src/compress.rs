//! Content codings at fill time: the br, zstd and gzip variants of a stored body, made
//! once with async-compression at the strongest levels that make sense for static
//! assets, and the decoding of bodies an origin sent encoded anyway, to get the
//! canonical identity bytes.
//!
//! The CPU work runs on tokio's blocking threads, never on the async workers, and at
//! most `[compression] workers` encodings run at a time (a semaphore; further jobs
//! queue), so a burst of fills cannot starve request handling on a small machine.
//! Decoding has its own permits of the same number: a client waits on a decode, so it
//! must not queue behind strong compression jobs.

use std::io;
use std::sync::Arc;

use async_compression::Level;
use async_compression::tokio::bufread::{
    BrotliDecoder, BrotliEncoder, DeflateDecoder, GzipDecoder, GzipEncoder, ZlibDecoder,
    ZstdDecoder, ZstdEncoder,
};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;

use crate::config::{CompressionConfig, CompressionLevels};
use crate::http::encoding::Encoding;

/// The compression service: which bodies to compress, their variants, and decoding.
/// A cheap Clone handle; all clones share one worker pool.
#[derive(Debug, Clone)]
pub struct Compressor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    types: Vec<MediaRange>,
    min_size: u64,
    strong_max_size: u64,
    levels: CompressionLevels,
    large_levels: CompressionLevels,
    keep_ratio: f64,
    /// Codings to produce, in server preference, then identity.
    preference: Vec<Encoding>,
    max_decoded_size: u64,
    /// Permits for encoding jobs.
    encoders: Arc<Semaphore>,
    /// Permits for decoding jobs.
    decoders: Arc<Semaphore>,
}

/// Why an encoded body could not be turned into identity bytes. Any of these means the
/// response is passed through uncached.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A content coding edge does not decode (e.g. `compress`, `exi`).
    #[error("unsupported content coding `{0}`")]
    Unsupported(String),
    /// The decoded bytes would exceed the limit: a decompression bomb, or just too big
    /// to store.
    #[error("{coding} body decodes to more than {limit} bytes")]
    TooLarge {
        /// The coding whose output overflowed.
        coding: &'static str,
        /// The limit that applied.
        limit: u64,
    },
    /// The body is not valid in the coding it claims (truncated, bad checksum, …).
    #[error("{coding} body is corrupt: {source}")]
    Corrupt {
        /// The coding that failed to decode.
        coding: &'static str,
        /// What the decoder reported.
        #[source]
        source: io::Error,
    },
    /// The decoding job died (a panic in a decoder).
    #[error("decoding job failed: {0}")]
    Worker(String),
}

impl Compressor {
    /// Builds the service from validated configuration.
    pub fn new(config: &CompressionConfig) -> Self {
        let mut preference: Vec<Encoding> = config
            .preference
            .iter()
            .filter_map(|token| Encoding::from_token(token))
            .filter(|&e| e != Encoding::Identity)
            .collect();
        preference.push(Encoding::Identity);
        let workers = config.workers.max(1);
        Compressor {
            inner: Arc::new(Inner {
                enabled: config.enabled,
                types: config.types.iter().map(|t| MediaRange::parse(t)).collect(),
                min_size: config.min_size,
                strong_max_size: config.strong_max_size,
                levels: config.levels,
                large_levels: config.large_levels,
                keep_ratio: config.keep_ratio,
                preference,
                max_decoded_size: config.max_decoded_size,
                encoders: Arc::new(Semaphore::new(workers)),
                decoders: Arc::new(Semaphore::new(workers)),
            }),
        }
    }

    /// The server's preference among codings for equal client q-values: the configured
    /// order (default br, zstd, gzip), identity last. Pass it to
    /// [`negotiate`](crate::http::encoding::negotiate), filtered to what an entry has.
    pub fn preference(&self) -> &[Encoding] {
        &self.inner.preference
    }

    /// Whether a body of this `Content-Type` and length gets compressed variants:
    /// compression is enabled, the length is at least `min_size`, and the media type
    /// (parameters such as `charset` ignored, case-insensitive) is in `types`.
    pub fn is_compressible(&self, content_type: Option<&str>, len: u64) -> bool {
        let inner = &self.inner;
        if !inner.enabled || len < inner.min_size {
            return false;
        }
        let Some(content_type) = content_type else {
            return false;
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        inner.types.iter().any(|range| range.matches(&essence))
    }

    /// The encoded variants of `identity` worth storing, in server preference order:
    /// each configured coding at the strong levels (brotli 11, zstd 19, gzip 9 by
    /// default) up to `strong_max_size` and the large-body levels above it, kept only
    /// when at most `keep_ratio` of the identity length. Empty when compression is
    /// disabled. The caller decides compressibility first ([`Self::is_compressible`]).
    ///
    /// The codings are queued on the pool together, so with more than one worker they
    /// run in parallel. A coding that fails is logged and left out.
    pub async fn variants(&self, identity: Bytes) -> Vec<(Encoding, Bytes)> {
        if !self.inner.enabled {
            return Vec::new();
        }
        let jobs = self
            .inner
            .preference
            .iter()
            .copied()
            .filter(|&e| e != Encoding::Identity)
            .map(|encoding| {
                let identity = identity.clone();
                async move { (encoding, self.encode(encoding, identity).await) }
            });
        let results = futures_util::future::join_all(jobs).await;
        let most = identity.len() as f64 * self.inner.keep_ratio;
        results
            .into_iter()
            .filter_map(|(encoding, result)| match result {
                Ok(bytes) if bytes.len() as f64 <= most => Some((encoding, bytes)),
                Ok(_) => None,
                Err(error) => {
                    tracing::warn!(encoding = encoding.as_str(), %error, "compression failed; variant skipped");
                    None
                }
            })
            .collect()
    }

    /// `identity` in one coding, at the level configured for its size, on the pool;
    /// no `keep_ratio` check. [`Self::variants`] is this for every configured coding.
    pub async fn encode(&self, encoding: Encoding, identity: Bytes) -> io::Result<Bytes> {
        if encoding == Encoding::Identity {
            return Ok(identity);
        }
        let levels = if identity.len() as u64 <= self.inner.strong_max_size {
            self.inner.levels
        } else {
            self.inner.large_levels
        };
        let encoded = run(&self.inner.encoders, move || {
            encode_blocking(encoding, levels, &identity)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Bytes::from(encoded))
    }

    /// Decodes a body sent with `Content-Encoding: coding` into identity bytes. `coding`
    /// may list several codings (`gzip, br`), applied in order, so they are undone in
    /// reverse. Understands `gzip`/`x-gzip` (multi-member), `deflate` (zlib-wrapped as
    /// RFC 9110 §8.4.1.2 says, or raw deflate as some servers send), `br`, `zstd` and
    /// `identity`, case-insensitively. An empty body is empty in any coding.
    ///
    /// Output over `limit` bytes (and over `[compression] max_decoded_size`) is an
    /// error, whatever the input size: the guard against decompression bombs.
    pub async fn decode(
        &self,
        coding: &str,
        body: Bytes,
        limit: u64,
    ) -> Result<Bytes, DecodeError> {
        let codings = parse_codings(coding)?;
        let limit = limit.min(self.inner.max_decoded_size);
        if body.is_empty() {
            return Ok(body);
        }
        if codings.iter().all(|&c| c == Coding::Identity) {
            if body.len() as u64 > limit {
                return Err(DecodeError::TooLarge {
                    coding: Coding::Identity.as_str(),
                    limit,
                });
            }
            return Ok(body);
        }
        run(&self.inner.decoders, move || {
            codings
                .iter()
                .rev()
                .try_fold(body, |body, &coding| decode_one(coding, &body, limit))
        })
        .await
        .map_err(|e| DecodeError::Worker(e.to_string()))?
    }
}

/// Runs `job` on a blocking thread once a permit is free. The permit moves into the
/// job, so a caller that stops waiting does not free it before the CPU work ends.
async fn run<T, F>(permits: &Arc<Semaphore>, job: F) -> Result<T, tokio::task::JoinError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let permit = Arc::clone(permits)
        .acquire_owned()
        .await
        .expect("the compression semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job()
    })
    .await
}

fn encode_blocking(
    encoding: Encoding,
    levels: CompressionLevels,
    input: &[u8],
) -> io::Result<Vec<u8>> {
    let level = |n: u32| Level::Precise(i32::try_from(n).unwrap_or(i32::MAX));
    let mut out = Vec::with_capacity(input.len() / 3 + 64);
    match encoding {
        Encoding::Identity => out.extend_from_slice(input),
        Encoding::Br => {
            // As the reference `brotli` tool does: a window just large enough for the
            // input, and its size as a hint, which tunes the block splitting.
            let params = async_compression::brotli::EncoderParams::default()
                .quality(level(levels.br))
                .window_size(brotli_window_bits(input.len()))
                .size_hint(input.len());
            read_to_end(
                BrotliEncoder::with_params(input, params),
                &mut out,
                u64::MAX,
            )?;
        }
        Encoding::Zstd => {
            let encoder = ZstdEncoder::with_quality(input, level(levels.zstd));
            read_to_end(encoder, &mut out, u64::MAX)?;
        }
        Encoding::Gzip => {
            let encoder = GzipEncoder::with_quality(input, level(levels.gzip));
            read_to_end(encoder, &mut out, u64::MAX)?;
        }
    }
    Ok(out)
}

/// The smallest brotli window (10 to 24 bits, the format's standard range) whose
/// backward reach covers `len` bytes, as the `brotli` tool chooses it.
fn brotli_window_bits(len: usize) -> i32 {
    let mut bits = 10;
    while bits < 24 && (1usize << bits) - 16 < len {
        bits += 1;
    }
    bits
}

/// A content coding edge can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    Deflate,
    Br,
    Zstd,
}

impl Coding {
    fn as_str(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// Parses a `Content-Encoding` value into its codings, in the order they were applied.
fn parse_codings(value: &str) -> Result<Vec<Coding>, DecodeError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(|token| match token.to_ascii_lowercase().as_str() {
            "identity" => Ok(Coding::Identity),
            "gzip" | "x-gzip" => Ok(Coding::Gzip),
            "deflate" => Ok(Coding::Deflate),
            "br" => Ok(Coding::Br),
            "zstd" => Ok(Coding::Zstd),
            _ => Err(DecodeError::Unsupported(token.to_owned())),
        })
        .collect()
}

fn decode_one(coding: Coding, input: &[u8], limit: u64) -> Result<Bytes, DecodeError> {
    let decoded = match coding {
        Coding::Identity if input.len() as u64 > limit => {
            return Err(DecodeError::TooLarge {
                coding: coding.as_str(),
                limit,
            });
        }
        Coding::Identity => return Ok(Bytes::copy_from_slice(input)),
        Coding::Gzip => {
            let mut decoder = GzipDecoder::new(input);
            decoder.multiple_members(true);
            read_limited(coding, decoder, limit)
        }
        Coding::Deflate => match read_limited(coding, ZlibDecoder::new(input), limit) {
            Err(DecodeError::Corrupt { .. }) => {
                read_limited(coding, DeflateDecoder::new(input), limit)
            }
            other => other,
        },
        Coding::Br => read_limited(coding, BrotliDecoder::new(input), limit),
        Coding::Zstd => {
            let mut decoder = ZstdDecoder::new(input);
            decoder.multiple_members(true);
            read_limited(coding, decoder, limit)
        }
    }?;
    Ok(Bytes::from(decoded))
}

/// Reads all of `decoder`, failing as soon as it yields more than `limit` bytes.
fn read_limited(
    coding: Coding,
    decoder: impl AsyncRead,
    limit: u64,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    read_to_end(decoder, &mut out, limit.saturating_add(1)).map_err(|source| {
        DecodeError::Corrupt {
            coding: coding.as_str(),
            source,
        }
    })?;
    if out.len() as u64 > limit {
        return Err(DecodeError::TooLarge {
            coding: coding.as_str(),
            limit,
        });
    }
    Ok(out)
}

/// Drives an async-compression reader over in-memory input to the end (at most `limit`
/// bytes). Called on a blocking thread: the reader never waits on IO, so blocking on it
/// only costs the CPU work itself.
fn read_to_end(reader: impl AsyncRead, out: &mut Vec<u8>, limit: u64) -> io::Result<usize> {
    tokio::runtime::Handle::current().block_on(async {
        let reader = std::pin::pin!(reader);
        reader.take(limit).read_to_end(out).await
    })
}

/// A media range from `[compression] types`: `text/css`, `text/*` or `application/*+json`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MediaRange {
    /// One type/subtype.
    Exact(String),
    /// `type/*`: every subtype of a type; holds `type/`.
    AnySubtype(String),
    /// `type/*+suffix`: structured-syntax suffixes (RFC 6838 §4.2.8); holds `type/` and
    /// `+suffix`.
    Suffix(String, String),
}

impl MediaRange {
    /// Reads a lower-case range validated by the config loader.
    fn parse(text: &str) -> MediaRange {
        let text = text.trim().to_ascii_lowercase();
        match text.split_once("/*") {
            Some((ty, "")) => MediaRange::AnySubtype(format!("{ty}/")),
            Some((ty, suffix)) if suffix.starts_with('+') => {
                MediaRange::Suffix(format!("{ty}/"), suffix.to_owned())
            }
            _ => MediaRange::Exact(text),
        }
    }

    /// Whether a lower-case `type/subtype` falls in this range.
    fn matches(&self, essence: &str) -> bool {
        match self {
            MediaRange::Exact(exact) => essence == exact,
            MediaRange::AnySubtype(prefix) => {
                essence.len() > prefix.len() && essence.starts_with(prefix.as_str())
            }
            MediaRange::Suffix(prefix, suffix) => {
                essence.len() > prefix.len() + suffix.len()
                    && essence.starts_with(prefix.as_str())
                    && essence.ends_with(suffix.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests;
