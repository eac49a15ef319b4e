//! The request path, top to bottom: site by host, method, key, lookup, fill (coalesced),
//! respond. Every response carries `Cache-Status` and `Age` and is logged once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::IntoResponse;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, request};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::cache::flight::{Flight, Outcome};
use crate::cache::key::CacheKey;
use crate::cache::meta::{BlobHash, Meta, Rep, to_unix};
use crate::cache::{Entry, Lookup};
use crate::error::{EdgeError, OriginFailure};
use crate::http::encoding::Encoding;
use crate::http::freshness::{self, Storability};
use crate::origin::{VIA, forward_headers};
use crate::respond::{CacheStatus, derived_etag, respond};
use crate::server::{AppState, SiteRuntime};

/// The axum handler for every client request.
pub async fn handle(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let host = request_host(&request).unwrap_or_default();
    let path = request.uri().path().to_owned();
    let mut response = match serve(&state, peer, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let headers = response.headers_mut();
    headers
        .entry(header::AGE)
        .or_insert(HeaderValue::from_static("0"));
    let outcome = headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .map(outcome_of)
        .unwrap_or("pass");
    let bytes = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    tracing::info!(
        target: "edge::access",
        %method,
        host,
        path,
        status = response.status().as_u16(),
        cache = outcome,
        bytes,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

fn outcome_of(cache_status: &str) -> &'static str {
    if cache_status.contains("; hit") {
        "hit"
    } else if cache_status.contains("collapsed") {
        "collapsed"
    } else if cache_status.contains("stored") {
        "miss"
    } else if cache_status.contains("fwd=stale") {
        "revalidated"
    } else {
        "pass"
    }
}

/// The request's host: `Host`, or the URI authority for HTTP/2; lower-cased, without
/// port or trailing dot.
pub fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = match request.uri().host() {
        Some(h) => h,
        None => request.headers().get(header::HOST)?.to_str().ok()?,
    };
    let host = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets, drop any port.
        raw.split(']').next().map(|h| format!("{h}]"))?
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h).to_owned()
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

async fn serve(
    state: &AppState,
    peer: SocketAddr,
    request: Request<Body>,
) -> Result<Response<Body>, EdgeError> {
    let host = request_host(&request).ok_or(EdgeError::BadRequest("missing or invalid Host"))?;
    let sites = state.sites();
    let site = sites
        .by_host(&host)
        .ok_or_else(|| EdgeError::UnknownHost(host.clone()))?
        .clone();
    drop(sites);

    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let key = CacheKey::new(&site.name, &host, &path_and_query);

    if request.method() != Method::GET && request.method() != Method::HEAD {
        return pass_unsafe(state, &site, &key, peer, request).await;
    }

    let (parts, _body) = request.into_parts();
    let now = state.clock.now();
    match state.cache.lookup(&key, now).await {
        Lookup::Fresh(hit) => Ok(respond(&hit.entry, &parts, now, CacheStatus::hit())),
        Lookup::Stale(_) => miss(state, &site, key, peer, parts, "stale").await,
        Lookup::Miss => miss(state, &site, key, peer, parts, "uri-miss").await,
    }
}

/// Passes an unsafe or unknown method through to the origin with its body streamed,
/// never stores the answer, and invalidates the URL when the method succeeded
/// (RFC 9111 §4.4).
async fn pass_unsafe(
    state: &AppState,
    site: &SiteRuntime,
    key: &CacheKey,
    peer: SocketAddr,
    request: Request<Body>,
) -> Result<Response<Body>, EdgeError> {
    let (parts, body) = request.into_parts();
    let mut forward = Request::new(body);
    *forward.method_mut() = parts.method.clone();
    *forward.uri_mut() = path_only(&parts.uri);
    *forward.headers_mut() = forward_headers(&parts.headers, Some(peer.ip()), "http");
    let mut response = site.origin.send(forward).await?;
    let status = response.status();
    let unsafe_method = matches!(
        parts.method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    );
    if unsafe_method && (status.is_success() || status.is_redirection()) {
        state.cache.remove(key);
    }
    decorate_pass(response.headers_mut(), CacheStatus {
        fwd_status: Some(status.as_u16()),
        ..CacheStatus::forward("method")
    });
    Ok(response)
}

fn path_only(uri: &http::Uri) -> http::Uri {
    uri.path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"))
}

fn decorate_pass(headers: &mut HeaderMap, status: CacheStatus) {
    headers.append(header::VIA, HeaderValue::from_static(VIA));
    headers.insert("cache-status", status.to_header());
}

/// A miss (or a stale entry, until revalidation): join the key's flight; the leader
/// fills in a task of its own so that a client going away does not abort the fill.
async fn miss(
    state: &AppState,
    site: &SiteRuntime,
    key: CacheKey,
    peer: SocketAddr,
    parts: request::Parts,
    reason: &'static str,
) -> Result<Response<Body>, EdgeError> {
    loop {
        match state.cache.flights().join(&key) {
            Flight::Leader(leader) => {
                let fill = tokio::spawn(fill(
                    state.clone(),
                    site.clone(),
                    key.clone(),
                    peer,
                    parts.headers.clone(),
                ));
                let filled = fill
                    .await
                    .map_err(|e| EdgeError::Internal(format!("fill task: {e}")))?;
                return match filled {
                    Ok(Filled::Stored(entry, fwd_status)) => {
                        leader.finish(Outcome::Stored(entry.clone()));
                        let status = CacheStatus {
                            fwd_status: Some(fwd_status),
                            stored: true,
                            ..CacheStatus::forward(reason)
                        };
                        Ok(respond(&entry, &parts, state.clock.now(), status))
                    }
                    Ok(Filled::Pass(mut response, detail)) => {
                        leader.finish(Outcome::Pass);
                        let status = CacheStatus {
                            fwd_status: Some(response.status().as_u16()),
                            detail: Some(detail),
                            ..CacheStatus::forward(reason)
                        };
                        decorate_pass(response.headers_mut(), status);
                        Ok(response)
                    }
                    Err(error) => {
                        if let EdgeError::Origin { origin, kind } = &error {
                            leader.finish(Outcome::Failed(kind.clone(), origin.clone()));
                        }
                        Err(error)
                    }
                };
            }
            Flight::Follower(follower) => match follower.wait(state.config.server.coalesce_wait).await {
                Some(Outcome::Stored(entry)) => {
                    let status = CacheStatus {
                        collapsed: true,
                        fwd_status: Some(entry.meta.status),
                        ..CacheStatus::forward(reason)
                    };
                    return Ok(respond(&entry, &parts, state.clock.now(), status));
                }
                Some(Outcome::Failed(kind, origin)) => {
                    return Err(EdgeError::Origin { origin, kind });
                }
                Some(Outcome::Abandoned) => continue,
                // Not storable, or the leader is too slow: fetch for ourselves.
                Some(Outcome::Pass) | None => {
                    return match fill_uncoalesced(state, site, &key, peer, &parts).await? {
                        Filled::Stored(entry, fwd_status) => {
                            let status = CacheStatus {
                                fwd_status: Some(fwd_status),
                                stored: true,
                                ..CacheStatus::forward(reason)
                            };
                            Ok(respond(&entry, &parts, state.clock.now(), status))
                        }
                        Filled::Pass(mut response, detail) => {
                            let status = CacheStatus {
                                fwd_status: Some(response.status().as_u16()),
                                detail: Some(detail),
                                ..CacheStatus::forward(reason)
                            };
                            decorate_pass(response.headers_mut(), status);
                            Ok(response)
                        }
                    };
                }
            },
        }
    }
}

async fn fill_uncoalesced(
    state: &AppState,
    site: &SiteRuntime,
    key: &CacheKey,
    peer: SocketAddr,
    parts: &request::Parts,
) -> Result<Filled, EdgeError> {
    fill(
        state.clone(),
        site.clone(),
        key.clone(),
        peer,
        parts.headers.clone(),
    )
    .await
}

/// What a fill produced.
enum Filled {
    /// Stored; the origin's status.
    Stored(Arc<Entry>, u16),
    /// Not storable: the origin's response to stream through, and why.
    Pass(Response<Body>, &'static str),
}

/// Request fields that must not reach the origin on a fill: the fill fetches the whole
/// identity representation for the cache, not the client's conditional or partial view.
const FILL_DROPPED: [&str; 7] = [
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
    "accept-encoding",
];

async fn fill(
    state: AppState,
    site: SiteRuntime,
    key: CacheKey,
    peer: SocketAddr,
    client_headers: HeaderMap,
) -> Result<Filled, EdgeError> {
    let mut headers = forward_headers(&client_headers, Some(peer.ip()), "http");
    for name in FILL_DROPPED {
        headers.remove(name);
    }
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = key
        .path_and_query()
        .parse()
        .map_err(|_| EdgeError::BadRequest("invalid request target"))?;
    *request.headers_mut() = headers;

    let request_time = state.clock.now();
    let response = site.origin.send(request).await?;
    let response_time = state.clock.now();
    let status = response.status().as_u16();

    if let Some(reason) = refuse_to_store(&client_headers, &response) {
        return Ok(Filled::Pass(response, reason));
    }
    let max = state.config.cache.max_object_size;
    let declared = content_length(response.headers());
    if declared.is_some_and(|len| len > max) {
        return Ok(Filled::Pass(response, "too-large"));
    }

    let (head, body) = response.into_parts();
    let bytes = match collect(body, max, &site).await? {
        Collected::Complete(bytes) => bytes,
        Collected::TooLarge(prefix, rest) => {
            let stream = futures_util::stream::once(async move { Ok::<_, axum::Error>(prefix) })
                .chain(rest.into_data_stream());
            let body = Body::from_stream(stream);
            return Ok(Filled::Pass(Response::from_parts(head, body), "too-large"));
        }
    };
    if let Some(len) = declared
        && len != bytes.len() as u64
    {
        return Err(site.origin_error(OriginFailure::Protocol(format!(
            "Content-Length {len} but {} bytes received",
            bytes.len()
        ))));
    }

    let meta = build_meta(&key, status, head.headers, bytes.len() as u64, BlobHash::of(&bytes), request_time, response_time);
    let entry = state.cache.insert(key, meta, vec![bytes]);
    Ok(Filled::Stored(entry, status))
}

use futures_util::StreamExt as _;

/// Why a response must not be stored, checked before its body is read.
fn refuse_to_store(request: &HeaderMap, response: &Response<Body>) -> Option<&'static str> {
    let headers = response.headers();
    match freshness::storable(&Method::GET, request, response.status().as_u16(), headers) {
        Storability::Store => {}
        Storability::DontStore(reason) => return Some(reason),
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Some("set-cookie");
    }
    if let Some(coding) = headers.get(header::CONTENT_ENCODING)
        && !coding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Some("encoded");
    }
    if headers
        .get_all(header::VARY)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("*").split(','))
        .any(|name| !name.trim().eq_ignore_ascii_case("accept-encoding") && !name.trim().is_empty())
    {
        return Some("vary");
    }
    None
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

enum Collected {
    Complete(Bytes),
    TooLarge(Bytes, Body),
}

/// Reads a whole body, or stops once it passes `max` and hands back what was read with
/// the rest of the stream. A body that fails or times out is an origin error: nothing
/// partial is ever stored.
async fn collect(mut body: Body, max: u64, site: &SiteRuntime) -> Result<Collected, EdgeError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let text = crate::error::chain(&e);
            if text.contains("timed out") {
                site.origin_error(OriginFailure::Timeout("reading the body"))
            } else {
                site.origin_error(OriginFailure::Protocol(text))
            }
        })?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() as u64 > max {
                return Ok(Collected::TooLarge(buf.freeze(), body));
            }
        }
    }
    Ok(Collected::Complete(buf.freeze()))
}

/// Header fields held elsewhere in [`Meta`] or recomputed on every response.
const NOT_STORED: [&str; 5] = ["content-length", "content-encoding", "etag", "age", "accept-ranges"];

fn build_meta(
    key: &CacheKey,
    status: u16,
    mut headers: HeaderMap,
    len: u64,
    hash: BlobHash,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Meta {
    // RFC 9110 §6.6.1: a cache must add Date to a response that lacks one.
    if !headers.contains_key(header::DATE) {
        if let Ok(v) = HeaderValue::from_str(&crate::http::date::format(response_time)) {
            headers.insert(header::DATE, v);
        }
    }
    let freshness = freshness::analyze(status, &headers, request_time, response_time);
    let etag = headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| derived_etag(&hash));
    let last_modified = headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| crate::http::date::parse(v.as_bytes()))
        .map(to_unix);
    let tags = headers
        .get_all("surrogate-key")
        .iter()
        .chain(headers.get_all("cache-tag").iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([' ', ',']))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let stored = headers
        .iter()
        .filter(|(name, _)| !NOT_STORED.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    Meta {
        url: format!("{}{}", key.host(), key.path_and_query()),
        status,
        headers: stored,
        request_time: to_unix(request_time),
        response_time: to_unix(response_time),
        freshness,
        last_modified,
        tags,
        reps: vec![Rep {
            encoding: Encoding::Identity,
            hash,
            len,
            etag,
        }],
        generation: 0,
        invalidated: false,
    }
}
