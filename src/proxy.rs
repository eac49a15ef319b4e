//! The request path, top to bottom: site by host, method, key (with `Vary`), lookup,
//! then fresh → respond; stale → serve-while-revalidate, or revalidate (coalesced) and
//! serve stale if the origin fails and that is allowed; miss → fill (coalesced).
//! Every response carries `Cache-Status` and `Age` and is logged once.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use std::future::Future;

use arrayvec::ArrayString;
use axum::body::Body;
use axum::response::IntoResponse;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, request};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::ResponseBody;
use crate::cache::flight::{Flight, Leader, Outcome, Tap};
use crate::cache::key::CacheKey;
use crate::cache::{Entry, Lookup};
use crate::config::ClientCacheControl;
use crate::error::{EdgeError, OriginFailure};
use crate::fill::{FillRequest, Filled, PURGED, fill, variant_key, vary_names};
use crate::http::cache_control::CacheControl;
use crate::http::path::normalise_target;
use crate::listener::{BodyFile, DirectBody, DirectRequest, Handler};
use crate::origin::upload::{ClientFault, Upload};
use crate::origin::{VIA, forward_headers};
use crate::respond::{CacheStatus, Presentation, respond, respond_wire, streaming_head};
use crate::server::{AppState, SiteRuntime};
use crate::tls::Scheme;

/// The client listener's handler: every request goes straight to [`handle`], with no
/// router in between.
#[derive(Clone)]
pub struct Client(Arc<AppState>);

impl Client {
    /// Serves the sites of `state`.
    pub fn new(state: AppState) -> Self {
        Client(Arc::new(state))
    }
}

impl Handler for Client {
    fn call(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        scheme: Scheme,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + use<> {
        let state = self.0.clone();
        async move { handle(&state, peer, scheme, request).await }
    }

    fn direct(&self) -> bool {
        self.0.config.server.direct_hits
    }

    fn answer_direct(
        &self,
        request: &DirectRequest<'_>,
        scheme: Scheme,
        head: &mut Vec<u8>,
    ) -> Option<DirectBody> {
        answer_direct(&self.0, request, scheme, head)
    }
}

/// A fresh hit in the memory tier answered on the listener's direct path
/// ([`DirectRequest`]): the same answer, metrics and access log line that [`handle`]
/// gives it; `None` for any other outcome, which the request then takes through
/// [`handle`].
fn answer_direct(
    state: &AppState,
    request: &DirectRequest<'_>,
    scheme: Scheme,
    out: &mut Vec<u8>,
) -> Option<DirectBody> {
    let started =
        tracing::enabled!(target: "edge::access", tracing::Level::INFO).then(Instant::now);
    // As `request_host` reads an origin-form request's one Host line.
    if !crate::http::path::is_host_field(request.host) {
        return None;
    }
    let host = host_name(std::str::from_utf8(request.host).ok()?)?;
    if request.target.len() > state.config.server.limits.max_uri_length {
        return None;
    }
    let sites = state.sites();
    let site = sites.by_host(&host)?;
    // A site that ignores the client's Cache-Control and Pragma answers a fresh hit
    // whatever they say (a browser's reload sends `max-age=0`); one that honours them
    // reads them in full on hyper's path.
    let honor = site.config.client_cache_control == ClientCacheControl::Honor;
    let redirect = site.config.https_redirect && scheme == Scheme::Http;
    if redirect || (honor && request.cache_directives) {
        return None;
    }
    // RFC 6797 §7.2: the site's HSTS over TLS only, replacing any the origin sent (as
    // `handle` inserts it); an entry with one of its own is left to that path.
    let hsts = site.hsts.as_ref().filter(|_| scheme == Scheme::Https);
    let target = normalise_target(request.target, &site.query);
    let cache_control = immutable_cache_control(site, &target);
    let now = state.clock.now();
    let Lookup::Fresh(hit) = lookup_in_place(state, site, &host, &target, now)? else {
        return None;
    };
    if hsts.is_some() && hit.entry.meta.header("strict-transport-security").is_some() {
        return None;
    }
    let answer = present(state, cache_control, |presentation| {
        respond_wire(
            &hit.entry,
            request.accept_encoding,
            request.if_none_match,
            now,
            CacheStatus::hit(),
            presentation,
            out,
        )
    })?;
    // A body that stays on disk goes out from its blob with `sendfile`: on plain TCP
    // only, and only when its pages look cached, since the thread would wait for the
    // disk in `sendfile`. hyper's path reads it otherwise, waiting on a blocking thread.
    if let Some(disk) = answer.disk
        && !request.head
        && (scheme != Scheme::Http || !disk.resident())
    {
        return None;
    }
    if let Some(hsts) = hsts {
        crate::respond::field(out, b"strict-transport-security", hsts.as_bytes());
    }
    if request.http10 {
        // As hyper answers an HTTP/1.0 client that keeps its connection, so that both
        // paths agree: in the request's version (RFC 9110 §2.5 would prefer 1.1, and
        // allows 1.0), saying the connection stays (RFC 9112 §9.3, HTTP/1.0's
        // keep-alive).
        debug_assert!(out.starts_with(b"HTTP/1.1 "));
        out[..b"HTTP/1.1".len()].copy_from_slice(b"HTTP/1.0");
        crate::respond::field(out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    let sent = match (request.head, answer.disk) {
        (true, _) => 0,
        (false, Some(disk)) => disk.len(),
        (false, None) => answer.body.len() as u64,
    };
    let encoding = answer.encoding.as_ref().and_then(|v| v.to_str().ok());
    state.metrics.request("hit", answer.status, encoding, sent);
    if let Some(started) = started {
        let method = match request.head {
            true => Method::HEAD,
            false => Method::GET,
        };
        let path = request.target.split('?').next().unwrap_or(request.target);
        log_access(&method, &host, path, answer.status, "hit", sent, started);
    }
    if request.head {
        return Some(DirectBody::default());
    }
    // Plain TCP can `sendfile` a large body from its sealed copy (see
    // `cache::sealed`); TLS encrypts from memory.
    let file = match (answer.disk, scheme) {
        (Some(disk), _) => Some(BodyFile::Blob(disk.file().clone(), disk.len())),
        (None, Scheme::Http) if !answer.body.is_empty() => hit
            .entry
            .sealed_body(answer.index, state.cache.sealer())
            .cloned()
            .map(BodyFile::Sealed),
        (None, _) => None,
    };
    Some(DirectBody {
        bytes: answer.body,
        file,
    })
}

/// Answers one client request, errors included, and counts and logs it.
pub async fn handle(
    state: &AppState,
    peer: SocketAddr,
    scheme: Scheme,
    mut request: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    if scheme == Scheme::Https {
        // Plain HTTP is the default: no extension (and no allocation) for it.
        request.extensions_mut().insert(scheme);
    }
    let method = request.method().clone();
    let access_log = tracing::enabled!(target: "edge::access", tracing::Level::INFO);
    let uri = access_log.then(|| request.uri().clone());
    let host = request_host(&request);
    let mut response = match host {
        Some(ref host) => serve(state, host, peer, request).await,
        None => Err(EdgeError::BadRequest("missing or invalid Host")),
    }
    .unwrap_or_else(|error| error.into_response().map(ResponseBody::from));
    // A body's own length when it knows it (hyper sends it as Content-Length).
    let exact = http_body::Body::size_hint(response.body()).exact();
    let headers = response.headers_mut();
    // Looked up before inserting: `entry` reserves room first, and on a map exactly at
    // capacity that is a reallocation even when the field is there.
    if !headers.contains_key(header::AGE) {
        headers.insert(header::AGE, HeaderValue::from_static("0"));
    }
    // RFC 9110 §7.6.3: every response that passes through edge names it in Via.
    if !headers
        .get_all(header::VIA)
        .iter()
        .any(|v| v.as_bytes() == VIA.as_bytes())
    {
        headers.append(header::VIA, HeaderValue::from_static(VIA));
    }
    // RFC 6797 §7.2: over TLS only, errors included.
    if scheme == Scheme::Https
        && let Some(hsts) = host
            .as_deref()
            .and_then(|h| state.sites().by_host(h)?.hsts.clone())
    {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    let outcome = headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .map(outcome_of)
        .unwrap_or("pass");
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = declared.or(exact).unwrap_or(0);
    let encoding = response
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let sent = if method == Method::HEAD { 0 } else { bytes };
    state
        .metrics
        .request(outcome, response.status().as_u16(), encoding, sent);
    let unknown_length = method != Method::HEAD && declared.is_none() && exact.is_none();
    let line = uri.map(|uri| AccessLine {
        method,
        host,
        uri,
        status: response.status().as_u16(),
        outcome,
        started,
    });
    // A body of no known length (sent chunked: a streamed miss, a pass) is counted as
    // it goes, and logged when it ends with the bytes it sent. The wrapper hides a size
    // hint, so a body that knows its length keeps it and is logged now.
    if !unknown_length {
        if let Some(line) = line {
            line.log(sent);
        }
        return response;
    }
    let mut tally = Tally {
        metrics: state.metrics.clone(),
        coding: encoding.map(str::to_owned),
        bytes: 0,
        line,
    };
    response.map(|body| {
        let counted = http_body_util::BodyExt::map_frame(body, move |frame| {
            if let Some(data) = frame.data_ref() {
                tally.count(data.len() as u64);
            }
            frame
        });
        ResponseBody::from(Body::new(counted))
    })
}

/// One request's access log line, written when its answer is complete.
struct AccessLine {
    method: Method,
    host: Option<Host>,
    uri: http::Uri,
    status: u16,
    outcome: &'static str,
    started: Instant,
}

impl AccessLine {
    fn log(&self, bytes: u64) {
        let host = self.host.as_deref().unwrap_or_default();
        let (status, outcome, started) = (self.status, self.outcome, self.started);
        log_access(
            &self.method,
            host,
            self.uri.path(),
            status,
            outcome,
            bytes,
            started,
        );
    }
}

/// Writes one access log line.
fn log_access(
    method: &Method,
    host: &str,
    path: &str,
    status: u16,
    outcome: &str,
    bytes: u64,
    started: Instant,
) {
    tracing::info!(
        target: "edge::access",
        method = %method,
        host,
        path,
        status,
        cache = outcome,
        bytes,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
}

/// The bytes of a body of unknown length as they are sent: counted in the metrics
/// frame by frame, and logged once the body is done with (sent whole, cut off, or
/// dropped with the client).
struct Tally {
    metrics: crate::metrics::Metrics,
    coding: Option<String>,
    bytes: u64,
    line: Option<AccessLine>,
}

impl Tally {
    fn count(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.metrics.body_bytes(self.coding.as_deref(), bytes);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if let Some(line) = &self.line {
            line.log(self.bytes);
        }
    }
}

fn outcome_of(cache_status: &str) -> &'static str {
    if cache_status.contains("detail=origin-") {
        // The origin failed and nothing was served in its place.
        "pass"
    } else if cache_status.contains("; hit") {
        "hit"
    } else if cache_status.contains("collapsed") {
        "collapsed"
    } else if cache_status.contains("stored") || cache_status.contains("detail=streaming") {
        // A miss, stored, or streaming while it is stored.
        "miss"
    } else if cache_status.contains("fwd=stale") {
        "revalidated"
    } else {
        "pass"
    }
}

/// How many times a follower joins a new flight after its leader gave up, before it
/// fetches for itself.
const MAX_REJOINS: u32 = 2;

/// Longest host name a request may name: a DNS name is at most 253 characters
/// (RFC 1035 §2.3.4), an IPv6 literal far less.
const MAX_HOST: usize = 255;

/// A request's host, held inline: reading it allocates nothing.
pub type Host = ArrayString<MAX_HOST>;

/// The request's host: the URI authority (HTTP/2, absolute-form) or `Host`;
/// lower-cased, without port or trailing dot. Empty for an HTTP/1.0 request that names
/// no host (no `Host` line or an empty one: RFC 9112 §3.2 requires a host of HTTP/1.1
/// only, and load balancers' health checks still send such requests): only a `*` site
/// serves it, as nginx's default server would. `None` (answered 400) when an HTTP/1.1 request has no `Host` line,
/// more than one, or one whose value
/// is not `uri-host [ ":" port ]` (RFC 9112 §3.2: a MUST, whatever the target's form);
/// when an HTTP/2 request's `Host` names another authority than `:authority`
/// (RFC 9113 §8.3.1); or when it is longer than any host name can be.
pub fn request_host<B>(request: &Request<B>) -> Option<Host> {
    let mut lines = request.headers().get_all(header::HOST).iter();
    let old = matches!(
        request.version(),
        http::Version::HTTP_10 | http::Version::HTTP_09
    );
    // An empty Host says the target has no authority (RFC 9112 §3.2): from HTTP/1.0,
    // the same as none.
    let field = lines.next().filter(|f| !(old && f.is_empty()));
    if lines.next().is_some()
        || field.is_some_and(|f| !crate::http::path::is_host_field(f.as_bytes()))
    {
        return None;
    }
    let uri = request.uri();
    // RFC 9110 §4.2.4: userinfo in an http(s) URI from an untrusted source is an error
    // (RFC 9113 §8.3.1: `:authority` MUST NOT hold one).
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return None;
    }
    match (request.version(), field, uri.authority()) {
        (http::Version::HTTP_11, None, _) => return None,
        (_, None, None) if old => return Some(Host::new()),
        (http::Version::HTTP_2, Some(f), Some(authority))
            if !f
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            return None;
        }
        _ => {}
    }
    let raw = match uri.host() {
        Some(h) => h,
        // Checked above: ASCII only.
        None => field?.to_str().ok()?,
    };
    host_name(raw)
}

/// A request edge answers itself before any site or cache sees it: `CONNECT` and
/// `TRACE` (405), `OPTIONS *` (about the server, not a resource: 200 with `Allow`),
/// and a body framed by a transfer coding other than one `chunked` (RFC 9112 §6.1:
/// 501 for a coding edge does not know, 400 for `chunked` twice; hyper would read
/// `identity, chunked` or two `chunked` lines as chunked, where a proxy in front of
/// edge might not).
fn refuse<B>(request: &Request<B>) -> Option<Result<Response<ResponseBody>, EdgeError>> {
    if matches!(*request.method(), Method::CONNECT | Method::TRACE) {
        return Some(Err(EdgeError::MethodNotAllowed));
    }
    if request.method() == Method::OPTIONS && request.uri() == "*" {
        let mut answer = Response::new(ResponseBody::whole(bytes::Bytes::new()));
        answer
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(crate::error::ALLOW));
        return Some(Ok(answer));
    }
    let mut chunked = 0;
    for coding in request
        .headers()
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
    {
        if !coding.eq_ignore_ascii_case(b"chunked") {
            let unknown = "unsupported transfer coding";
            return Some(Err(EdgeError::Framing(
                StatusCode::NOT_IMPLEMENTED,
                unknown,
            )));
        }
        chunked += 1;
    }
    let twice = "chunked applied more than once";
    (chunked > 1).then_some(Err(EdgeError::Framing(StatusCode::BAD_REQUEST, twice)))
}

/// The host a URI authority or `Host` value names (`raw`, already checked):
/// lower-cased, without port or trailing dot; `None` when empty or longer than any
/// host name can be.
pub fn host_name(raw: &str) -> Option<Host> {
    let name = if raw.starts_with('[') {
        // IP literal (checked whole above, or by the URI parser): keep the brackets,
        // drop any port.
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        let name = raw.rsplit_once(':').map_or(raw, |(h, _)| h);
        name.trim_end_matches('.')
    };
    if name.is_empty() {
        return None;
    }
    let mut host = Host::new();
    host.try_push_str(name).ok()?;
    host.make_ascii_lowercase();
    Some(host)
}

async fn serve(
    state: &AppState,
    host: &str,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, EdgeError> {
    if let Some(refused) = refuse(&request) {
        return refused;
    }
    let limits = &state.config.server.limits;
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target_len > limits.max_uri_length {
        return Err(EdgeError::UriTooLong(limits.max_uri_length));
    }
    // Borrowed from the current sites (kept alive here), not cloned, on every request.
    let sites = state.sites();
    let site = sites
        .by_host(host)
        .ok_or_else(|| EdgeError::UnknownHost(host.to_owned()))?;
    if host.is_empty()
        && site.config.https_redirect
        && crate::tls::Scheme::of(request.extensions()) == crate::tls::Scheme::Http
    {
        // No host to name in the redirect's Location.
        return Err(EdgeError::BadRequest("missing Host"));
    }
    if let Some(redirect) = crate::tls::https_redirect(state, site, host, &request) {
        return Ok(redirect.map(ResponseBody::from));
    }
    // One normalisation for the key and for what the origin is asked: they can never
    // name different resources.
    let target = normalise_target(
        request.uri().path_and_query().map_or("/", |p| p.as_str()),
        &site.query,
    );
    let cache_control = immutable_cache_control(site, &target);

    if request.method() != Method::GET && request.method() != Method::HEAD {
        let primary = CacheKey::new(&site.name, host, &target);
        return Box::pin(pass_unsafe(state, site, &primary, host, peer, request)).await;
    }
    // A target normalisation left as it was is read from the request again: no copy.
    let normalised = match target {
        Cow::Owned(target) => Some(target),
        Cow::Borrowed(_) => None,
    };
    let (mut parts, _body) = request.into_parts();
    let directives =
        CacheControl::from_headers(&parts.headers, &header::CACHE_CONTROL).unwrap_or_default();
    if site.config.client_cache_control == ClientCacheControl::Ignore {
        // CDN behaviour: clients cannot force origin load or change what is stored.
        parts.headers.remove(header::CACHE_CONTROL);
        parts.headers.remove(header::PRAGMA);
    }
    let get = Get {
        state,
        site,
        cache_control,
        host,
        normalised,
        primary: OnceLock::new(),
        peer,
        parts,
        directives,
    };
    get.serve().await
}

/// The memory tier's answer for `target` of `host` on `site`, when the URL does not
/// vary, looked up by the primary key's text written into a buffer on the stack; `None`
/// when the request needs the whole lookup (the URL varies, the memory tier does not
/// hold it, or the key is longer than the buffer).
fn lookup_in_place(
    state: &AppState,
    site: &SiteRuntime,
    host: &str,
    target: &str,
    now: SystemTime,
) -> Option<Lookup> {
    let mut text = ArrayString::<KEY_TEXT_MAX>::new();
    CacheKey::write(&mut text, &site.name, host, target).ok()?;
    if state.cache.varies(&text) {
        return None;
    }
    state.cache.lookup_memory(&text, now)
}

/// The `Cache-Control` an immutable rule of `site` sends for the normalised `target`.
fn immutable_cache_control<'a>(site: &'a SiteRuntime, target: &str) -> Option<&'a HeaderValue> {
    site.immutable
        .header_for(target.split('?').next().unwrap_or(target))
}

/// Calls `f` with how stored entries are presented: with the compressor's preference
/// and, when an immutable rule names the path, its `cache_control`.
fn present<R>(
    state: &AppState,
    cache_control: Option<&HeaderValue>,
    f: impl FnOnce(&Presentation<'_>) -> R,
) -> R {
    let compressor = &state.compressor;
    let compressible = |meta: &crate::cache::meta::Meta| {
        let content_type = meta
            .header("content-type")
            .and_then(|v| std::str::from_utf8(v).ok());
        meta.opaque_coding().is_none()
            && compressor.is_compressible(content_type, meta.identity().len)
    };
    let presentation = Presentation {
        preference: compressor.preference(),
        compressible: &compressible,
        cache_control,
    };
    f(&presentation)
}

/// One GET or HEAD request on its way through the cache.
struct Get<'a> {
    state: &'a AppState,
    site: &'a SiteRuntime,
    /// The site's `Cache-Control` for this path (immutable rules), if any.
    cache_control: Option<&'a HeaderValue>,
    /// The request's host, as [`request_host`] gives it.
    host: &'a str,
    /// The normalised target, when normalisation changed it (see [`Get::target`]).
    normalised: Option<String>,
    /// The primary key, built the first time it is needed: a hit in the memory tier is
    /// looked up by the key's text and never needs it.
    primary: OnceLock<CacheKey>,
    peer: SocketAddr,
    parts: request::Parts,
    /// The client's `Cache-Control`, read before an `ignore` site dropped it.
    directives: CacheControl,
}

/// The longest key a memory hit looks up without building a [`CacheKey`] (see
/// [`Get::lookup_in_place`]); longer keys take the owned path.
const KEY_TEXT_MAX: usize = 512;

/// How many times a request starts over when a coalesced fill produced another
/// `Vary` variant than the one it needs.
const MAX_RESTARTS: usize = 3;

impl Get<'_> {
    /// Builds the response from a stored entry, presented as this site says.
    fn respond(
        &self,
        entry: &Entry,
        now: SystemTime,
        status: CacheStatus,
    ) -> Response<ResponseBody> {
        self.present(|presentation| respond(entry, &self.parts, now, status, presentation))
    }

    /// Calls `f` with how this site presents stored entries.
    fn present<R>(&self, f: impl FnOnce(&Presentation<'_>) -> R) -> R {
        present(self.state, self.cache_control, f)
    }

    /// The response streamed to this client while a fill reads the body `tap` is on.
    fn respond_streaming(
        &self,
        tap: &Tap,
        body: Body,
        reason: &'static str,
        collapsed: bool,
    ) -> Response<ResponseBody> {
        let status = CacheStatus {
            fwd_status: Some(tap.meta.status),
            collapsed,
            detail: Some("streaming"),
            ..CacheStatus::forward(reason)
        };
        let origin_etag = tap
            .meta
            .header("etag")
            .and_then(|v| std::str::from_utf8(v).ok());
        let now = self.state.clock.now();
        let headers = self.present(|presentation| {
            streaming_head(
                &tap.meta,
                origin_etag,
                tap.declared,
                now,
                &status,
                presentation,
            )
        });
        let mut response = Response::new(ResponseBody::from(body));
        *response.headers_mut() = headers;
        response
    }

    /// A follower's response from the leader's streaming fill, when this request
    /// takes the whole response, the response does not vary (another variant may be
    /// what this request needs) and the fill still hands out bodies.
    async fn follow_stream(
        &self,
        tap: &Tap,
        reason: &'static str,
    ) -> Option<Response<ResponseBody>> {
        let vary = tap.meta.headers.iter().filter(|(n, _)| n == "vary");
        let varies = !vary_names(vary.map(|(_, v)| v.as_slice())).is_empty();
        if varies || !self.takes_whole() {
            return None;
        }
        // A HEAD answer has no body (the listener drops it): no need to tap one.
        let body = match self.parts.method {
            Method::HEAD => Body::empty(),
            _ => tap.body().await?,
        };
        Some(self.respond_streaming(tap, body, reason, true))
    }

    /// Whether this client would take a stored response whole (see
    /// [`FillRequest::stream`]).
    fn takes_whole(&self) -> bool {
        let headers = &self.parts.headers;
        // HEAD too: its answer is the same head, the body never polled. Not HTTP/1.0:
        // without chunked coding, a body of unknown length ends when the connection
        // closes, and one cut short would look whole.
        (self.parts.method == Method::GET || self.parts.method == Method::HEAD)
            && self.parts.version >= http::Version::HTTP_11
            && [
                header::RANGE,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
                header::IF_UNMODIFIED_SINCE,
            ]
            .iter()
            .all(|name| !headers.contains_key(name))
            && crate::http::encoding::negotiate(
                headers
                    .get(header::ACCEPT_ENCODING)
                    .map(HeaderValue::as_bytes),
                &[crate::http::encoding::Encoding::Identity],
            )
            .is_some()
    }

    fn honor(&self) -> bool {
        self.site.config.client_cache_control == ClientCacheControl::Honor
    }

    /// The normalised path and query the key and the origin request use.
    fn target(&self) -> &str {
        match &self.normalised {
            Some(target) => target,
            None => self.parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        }
    }

    fn primary(&self) -> &CacheKey {
        self.primary
            .get_or_init(|| CacheKey::new(&self.site.name, self.host, self.target()))
    }

    /// The key this request selects: the primary key, or its `Vary` variant.
    fn key(&self) -> Cow<'_, CacheKey> {
        let primary = self.primary();
        match self.state.cache.vary(primary) {
            Some(names) => Cow::Owned(variant_key(primary, &names, &self.parts.headers)),
            None => Cow::Borrowed(primary),
        }
    }

    /// [`lookup_in_place`] for this request.
    fn lookup_in_place(&self, now: SystemTime) -> Option<Lookup> {
        lookup_in_place(self.state, self.site, self.host, self.target(), now)
    }

    async fn serve(&self) -> Result<Response<ResponseBody>, EdgeError> {
        for _ in 0..MAX_RESTARTS {
            if let Some(response) = self.attempt().await? {
                return Ok(response);
            }
        }
        // Variants keep changing under us: answer from the origin without the cache.
        Box::pin(self.forward_uncoalesced(&self.key(), None, "vary-miss")).await
    }

    /// One pass through lookup and fill; `None` to start over.
    async fn attempt(&self) -> Result<Option<Response<ResponseBody>>, EdgeError> {
        let now = self.state.clock.now();
        let only_if_cached = self.directives.only_if_cached;
        // The key is built only when the answer is not a memory hit, and then once.
        let (looked, key) = match self.lookup_in_place(now) {
            Some(found) => (found, None),
            None => {
                let key = self.key();
                (self.state.cache.lookup(&key, now).await, Some(key))
            }
        };
        let key = || key.unwrap_or_else(|| self.key());
        match looked {
            Lookup::Fresh(hit) => {
                if self.honor() && self.client_wants_revalidation(&hit.entry, now) {
                    // The miss paths are boxed: the hit path's future stays small.
                    return Box::pin(self.forward(&key(), Some(hit.entry), "request")).await;
                }
                Ok(Some(self.respond(&hit.entry, now, CacheStatus::hit())))
            }
            Lookup::Stale(hit) => {
                let entry = hit.entry;
                if self.honor() && self.client_accepts_stale(&entry, now) {
                    let status = CacheStatus {
                        detail: Some("max-stale"),
                        ..CacheStatus::hit()
                    };
                    return Ok(Some(self.respond(&entry, now, status)));
                }
                if only_if_cached {
                    return Err(EdgeError::NotCached);
                }
                if self.within_stale_while_revalidate(&entry, now) {
                    self.refresh_in_background(&key(), entry.clone());
                    let status = CacheStatus {
                        detail: Some("stale-while-revalidate"),
                        ..CacheStatus::hit()
                    };
                    return Ok(Some(self.respond(&entry, now, status)));
                }
                Box::pin(self.forward(&key(), Some(entry), "stale")).await
            }
            Lookup::Miss if only_if_cached => Err(EdgeError::NotCached),
            Lookup::Miss => {
                let key = key();
                let reason = if key.is_variant() {
                    "vary-miss"
                } else {
                    "uri-miss"
                };
                Box::pin(self.forward(&key, None, reason)).await
            }
        }
    }

    fn fill_request(&self, stale: Option<Arc<Entry>>) -> FillRequest {
        // A stale entry that may answer for a failing origin (stale-if-error) keeps its
        // revalidation's new body read whole: a body cut half-way is then still
        // answered with the stale entry, where a streamed one would be cut short.
        let now = self.state.clock.now();
        let stream = self.takes_whole()
            && stale
                .as_ref()
                .is_none_or(|entry| !self.within_stale_if_error(entry, now));
        FillRequest {
            stream,
            primary: self.primary().clone(),
            client_headers: self.parts.headers.clone(),
            peer: self.peer,
            stale,
            proto: crate::tls::Scheme::of(&self.parts.extensions).as_str(),
        }
    }

    /// Goes to the origin for `key`, coalesced with every other request for it.
    async fn forward(
        &self,
        key: &CacheKey,
        stale: Option<Arc<Entry>>,
        reason: &'static str,
    ) -> Result<Option<Response<ResponseBody>>, EdgeError> {
        // Flights this request rejoined after their leader gave up (dropped, or its
        // body purged while read): bounded, so that a URL purged faster than it can be
        // fetched cannot keep a follower waiting round after round.
        let mut rejoined = 0;
        loop {
            match self.state.cache.flights().join(key) {
                Flight::Leader(leader) => {
                    // Re-check after taking the flight (STYLE #9): a leader that just
                    // finished may have stored the key between our lookup and our join.
                    let now = self.state.clock.now();
                    if let Lookup::Fresh(hit) = self.state.cache.lookup(key, now).await
                        && stale.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &hit.entry))
                    {
                        leader.finish(Outcome::Stored(hit.entry.clone()));
                        return Ok(Some(self.respond(&hit.entry, now, CacheStatus::hit())));
                    }
                    let filled = lead(
                        self.state,
                        self.site,
                        self.fill_request(stale.clone()),
                        leader,
                    )
                    .await;
                    return self
                        .answer(key, filled, stale.as_ref(), reason, false)
                        .map(Some);
                }
                Flight::Follower(mut follower) => {
                    let limit = self.state.config.server.coalesce_wait;
                    let deadline = Instant::now() + limit;
                    let mut outcome = follower.wait_or_tap(limit).await;
                    if let Some(Outcome::Streaming(tap)) = &outcome {
                        if let Some(response) = self.follow_stream(tap, reason).await {
                            return Ok(Some(response));
                        }
                        // The rest of the same wait, for the stored entry.
                        let left = deadline.saturating_duration_since(Instant::now());
                        outcome = follower.wait(left).await;
                    }
                    match outcome {
                        Some(Outcome::Stored(entry)) => {
                            if entry.key != *self.key() {
                                // The leader stored another Vary variant: start over.
                                return Ok(None);
                            }
                            let status = CacheStatus {
                                collapsed: true,
                                fwd_status: Some(entry.meta.status),
                                ..CacheStatus::forward(reason)
                            };
                            return Ok(Some(self.respond(&entry, self.state.clock.now(), status)));
                        }
                        Some(Outcome::Failed(kind, origin)) => {
                            let error = EdgeError::Origin { origin, kind };
                            return self
                                .answer(key, Err(error), stale.as_ref(), reason, true)
                                .map(Some);
                        }
                        Some(Outcome::Abandoned) if rejoined < MAX_REJOINS => {
                            rejoined += 1;
                            continue;
                        }
                        // Not storable, or the leader is too slow or gave up again:
                        // fetch for ourselves.
                        Some(Outcome::Abandoned)
                        | Some(Outcome::Pass)
                        | Some(Outcome::Streaming(_))
                        | None => {
                            return self.forward_uncoalesced(key, stale, reason).await.map(Some);
                        }
                    }
                }
            }
        }
    }

    async fn forward_uncoalesced(
        &self,
        key: &CacheKey,
        stale: Option<Arc<Entry>>,
        reason: &'static str,
    ) -> Result<Response<ResponseBody>, EdgeError> {
        let filled = fill(
            self.state.clone(),
            self.site.clone(),
            self.fill_request(stale.clone()),
        )
        .await;
        self.answer(key, filled, stale.as_ref(), reason, false)
    }

    /// Turns a fill's result into the response, serving stale on origin failure where
    /// RFC 5861 `stale-if-error` (or the site's default) allows it.
    fn answer(
        &self,
        key: &CacheKey,
        filled: Result<Filled, EdgeError>,
        stale: Option<&Arc<Entry>>,
        reason: &'static str,
        collapsed: bool,
    ) -> Result<Response<ResponseBody>, EdgeError> {
        let now = self.state.clock.now();
        let usable_stale = stale.filter(|e| self.within_stale_if_error(e, now));
        match filled {
            Ok(Filled::Stored(entry, fwd_status, kept)) => {
                let status = CacheStatus {
                    fwd_status: Some(fwd_status),
                    stored: kept,
                    collapsed,
                    detail: (!kept).then_some("not-stored"),
                    ..CacheStatus::forward(reason)
                };
                if entry.key != *key {
                    // A new Vary variant: the request's own variant is what was stored.
                    tracing::debug!(key = %entry.key, "stored a Vary variant");
                }
                Ok(self.respond(&entry, now, status))
            }
            Ok(Filled::Revalidated(entry)) => {
                let status = CacheStatus {
                    fwd_status: Some(304),
                    collapsed,
                    ..CacheStatus::forward(reason)
                };
                Ok(self.respond(&entry, now, status))
            }
            Ok(Filled::Streaming(streaming)) => {
                Ok(self.respond_streaming(&streaming.tap, streaming.body, reason, collapsed))
            }
            Ok(Filled::Pass(response, _))
                if is_server_error(response.status().as_u16()) && usable_stale.is_some() =>
            {
                let entry = usable_stale.expect("checked above");
                let status = CacheStatus {
                    fwd_status: Some(response.status().as_u16()),
                    detail: Some("stale-if-error"),
                    ..CacheStatus::forward("stale")
                };
                Ok(self.respond(entry, now, status))
            }
            Ok(Filled::Pass(mut response, detail)) => {
                let status = CacheStatus {
                    fwd_status: Some(response.status().as_u16()),
                    detail: Some(detail),
                    collapsed,
                    ..CacheStatus::forward(reason)
                };
                decorate_pass(response.headers_mut(), status);
                Ok(response.map(ResponseBody::from))
            }
            Err(EdgeError::Origin { kind, .. }) if usable_stale.is_some() => {
                let entry = usable_stale.expect("checked above");
                let status = CacheStatus {
                    fwd_status: Some(
                        EdgeError::Origin {
                            origin: String::new(),
                            kind: kind.clone(),
                        }
                        .status()
                        .as_u16(),
                    ),
                    detail: Some("stale-if-error"),
                    ..CacheStatus::forward("stale")
                };
                Ok(self.respond(entry, now, status))
            }
            Err(EdgeError::Origin { origin, kind }) => {
                Ok(origin_failure(origin, kind, reason, collapsed))
            }
            Err(error) => Err(error),
        }
    }

    /// Starts one background revalidation for `key` unless one is running.
    fn refresh_in_background(&self, key: &CacheKey, stale: Arc<Entry>) {
        if let Flight::Leader(leader) = self.state.cache.flights().join(key) {
            let state = self.state.clone();
            let site = self.site.clone();
            let request = self.fill_request(Some(stale));
            tokio::spawn(async move {
                if let Err(error) = lead(&state, &site, request, leader).await {
                    tracing::warn!(%error, "background revalidation failed");
                }
            });
        }
    }

    fn staleness(entry: &Entry, now: SystemTime) -> u64 {
        let meta = &entry.meta;
        meta.freshness
            .current_age(meta.response_at(), now)
            .saturating_sub(meta.freshness.lifetime)
    }

    /// RFC 5861 §3, or the site's default window when the response names none.
    fn within_stale_while_revalidate(&self, entry: &Entry, now: SystemTime) -> bool {
        let f = &entry.meta.freshness;
        f.within_stale_while_revalidate(entry.meta.response_at(), now)
            || self.site_default_allows(entry, now, self.site.config.stale_while_revalidate)
    }

    /// RFC 5861 §4, or the site's default window when the response names none.
    fn within_stale_if_error(&self, entry: &Entry, now: SystemTime) -> bool {
        let f = &entry.meta.freshness;
        f.within_stale_if_error(entry.meta.response_at(), now)
            || self.site_default_allows(entry, now, self.site.config.stale_if_error)
    }

    fn site_default_allows(&self, entry: &Entry, now: SystemTime, window: Duration) -> bool {
        let f = &entry.meta.freshness;
        // RFC 9111 §4.2.4: never serve stale against must-revalidate or no-cache.
        !window.is_zero()
            && !f.must_revalidate
            && !f.no_cache
            && Self::staleness(entry, now) < window.as_secs()
    }

    /// RFC 9111 §5.2.1: `no-cache`, `max-age` and `min-fresh` in the request.
    fn client_wants_revalidation(&self, entry: &Entry, now: SystemTime) -> bool {
        let d = &self.directives;
        let meta = &entry.meta;
        let age = meta.freshness.current_age(meta.response_at(), now);
        let pragma_no_cache = self.directives.is_empty()
            && self
                .parts
                .headers
                .get(header::PRAGMA)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
        d.no_cache
            || pragma_no_cache
            || d.max_age.is_some_and(|max| age > max)
            || d.min_fresh
                .is_some_and(|min| meta.freshness.ttl(meta.response_at(), now) < min as i64)
    }

    /// RFC 9111 §5.2.1.2: `max-stale` lets a client take a stale response, unless the
    /// response forbids it (§4.2.4).
    fn client_accepts_stale(&self, entry: &Entry, now: SystemTime) -> bool {
        let f = &entry.meta.freshness;
        match self.directives.max_stale {
            Some(limit) if !f.must_revalidate && !f.no_cache && !entry.meta.invalidated => {
                Self::staleness(entry, now) <= limit
            }
            _ => false,
        }
    }
}

/// Runs a fill as the leader, in a task of its own so that a client going away does
/// not abort it, and publishes the outcome to the followers.
async fn lead(
    state: &AppState,
    site: &SiteRuntime,
    request: FillRequest,
    leader: Leader,
) -> Result<Filled, EdgeError> {
    let task = tokio::spawn(fill_and_publish(
        state.clone(),
        site.clone(),
        request,
        leader,
    ));
    task.await
        .map_err(|e| EdgeError::Internal(format!("fill task: {e}")))?
}

async fn fill_and_publish(
    state: AppState,
    site: SiteRuntime,
    request: FillRequest,
    leader: Leader,
) -> Result<Filled, EdgeError> {
    let mut filled = fill(state, site, request).await;
    let outcome = match &mut filled {
        Ok(Filled::Stored(entry, ..)) | Ok(Filled::Revalidated(entry)) => {
            Outcome::Stored(entry.clone())
        }
        Ok(Filled::Streaming(streaming)) => {
            // Followers may stream too; the flight ends when the body is stored.
            leader.streaming(streaming.tap.clone());
            let done = streaming
                .done
                .take()
                .expect("a fill's outcome is taken once");
            tokio::spawn(async move {
                leader.finish(done.await.unwrap_or(Outcome::Abandoned));
            });
            return filled;
        }
        // What a purge kept out of the cache predates it: followers fetch afresh,
        // coalesced again, rather than each for itself.
        Ok(Filled::Pass(_, PURGED)) => Outcome::Abandoned,
        Ok(Filled::Pass(..)) => Outcome::Pass,
        Err(EdgeError::Origin { origin, kind }) => Outcome::Failed(kind.clone(), origin.clone()),
        Err(_) => Outcome::Abandoned,
    };
    leader.finish(outcome);
    filled
}

fn is_server_error(status: u16) -> bool {
    // RFC 5861 §4: stale-if-error applies to 500, 502, 503 and 504.
    matches!(status, 500 | 502 | 503 | 504)
}

/// Passes an unsafe or unknown method through to the origin with its body streamed,
/// never stores the answer, and invalidates the target URI and same-host `Location`
/// and `Content-Location` when the method succeeded (RFC 9111 §4.4).
async fn pass_unsafe(
    state: &AppState,
    site: &SiteRuntime,
    primary: &CacheKey,
    host: &str,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, EdgeError> {
    let (parts, body) = request.into_parts();
    let max = state.config.server.limits.max_request_body;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(EdgeError::PayloadTooLarge(max));
    }
    // A chunked body is cut off at the limit, and one the client stops sending at its
    // idle timeout; the origin sees an aborted upload, the client its own error.
    let idle = state.config.server.limits.idle_timeout;
    let upload = Upload::default();
    let mut forward = Request::new(Body::new(upload.body(body, max, idle)));
    forward.extensions_mut().insert(upload.clone());
    *forward.method_mut() = parts.method.clone();
    *forward.uri_mut() = primary
        .path_and_query()
        .parse()
        .map_err(|_| EdgeError::BadRequest("invalid request target"))?;
    let proto = crate::tls::Scheme::of(&parts.extensions).as_str();
    *forward.headers_mut() = forward_headers(&parts.headers, Some(peer.ip()), proto);
    let mut response = match site.origin.send(forward).await {
        // The client's body failed first: its fault, not the origin's.
        Err(error) if let Some(fault) = upload.fault() => {
            tracing::debug!(%error, ?fault, "request body failed on its way to the origin");
            return Err(match fault {
                ClientFault::TooLarge => EdgeError::PayloadTooLarge(max),
                ClientFault::Malformed => EdgeError::BadRequest("malformed request body"),
                ClientFault::Stalled => EdgeError::BodyTimeout(idle),
            });
        }
        Err(EdgeError::Origin { origin, kind }) => {
            return Ok(origin_failure(origin, kind, "method", false));
        }
        other => other?,
    };
    let status = response.status();
    let unsafe_method = !matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if unsafe_method && (status.is_success() || status.is_redirection()) {
        state.cache.invalidate_url(primary);
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(target) = response
                .headers()
                .get(&name)
                .and_then(|v| same_host_target(v, host))
            {
                let target = normalise_target(&target, &site.query);
                state
                    .cache
                    .invalidate_url(&CacheKey::new(&site.name, host, &target));
            }
        }
    }
    decorate_pass(
        response.headers_mut(),
        CacheStatus {
            fwd_status: Some(status.as_u16()),
            ..CacheStatus::forward("method")
        },
    );
    Ok(response.map(ResponseBody::from))
}

/// The path and query of a `Location`/`Content-Location` value when it names this
/// host (relative references always do), RFC 9111 §4.4.
fn same_host_target(value: &HeaderValue, host: &str) -> Option<String> {
    let uri: http::Uri = value.to_str().ok()?.parse().ok()?;
    if let Some(authority) = uri.host()
        && !authority.eq_ignore_ascii_case(host)
    {
        return None;
    }
    let path = uri.path_and_query()?.as_str();
    path.starts_with('/').then(|| path.to_owned())
}

/// An origin failure as the client gets it. The error's own `Cache-Status` cannot know
/// why the request went forward (a stale entry, a new variant, an unsafe method) or
/// that it was collapsed; this one says.
fn origin_failure(
    origin: String,
    kind: OriginFailure,
    reason: &'static str,
    collapsed: bool,
) -> Response<ResponseBody> {
    let detail = kind.detail();
    let error = EdgeError::Origin { origin, kind };
    let status = CacheStatus {
        fwd_status: Some(error.status().as_u16()),
        detail: Some(detail),
        collapsed,
        ..CacheStatus::forward(reason)
    };
    let mut response = error.into_response().map(ResponseBody::from);
    decorate_pass(response.headers_mut(), status);
    response
}

/// A passed response as a stored one would reach the client: with `Cache-Status`,
/// without the fields meant for this cache alone.
fn decorate_pass(headers: &mut HeaderMap, status: CacheStatus) {
    for name in crate::respond::EDGE_ONLY {
        headers.remove(name);
    }
    headers.insert("cache-status", status.to_header());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cache_status_counts_as_its_outcome() {
        for (status, outcome) in [
            ("edge; hit; ttl=30", "hit"),
            ("edge; fwd=uri-miss; fwd-status=200; stored", "miss"),
            (
                "edge; fwd=uri-miss; fwd-status=200; detail=streaming",
                "miss",
            ),
            (
                "edge; fwd=uri-miss; fwd-status=200; detail=not-stored",
                "miss",
            ),
            ("edge; fwd=uri-miss; fwd-status=200; collapsed", "collapsed"),
            (
                "edge; fwd=uri-miss; fwd-status=200; collapsed; detail=streaming",
                "collapsed",
            ),
            ("edge; fwd=stale; fwd-status=304", "revalidated"),
            (
                "edge; fwd=uri-miss; fwd-status=200; detail=no-store",
                "pass",
            ),
            (
                "edge; fwd=uri-miss; fwd-status=502; detail=origin-refused",
                "pass",
            ),
        ] {
            assert_eq!(outcome_of(status), outcome, "{status}");
        }
    }

    fn host_of(field: &str) -> Option<Host> {
        let request = Request::builder()
            .uri("/x")
            .header(header::HOST, field)
            .body(())
            .expect("a request");
        request_host(&request)
    }

    #[test]
    fn the_host_is_lower_cased_without_port_or_trailing_dot() {
        assert_eq!(
            host_of("Static.Example.COM").as_deref(),
            Some("static.example.com")
        );
        assert_eq!(host_of("a.test:8080").as_deref(), Some("a.test"));
        assert_eq!(host_of("a.test.").as_deref(), Some("a.test"));
        assert_eq!(host_of("a.test..:80").as_deref(), Some("a.test"));
        assert_eq!(host_of("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(host_of("[FE80::1]").as_deref(), Some("[fe80::1]"));

        assert_eq!(host_of(":80"), None);
        assert_eq!(host_of("."), None);
        let longest = "a".repeat(MAX_HOST);
        assert_eq!(host_of(&longest).as_deref(), Some(longest.as_str()));
        assert_eq!(host_of(&format!("{longest}a")), None);
    }

    #[test]
    fn a_host_field_that_is_not_uri_host_and_port_is_refused() {
        for bad in [
            "local host",
            "a.test/x",
            "a.test\\x",
            "user@a.test",
            "a.test:80x",
            "a.test:80:81",
            "[::1",
            "[]",
            "[x]",
            "[1.2.3.4]",
            "[:::]",
            "[a;b=c]",
            "[v.x]",
            "[v1.]",
            "[::1]x",
            "[::1]:x",
            "a%2",
            "a%zz.test",
            "a\tb",
        ] {
            assert_eq!(host_of(bad), None, "{bad:?}");
        }
        for good in [
            "[::ffff:1.2.3.4]",
            "[v1.fe80::a+en1]",
            "a.test",
            "a.test:",
            "a.test:8080",
            "10.0.0.1:80",
            "[::1]:80",
            "a%41.test",
            "a_b~c",
        ] {
            assert!(host_of(good).is_some(), "{good:?}");
        }
        let not_ascii = Request::builder()
            .uri("/x")
            .header(
                header::HOST,
                HeaderValue::from_bytes(b"caf\xc3\xa9.test").expect("a value"),
            )
            .body(())
            .expect("a request");
        assert_eq!(request_host(&not_ascii), None);
    }

    #[test]
    fn more_than_one_host_line_is_refused_whatever_the_target() {
        for uri in ["/x", "http://a.test/x"] {
            let request = Request::builder()
                .uri(uri)
                .header(header::HOST, "a.test")
                .header(header::HOST, "a.test")
                .body(())
                .expect("a request");
            assert_eq!(request_host(&request), None, "{uri}");
        }
    }

    /// A request of `version` for `uri`, with a `Host` line when `host` is given.
    fn request(version: http::Version, uri: &str, host: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().version(version).uri(uri);
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        builder.body(()).expect("a request")
    }

    #[test]
    fn an_http11_request_without_host_is_refused_even_in_absolute_form() {
        let modern = request(http::Version::HTTP_11, "http://a.test/x", None);
        assert_eq!(request_host(&modern), None);
        let old = request(http::Version::HTTP_10, "http://a.test/x", None);
        assert_eq!(request_host(&old).as_deref(), Some("a.test"));
    }

    #[test]
    fn an_http10_request_without_host_has_the_empty_host() {
        const HTTP_10: http::Version = http::Version::HTTP_10;
        const HTTP_11: http::Version = http::Version::HTTP_11;
        let old = request(HTTP_10, "/x", None);
        assert_eq!(request_host(&old).as_deref(), Some(""));
        let invalid = request(HTTP_10, "/x", Some("a b"));
        assert_eq!(
            request_host(&invalid),
            None,
            "a Host it sends must be valid"
        );
        let empty = request(HTTP_10, "/x", Some(""));
        assert_eq!(
            request_host(&empty).as_deref(),
            Some(""),
            "an empty Host names none"
        );
        let empty11 = request(HTTP_11, "/x", Some(""));
        assert_eq!(request_host(&empty11), None, "HTTP/1.1 must name its host");
    }

    #[test]
    fn an_http2_host_must_name_the_authority() {
        let h2 = |host: Option<&str>| {
            let mut builder = Request::builder()
                .version(http::Version::HTTP_2)
                .uri("https://A.test:8443/x");
            if let Some(host) = host {
                builder = builder.header(header::HOST, host);
            }
            request_host(&builder.body(()).expect("a request"))
        };
        assert_eq!(h2(None).as_deref(), Some("a.test"));
        assert_eq!(h2(Some("a.TEST:8443")).as_deref(), Some("a.test"));
        assert_eq!(h2(Some("b.test:8443")), None);
        assert_eq!(
            h2(Some("a.test")),
            None,
            "another port is another authority"
        );
    }

    #[test]
    fn an_absolute_form_target_names_the_host() {
        let request = Request::builder()
            .uri("http://Origin.Test:81/x")
            .header(header::HOST, "other.test")
            .body(())
            .expect("a request");
        assert_eq!(request_host(&request).as_deref(), Some("origin.test"));
    }
}
