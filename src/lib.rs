//! edge: a static-asset CDN edge node.
//!
//! A request reads top to bottom in [`proxy`]; the rest, by what each module owns:
//!
//! - [`config`]: `edge.toml` → validated, frozen [`config::Config`].
//! - [`server`]: shared state, routers, start and stop.
//! - [`listener`]: accepting connections (HTTP/1.1, HTTP/2; plain or TLS) with client
//!   limits and graceful draining.
//! - [`tls`]: certificates per site chosen by SNI and reloaded when they change; HTTPS
//!   redirect and HSTS.
//! - [`reload`]: SIGHUP re-reads the configuration; new sites, same connections and
//!   cache.
//! - [`proxy`]: the request path — site, key, lookup, coalesced fill, respond.
//! - [`respond`]: entry + request → response (representation, 304/412, 206/416, headers).
//! - [`body`]: the response body type: a memory hit's bytes unboxed, anything else boxed.
//! - [`fill`]: fetching, revalidating and storing a response from the origin.
//! - [`compress`]: br, zstd and gzip variants at fill time on a bounded pool; decoding
//!   bodies an origin sent encoded.
//! - [`origin`]: the origin client (pooled HTTP/HTTPS, or a directory), timeouts,
//!   hop-by-hop stripping; a client's passed-through upload watched so that its
//!   faults are its own ([`origin::upload`]).
//! - [`cache`]: the store — memory tier, disk tier, keys, metadata, coalescing.
//! - [`http`]: pure RFC logic (freshness, conditionals, ranges, encodings); no IO, no
//!   clock reads.
//! - [`error`]: errors by who failed, turned into responses in one place.
//! - [`clock`]: wall time that follows tokio's (pausable) clock.
//! - [`admin`]: the operator API — purge (URL, prefix, tag, all; soft; cluster
//!   fan-out), stats, metrics, health.
//! - [`metrics`]: Prometheus counters and histograms, recorded on the request path.

pub mod admin;
pub mod body;
pub mod cache;
pub mod clock;
pub mod compress;
pub mod config;
pub mod error;
pub mod fill;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod origin;
pub mod proxy;
pub mod reload;
pub mod respond;
pub mod server;
pub mod tls;
