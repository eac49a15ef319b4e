//! The origin client: a pooled hyper-util client for `http://` and `https://` origins
//! (HTTP/1.1, and HTTP/2 where a TLS origin offers it through ALPN), or a directory
//! served in-process by tower-http's `ServeDir`. Timeouts for connect, first byte and
//! whole body come from config; hop-by-hop headers are stripped both ways; failures say
//! which origin failed and how.

use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::config::{OriginConfig, OriginTarget};
use crate::error::{EdgeError, OriginFailure, chain};

pub mod upload;

use upload::Upload;

/// The `Via` pseudonym edge adds (RFC 9110 §7.6.3).
pub const VIA: &str = "1.1 edge";

/// One site's origin.
#[derive(Clone)]
pub enum Origin {
    /// A remote HTTP or HTTPS server (shared: cloning a site must stay cheap).
    Http(Arc<HttpOrigin>),
    /// A directory served in-process.
    Dir(Arc<DirOrigin>),
}

/// A remote origin reached through the shared connection pool.
#[derive(Clone)]
pub struct HttpOrigin {
    base: Uri,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    limits: Limits,
    breaker: Arc<Breaker>,
}

/// A circuit breaker per origin: after `threshold` consecutive connect failures or
/// header timeouts, requests fail fast for `cooldown`, then one probe is let through;
/// its success closes the breaker. A dead origin then costs clients no timeout each.
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    /// A closed breaker; `threshold == 0` never opens.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold,
            cooldown,
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
        }
    }

    /// Whether a request may go to the origin now. When the cooldown has passed, the
    /// caller becomes the probe and the breaker stays open for everyone else.
    pub fn allow(&self) -> bool {
        let mut open = self.open_until.lock().expect("breaker lock poisoned");
        match *open {
            None => true,
            Some(until) if Instant::now() >= until => {
                *open = Some(Instant::now() + self.cooldown);
                true
            }
            Some(_) => false,
        }
    }

    /// Records a response head received.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.open_until.lock().expect("breaker lock poisoned") = None;
    }

    /// Records a connect failure or a header timeout.
    pub fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.threshold > 0 && failures >= self.threshold {
            let mut open = self.open_until.lock().expect("breaker lock poisoned");
            if open.is_none() {
                tracing::warn!(failures, cooldown = ?self.cooldown, "origin circuit breaker open");
            }
            *open = Some(Instant::now() + self.cooldown);
        }
    }
}

/// A directory origin.
#[derive(Clone)]
pub struct DirOrigin {
    root: PathBuf,
    serve: ServeDir,
    cache_control: Option<HeaderValue>,
}

/// What an HTTP origin is allowed: time, failures, head size.
#[derive(Debug, Clone, Copy)]
struct Limits {
    first_byte: Duration,
    body: Duration,
    breaker_failures: u32,
    breaker_cooldown: Duration,
    max_header_bytes: usize,
}

/// The connection pool shared by every HTTP origin.
#[derive(Clone)]
pub struct OriginPool {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    limits: Limits,
}

impl OriginPool {
    /// A pool with the configured timeouts and limits.
    pub fn new(config: &OriginConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            // HTTP/2 states the head limit to the origin; HTTP/1.1 heads are measured
            // once parsed: `http1_max_buf_size` bounds the read buffer, not the head
            // (one read can fill past it). hyper's own bounds stay outside the limit:
            // a ~408 KiB read buffer and 100 header lines.
            .http2_max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .build(https);
        OriginPool {
            client,
            limits: Limits {
                first_byte: config.first_byte_timeout + config.connect_timeout,
                body: config.body_timeout,
                breaker_failures: config.breaker_failures,
                breaker_cooldown: config.breaker_cooldown,
                max_header_bytes: config.max_header_bytes,
            },
        }
    }

    /// The origin for a site's target. `dir_cache_control` is the `Cache-Control` a
    /// directory origin answers with, as a web server configured for it would.
    pub fn origin(&self, target: &OriginTarget, dir_cache_control: Option<&str>) -> Origin {
        match target {
            OriginTarget::Http(base) => Origin::Http(Arc::new(HttpOrigin {
                base: base.clone(),
                client: self.client.clone(),
                limits: self.limits,
                breaker: Arc::new(Breaker::new(
                    self.limits.breaker_failures,
                    self.limits.breaker_cooldown,
                )),
            })),
            OriginTarget::Dir(root) => Origin::Dir(Arc::new(DirOrigin {
                root: root.clone(),
                serve: ServeDir::new(root).append_index_html_on_directories(true),
                cache_control: dir_cache_control.and_then(|v| HeaderValue::from_str(v).ok()),
            })),
        }
    }
}

impl Origin {
    /// The origin's name for logs and errors.
    pub fn name(&self) -> String {
        match self {
            Origin::Http(o) => o.base.to_string(),
            Origin::Dir(o) => format!("dir:{}", o.root.display()),
        }
    }

    fn fail(&self, kind: OriginFailure) -> EdgeError {
        EdgeError::Origin {
            origin: self.name(),
            kind,
        }
    }

    /// Sends `request` (whose URI holds only the path and query) and returns the
    /// response head with a body that fails if it does not finish in time. The response
    /// headers have hop-by-hop fields removed.
    ///
    /// A request whose body is a client's upload carries its [`Upload`] as an
    /// extension: the first-byte timeout then counts from the upload's last progress,
    /// and waits while the upload waits on the client (whose own idle timeout bounds
    /// that), so that a slow client is never taken for a slow origin.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Body>, EdgeError> {
        let mut response = match self {
            Origin::Http(o) => {
                let (mut parts, body) = request.into_parts();
                parts.uri = join(&o.base, &parts.uri)
                    .map_err(|_| self.fail(OriginFailure::Protocol("bad request URI".into())))?;
                parts.version = http::Version::HTTP_11;
                if !o.breaker.allow() {
                    return Err(self.fail(OriginFailure::CircuitOpen));
                }
                let upload = parts.extensions.get::<Upload>().cloned();
                let sent = o.client.request(Request::from_parts(parts, body));
                let head = match first_byte(sent, o.limits.first_byte, upload.as_ref()).await {
                    Err(_) => {
                        o.breaker.failure();
                        return Err(self.fail(OriginFailure::Timeout("waiting for headers")));
                    }
                    Ok(Err(e)) if e.is_connect() => {
                        o.breaker.failure();
                        return Err(self.fail(OriginFailure::Connect(chain(&e))));
                    }
                    Ok(Err(e)) => return Err(self.fail(OriginFailure::Protocol(chain(&e)))),
                    Ok(Ok(head)) => head,
                };
                o.breaker.success();
                if head.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    // edge never forwards Upgrade (a hop-by-hop field): a 101 answers a
                    // question it did not ask, and the client would be left on a
                    // connection that switched to nothing (RFC 9110 §15.2.2).
                    return Err(self.fail(OriginFailure::Protocol(
                        "101 Switching Protocols to a request that asked for no upgrade".into(),
                    )));
                }
                let size = head_size(head.headers());
                if size > o.limits.max_header_bytes {
                    // Dropping the response closes the connection unread.
                    return Err(self.fail(OriginFailure::Protocol(format!(
                        "response head of at least {size} bytes, over origin.max_header_bytes ({})",
                        o.limits.max_header_bytes
                    ))));
                }
                let deadline = Instant::now() + o.limits.body;
                head.map(|incoming| Body::new(Deadline::new(incoming, deadline)))
            }
            Origin::Dir(o) => {
                let response =
                    o.serve.clone().oneshot(request).await.map_err(|e| {
                        self.fail(OriginFailure::Protocol(format!("directory: {e}")))
                    })?;
                let mut response = response.map(Body::new);
                if response.status().is_success()
                    && let Some(cc) = &o.cache_control
                {
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, cc.clone());
                }
                response
            }
        };
        strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }
}

/// `sent` (a request on its way, then its response head), given up after `limit`
/// without the head. While a client's `upload` moves or waits on the client the limit
/// starts again: the wait is the client's, not the origin's.
async fn first_byte<F: std::future::Future>(
    sent: F,
    limit: Duration,
    upload: Option<&Upload>,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut sent = std::pin::pin!(sent);
    loop {
        let frames = upload.map(Upload::frames);
        match tokio::time::timeout(limit, &mut sent).await {
            Ok(head) => return Ok(head),
            Err(elapsed) => match upload {
                Some(u) if u.waiting_on_client() || Some(u.frames()) != frames => continue,
                _ => return Err(elapsed),
            },
        }
    }
}

/// Bytes of `headers` as HTTP/1.1 sends them: each `name: value` line with its CRLF
/// (RFC 9112 §5), the status line aside. (An HTTP/2 origin counts 32 more per field,
/// RFC 9113 §6.5.2, against the limit it was told.)
fn head_size(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Builds the URI to the origin: its scheme and authority, its path prefix, and the
/// request's path and query.
fn join(base: &Uri, request: &Uri) -> Result<Uri, http::Error> {
    let prefix = base.path().trim_end_matches('/');
    let pq = request.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Uri::builder()
        .scheme(base.scheme_str().unwrap_or("http"))
        .authority(base.authority().map(|a| a.as_str()).unwrap_or(""))
        .path_and_query(format!("{prefix}{pq}"))
        .build()
}

/// Hop-by-hop fields (RFC 9110 §7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop fields, including every field named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Request fields a client may not pass to the origin: they would rewrite the URL,
/// host, scheme or method the origin sees behind the cache key's back, so that one
/// client's request could store an answer (links, redirects to another host or
/// scheme) that every other client then gets. `Forwarded` (RFC 7239) carries `host=`
/// and `proto=`; edge states the scheme in its own `X-Forwarded-Proto` and the
/// client's address in `X-Forwarded-For`.
const UNSAFE_REQUEST_HEADERS: [&str; 13] = [
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-prefix",
    "x-host",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The headers of a request to the origin: the client's end-to-end fields without
/// hop-by-hop and URL-rewriting ones, `Host` left to the origin's authority, and `Via`,
/// `X-Forwarded-For` and `X-Forwarded-Proto` added.
pub fn forward_headers(client: &HeaderMap, peer: Option<IpAddr>, proto: &'static str) -> HeaderMap {
    let mut headers = client.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    for name in UNSAFE_REQUEST_HEADERS {
        headers.remove(name);
    }
    headers.append(header::VIA, HeaderValue::from_static(VIA));
    if let Some(ip) = peer {
        let mut xff = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        if !xff.is_empty() {
            xff.push_str(", ");
        }
        xff.push_str(&ip.to_string());
        headers.remove("x-forwarded-for");
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    headers
}

/// A response body that fails once its deadline passes, so a slow-dripping origin
/// cannot hold a fill or a client forever.
pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<Sleep>>,
}

impl<B> Deadline<B> {
    /// Wraps `inner`, failing at `deadline`.
    pub fn new(inner: B, deadline: Instant) -> Self {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

/// The error a [`Deadline`] body yields when its time is up.
#[derive(Debug, thiserror::Error)]
#[error("origin body timed out")]
pub struct BodyTimeout;

impl<B> HttpBody for Deadline<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("text/css"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn forwarded_headers_append_to_client_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("host", HeaderValue::from_static("example.com"));
        h.insert("x-original-url", HeaderValue::from_static("/admin"));
        h.insert(
            "forwarded",
            HeaderValue::from_static("host=evil.test;proto=http"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        for name in [
            "x-forwarded-scheme",
            "x-forwarded-port",
            "x-host",
            "x-forwarded-prefix",
        ] {
            h.insert(name, HeaderValue::from_static("evil"));
        }
        let out = forward_headers(&h, Some("127.0.0.1".parse().unwrap()), "http");
        assert_eq!(out["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["via"], VIA);
        assert!(!out.contains_key("host"));
        assert!(!out.contains_key("x-original-url"));
        for name in [
            "forwarded",
            "x-forwarded-scheme",
            "x-forwarded-port",
            "x-host",
            "x-forwarded-prefix",
        ] {
            assert!(!out.contains_key(name), "{name} reached the origin");
        }
    }

    #[test]
    fn origin_path_prefix_is_joined() {
        let base: Uri = "http://127.0.0.1:8000/static/".parse().unwrap();
        let req: Uri = "/app.js?v=1".parse().unwrap();
        assert_eq!(
            join(&base, &req).unwrap().to_string(),
            "http://127.0.0.1:8000/static/app.js?v=1"
        );
    }
}
