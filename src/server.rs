//! The server: shared state, the client and admin routers, listeners and graceful
//! shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use http::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::Cache;
use crate::cache::key::CacheKey;
use crate::clock::Clock;
use crate::config::{Config, ConfigError, ConfigErrors, HostPattern, QueryMode, Site};
use crate::error::{EdgeError, OriginFailure};
use crate::http::immutable::ImmutableRules;
use crate::http::path::QueryPolicy;
use crate::origin::{Origin, OriginPool};
use crate::tls::{CertWatcher, SiteCert};

/// One site, ready to serve.
#[derive(Clone)]
pub struct SiteRuntime {
    /// The site's name, first part of its keys.
    pub name: Arc<str>,
    /// Its host patterns.
    pub hosts: Vec<HostPattern>,
    /// Where its misses go.
    pub origin: Origin,
    /// Its validated configuration.
    pub config: Arc<Site>,
    /// Its certificate, for TLS clients that name one of its hosts.
    pub tls: Option<Arc<SiteCert>>,
    /// How its query strings enter keys and forwarded requests.
    pub query: QueryPolicy,
    /// The `Cache-Control` its stored responses are sent to clients with, by path.
    pub immutable: Arc<ImmutableRules>,
    /// `Strict-Transport-Security` for its responses over TLS.
    pub hsts: Option<HeaderValue>,
}

impl SiteRuntime {
    /// An origin error naming this site's origin.
    pub fn origin_error(&self, kind: OriginFailure) -> EdgeError {
        EdgeError::Origin {
            origin: self.origin.name(),
            kind,
        }
    }
}

/// Every site, matched by host: exact names first, then the longest wildcard suffix,
/// then `*`.
pub struct Sites {
    sites: Vec<SiteRuntime>,
}

impl Sites {
    /// Builds the sites of `config` over `pool`, with their certificates. One that does
    /// not load is logged and leaves its site without TLS: [`start`] refuses such a
    /// configuration first, and a reload uses [`Sites::load`].
    pub fn new(config: &Config, pool: &OriginPool) -> Self {
        let (certs, errors) = crate::tls::load_certs(config);
        for error in &errors {
            tracing::error!(key = %error.key, "{}; the site has no certificate", error.message);
        }
        Self::with_certs(config, pool, certs)
    }

    /// Builds the sites of `config` over `pool` if every certificate loads; else the
    /// errors, naming their keys.
    pub fn load(config: &Config, pool: &OriginPool) -> Result<Self, Vec<ConfigError>> {
        let (certs, errors) = crate::tls::load_certs(config);
        if errors.is_empty() {
            Ok(Self::with_certs(config, pool, certs))
        } else {
            Err(errors)
        }
    }

    fn with_certs(config: &Config, pool: &OriginPool, certs: Vec<Option<Arc<SiteCert>>>) -> Self {
        let sites = config
            .sites
            .iter()
            .zip(certs)
            .map(|(s, tls)| SiteRuntime {
                name: s.name.as_str().into(),
                hosts: s.hosts.clone(),
                origin: pool.origin(&s.origin, s.dir_cache_control.as_deref()),
                config: Arc::new(s.clone()),
                tls,
                query: match &s.query {
                    QueryMode::Keep => QueryPolicy::Keep,
                    QueryMode::Sort => QueryPolicy::Sort,
                    QueryMode::Drop => QueryPolicy::Drop,
                    QueryMode::Allow(names) => QueryPolicy::Allow(names.clone()),
                },
                // Validated with the config, so compiling cannot fail here.
                immutable: Arc::new(
                    ImmutableRules::new(s.immutable.iter().map(|r| (&r.pattern, &r.cache_control)))
                        .unwrap_or_default(),
                ),
                // Validated with the config as a header value.
                hsts: s
                    .hsts
                    .as_deref()
                    .and_then(|v| HeaderValue::from_str(v).ok()),
            })
            .collect();
        Sites { sites }
    }

    /// The site serving `host` (lower-case, no port), if any.
    pub fn by_host(&self, host: &str) -> Option<&SiteRuntime> {
        let exact = self.sites.iter().find(|s| {
            s.hosts
                .iter()
                .any(|p| matches!(p, HostPattern::Exact(_)) && p.matches(host))
        });
        if exact.is_some() {
            return exact;
        }
        let suffix = self
            .sites
            .iter()
            .flat_map(|s| s.hosts.iter().map(move |p| (s, p)))
            .filter_map(|(s, p)| match p {
                HostPattern::Suffix(suffix) if p.matches(host) => Some((s, suffix.len())),
                _ => None,
            })
            .max_by_key(|(_, len)| *len)
            .map(|(s, _)| s);
        if suffix.is_some() {
            return suffix;
        }
        self.sites
            .iter()
            .find(|s| s.hosts.contains(&HostPattern::Any))
    }

    /// Every site, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &SiteRuntime> {
        self.sites.iter()
    }
}

/// State shared by every request: one `Clone` handle.
#[derive(Clone)]
pub struct AppState {
    /// The configuration edge started with. Its sites are replaced on reload (read them
    /// through [`AppState::sites`]); the rest takes effect at the next start.
    pub config: Arc<Config>,
    /// The store.
    pub cache: Cache,
    /// The clock freshness reads.
    pub clock: Clock,
    /// Counters and histograms for `/metrics` and `/stats`.
    pub metrics: crate::metrics::Metrics,
    /// Fill-time compression and decoding.
    pub compressor: crate::compress::Compressor,
    /// What fills in progress hold in memory, against `[cache] fill_memory`.
    pub fills: Arc<crate::fill::FillMemory>,
    /// The `Vary` variants stored per URL, to enforce `max_variants`.
    pub variants: Arc<
        std::sync::Mutex<std::collections::HashMap<CacheKey, std::collections::HashSet<CacheKey>>>,
    >,
    sites: Arc<RwLock<Arc<Sites>>>,
    live: Arc<Live>,
}

/// What a reload needs besides the sites: the origin pool they were built over (with
/// the `[origin]` settings it was made from, as text), and where HTTPS is served.
struct Live {
    pool: Mutex<(String, OriginPool)>,
    https_port: AtomicU16,
}

/// Descriptors edge needs beside its client connections: origin connections, blobs,
/// the index, listeners, the runtime's own.
pub const SPARE_FILES: u64 = 1024;

impl AppState {
    /// State for `config` with a fresh cache.
    pub fn new(config: Arc<Config>) -> Self {
        let pool = OriginPool::new(&config.origin);
        let sites = Sites::new(&config, &pool);
        let live = Arc::new(Live {
            pool: Mutex::new((format!("{:?}", config.origin), pool)),
            https_port: AtomicU16::new(config.server.tls_listen.map_or(0, |a| a.port())),
        });
        let cache = Cache::open(&config.cache);
        // Each sealed body copy and each blob held open by the memory tier holds a
        // descriptor: only those the open-file limit leaves beside the client
        // connections and the spare ones.
        if let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            let connections = config.server.limits.max_connections as u64;
            let free = limit.saturating_sub(connections.saturating_add(SPARE_FILES));
            cache.sealer().limit_files(free);
        }
        let metrics = crate::metrics::Metrics::new(&cache);
        let compressor = crate::compress::Compressor::new(&config.compression);
        AppState {
            compressor,
            fills: Arc::new(crate::fill::FillMemory::new(config.cache.fill_memory)),
            config,
            cache,
            clock: Clock::new(),
            metrics,
            variants: Default::default(),
            sites: Arc::new(RwLock::new(Arc::new(sites))),
            live,
        }
    }

    /// The current sites.
    pub fn sites(&self) -> Arc<Sites> {
        self.sites.read().expect("sites lock poisoned").clone()
    }

    /// Replaces the sites with those of `config` if every certificate loads; requests
    /// already under way finish with the sites they started with. Changed `[origin]`
    /// settings get a new origin pool. Blocking: it reads the certificates.
    pub fn replace_sites(&self, config: &Config) -> Result<(), Vec<ConfigError>> {
        let mut pool = self.live.pool.lock().expect("pool lock poisoned");
        let settings = format!("{:?}", config.origin);
        let new_pool = (settings != pool.0).then(|| OriginPool::new(&config.origin));
        let sites = Sites::load(config, new_pool.as_ref().unwrap_or(&pool.1))?;
        if let Some(new_pool) = new_pool {
            tracing::info!("[origin] changed: new origin connections use the new settings");
            *pool = (settings, new_pool);
        }
        drop(pool);
        *self.sites.write().expect("sites lock poisoned") = Arc::new(sites);
        Ok(())
    }

    /// The port HTTPS is served on, for `https_redirect` (0 when there is none).
    pub fn https_port(&self) -> u16 {
        self.live.https_port.load(Ordering::Relaxed)
    }
}

/// The admin router: purge, stats, metrics and health (see [`crate::admin`]).
pub fn admin_app(state: AppState) -> Router {
    crate::admin::router(state)
}

/// A running edge: its bound addresses and a way to stop it.
pub struct Running {
    /// The client listener's address.
    pub addr: SocketAddr,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    /// The TLS listener's address, when `[server] tls_listen` is set.
    pub tls_addr: Option<SocketAddr>,
    /// The shared state, for inspection.
    pub state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
    certs: Option<CertWatcher>,
}

impl Running {
    /// Stops accepting on every listener (plain, TLS, admin), waits for in-flight
    /// requests (up to the configured grace), commits what is queued for the disk tier,
    /// and returns. The disk index closes when the last handle on the cache goes.
    pub async fn shutdown(self) {
        drop(self.certs);
        self.state.metrics.set_ready(false);
        let _ = self.stop.send(true);
        let grace = self.state.config.server.shutdown_grace;
        for task in self.tasks {
            // Each listener drains within the grace itself; this bound is a backstop.
            let _ = tokio::time::timeout(grace + std::time::Duration::from_secs(1), task).await;
        }
        self.state.cache.flush().await;
    }
}

/// Binds the listeners of `config` and starts serving. Fails if a site's certificate
/// does not load or a listener cannot bind.
pub async fn start(config: Arc<Config>) -> std::io::Result<Running> {
    let cert_errors = crate::tls::check(&config);
    if !cert_errors.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            ConfigErrors {
                path: "(site certificates)".into(),
                errors: cert_errors,
            },
        ));
    }
    let state = AppState::new(config.clone());
    let listener = TcpListener::bind(config.server.listen).await?;
    let tls_listener = match config.server.tls_listen {
        Some(tls_listen) => Some(TcpListener::bind(tls_listen).await?),
        None => None,
    };
    let admin_listener = TcpListener::bind(config.admin.listen).await?;
    let addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);

    let limits = config.server.limits.clone();
    let grace = config.server.shutdown_grace;
    let (tls_addr, tls_task, certs) = match tls_listener {
        Some(tls_listener) => {
            let tls_addr = tls_listener.local_addr()?;
            state
                .live
                .https_port
                .store(tls_addr.port(), Ordering::Relaxed);
            let task = tokio::spawn(crate::listener::serve_tls(
                tls_listener,
                crate::tls::acceptor(state.clone()),
                crate::proxy::Client::new(state.clone()),
                limits.clone(),
                stopped.clone(),
                grace,
            ));
            let certs = CertWatcher::start(state.clone(), crate::tls::CERT_POLL);
            (Some(tls_addr), Some(task), Some(certs))
        }
        None => (None, None, None),
    };
    let mut tasks = vec![
        tokio::spawn(crate::listener::serve(
            listener,
            crate::proxy::Client::new(state.clone()),
            limits.clone(),
            stopped.clone(),
            grace,
        )),
        tokio::spawn(crate::listener::serve(
            admin_listener,
            admin_app(state.clone()),
            limits,
            stopped,
            grace,
        )),
    ];
    tasks.extend(tls_task);
    state.metrics.set_ready(true);
    tracing::info!(%addr, tls_addr = ?tls_addr, %admin_addr, sites = config.sites.len(), "edge listening");
    Ok(Running {
        addr,
        admin_addr,
        tls_addr,
        state,
        stop,
        tasks,
        certs,
    })
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully. On SIGHUP, reloads the
/// configuration from `path` (see [`crate::reload`]).
pub async fn run(config: Arc<Config>, path: PathBuf) -> std::io::Result<()> {
    // Installed before anything else: SIGHUP's default action ends the process.
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let running = start(config).await?;
    #[cfg(unix)]
    let reloads = tokio::spawn(crate::reload::on_sighup(
        running.state.clone(),
        path,
        hangup,
    ));
    #[cfg(not(unix))]
    let _ = path;
    shutdown_signal().await;
    #[cfg(unix)]
    reloads.abort();
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
