//! The server: shared state, the client and admin routers, listeners and graceful
//! shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::{Config, HostPattern, Site};
use crate::error::{EdgeError, OriginFailure};
use crate::origin::{Origin, OriginPool};

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
    /// Builds the sites of `config` over `pool`.
    pub fn new(config: &Config, pool: &OriginPool) -> Self {
        let sites = config
            .sites
            .iter()
            .map(|s| SiteRuntime {
                name: s.name.as_str().into(),
                hosts: s.hosts.clone(),
                origin: pool.origin(&s.origin, s.dir_cache_control.as_deref()),
                config: Arc::new(s.clone()),
            })
            .collect();
        Sites { sites }
    }

    /// The site serving `host` (lower-case, no port), if any.
    pub fn by_host(&self, host: &str) -> Option<&SiteRuntime> {
        let exact = self
            .sites
            .iter()
            .find(|s| s.hosts.iter().any(|p| matches!(p, HostPattern::Exact(_)) && p.matches(host)));
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
}

/// State shared by every request: one `Clone` handle.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The store.
    pub cache: Cache,
    /// The clock freshness reads.
    pub clock: Clock,
    /// Counters and histograms for `/metrics` and `/stats`.
    pub metrics: crate::metrics::Metrics,
    sites: Arc<RwLock<Arc<Sites>>>,
}

impl AppState {
    /// State for `config` with a fresh cache.
    pub fn new(config: Arc<Config>) -> Self {
        let pool = OriginPool::new(&config.origin);
        let sites = Sites::new(&config, &pool);
        let cache = Cache::open(&config.cache);
        let metrics = crate::metrics::Metrics::new(&cache);
        AppState {
            config,
            cache,
            clock: Clock::new(),
            metrics,
            sites: Arc::new(RwLock::new(Arc::new(sites))),
        }
    }

    /// The current sites.
    pub fn sites(&self) -> Arc<Sites> {
        self.sites.read().expect("sites lock poisoned").clone()
    }
}

/// The client-facing router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .fallback(crate::proxy::handle)
        .with_state(state)
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
    /// The shared state, for inspection.
    pub state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops accepting, waits for in-flight requests (up to the configured grace), and
    /// returns.
    pub async fn shutdown(self) {
        self.state.metrics.set_ready(false);
        let _ = self.stop.send(true);
        let grace = self.state.config.server.shutdown_grace;
        for task in self.tasks {
            // Each listener drains within the grace itself; this bound is a backstop.
            let _ = tokio::time::timeout(grace + std::time::Duration::from_secs(1), task).await;
        }
    }
}

/// Binds the listeners of `config` and starts serving.
pub async fn start(config: Arc<Config>) -> std::io::Result<Running> {
    let state = AppState::new(config.clone());
    let listener = TcpListener::bind(config.server.listen).await?;
    let admin_listener = TcpListener::bind(config.admin.listen).await?;
    let addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);

    let limits = config.server.limits.clone();
    let grace = config.server.shutdown_grace;
    let tasks = vec![
        tokio::spawn(crate::listener::serve(
            listener,
            app(state.clone()),
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
    state.metrics.set_ready(true);
    tracing::info!(%addr, %admin_addr, sites = config.sites.len(), "edge listening");
    Ok(Running {
        addr,
        admin_addr,
        state,
        stop,
        tasks,
    })
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(config: Arc<Config>) -> std::io::Result<()> {
    let running = start(config).await?;
    shutdown_signal().await;
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
