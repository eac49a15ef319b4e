//! Counters and histograms for operators: one `Clone` handle over the prometheus-client
//! families, recorded on the request path and the origin client, encoded for `/metrics`
//! in the Prometheus text format and summarised for `/stats`.
//!
//! Tier sizes and evictions are not recorded as they change: a collector reads them
//! from the cache at scrape time, so they can never drift from the truth.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::Cache;
use crate::error::EdgeError;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Cache outcomes as the access log names them, in the order `/stats` lists them.
pub const OUTCOMES: [&str; 6] = ["hit", "miss", "collapsed", "revalidated", "pass", "other"];

/// Status classes, as `edge_requests_total` labels them.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Content codings, as `edge_response_body_bytes_total` labels them.
const CODINGS: [&str; 5] = ["identity", "br", "zstd", "gzip", "other"];

/// Purge kinds, as `/purge` reports them and metrics label them.
pub const PURGE_KINDS: [&str; 4] = ["url", "prefix", "tag", "all"];

type Labels2 = [(&'static str, &'static str); 2];
type Labels1 = [(&'static str, &'static str); 1];
type SiteLabel = [(&'static str, String); 1];
type SiteKind = [(&'static str, String); 2];
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The metrics handle: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    /// `edge_requests_total` by outcome and status class, resolved once: no label
    /// lookup per request.
    requests: [[Counter; STATUS_CLASSES.len()]; OUTCOMES.len()],
    /// `edge_response_body_bytes_total` by coding, resolved once.
    response_bytes: [Counter; CODINGS.len()],
    origin_seconds: HistogramFamily<SiteLabel>,
    origin_errors: Family<SiteKind, Counter>,
    coalesced: Counter,
    purges: Family<Labels1, Counter>,
    purged_objects: Family<Labels1, Counter>,
    purge_seconds: HistogramFamily<Labels1>,
    compressed: Family<Labels1, Counter>,
    compression_saved: Family<Labels1, Counter>,
    // Plain totals for `/stats`, which wants sums the families do not expose.
    outcomes: [AtomicU64; OUTCOMES.len()],
    origin_fetches: AtomicU64,
    origin_failures: AtomicU64,
    variants: AtomicU64,
    saved_bytes: AtomicU64,
    ready: Arc<AtomicBool>,
}

/// Latency buckets from 1 ms to about 33 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Purge latency buckets from 10 µs to about 5 s.
fn purge_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
}

impl Metrics {
    /// Registers every family; tier sizes and fills in flight are read from `cache` at
    /// each scrape.
    pub fn new(cache: &Cache) -> Self {
        let mut registry = Registry::with_prefix("edge");
        let requests = Family::<Labels2, Counter>::default();
        registry.register(
            "requests",
            "Client requests by cache outcome and status class",
            requests.clone(),
        );
        let response_bytes = Family::<Labels1, Counter>::default();
        registry.register(
            "response_body_bytes",
            "Response body bytes served by content coding (from Content-Length)",
            response_bytes.clone(),
        );
        let origin_seconds: HistogramFamily<SiteLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "origin_request_duration_seconds",
            "Origin request latency to the response head, by site",
            origin_seconds.clone(),
        );
        let origin_errors = Family::<SiteKind, Counter>::default();
        registry.register(
            "origin_errors",
            "Origin requests that failed, by site and kind (connect, timeout, protocol, ...)",
            origin_errors.clone(),
        );
        let coalesced = Counter::default();
        registry.register(
            "coalesced_waits",
            "Requests answered by waiting for another request's fill",
            coalesced.clone(),
        );
        let purges = Family::<Labels1, Counter>::default();
        registry.register("purges", "Purge operations by kind", purges.clone());
        let purged_objects = Family::<Labels1, Counter>::default();
        registry.register(
            "purged_objects",
            "Entries removed or invalidated by purges, by kind",
            purged_objects.clone(),
        );
        let purge_seconds: HistogramFamily<Labels1> = Family::new_with_constructor(purge_histogram);
        registry.register(
            "purge_duration_seconds",
            "Time to apply a purge locally, by kind",
            purge_seconds.clone(),
        );
        let compressed = Family::<Labels1, Counter>::default();
        registry.register(
            "compression_variants",
            "Encoded variants stored at fill time, by content coding",
            compressed.clone(),
        );
        let compression_saved = Family::<Labels1, Counter>::default();
        registry.register(
            "compression_saved_bytes",
            "Bytes an encoded variant saves over the identity body, summed per variant stored",
            compression_saved.clone(),
        );
        let requests = OUTCOMES.map(|outcome| {
            STATUS_CLASSES.map(|class| {
                requests
                    .get_or_create(&[("cache", outcome), ("status", class)])
                    .clone()
            })
        });
        let response_bytes = CODINGS.map(|coding| {
            response_bytes
                .get_or_create(&[("encoding", coding)])
                .clone()
        });
        let ready = Arc::new(AtomicBool::new(false));
        registry.register_collector(Box::new(CacheCollector {
            cache: cache.clone(),
            ready: ready.clone(),
        }));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                response_bytes,
                origin_seconds,
                origin_errors,
                coalesced,
                purges,
                purged_objects,
                purge_seconds,
                compressed,
                compression_saved,
                outcomes: Default::default(),
                origin_fetches: AtomicU64::new(0),
                origin_failures: AtomicU64::new(0),
                variants: AtomicU64::new(0),
                saved_bytes: AtomicU64::new(0),
                ready,
            }),
        }
    }

    /// Records one client response: its cache outcome (`hit`, `miss`, … as the access
    /// log names it), status, content coding and body length.
    pub fn request(&self, outcome: &str, status: u16, encoding: Option<&str>, bytes: u64) {
        let index = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(OUTCOMES.len() - 1);
        self.inner.outcomes[index].fetch_add(1, Ordering::Relaxed);
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.inner.requests[index][class].inc();
        if outcome == "collapsed" {
            self.inner.coalesced.inc();
        }
        self.body_bytes(encoding, bytes);
    }

    /// Counts `bytes` of response body sent in `encoding`: a response's declared length
    /// (with [`Metrics::request`]), or a body of no declared length frame by frame.
    pub fn body_bytes(&self, encoding: Option<&str>, bytes: u64) {
        if bytes > 0 {
            let coding = match encoding.map(str::trim) {
                None | Some("") | Some("identity") => 0,
                Some("br") => 1,
                Some("zstd") => 2,
                Some("gzip") => 3,
                Some(_) => 4,
            };
            self.inner.response_bytes[coding].inc_by(bytes);
        }
    }

    /// Records one origin request of `site`: how long it took to the response head, and
    /// how it failed if it did.
    pub fn origin<T>(&self, site: &str, elapsed: Duration, result: &Result<T, EdgeError>) {
        let failure = match result {
            Err(EdgeError::Origin { kind, .. }) => Some(kind),
            _ => None,
        };
        self.inner.origin_fetches.fetch_add(1, Ordering::Relaxed);
        self.inner
            .origin_seconds
            .get_or_create(&[("site", site.to_owned())])
            .observe(elapsed.as_secs_f64());
        if let Some(failure) = failure {
            self.inner.origin_failures.fetch_add(1, Ordering::Relaxed);
            // `origin-connect` → `connect`: the same names as `Cache-Status` details, so
            // that a new kind of failure needs no change here.
            let kind = failure.detail().trim_start_matches("origin-");
            self.inner
                .origin_errors
                .get_or_create(&[("site", site.to_owned()), ("kind", kind.to_owned())])
                .inc();
        }
    }

    /// Records one purge of `kind` (one of [`PURGE_KINDS`]) that touched `objects`
    /// entries in `elapsed`.
    pub fn purge(&self, kind: &'static str, objects: u64, elapsed: Duration) {
        let labels = [("kind", kind)];
        self.inner.purges.get_or_create(&labels).inc();
        self.inner
            .purged_objects
            .get_or_create(&labels)
            .inc_by(objects);
        self.inner
            .purge_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records one encoded variant stored beside an identity body of `identity` bytes.
    pub fn compressed(&self, encoding: &str, identity: u64, encoded: u64) {
        let saved = identity.saturating_sub(encoded);
        self.inner.variants.fetch_add(1, Ordering::Relaxed);
        self.inner.saved_bytes.fetch_add(saved, Ordering::Relaxed);
        let encoding = match encoding {
            "br" => "br",
            "zstd" => "zstd",
            "gzip" => "gzip",
            _ => "other",
        };
        let labels = [("encoding", encoding)];
        self.inner.compressed.get_or_create(&labels).inc();
        self.inner
            .compression_saved
            .get_or_create(&labels)
            .inc_by(saved);
    }

    /// Marks the listeners as up (or going down); `/readyz` and `edge_ready` follow it.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Whether the listeners are up.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Totals since start, for `/stats`.
    pub fn totals(&self) -> Totals {
        let outcomes = OUTCOMES
            .iter()
            .zip(&self.inner.outcomes)
            .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
            .collect();
        Totals {
            outcomes,
            origin_fetches: self.inner.origin_fetches.load(Ordering::Relaxed),
            origin_errors: self.inner.origin_failures.load(Ordering::Relaxed),
            compression_variants: self.inner.variants.load(Ordering::Relaxed),
            compression_saved_bytes: self.inner.saved_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Totals since start.
#[derive(Debug, Clone)]
pub struct Totals {
    /// Client requests per cache outcome, in [`OUTCOMES`] order.
    pub outcomes: Vec<(&'static str, u64)>,
    /// Origin requests made.
    pub origin_fetches: u64,
    /// Origin requests that failed.
    pub origin_errors: u64,
    /// Encoded variants stored.
    pub compression_variants: u64,
    /// Bytes those variants save over their identity bodies, summed.
    pub compression_saved_bytes: u64,
}

impl Totals {
    /// Requests with outcome `name`.
    pub fn outcome(&self, name: &str) -> u64 {
        self.outcomes
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }

    /// The fraction of cacheable requests answered from the cache without waiting for
    /// the origin: `hit / (hit + miss + collapsed + revalidated)`; passes are not
    /// cacheable and are left out. `None` before the first such request.
    pub fn hit_ratio(&self) -> Option<f64> {
        let hit = self.outcome("hit");
        let total =
            hit + self.outcome("miss") + self.outcome("collapsed") + self.outcome("revalidated");
        (total > 0).then(|| hit as f64 / total as f64)
    }
}

/// What one tier holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierStats {
    /// `memory` or `disk`.
    pub tier: &'static str,
    /// Entries held.
    pub entries: u64,
    /// Body bytes held.
    pub bytes: u64,
    /// Bytes charged against the tier's budget: for memory, bodies plus each entry's
    /// estimated overhead ([`crate::cache::Entry::memory_charge`]); for disk, blob bytes.
    pub charged: u64,
    /// Entries evicted for space since start.
    pub evictions: u64,
}

/// What each tier of `cache` holds now.
pub fn tier_stats(cache: &Cache) -> Vec<TierStats> {
    let memory = cache.memory();
    vec![
        TierStats {
            tier: "memory",
            entries: memory.len() as u64,
            bytes: memory.bytes(),
            charged: memory.charged(),
            evictions: memory.evictions(),
        },
        TierStats {
            tier: "disk",
            entries: cache.disk_entries(),
            bytes: cache.disk_bytes(),
            charged: cache.disk_bytes(),
            evictions: cache.disk_evictions(),
        },
    ]
}

/// Reads tier sizes, evictions and fills in flight from the cache at scrape time.
struct CacheCollector {
    cache: Cache,
    ready: Arc<AtomicBool>,
}

impl fmt::Debug for CacheCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheCollector").finish_non_exhaustive()
    }
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let tiers = tier_stats(&self.cache);
        let gauge =
            |encoder: &mut DescriptorEncoder, name: &str, help: &str, values: &[(&str, u64)]| {
                let sample = ConstGauge::new(0i64);
                let mut family =
                    encoder.encode_descriptor(name, help, None, sample.metric_type())?;
                for (tier, value) in values {
                    let labels = [("tier", *tier)];
                    ConstGauge::new(*value as i64).encode(family.encode_family(&labels)?)?;
                }
                Ok::<(), fmt::Error>(())
            };
        let entries: Vec<(&str, u64)> = tiers.iter().map(|t| (t.tier, t.entries)).collect();
        gauge(
            &mut encoder,
            "cache_entries",
            "Entries held, by tier",
            &entries,
        )?;
        let bytes: Vec<(&str, u64)> = tiers.iter().map(|t| (t.tier, t.bytes)).collect();
        gauge(
            &mut encoder,
            "cache_bytes",
            "Body bytes held, by tier",
            &bytes,
        )?;

        let sample = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "cache_evictions",
            "Entries evicted for space, by tier",
            None,
            sample.metric_type(),
        )?;
        for t in &tiers {
            ConstCounter::new(t.evictions).encode(family.encode_family(&[("tier", t.tier)])?)?;
        }

        let in_flight = ConstGauge::new(self.cache.flights().in_flight() as i64);
        in_flight.encode(encoder.encode_descriptor(
            "fills_in_flight",
            "Origin fills in progress",
            None,
            in_flight.metric_type(),
        )?)?;
        let corrupt = ConstCounter::new(self.cache.corrupt_blobs());
        corrupt.encode(encoder.encode_descriptor(
            "disk_corrupt_blobs",
            "Blobs found corrupt or missing on disk (each was a miss, then removed)",
            None,
            corrupt.metric_type(),
        )?)?;
        let skipped = ConstCounter::new(self.cache.disk_skipped());
        skipped.encode(encoder.encode_descriptor(
            "disk_skipped_stores",
            "Stores the disk tier skipped (write queue full, too large, or a failed write)",
            None,
            skipped.metric_type(),
        )?)?;
        let sealed = ConstGauge::new(self.cache.sealer().used() as i64);
        sealed.encode(encoder.encode_descriptor(
            "sendfile_bytes",
            "Bytes of sealed body copies that plain HTTP/1.1 hits send with sendfile \
             (cache.sendfile_memory bounds them)",
            None,
            sealed.metric_type(),
        )?)?;
        let blobs = ConstGauge::new(self.cache.sealer().blobs() as i64);
        blobs.encode(encoder.encode_descriptor(
            "open_blobs",
            "Blob files of the disk tier held open by memory-tier entries, so that their \
             hits skip the index and plain HTTP/1.1 sends them with sendfile \
             (cache.open_blobs bounds them)",
            None,
            blobs.metric_type(),
        )?)?;
        let generation = ConstGauge::new(self.cache.generation() as i64);
        generation.encode(encoder.encode_descriptor(
            "cache_generation",
            "The purge-all generation",
            None,
            generation.metric_type(),
        )?)?;
        let ready = ConstGauge::new(i64::from(self.ready.load(Ordering::Acquire)));
        ready.encode(encoder.encode_descriptor(
            "ready",
            "1 when the listeners are up and the index is open",
            None,
            ready.metric_type(),
        )?)?;
        Ok(())
    }
}
