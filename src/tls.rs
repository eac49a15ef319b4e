//! TLS for clients: a rustls configuration (TLS 1.2 and 1.3 only, ALPN `h2` and
//! `http/1.1`) whose certificate is chosen per connection by SNI from the site that
//! serves that name; certificates reloaded in place when their files change or on
//! SIGHUP, keeping the old ones when the new ones do not load; and the per-site HTTPS
//! policy: `https_redirect` (308 from plain HTTP) and `hsts` (sent over TLS only).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Extensions, Request, Response, StatusCode};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, ConfigError, HostPattern, TlsFiles};
use crate::server::{AppState, SiteRuntime, Sites};

/// How often the certificate watcher looks at the files' modification times.
pub const CERT_POLL: Duration = Duration::from_secs(5);

/// How a request reached edge. The listener puts it in every request's extensions; a
/// request without one (driven in-process) counts as plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme recorded in `extensions`.
    pub fn of(extensions: &Extensions) -> Scheme {
        extensions.get::<Scheme>().copied().unwrap_or(Scheme::Http)
    }

    /// `http` or `https`, as `X-Forwarded-Proto` and URLs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The site key naming the file: `tls_cert` or `tls_key`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("`{}` is not valid PEM: {message}", path.display())]
    Pem {
        /// The site key naming the file: `tls_cert` or `tls_key`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        message: String,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("`{}` holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    /// The key file holds no private key block.
    #[error("`{}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", .0.display())]
    NoKey(PathBuf),
    /// The key is unsupported, or does not belong to the certificate.
    #[error("`{}` with `{}`: {error}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        error: rustls::Error,
    },
}

impl CertError {
    /// The site key (`tls_cert` or `tls_key`) the error concerns.
    pub fn field(&self) -> &'static str {
        match self {
            CertError::Read { field, .. } | CertError::Pem { field, .. } => field,
            CertError::NoCertificate(_) => "tls_cert",
            CertError::NoKey(_) | CertError::Pair { .. } => "tls_key",
        }
    }
}

/// What reloading one site's certificate did.
#[derive(Debug)]
pub enum CertReload {
    /// The files have not changed since they were last read.
    Unchanged,
    /// The new certificate and key are in use for new handshakes.
    Reloaded,
    /// The new files did not load; the previous certificate stays in use.
    Failed(CertError),
}

impl CertReload {
    /// The outcome's name, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertReload::Unchanged => "unchanged",
            CertReload::Reloaded => "reloaded",
            CertReload::Failed(_) => "failed",
        }
    }
}

/// A site's certificate chain and key, swapped in place when the files change.
pub struct SiteCert {
    files: TlsFiles,
    current: RwLock<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files as they were when `key` was read.
    stamp: Stamp,
    /// The files as they were when loading them last failed, so that a broken file is
    /// reported once, not on every poll.
    failed: Option<Stamp>,
}

impl SiteCert {
    /// Reads and checks the certificate chain and key named by `files`.
    pub fn load(files: &TlsFiles) -> Result<SiteCert, CertError> {
        let stamp = Stamp::of(files);
        let key = load_pair(&files.cert, &files.key)?;
        Ok(SiteCert {
            files: files.clone(),
            current: RwLock::new(Loaded {
                key,
                stamp,
                failed: None,
            }),
        })
    }

    /// The certificate and key for new handshakes.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .expect("certificate lock poisoned")
            .key
            .clone()
    }

    /// The files this certificate is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again if they changed since the last attempt (or always, with
    /// `force`), and swaps the new certificate in if it loads.
    pub fn reload(&self, force: bool) -> CertReload {
        let stamp = Stamp::of(&self.files);
        {
            let current = self.current.read().expect("certificate lock poisoned");
            if !force && (stamp == current.stamp || Some(stamp) == current.failed) {
                return CertReload::Unchanged;
            }
        }
        let loaded = load_pair(&self.files.cert, &self.files.key);
        let mut current = self.current.write().expect("certificate lock poisoned");
        match loaded {
            Ok(key) => {
                current.key = key;
                current.stamp = stamp;
                current.failed = None;
                CertReload::Reloaded
            }
            Err(error) => {
                current.failed = Some(stamp);
                CertReload::Failed(error)
            }
        }
    }
}

impl fmt::Debug for SiteCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteCert")
            .field("files", &self.files)
            .finish()
    }
}

/// Modification time, length and inode of both files: a change to any of them, including
/// a new file renamed into place, counts as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp([Option<(Option<SystemTime>, u64, u64)>; 2]);

impl Stamp {
    fn of(files: &TlsFiles) -> Stamp {
        Stamp([file_stamp(&files.cert), file_stamp(&files.key)])
    }
}

fn file_stamp(path: &Path) -> Option<(Option<SystemTime>, u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok(), meta.len(), inode))
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key and checks that the
/// key is supported and belongs to the leaf.
fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let read = |field, path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            field,
            path: path.to_owned(),
            source,
        })
    };
    let pem_error = |field, path: &Path, e: pem::Error| CertError::Pem {
        field,
        path: path.to_owned(),
        message: e.to_string(),
    };
    let cert_pem = read("tls_cert", cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("tls_cert", cert, e))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate(cert.to_owned()));
    }
    let key_pem = read("tls_key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => CertError::NoKey(key.to_owned()),
        e => pem_error("tls_key", key, e),
    })?;
    let certified =
        CertifiedKey::from_der(chain, private, &provider()).map_err(|error| CertError::Pair {
            cert: cert.to_owned(),
            key: key.to_owned(),
            error,
        })?;
    Ok(Arc::new(certified))
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Loads the certificate of each site of `config`: one entry per site, `None` for a site
/// without `tls_cert` or whose certificate failed, and the failures as errors naming the
/// site's key.
pub fn load_certs(config: &Config) -> (Vec<Option<Arc<SiteCert>>>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let certs = config
        .sites
        .iter()
        .enumerate()
        .map(|(i, site)| match SiteCert::load(site.tls.as_ref()?) {
            Ok(cert) => Some(Arc::new(cert)),
            Err(error) => {
                errors.push(site_error(i, &error));
                None
            }
        })
        .collect();
    (certs, errors)
}

/// The errors of every site certificate of `config` that does not load, as start-up
/// and reload would find them (for `edge check-config`).
pub fn check(config: &Config) -> Vec<ConfigError> {
    load_certs(config).1
}

/// A certificate error as a configuration error of site `index`.
pub fn site_error(index: usize, error: &CertError) -> ConfigError {
    ConfigError {
        key: format!("site[{index}].{}", error.field()),
        message: error.to_string(),
    }
}

/// Re-reads the certificate of every site in `sites` whose files changed (every one,
/// with `force`), logging each outcome but `unchanged`. A certificate that fails to
/// load keeps the previous one in service.
pub fn reload_certs(sites: &Sites, force: bool) -> Vec<(Arc<str>, CertReload)> {
    let mut outcomes = Vec::new();
    for site in sites.iter() {
        let Some(cert) = &site.tls else { continue };
        let outcome = cert.reload(force);
        match &outcome {
            CertReload::Unchanged => {}
            CertReload::Reloaded => tracing::info!(
                site = %site.name,
                cert = %cert.files().cert.display(),
                "certificate reloaded"
            ),
            CertReload::Failed(error) => tracing::error!(
                site = %site.name,
                %error,
                "certificate not reloaded; the previous one stays in use"
            ),
        }
        outcomes.push((site.name.clone(), outcome));
    }
    outcomes
}

/// Polls the certificate files of the current sites every `every` and reloads those
/// that changed. Stops when dropped.
pub struct CertWatcher {
    task: JoinHandle<()>,
}

impl CertWatcher {
    /// Starts watching the certificates of `state`'s sites (as they are at each poll, so
    /// a config reload's new sites are watched too).
    pub fn start(state: AppState, every: Duration) -> CertWatcher {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let sites = state.sites();
                // Reading metadata and PEM files is blocking IO.
                let _ = tokio::task::spawn_blocking(move || reload_certs(&sites, false)).await;
            }
        });
        CertWatcher { task }
    }
}

impl Drop for CertWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The TLS acceptor for client connections: TLS 1.3 and 1.2 with ring's cipher suites,
/// ALPN `h2` then `http/1.1`, and each handshake's certificate resolved from `state`'s
/// current sites by SNI.
pub fn acceptor(state: AppState) -> TlsAcceptor {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { state }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless resumption tickets: returning browsers skip a full handshake without
    // edge keeping a session cache per client.
    match rustls::crypto::ring::Ticketer::new() {
        Ok(ticketer) => config.ticketer = ticketer,
        Err(error) => tracing::warn!(%error, "TLS session tickets unavailable"),
    }
    TlsAcceptor::from(Arc::new(config))
}

/// Picks the certificate of the site that serves the SNI name, with the same precedence
/// as requests are routed by `Host` (exact, longest wildcard, `*`). A client that sends no
/// SNI gets the certificate of the `*` site, else of the first site that has one. No
/// site, or a site without a certificate, aborts the handshake.
struct SniResolver {
    state: AppState,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sites = self.state.sites();
        let site = match hello.server_name() {
            Some(name) => sites.by_host(&name.trim_end_matches('.').to_ascii_lowercase()),
            None => sites
                .iter()
                .find(|s| s.tls.is_some() && s.hosts.contains(&HostPattern::Any))
                .or_else(|| sites.iter().find(|s| s.tls.is_some())),
        };
        let key = site.and_then(|s| s.tls.as_ref()).map(|c| c.certified_key());
        if key.is_none() {
            tracing::debug!(sni = hello.server_name(), "no certificate for this name");
        }
        key
    }
}

/// The `https_redirect` hook, called by the proxy once the site is known: a plain-HTTP
/// request to a site that redirects gets `308 Permanent Redirect` to the same URL over
/// HTTPS (308 keeps the method and body).
pub fn https_redirect<B>(
    state: &AppState,
    site: &SiteRuntime,
    host: &str,
    request: &Request<B>,
) -> Option<Response<Body>> {
    if !site.config.https_redirect || Scheme::of(request.extensions()) == Scheme::Https {
        return None;
    }
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = https_location(host, state.https_port(), target);
    let location = HeaderValue::from_str(&location).ok()?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    Some(response)
}

/// `https://host[:port]target`, the port left out when it is 443.
fn https_location(host: &str, port: u16, target: &str) -> String {
    let target = if target.starts_with('/') { target } else { "/" };
    match port {
        443 | 0 => format!("https://{host}{target}"),
        port => format!("https://{host}:{port}{target}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_location_keeps_the_target_and_drops_port_443() {
        assert_eq!(
            https_location("example.com", 443, "/a/b?c=d"),
            "https://example.com/a/b?c=d"
        );
        assert_eq!(
            https_location("example.com", 8443, "/x"),
            "https://example.com:8443/x"
        );
        assert_eq!(https_location("[::1]", 8443, "*"), "https://[::1]:8443/");
    }

    #[test]
    fn scheme_defaults_to_http_without_a_marker() {
        let mut extensions = Extensions::new();
        assert_eq!(Scheme::of(&extensions), Scheme::Http);
        extensions.insert(Scheme::Https);
        assert_eq!(Scheme::of(&extensions).as_str(), "https");
    }

    #[test]
    fn missing_files_are_reported_with_the_file_name() {
        let files = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let error = SiteCert::load(&files).unwrap_err();
        assert_eq!(error.field(), "tls_cert");
        assert!(
            error.to_string().contains("/nonexistent/cert.pem"),
            "{error}"
        );
    }
}
