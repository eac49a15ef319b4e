//! `edge.toml`: the raw serde form (unknown keys rejected), validated into a frozen
//! [`Config`] with sizes and durations parsed and every problem reported with the key
//! it concerns.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The validated, immutable configuration, shared as `Arc<Config>`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`: the client-facing listener.
    pub server: Server,
    /// `[admin]`: the operator listener.
    pub admin: Admin,
    /// `[cluster]`: the other edge nodes purges are forwarded to.
    pub cluster: Cluster,
    /// `[cache]`: tiers and object limits.
    pub cache: CacheConfig,
    /// `[origin]`: how origins are reached.
    pub origin: OriginConfig,
    /// `[compression]`: fill-time variants and decoding.
    pub compression: CompressionConfig,
    /// `[[site]]`: which hosts are served and from where, in file order.
    pub sites: Vec<Site>,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    /// Address of the plain HTTP listener.
    pub listen: SocketAddr,
    /// Address of the TLS listener (HTTP/2 and HTTP/1.1), if any.
    pub tls_listen: Option<SocketAddr>,
    /// Runtime worker threads; 0 means one per CPU.
    pub workers: usize,
    /// Whether each request is logged under the `edge::access` target.
    pub access_log: bool,
    /// Whether HTTP/1.1 memory hits (plain or TLS) are answered on the listener's direct
    /// path, without hyper (`listener::direct`).
    pub direct_hits: bool,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// How long a follower waits for the leader of a coalesced miss.
    pub coalesce_wait: Duration,
    /// Limits on what clients may send and hold.
    pub limits: Limits,
}

/// Client limits, each answered with a clear status when exceeded.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of request head (line + fields) accepted; more → 431.
    pub max_header_bytes: usize,
    /// Request header fields accepted; more → 431.
    pub max_headers: usize,
    /// Bytes of request target accepted; more → 414.
    pub max_uri_length: usize,
    /// Bytes of request body passed through to the origin; more → 413.
    pub max_request_body: u64,
    /// Time an HTTP/1.1 client has to send a request head (and any client a TLS
    /// handshake); then 408 and the connection closes.
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving for this long is closed.
    pub idle_timeout: Duration,
    /// Open client connections; further ones wait in the listen backlog.
    pub max_connections: usize,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Address of the admin listener.
    pub listen: SocketAddr,
    /// The bearer token `/purge`, `/stats` and `/metrics` require, from `token_file` or
    /// `token_env`; `None` leaves them open (allowed on loopback only).
    pub token: Option<Secret>,
}

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Admin base URLs of the other nodes, e.g. `http://10.0.0.2:9090`.
    pub peers: Vec<http::Uri>,
    /// Time allowed for one forwarded purge, connect included.
    pub timeout: Duration,
    /// Further attempts after a forwarded purge fails.
    pub retries: u32,
    /// The bearer token sent to peers: from `peer_token_env`, else `[admin]`'s token.
    pub peer_token: Option<Secret>,
}

/// A credential: compared and sent, never printed (`Debug` shows `<redacted>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[cache]`.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Hard budget for body bytes held in memory.
    pub memory: u64,
    /// Directory of the disk tier.
    pub dir: PathBuf,
    /// Hard budget for blob bytes on disk.
    pub disk: u64,
    /// Responses larger than this are streamed through and never stored.
    pub max_object_size: u64,
    /// Body bytes all fills in progress may hold in memory before further fills stream
    /// through uncached (a fill alone may always take up to `max_object_size`).
    pub fill_memory: u64,
    /// Objects larger than this stay on disk only and are streamed from the file.
    pub memory_object_max: u64,
    /// Most body bytes waiting to be written to disk; a store beyond it is skipped.
    pub write_queue: u64,
    /// How long a streamed blob that hashed to its name on a full read is trusted
    /// without hashing again, while its file is unchanged (same device, inode, length,
    /// mtime and ctime); zero hashes every read.
    pub verify_interval: Duration,
    /// Most bytes of sealed copies of bodies, sent with `sendfile` on plain HTTP/1.1
    /// hits (see [`crate::cache::sealed`]); zero turns them off.
    pub sendfile_memory: u64,
    /// Most blob files of the disk tier held open by memory-tier entries, so that
    /// large disk hits skip the index and go out with `sendfile` (see
    /// [`crate::cache::sealed::BlobHold`]); zero turns them off.
    pub open_blobs: u64,
}

/// `cache.open_blobs` when unset.
pub const DEFAULT_OPEN_BLOBS: u64 = 1000;

/// `cache.verify_interval` when unset.
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(600);

/// `[origin]`.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Time allowed to open a connection (TCP and TLS) to an origin.
    pub connect_timeout: Duration,
    /// Time allowed from sending a request to receiving the response head.
    pub first_byte_timeout: Duration,
    /// Time allowed to receive a whole response body.
    pub body_timeout: Duration,
    /// Idle origin connections kept per host.
    pub max_idle_per_host: usize,
    /// Consecutive connect failures or header timeouts that open an origin's circuit
    /// breaker (0 disables it).
    pub breaker_failures: u32,
    /// How long an open breaker fails requests fast before letting one probe through.
    pub breaker_cooldown: Duration,
    /// Largest response head an origin may send (HTTP/1.1 header lines with their
    /// CRLFs; the HTTP/2 header list); a larger one is a 502.
    pub max_header_bytes: usize,
}

/// `[compression]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressionConfig {
    /// Whether compressed variants are made at all (decoding origin bodies is not
    /// affected).
    pub enabled: bool,
    /// Compression jobs that may run at once, each on its own blocking thread.
    pub workers: usize,
    /// Bodies shorter than this are not compressed.
    pub min_size: u64,
    /// Bodies up to this size get `levels`; larger ones get `large_levels`.
    pub strong_max_size: u64,
    /// Compressible media ranges, lower-case: `text/css`, `text/*`, `application/*+json`.
    pub types: Vec<String>,
    /// Codings to produce, in server preference for equal client q-values: a subset of
    /// `br`, `zstd`, `gzip`, in order.
    pub preference: Vec<String>,
    /// A variant is kept only if at most this fraction of the identity length.
    pub keep_ratio: f64,
    /// Most bytes an encoded origin body may decode to.
    pub max_decoded_size: u64,
    /// Levels for bodies up to `strong_max_size`.
    pub levels: CompressionLevels,
    /// Levels for bodies above `strong_max_size`.
    pub large_levels: CompressionLevels,
}

/// Compression level per coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionLevels {
    /// Brotli quality, 0 to 11.
    pub br: u32,
    /// Zstandard level, 1 to 22.
    pub zstd: u32,
    /// gzip level, 1 to 9.
    pub gzip: u32,
}

impl Default for CompressionConfig {
    /// The documented defaults, as an empty `[compression]` section gives them.
    fn default() -> Self {
        let mut c = Checker { errors: Vec::new() };
        let config = c.compression(&RawCompression::default());
        debug_assert!(c.errors.is_empty(), "defaults validate: {:?}", c.errors);
        config
    }
}

/// One entry of a site's `immutable` list: paths matching `pattern` are sent to clients
/// with `cache_control` (see `http::immutable`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableRule {
    /// `fingerprinted`, or a path glob with `*` (`/static/*`, `*.woff2`).
    pub pattern: String,
    /// The `Cache-Control` sent for matching paths; empty keeps the origin's header.
    pub cache_control: String,
}

impl ImmutableRule {
    /// The default rule: fingerprinted file names are immutable for a year.
    pub fn fingerprinted() -> Self {
        ImmutableRule {
            pattern: "fingerprinted".into(),
            cache_control: "public, max-age=31536000, immutable".into(),
        }
    }
}

/// One `[[site]]`.
#[derive(Debug, Clone)]
pub struct Site {
    /// Name used in logs, keys and purges.
    pub name: String,
    /// Host patterns: exact names, `*.example.com`, or `*`.
    pub hosts: Vec<HostPattern>,
    /// Where misses are fetched from.
    pub origin: OriginTarget,
    /// The certificate chain and key sent to TLS clients that name one of its hosts.
    pub tls: Option<TlsFiles>,
    /// Whether plain-HTTP requests get `308` to the same URL over HTTPS.
    pub https_redirect: bool,
    /// The `Strict-Transport-Security` value sent with its responses over TLS.
    pub hsts: Option<String>,
    /// For `dir:` origins: the `Cache-Control` the directory answers with.
    pub dir_cache_control: Option<String>,
    /// Stale-while-revalidate window applied when a response names none (RFC 5861).
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window applied when a response names none (RFC 5861).
    pub stale_if_error: Duration,
    /// What client request `Cache-Control` may do.
    pub client_cache_control: ClientCacheControl,
    /// Most `Vary` variants kept per URL.
    pub max_variants: usize,
    /// How the query string enters the key and the forwarded request.
    pub query: QueryMode,
    /// What happens to responses that set cookies.
    pub set_cookie: SetCookiePolicy,
    /// Refuse to store HTML answered for a static-asset file name (cache deception).
    pub deception_guard: bool,
    /// Path rules for the `Cache-Control` sent to clients, first match wins.
    pub immutable: Vec<ImmutableRule>,
}

/// How a site's query strings enter the cache key and the forwarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryMode {
    /// As sent (percent-encoding case normalised).
    Keep,
    /// Parameters sorted.
    Sort,
    /// Removed.
    Drop,
    /// Only these parameters kept, sorted.
    Allow(Vec<String>),
}

/// What a site does with responses carrying `Set-Cookie`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCookiePolicy {
    /// Pass them through uncached (the default: a cookie is per client).
    Pass,
    /// Store and serve them without their `Set-Cookie` fields.
    Strip,
}

/// A site's `tls_cert` and `tls_key`: PEM files, read at start and reloaded when they
/// change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How a site treats request `Cache-Control` (and `Pragma`) from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCacheControl {
    /// Ignored, as CDNs do, so that clients cannot force origin load
    /// (`only-if-cached` is still honoured).
    Ignore,
    /// Honoured as RFC 9111 §5.2.1 describes for a private cache: `no-cache`,
    /// `max-age`, `min-fresh`, `max-stale` and `no-store`.
    Honor,
}

/// A host pattern of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Matches one host name exactly (lower-cased, port stripped).
    Exact(String),
    /// `*.example.com`: matches any name ending in `.example.com`, not `example.com`.
    Suffix(String),
    /// `*`: matches every host.
    Any,
}

impl HostPattern {
    fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some(rest) = s.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                return Err(format!(
                    "`{s}` is not a valid wildcard (use `*.example.com`)"
                ));
            }
            return Ok(HostPattern::Suffix(format!(".{rest}")));
        }
        if s.is_empty() || s.contains('*') || s.contains('/') || s.contains(' ') {
            return Err(format!(
                "`{s}` is not a host name (use `example.com`, `*.example.com` or `*`)"
            ));
        }
        Ok(HostPattern::Exact(s))
    }

    /// Whether `host` (lower-case, without port) matches this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            HostPattern::Any => true,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// Where a site's misses go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginTarget {
    /// An HTTP or HTTPS origin: scheme and authority, with an optional path prefix.
    Http(http::Uri),
    /// A directory served in-process.
    Dir(PathBuf),
}

impl fmt::Display for OriginTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginTarget::Http(uri) => write!(f, "{uri}"),
            OriginTarget::Dir(path) => write!(f, "dir:{}", path.display()),
        }
    }
}

/// One problem with a configuration, naming the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key, e.g. `cache.memory` or `site[0].origin`.
    pub key: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration {path}:\n{}", list(.errors))]
pub struct ConfigErrors {
    /// The file that was read.
    pub path: String,
    /// The problems, in file order.
    pub errors: Vec<ConfigError>,
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    origin: RawOrigin,
    #[serde(default)]
    compression: RawCompression,
    #[serde(default)]
    site: Vec<RawSite>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCompression {
    enabled: Option<bool>,
    workers: Option<usize>,
    min_size: Option<String>,
    strong_max_size: Option<String>,
    types: Option<Vec<String>>,
    preference: Option<Vec<String>>,
    keep_ratio: Option<f64>,
    max_decoded_size: Option<String>,
    levels: Option<RawLevels>,
    large_levels: Option<RawLevels>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLevels {
    br: Option<u32>,
    zstd: Option<u32>,
    gzip: Option<u32>,
}

/// The default `[compression] types`: text, scripts, data, SVG, wasm and the font
/// formats that are not compressed already (WOFF and WOFF2 are).
const COMPRESSIBLE_TYPES: [&str; 13] = [
    "text/*",
    "application/javascript",
    "text/javascript",
    "application/json",
    "application/*+json",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
    "application/wasm",
    "font/ttf",
    "font/otf",
    "application/vnd.ms-fontobject",
    "font/collection",
];

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    tls_listen: Option<String>,
    shutdown_grace: Option<String>,
    workers: Option<usize>,
    access_log: Option<bool>,
    direct_hits: Option<bool>,
    coalesce_wait: Option<String>,
    max_header_bytes: Option<String>,
    max_headers: Option<usize>,
    max_uri_length: Option<usize>,
    max_request_body: Option<String>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token_file: Option<String>,
    token_env: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    peers: Option<Vec<String>>,
    timeout: Option<String>,
    retries: Option<u32>,
    peer_token_env: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    memory: Option<String>,
    dir: Option<String>,
    disk: Option<String>,
    max_object_size: Option<String>,
    memory_object_max: Option<String>,
    write_queue: Option<String>,
    fill_memory: Option<String>,
    verify_interval: Option<String>,
    sendfile_memory: Option<String>,
    open_blobs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    connect_timeout: Option<String>,
    first_byte_timeout: Option<String>,
    body_timeout: Option<String>,
    max_idle_per_host: Option<usize>,
    breaker_failures: Option<u32>,
    breaker_cooldown: Option<String>,
    max_header_bytes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: Option<String>,
    hosts: Vec<String>,
    origin: String,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    https_redirect: Option<bool>,
    hsts: Option<String>,
    dir_cache_control: Option<String>,
    stale_while_revalidate: Option<String>,
    stale_if_error: Option<String>,
    client_cache_control: Option<String>,
    max_variants: Option<usize>,
    query: Option<String>,
    query_allow: Option<Vec<String>>,
    set_cookie: Option<String>,
    deception_guard: Option<bool>,
    immutable: Option<Vec<ImmutableRule>>,
}

/// Collects validation errors so that one run reports all of them.
struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    fn fail(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn addr(&mut self, key: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let text = value.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.fail(
                key,
                format!("`{text}` is not an address (use `IP:PORT`, e.g. `0.0.0.0:80`)"),
            );
            default.parse().expect("default address parses")
        })
    }

    fn size(&mut self, key: &str, value: Option<&str>, default: &str) -> u64 {
        let text = value.unwrap_or(default);
        parse_size(text).unwrap_or_else(|message| {
            self.fail(key, message);
            parse_size(default).expect("default size parses")
        })
    }

    /// A duration that may be zero (`"0s"`), defaulting to zero.
    fn duration_or_zero(&mut self, key: &str, value: Option<&str>) -> Duration {
        match value.map(parse_duration) {
            None => Duration::ZERO,
            Some(Ok(d)) => d,
            Some(Err(message)) => {
                self.fail(key, message);
                Duration::ZERO
            }
        }
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: &str) -> Duration {
        let text = value.unwrap_or(default);
        match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.fail(key, "must be greater than zero");
                parse_duration(default).expect("default duration parses")
            }
            Ok(d) => d,
            Err(message) => {
                self.fail(key, message);
                parse_duration(default).expect("default duration parses")
            }
        }
    }

    /// Validates `[compression]`.
    fn compression(&mut self, raw: &RawCompression) -> CompressionConfig {
        let workers = raw.workers.unwrap_or(1);
        if workers == 0 {
            self.fail("compression.workers", "must be at least 1");
        }
        let types: Vec<String> = match &raw.types {
            None => COMPRESSIBLE_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            Some(types) => types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
        };
        for t in &types {
            if !is_media_range(t) {
                self.fail(
                    "compression.types",
                    format!("`{t}` is not a media type (use `text/css`, `text/*` or `application/*+json`)"),
                );
            }
        }
        let preference: Vec<String> = match &raw.preference {
            None => ["br", "zstd", "gzip"].map(str::to_owned).to_vec(),
            Some(list) => list.iter().map(|p| p.trim().to_ascii_lowercase()).collect(),
        };
        if preference.is_empty() {
            self.fail(
                "compression.preference",
                "must list at least one of `br`, `zstd`, `gzip` (set `enabled = false` to turn compression off)",
            );
        }
        for (i, p) in preference.iter().enumerate() {
            if !["br", "zstd", "gzip"].contains(&p.as_str()) {
                self.fail(
                    "compression.preference",
                    format!("`{p}` is not a coding edge produces (use `br`, `zstd` or `gzip`)"),
                );
            } else if preference[..i].contains(p) {
                self.fail("compression.preference", format!("`{p}` is listed twice"));
            }
        }
        let keep_ratio = raw.keep_ratio.unwrap_or(0.95);
        if !(keep_ratio > 0.0 && keep_ratio <= 1.0) {
            self.fail(
                "compression.keep_ratio",
                format!("{keep_ratio} must be greater than 0 and at most 1 (e.g. 0.95)"),
            );
        }
        let max_decoded_size = self.size(
            "compression.max_decoded_size",
            raw.max_decoded_size.as_deref(),
            "1GiB",
        );
        if max_decoded_size == 0 {
            self.fail("compression.max_decoded_size", "must be greater than zero");
        }
        let strong = CompressionLevels {
            br: 11,
            zstd: 19,
            gzip: 9,
        };
        let large = CompressionLevels {
            br: 5,
            zstd: 6,
            gzip: 6,
        };
        CompressionConfig {
            enabled: raw.enabled.unwrap_or(true),
            workers,
            min_size: self.size("compression.min_size", raw.min_size.as_deref(), "256B"),
            strong_max_size: self.size(
                "compression.strong_max_size",
                raw.strong_max_size.as_deref(),
                "1MiB",
            ),
            types,
            preference,
            keep_ratio,
            max_decoded_size,
            levels: self.levels("compression.levels", raw.levels.as_ref(), strong),
            large_levels: self.levels("compression.large_levels", raw.large_levels.as_ref(), large),
        }
    }

    /// Validates a `{ br, zstd, gzip }` level table; missing entries take `default`'s.
    fn levels(
        &mut self,
        key: &str,
        raw: Option<&RawLevels>,
        default: CompressionLevels,
    ) -> CompressionLevels {
        let mut level = |coding: &str,
                         value: Option<u32>,
                         range: std::ops::RangeInclusive<u32>,
                         default: u32| {
            let value = value.unwrap_or(default);
            if !range.contains(&value) {
                self.fail(
                    &format!("{key}.{coding}"),
                    format!(
                        "{value} is out of range ({} to {})",
                        range.start(),
                        range.end()
                    ),
                );
                return default;
            }
            value
        };
        CompressionLevels {
            br: level("br", raw.and_then(|r| r.br), 0..=11, default.br),
            zstd: level("zstd", raw.and_then(|r| r.zstd), 1..=22, default.zstd),
            gzip: level("gzip", raw.and_then(|r| r.gzip), 1..=9, default.gzip),
        }
    }

    /// Validates a site's `immutable` rules; absent means the default rule.
    fn immutable_rules(&mut self, key: &str, raw: Option<&[ImmutableRule]>) -> Vec<ImmutableRule> {
        let Some(rules) = raw else {
            return vec![ImmutableRule::fingerprinted()];
        };
        for (i, rule) in rules.iter().enumerate() {
            let p = &rule.pattern;
            let is_glob = (p.starts_with('/') || p.starts_with('*'))
                && !p
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
            if p != "fingerprinted" && !is_glob {
                self.fail(
                    &format!("{key}[{i}].pattern"),
                    format!("`{p}` is not a pattern (use `fingerprinted`, a path like `/static/*`, or `*.woff2`)"),
                );
            }
            let cc = rule.cache_control.trim();
            if !cc.is_empty() && (!cc.is_ascii() || http::HeaderValue::from_str(cc).is_err()) {
                self.fail(
                    &format!("{key}[{i}].cache_control"),
                    "must be a valid header value (or empty to keep the origin's)",
                );
            }
        }
        rules.to_vec()
    }

    /// Validates `[admin]`: the listener, and its token from a file or the environment.
    /// A listener off loopback without a token is refused: it would let anyone purge.
    fn admin(&mut self, raw: &RawAdmin, base: &Path) -> Admin {
        let listen = self.addr("admin.listen", raw.listen.as_deref(), "127.0.0.1:9090");
        let from_file = raw.token_file.as_deref().and_then(|file| {
            let path = base.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) if text.trim().is_empty() => {
                    self.fail("admin.token_file", format!("`{}` is empty", path.display()));
                    None
                }
                Ok(text) => Some(Secret(text.trim().to_owned())),
                Err(e) => {
                    self.fail(
                        "admin.token_file",
                        format!("cannot read `{}`: {e}", path.display()),
                    );
                    None
                }
            }
        });
        let from_env = raw
            .token_env
            .as_deref()
            .and_then(|var| self.secret_from_env("admin.token_env", var));
        if raw.token_file.is_some() && raw.token_env.is_some() {
            self.fail(
                "admin.token_env",
                "set `token_file` or `token_env`, not both",
            );
        }
        let token = from_file.or(from_env);
        let token_configured = raw.token_file.is_some() || raw.token_env.is_some();
        if !listen.ip().is_loopback() && !token_configured {
            self.fail(
                "admin.listen",
                format!(
                    "`{listen}` is not a loopback address and no token is set: set `token_file` or \
                     `token_env`, or listen on 127.0.0.1"
                ),
            );
        }
        Admin { listen, token }
    }

    /// Validates `[cluster]`; peers get `[admin]`'s token unless `peer_token_env` names
    /// another.
    fn cluster(&mut self, raw: &RawCluster, admin: &Admin) -> Cluster {
        let mut peers = Vec::new();
        for (i, text) in raw.peers.iter().flatten().enumerate() {
            let key = format!("cluster.peers[{i}]");
            let uri: Option<http::Uri> = text.trim_end_matches('/').parse().ok();
            match uri {
                Some(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some()
                        && uri.path_and_query().is_none_or(|p| p.as_str() == "/") =>
                {
                    peers.push(uri)
                }
                _ => self.fail(
                    &key,
                    format!("`{text}` is not an admin base URL (use `http://host:port`)"),
                ),
            }
        }
        let peer_token = match raw.peer_token_env.as_deref() {
            Some(var) => self.secret_from_env("cluster.peer_token_env", var),
            None => admin.token.clone(),
        };
        Cluster {
            peers,
            timeout: self.duration("cluster.timeout", raw.timeout.as_deref(), "2s"),
            retries: raw.retries.unwrap_or(2),
            peer_token,
        }
    }

    fn secret_from_env(&mut self, key: &str, var: &str) -> Option<Secret> {
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Some(Secret(value.trim().to_owned())),
            Ok(_) => {
                self.fail(key, format!("environment variable `{var}` is empty"));
                None
            }
            Err(_) => {
                self.fail(key, format!("environment variable `{var}` is not set"));
                None
            }
        }
    }
}

/// Whether `text` is `type/subtype`, `type/*` or `type/*+suffix` (lower-case tokens).
fn is_media_range(text: &str) -> bool {
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b))
    };
    let Some((ty, subtype)) = text.split_once('/') else {
        return false;
    };
    let subtype_ok = match subtype.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => suffix.starts_with('+') && is_token(&suffix[1..]),
        None => is_token(subtype),
    };
    is_token(ty) && subtype_ok
}

impl Config {
    /// Reads and validates the file at `path`; relative paths inside it are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            path: path.display().to_string(),
            errors: vec![ConfigError {
                key: "(file)".into(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|errors| ConfigErrors {
            path: path.display().to_string(),
            errors,
        })
    }

    /// Validates TOML text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
        let raw: Raw = toml::from_str(text).map_err(|e| vec![toml_error(&e)])?;
        let mut c = Checker { errors: Vec::new() };

        let server = Server {
            listen: c.addr(
                "server.listen",
                raw.server.listen.as_deref(),
                "127.0.0.1:8080",
            ),
            tls_listen: c.tls_listen(&raw),
            workers: raw.server.workers.unwrap_or(0),
            access_log: raw.server.access_log.unwrap_or(true),
            direct_hits: raw.server.direct_hits.unwrap_or(true),
            shutdown_grace: c.duration(
                "server.shutdown_grace",
                raw.server.shutdown_grace.as_deref(),
                "30s",
            ),
            coalesce_wait: c.duration(
                "server.coalesce_wait",
                raw.server.coalesce_wait.as_deref(),
                "30s",
            ),
            limits: limits(&mut c, &raw.server),
        };
        let admin = c.admin(&raw.admin, base);
        let cluster = c.cluster(&raw.cluster, &admin);
        let cache = CacheConfig {
            memory: c.size("cache.memory", raw.cache.memory.as_deref(), "256MiB"),
            dir: base.join(raw.cache.dir.as_deref().unwrap_or("cache")),
            disk: c.size("cache.disk", raw.cache.disk.as_deref(), "10GiB"),
            max_object_size: c.size(
                "cache.max_object_size",
                raw.cache.max_object_size.as_deref(),
                "1GiB",
            ),
            memory_object_max: c.size(
                "cache.memory_object_max",
                raw.cache.memory_object_max.as_deref(),
                "8MiB",
            ),
            write_queue: c.size(
                "cache.write_queue",
                raw.cache.write_queue.as_deref(),
                "256MiB",
            ),
            fill_memory: c.size(
                "cache.fill_memory",
                raw.cache.fill_memory.as_deref(),
                "1GiB",
            ),
            verify_interval: match raw.cache.verify_interval.as_deref() {
                None => DEFAULT_VERIFY_INTERVAL,
                value => c.duration_or_zero("cache.verify_interval", value),
            },
            sendfile_memory: c.size(
                "cache.sendfile_memory",
                raw.cache.sendfile_memory.as_deref(),
                "128MiB",
            ),
            open_blobs: raw.cache.open_blobs.unwrap_or(DEFAULT_OPEN_BLOBS),
        };
        if raw.cache.dir.as_deref() == Some("") {
            c.fail("cache.dir", "must not be empty");
        }
        let origin = OriginConfig {
            connect_timeout: c.duration(
                "origin.connect_timeout",
                raw.origin.connect_timeout.as_deref(),
                "5s",
            ),
            first_byte_timeout: c.duration(
                "origin.first_byte_timeout",
                raw.origin.first_byte_timeout.as_deref(),
                "30s",
            ),
            body_timeout: c.duration(
                "origin.body_timeout",
                raw.origin.body_timeout.as_deref(),
                "120s",
            ),
            max_idle_per_host: raw.origin.max_idle_per_host.unwrap_or(64),
            breaker_failures: raw.origin.breaker_failures.unwrap_or(5),
            breaker_cooldown: c.duration(
                "origin.breaker_cooldown",
                raw.origin.breaker_cooldown.as_deref(),
                "10s",
            ),
            max_header_bytes: c.origin_header_bytes(raw.origin.max_header_bytes.as_deref()),
        };
        let compression = c.compression(&raw.compression);

        if raw.site.is_empty() {
            c.fail(
                "site",
                "at least one [[site]] with `hosts` and `origin` is required",
            );
        }
        let mut sites = Vec::with_capacity(raw.site.len());
        for (i, s) in raw.site.iter().enumerate() {
            let key = |field: &str| format!("site[{i}].{field}");
            let name = s.name.clone().unwrap_or_else(|| format!("site{i}"));
            if name.is_empty()
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            {
                c.fail(
                    &key("name"),
                    format!(
                        "`{name}` must be non-empty and use only letters, digits, `-`, `_` and `.`"
                    ),
                );
            }
            if sites.iter().any(|other: &Site| other.name == name) {
                c.fail(&key("name"), format!("`{name}` is used by an earlier site"));
            }
            if s.hosts.is_empty() {
                c.fail(&key("hosts"), "must list at least one host pattern");
            }
            let mut hosts = Vec::new();
            for h in &s.hosts {
                match HostPattern::parse(h) {
                    Ok(p) => hosts.push(p),
                    Err(m) => c.fail(&key("hosts"), m),
                }
            }
            let origin = match parse_origin(&s.origin, base) {
                Ok(o) => o,
                Err(m) => {
                    c.fail(&key("origin"), m);
                    OriginTarget::Dir(base.to_path_buf())
                }
            };
            let (tls, https_redirect, hsts) =
                c.site_tls(i, s, base, raw.server.tls_listen.is_some());
            let dir_cache_control = match (&origin, &s.dir_cache_control) {
                (OriginTarget::Dir(_), None) => Some("public, max-age=3600".to_owned()),
                (OriginTarget::Dir(_), Some(v)) if v.is_empty() => None,
                (OriginTarget::Dir(_), Some(v)) => {
                    if http::HeaderValue::from_str(v).is_err() {
                        c.fail(&key("dir_cache_control"), "must be a valid header value");
                    }
                    Some(v.clone())
                }
                (OriginTarget::Http(_), Some(_)) => {
                    c.fail(&key("dir_cache_control"), "applies only to `dir:` origins; an HTTP origin sends its own Cache-Control");
                    None
                }
                (OriginTarget::Http(_), None) => None,
            };
            let client_cache_control = match s.client_cache_control.as_deref() {
                None | Some("ignore") => ClientCacheControl::Ignore,
                Some("honor") => ClientCacheControl::Honor,
                Some(other) => {
                    c.fail(
                        &key("client_cache_control"),
                        format!("`{other}` is not `ignore` or `honor`"),
                    );
                    ClientCacheControl::Ignore
                }
            };
            let max_variants = s.max_variants.unwrap_or(32);
            if max_variants == 0 {
                c.fail(&key("max_variants"), "must be at least 1");
            }
            let immutable = c.immutable_rules(&key("immutable"), s.immutable.as_deref());
            sites.push(Site {
                name,
                hosts,
                origin,
                tls,
                https_redirect,
                hsts,
                dir_cache_control,
                stale_while_revalidate: c.duration_or_zero(
                    &key("stale_while_revalidate"),
                    s.stale_while_revalidate.as_deref(),
                ),
                stale_if_error: c.duration_or_zero(&key("stale_if_error"), s.stale_if_error.as_deref()),
                client_cache_control,
                max_variants,
                query: match (s.query.as_deref(), &s.query_allow) {
                    (None | Some("allow"), Some(names)) => QueryMode::Allow(names.clone()),
                    (None | Some("keep"), None) => QueryMode::Keep,
                    (Some("sort"), None) => QueryMode::Sort,
                    (Some("drop"), None) => QueryMode::Drop,
                    (Some("allow"), None) => {
                        c.fail(&key("query_allow"), "`query = \"allow\"` needs `query_allow = [...]`");
                        QueryMode::Keep
                    }
                    (Some(other), _) => {
                        c.fail(
                            &key("query"),
                            format!("`{other}` is not `keep`, `sort`, `drop` or `allow` (with `query_allow`)"),
                        );
                        QueryMode::Keep
                    }
                },
                set_cookie: match s.set_cookie.as_deref() {
                    None | Some("pass") => SetCookiePolicy::Pass,
                    Some("strip") => SetCookiePolicy::Strip,
                    Some(other) => {
                        c.fail(&key("set_cookie"), format!("`{other}` is not `pass` or `strip`"));
                        SetCookiePolicy::Pass
                    }
                },
                deception_guard: s.deception_guard.unwrap_or(true),
                immutable,
            });
        }

        if c.errors.is_empty() {
            Ok(Config {
                server,
                admin,
                cluster,
                cache,
                origin,
                compression,
                sites,
            })
        } else {
            Err(c.errors)
        }
    }
}

/// TLS: the listener, and each site's certificate, redirect and HSTS.
impl Checker {
    /// `[server] tls_listen`: an address, with at least one site that has a certificate.
    fn tls_listen(&mut self, raw: &Raw) -> Option<SocketAddr> {
        let text = raw.server.tls_listen.as_deref()?;
        let addr = self.addr("server.tls_listen", Some(text), "127.0.0.1:8443");
        if !raw.site.iter().any(|s| s.tls_cert.is_some()) {
            self.fail(
                "server.tls_listen",
                "no [[site]] has `tls_cert` and `tls_key` to serve on it",
            );
        }
        let listen = raw.server.listen.as_deref().unwrap_or("127.0.0.1:8080");
        if listen
            .parse::<SocketAddr>()
            .is_ok_and(|l| l == addr && l.port() != 0)
        {
            self.fail(
                "server.tls_listen",
                format!("`{addr}` is also `server.listen`"),
            );
        }
        Some(addr)
    }

    /// A site's `tls_cert` and `tls_key` (both or neither; files that exist; a TLS
    /// listener to serve them), `https_redirect` and `hsts` (both need the site on TLS).
    fn site_tls(
        &mut self,
        i: usize,
        raw: &RawSite,
        base: &Path,
        tls_listen: bool,
    ) -> (Option<TlsFiles>, bool, Option<String>) {
        let key = |field: &str| format!("site[{i}].{field}");
        let mut file = |field: &str, value: &str| {
            let path = base.join(value);
            if value.is_empty() || !path.is_file() {
                self.fail(&key(field), format!("`{}` is not a file", path.display()));
            }
            path
        };
        let tls = match (&raw.tls_cert, &raw.tls_key) {
            (Some(cert), Some(private)) => Some(TlsFiles {
                cert: file("tls_cert", cert),
                key: file("tls_key", private),
            }),
            (Some(_), None) => {
                self.fail(&key("tls_key"), "is required with `tls_cert`");
                None
            }
            (None, Some(_)) => {
                self.fail(&key("tls_cert"), "is required with `tls_key`");
                None
            }
            (None, None) => None,
        };
        let on_tls = raw.tls_cert.is_some() && raw.tls_key.is_some();
        if on_tls && !tls_listen {
            self.fail(
                &key("tls_cert"),
                "needs a TLS listener: set [server] tls_listen (e.g. \"0.0.0.0:443\")",
            );
        }
        let https_redirect = raw.https_redirect.unwrap_or(false);
        if https_redirect && !on_tls {
            self.fail(
                &key("https_redirect"),
                "needs `tls_cert` and `tls_key`: the site must be served over TLS",
            );
        }
        let hsts = raw.hsts.as_deref().map(str::trim).filter(|v| !v.is_empty());
        if let Some(value) = hsts {
            if !on_tls {
                self.fail(
                    &key("hsts"),
                    "needs `tls_cert` and `tls_key`: HSTS is sent over TLS only",
                );
            }
            if !is_hsts(value) {
                self.fail(
                    &key("hsts"),
                    format!(
                        "`{value}` is not a Strict-Transport-Security value (e.g. \
                         \"max-age=31536000; includeSubDomains\")"
                    ),
                );
            }
        }
        (tls, https_redirect, hsts.map(str::to_owned))
    }
}

/// Whether `value` is a `Strict-Transport-Security` value: directives separated by `;`,
/// exactly one of them `max-age=<seconds>` (RFC 6797 §6.1).
fn is_hsts(value: &str) -> bool {
    let max_ages: Vec<&str> = value
        .split(';')
        .filter_map(|d| {
            let (name, v) = d.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| v.trim().trim_matches('"'))
        })
        .collect();
    http::HeaderValue::from_str(value).is_ok()
        && max_ages.len() == 1
        && !max_ages[0].is_empty()
        && max_ages[0].bytes().all(|b| b.is_ascii_digit())
}

impl Checker {
    /// `origin.max_header_bytes`: at most 256 KiB, under hyper's own HTTP/1.1 read
    /// buffer (about 408 KiB), so that the limit is the one that applies.
    fn origin_header_bytes(&mut self, value: Option<&str>) -> usize {
        const KEY: &str = "origin.max_header_bytes";
        let bytes = self.size(KEY, value, "64KiB");
        if !(8192..=256 << 10).contains(&bytes) {
            self.fail(KEY, "must be between 8KiB and 256KiB");
        }
        bytes.clamp(8192, 256 << 10) as usize
    }
}

fn limits(c: &mut Checker, raw: &RawServer) -> Limits {
    let header_bytes = c.size(
        "server.max_header_bytes",
        raw.max_header_bytes.as_deref(),
        "32KiB",
    );
    // hyper needs room for at least one 8 KiB read buffer.
    if header_bytes < 8192 {
        c.fail("server.max_header_bytes", "must be at least 8KiB");
    }
    let max_headers = raw.max_headers.unwrap_or(100);
    if max_headers == 0 {
        c.fail("server.max_headers", "must be at least 1");
    }
    let max_uri_length = raw.max_uri_length.unwrap_or(8192);
    if max_uri_length < 16 {
        c.fail("server.max_uri_length", "must be at least 16");
    }
    let max_connections = raw.max_connections.unwrap_or(10_000);
    if max_connections == 0 {
        c.fail("server.max_connections", "must be at least 1");
    }
    Limits {
        max_header_bytes: header_bytes.max(8192) as usize,
        max_headers: max_headers.max(1),
        max_uri_length,
        max_request_body: c.size(
            "server.max_request_body",
            raw.max_request_body.as_deref(),
            "16MiB",
        ),
        header_read_timeout: c.duration(
            "server.header_read_timeout",
            raw.header_read_timeout.as_deref(),
            "10s",
        ),
        idle_timeout: c.duration("server.idle_timeout", raw.idle_timeout.as_deref(), "60s"),
        max_connections: max_connections.max(1),
    }
}

fn toml_error(e: &toml::de::Error) -> ConfigError {
    // toml's message already names the unknown or mistyped key and its line.
    ConfigError {
        key: "(syntax)".into(),
        message: e.to_string().trim().replace('\n', " "),
    }
}

fn parse_origin(text: &str, base: &Path) -> Result<OriginTarget, String> {
    if let Some(dir) = text.strip_prefix("dir:") {
        if dir.is_empty() {
            return Err("`dir:` needs a path, e.g. `dir:assets`".into());
        }
        let path = base.join(dir);
        if !path.is_dir() {
            return Err(format!("`{}` is not a directory", path.display()));
        }
        return Ok(OriginTarget::Dir(path));
    }
    let uri: http::Uri = text.parse().map_err(|_| {
        format!("`{text}` is not a URL (use `http://host:port`, `https://host` or `dir:PATH`)")
    })?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(format!(
                "`{text}`: the scheme must be `http`, `https` or `dir:`"
            ));
        }
    }
    if uri.authority().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("`{text}` must not have a query"));
    }
    Ok(OriginTarget::Http(uri))
}

/// Parses a byte size: `1024`, `64KiB`, `256MiB`, `10GiB`, `1TiB`, or the decimal
/// `kB`, `MB`, `GB`, `TB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (use e.g. `512KiB`, `256MiB`, `10GiB`)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a duration: `250ms`, `5s`, `2m`, `1h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (use e.g. `250ms`, `5s`, `2m`, `1h`)"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        "" => return Err(format!("`{text}` needs a unit (ms, s, m, h or d)")),
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
            ));
        }
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        let dir = std::env::temp_dir();
        Config::parse(text, &dir)
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn unknown_key_is_rejected_naming_it() {
        let errors = parse(
            "[cache]\nmemroy = \"1MiB\"\n[[site]]\nhosts=[\"*\"]\norigin=\"http://127.0.0.1:1\"\n",
        )
        .unwrap_err();
        assert!(errors[0].message.contains("memroy"), "{errors:?}");
    }

    #[test]
    fn every_invalid_value_is_reported_with_its_key() {
        let errors = parse(
            "[server]\nlisten = \"nowhere\"\n[cache]\nmemory = \"lots\"\n[[site]]\nhosts = [\"a*b\"]\norigin = \"ftp://x\"\n",
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "cache.memory",
                "site[0].hosts",
                "site[0].origin"
            ]
        );
    }

    #[test]
    fn origin_head_limit_defaults_and_bounds() {
        let site = "[[site]]\nhosts = [\"*\"]\norigin = \"http://127.0.0.1:1\"\n";
        let config = parse(site).expect("valid");
        assert_eq!(config.origin.max_header_bytes, 64 << 10);
        let config =
            parse(&format!("[origin]\nmax_header_bytes = \"16KiB\"\n{site}")).expect("valid");
        assert_eq!(config.origin.max_header_bytes, 16 << 10);
        for bad in ["4KiB", "257KiB", "lots"] {
            let errors =
                parse(&format!("[origin]\nmax_header_bytes = \"{bad}\"\n{site}")).unwrap_err();
            assert_eq!(
                errors[0].key, "origin.max_header_bytes",
                "{bad}: {errors:?}"
            );
        }
    }

    #[test]
    fn direct_hits_are_on_unless_turned_off() {
        let site = "[[site]]\nhosts = [\"*\"]\norigin = \"http://127.0.0.1:9\"\n";
        assert!(parse(site).expect("valid").server.direct_hits);
        let off = parse(&format!("[server]\ndirect_hits = false\n{site}")).expect("valid");
        assert!(!off.server.direct_hits);
        let errors = parse(&format!("[server]\ndirect_hits = 0\n{site}")).unwrap_err();
        assert!(errors[0].message.contains("direct_hits"), "{errors:?}");
    }

    #[test]
    fn the_access_log_is_on_unless_turned_off() {
        let site = "[[site]]\nhosts = [\"*\"]\norigin = \"http://127.0.0.1:1\"\n";
        assert!(parse(site).expect("valid").server.access_log);
        let off = parse(&format!("[server]\naccess_log = false\n{site}")).expect("valid");
        assert!(!off.server.access_log);
        let errors = parse(&format!("[server]\naccess_log = \"off\"\n{site}")).unwrap_err();
        assert!(errors[0].message.contains("access_log"), "{errors:?}");
    }

    #[test]
    fn host_patterns_match_as_documented() {
        let exact = HostPattern::parse("Example.com").unwrap();
        assert!(exact.matches("example.com"));
        assert!(!exact.matches("www.example.com"));
        let wild = HostPattern::parse("*.example.com").unwrap();
        assert!(wild.matches("www.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("badexample.com"));
        assert!(HostPattern::parse("*").unwrap().matches("anything"));
    }

    #[test]
    fn a_config_without_sites_is_an_error() {
        let errors = parse("").unwrap_err();
        assert_eq!(errors[0].key, "site");
    }

    const SITE: &str = "[[site]]\nhosts = [\"*\"]\norigin = \"http://127.0.0.1:1\"\n";

    #[test]
    fn compression_defaults_apply_when_the_section_is_absent() {
        let config = parse(SITE).unwrap();
        let c = &config.compression;
        assert_eq!(c, &CompressionConfig::default());
        assert!(c.enabled);
        assert_eq!(c.workers, 1);
        assert_eq!(c.min_size, 256);
        assert_eq!(c.strong_max_size, 1 << 20);
        assert_eq!(c.max_decoded_size, 1 << 30);
        assert_eq!(c.keep_ratio, 0.95);
        assert_eq!(c.preference, ["br", "zstd", "gzip"]);
        assert_eq!(c.types.len(), COMPRESSIBLE_TYPES.len());
        let levels = |br, zstd, gzip| CompressionLevels { br, zstd, gzip };
        assert_eq!(c.levels, levels(11, 19, 9));
        assert_eq!(c.large_levels, levels(5, 6, 6));
        assert_eq!(config.sites[0].immutable, [ImmutableRule::fingerprinted()]);
    }

    #[test]
    fn compression_settings_are_read_and_normalised() {
        let config = parse(&format!(
            "[compression]\nworkers = 2\nmin_size = \"1KiB\"\ntypes = [\"Text/CSS\", \"application/*+json\"]\n\
             preference = [\"ZSTD\", \"br\"]\nkeep_ratio = 0.9\nlevels = {{ br = 9 }}\n{SITE}"
        ))
        .unwrap();
        let c = &config.compression;
        assert_eq!((c.workers, c.min_size, c.keep_ratio), (2, 1024, 0.9));
        assert_eq!(c.types, ["text/css", "application/*+json"]);
        assert_eq!(c.preference, ["zstd", "br"]);
        let (br, zstd, gzip) = (9, 19, 9);
        assert_eq!(c.levels, CompressionLevels { br, zstd, gzip });
    }

    #[test]
    fn invalid_compression_settings_are_reported_with_their_keys() {
        let errors = parse(&format!(
            "[compression]\nworkers = 0\nmin_size = \"big\"\ntypes = [\"javascript\"]\n\
             preference = [\"br\", \"lzma\", \"br\"]\nkeep_ratio = 1.5\nmax_decoded_size = \"0B\"\n\
             levels = {{ br = 12, zstd = 0 }}\nlarge_levels = {{ gzip = 10 }}\n{SITE}"
        ))
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "compression.workers",
                "compression.types",
                "compression.preference",
                "compression.preference",
                "compression.keep_ratio",
                "compression.max_decoded_size",
                "compression.min_size",
                "compression.levels.br",
                "compression.levels.zstd",
                "compression.large_levels.gzip",
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_compression_key_is_rejected() {
        let errors = parse(&format!("[compression]\nlevel = 9\n{SITE}")).unwrap_err();
        assert!(errors[0].message.contains("level"), "{errors:?}");
    }

    #[test]
    fn site_immutable_rules_are_read_in_order_and_validated() {
        let config = parse(&format!(
            "{SITE}immutable = [{{ pattern = \"/static/*\", cache_control = \"public, max-age=600\" }}, \
             {{ pattern = \"fingerprinted\", cache_control = \"\" }}]\n"
        ))
        .unwrap();
        let rules = &config.sites[0].immutable;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].pattern, "/static/*");
        assert_eq!(rules[1].cache_control, "");

        let none = parse(&format!("{SITE}immutable = []\n")).unwrap();
        assert!(none.sites[0].immutable.is_empty());

        let errors = parse(&format!(
            "{SITE}immutable = [{{ pattern = \"static\", cache_control = \"public\" }}, \
             {{ pattern = \"*.js\", cache_control = \"a\\nb\" }}]\n"
        ))
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "site[0].immutable[0].pattern",
                "site[0].immutable[1].cache_control"
            ]
        );
    }

    #[test]
    fn media_ranges_are_recognised() {
        for ok in ["text/*", "text/css", "application/*+json", "image/svg+xml"] {
            assert!(is_media_range(ok), "{ok}");
        }
        for bad in ["text", "*/*", "text/", "application/*json", "/css"] {
            assert!(!is_media_range(bad), "{bad}");
        }
        assert!(!is_media_range("text/c ss"));
    }

    #[test]
    fn an_admin_listener_off_loopback_needs_a_token() {
        let errors = parse(&format!("[admin]\nlisten = \"0.0.0.0:9090\"\n{SITE}")).unwrap_err();
        assert_eq!(errors[0].key, "admin.listen", "{errors:?}");
        assert!(errors[0].message.contains("token"), "{errors:?}");
        assert!(parse(&format!("[admin]\nlisten = \"127.0.0.1:9090\"\n{SITE}")).is_ok());
        assert!(parse(&format!("[admin]\nlisten = \"[::1]:9090\"\n{SITE}")).is_ok());
    }

    #[test]
    fn the_admin_token_is_read_from_a_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let text = format!("[admin]\nlisten = \"0.0.0.0:9090\"\ntoken_file = \"token\"\n{SITE}");
        let config = Config::parse(&text, dir.path()).unwrap();
        let token = config.admin.token.as_ref().unwrap();
        assert_eq!(token.expose(), "s3cret");
        assert_eq!(
            config.cluster.peer_token.as_ref(),
            Some(token),
            "peers get the admin token"
        );
        assert!(!format!("{config:?}").contains("s3cret"));

        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let errors =
            Config::parse(&text.replace("\"token\"", "\"empty\""), dir.path()).unwrap_err();
        assert_eq!(errors[0].key, "admin.token_file", "{errors:?}");
        let errors =
            Config::parse(&text.replace("\"token\"", "\"missing\""), dir.path()).unwrap_err();
        assert_eq!(errors[0].key, "admin.token_file", "{errors:?}");
    }

    #[test]
    fn an_unset_token_variable_is_an_error_naming_it() {
        let errors = parse(&format!(
            "[admin]\ntoken_env = \"EDGE_TEST_SURELY_UNSET_81723\"\n[cluster]\npeer_token_env = \"EDGE_TEST_SURELY_UNSET_81723\"\n{SITE}"
        ))
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["admin.token_env", "cluster.peer_token_env"]);
        assert!(errors[0].message.contains("EDGE_TEST_SURELY_UNSET_81723"));
    }

    #[test]
    fn cluster_peers_are_admin_base_urls() {
        let config = parse(&format!(
            "[cluster]\npeers = [\"http://10.0.0.2:9090\", \"https://edge-b.internal:9443/\"]\ntimeout = \"500ms\"\nretries = 0\n{SITE}"
        ))
        .unwrap();
        let c = &config.cluster;
        assert_eq!(c.peers.len(), 2);
        assert_eq!((c.timeout, c.retries), (Duration::from_millis(500), 0));
        let defaults = parse(SITE).unwrap().cluster;
        assert!(defaults.peers.is_empty());
        assert_eq!(
            (defaults.timeout, defaults.retries),
            (Duration::from_secs(2), 2)
        );

        let errors = parse(&format!(
            "[cluster]\npeers = [\"10.0.0.2:9090\", \"http://a/purge\", \"ftp://b\"]\n{SITE}"
        ))
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["cluster.peers[0]", "cluster.peers[1]", "cluster.peers[2]"]
        );
    }
}
