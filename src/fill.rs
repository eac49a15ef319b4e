//! Filling the cache from the origin: fetch (or revalidate) the identity
//! representation, decide whether it may be stored, read the whole body, and store it.
//! Nothing partial is ever stored: a body that fails, times out or does not match its
//! `Content-Length` is an origin error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use crate::cache::flight::{Outcome, Tap};
use crate::cache::key::CacheKey;
use crate::cache::meta::{BlobHash, Meta, Rep, to_unix};
use crate::cache::{Entry, PurgeMark};
use crate::compress::DecodeError;
use crate::config::SetCookiePolicy;
use crate::error::{EdgeError, OriginFailure};
use crate::http::encoding::Encoding;
use crate::http::freshness::{self, Storability};
use crate::origin::forward_headers;
use crate::respond::derived_etag;
use crate::server::{AppState, SiteRuntime};

mod feed;

use feed::{Event, Feeds};

/// What a fill produced.
pub enum Filled {
    /// A new response, read whole: the entry, the origin's status, and whether a tier
    /// kept it (false: too large for memory and the disk tier off, failed or its write
    /// queue full; it is answered from the entry all the same).
    Stored(Arc<Entry>, u16, bool),
    /// The stale entry was revalidated by a 304 and updated (RFC 9111 §4.3.4).
    Revalidated(Arc<Entry>),
    /// The response may not be stored: stream it through, with the reason.
    Pass(Response<Body>, &'static str),
    /// A body that did not end within [`STREAM_AFTER`] bytes, streamed to the client
    /// while the fill reads and stores it.
    Streaming(Streaming),
}

/// A fill whose body goes to the client that started it while the fill goes on.
pub struct Streaming {
    /// The response's head, and bodies for followers.
    pub tap: Tap,
    /// The body: every byte the fill reads, in order, ending with an error if the
    /// fill fails (so that the client never takes a short body for a whole one).
    pub body: Body,
    /// The fill's outcome, once the whole body is read and stored or refused.
    pub done: Option<oneshot::Receiver<Outcome>>,
}

/// A miss's body is streamed to the client that started the fill once this much of
/// it has been read without its end; a smaller body is read whole first, so that its
/// first response has the stored entry's every field (a derived `ETag` included).
pub const STREAM_AFTER: usize = 256 * 1024;

/// One fill: which key, for which client request, revalidating which stale entry.
#[derive(Clone)]
pub struct FillRequest {
    /// The primary key (site, host, path and query).
    pub primary: CacheKey,
    /// The client's request headers (forwarded, less conditionals and ranges).
    pub client_headers: HeaderMap,
    /// The client's address, for `X-Forwarded-For`.
    pub peer: SocketAddr,
    /// A stored entry to revalidate instead of fetching afresh.
    pub stale: Option<Arc<Entry>>,
    /// `http` or `https`: how the client that started the fill reached edge.
    pub proto: &'static str,
    /// Whether the client would take the stored response whole (a GET or HEAD
    /// without preconditions or ranges that accepts identity) and no stale entry could
    /// answer for a failing origin, so that a large body may be streamed to it while
    /// the fill reads ([`Filled::Streaming`]).
    pub stream: bool,
}

/// The `Cache-Status` detail of a fill whose store a purge refused (it may predate the
/// purge): its waiting followers fetch afresh rather than pass.
pub const PURGED: &str = "purged";

/// Request fields that must not reach the origin on a fill: the fill fetches the whole
/// identity representation for the cache, not the client's conditional or partial view.
const FILL_DROPPED: [&str; 9] = [
    // A GET's body is never forwarded, so neither is its framing.
    "content-length",
    "content-type",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
    "accept-encoding",
];

/// Fetches `req.primary` from the site's origin and stores what may be stored.
pub async fn fill(
    state: AppState,
    site: SiteRuntime,
    req: FillRequest,
) -> Result<Filled, EdgeError> {
    let mut headers = forward_headers(&req.client_headers, Some(req.peer.ip()), req.proto);
    for name in FILL_DROPPED {
        headers.remove(name);
    }
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    // RFC 9111 §4.3.1: validate with the stored validators. A derived ETag is ours, not
    // the origin's, so only the origin's own ETag is sent.
    if let Some(stale) = &req.stale {
        if let Some(etag) = stale
            .meta
            .header("etag")
            .and_then(|v| HeaderValue::from_bytes(v).ok())
        {
            headers.insert(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = stale
            .meta
            .header("last-modified")
            .and_then(|v| HeaderValue::from_bytes(v).ok())
        {
            headers.insert(header::IF_MODIFIED_SINCE, lm);
        }
    }
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = req
        .primary
        .path_and_query()
        .parse()
        .map_err(|_| EdgeError::BadRequest("invalid request target"))?;
    *request.headers_mut() = headers;

    // Before the origin is asked: what it sends may predate a purge from here on.
    let mark = state.cache.purge_mark();
    let request_time = state.clock.now();
    let sent = std::time::Instant::now();
    let response = site.origin.send(request).await;
    state.metrics.origin(&site.name, sent.elapsed(), &response);
    let response = response?;
    let response_time = state.clock.now();
    let status = response.status().as_u16();

    if status == 304
        && let Some(stale) = &req.stale
    {
        if let Some(updated) = revalidated(
            &state,
            stale,
            response.headers(),
            (request_time, response_time),
            (&req.primary, &mark),
        ) {
            return Ok(Filled::Revalidated(updated));
        }
        // A 304 for a representation we do not hold (§4.3.4): fetch it whole.
        let mut retry = req.clone();
        retry.stale = None;
        return Box::pin(fill(state, site, retry)).await;
    }

    if let Some(reason) = refuse_to_store(
        &site,
        req.primary.path_and_query(),
        &req.client_headers,
        &response,
    ) {
        return Ok(Filled::Pass(response, reason));
    }
    if nothing_to_reuse(status, response.headers(), request_time, response_time) {
        return Ok(Filled::Pass(response, "no-freshness"));
    }
    let max = state
        .cache
        .largest_storable(state.config.cache.max_object_size);
    let declared = content_length(response.headers());
    if declared.is_some_and(|len| len > max) {
        return Ok(Filled::Pass(response, "too-large"));
    }
    // Held while this fill reads, and by a response that passes what it read on; a
    // stored body is the cache's (charged to the memory tier or the disk write queue).
    let mut held = state.fills.hold();
    if let Some(len) = declared
        && !held.take(len)
    {
        return Ok(Filled::Pass(response, "fill-memory"));
    }

    let (head, body) = response.into_parts();
    let stream_after = (req.stream && status == 200 && content_coding(&head.headers).is_none())
        .then_some(STREAM_AFTER);
    let bytes = match collect(body, max, declared, &mut held, &site, stream_after).await? {
        Collected::Complete(bytes) => bytes,
        Collected::Stopped(read, rest, reason) => {
            let stream = futures_util::stream::iter(read.into_iter().filter(|b| !b.is_empty()))
                .map(Ok::<_, axum::Error>)
                .chain(rest.into_data_stream());
            let body = holding(Body::from_stream(stream), held);
            return Ok(Filled::Pass(Response::from_parts(head, body), reason));
        }
        Collected::Unfinished(read, rest) => {
            let fill = StreamingFill {
                state,
                site,
                req,
                status,
                headers: head.headers,
                buf: read,
                held,
                max,
                declared,
                request_time,
                response_time,
                mark,
            };
            return Ok(Filled::Streaming(fill.start(rest)));
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

    let origin_headers = head.headers.clone();
    // The identity body is canonical (DESIGN.md): an origin that encodes anyway is
    // decoded; one whose body cannot be decoded is passed through uncached. A coding
    // edge does not know is kept as sent (RFC 9111 §3.1: a cache stores the
    // Content-Encoding it received), unless the origin chose it per client.
    let mut headers = head.headers;
    let mut decoded = false;
    let mut opaque: Option<String> = None;
    // Ok: the body to store; Err: the origin's bytes, which cannot be decoded.
    let decoding = match content_coding(&headers) {
        None => Ok(bytes),
        Some(Ok(coding)) if coding.trim().eq_ignore_ascii_case("identity") => Ok(bytes),
        Some(Ok(coding)) => {
            // The decoded body is a second buffer: it takes its share of fill_memory too,
            // so concurrent decompression bombs cannot each grow to max_object_size.
            let max =
                (state.config.cache.max_object_size).min(state.config.compression.max_decoded_size);
            let room = held.room();
            let result = state
                .compressor
                .decode(&coding, bytes.clone(), max.min(room))
                .await;
            let no_room = match &result {
                Ok(identity) => !held.take(identity.len() as u64),
                Err(DecodeError::TooLarge { .. }) => room < max,
                Err(_) => false,
            };
            if no_room {
                tracing::debug!(key = %req.primary, "no fill memory to decode the origin's body; passing it through uncached");
                return Ok(pass_whole(
                    status,
                    origin_headers,
                    bytes,
                    held,
                    "fill-memory",
                ));
            }
            match result {
                Ok(identity) => {
                    headers.remove(header::CONTENT_ENCODING);
                    decoded = true;
                    Ok(identity)
                }
                Err(DecodeError::Unsupported(_)) if !varies_on_accept_encoding(&headers) => {
                    opaque = Some(coding);
                    Ok(bytes)
                }
                Err(error) => {
                    tracing::warn!(key = %req.primary, %error, "cannot decode the origin's body; passing it through uncached");
                    Err(bytes)
                }
            }
        }
        Some(Err(())) => {
            tracing::warn!(key = %req.primary, "unreadable Content-Encoding; passing the body through uncached");
            Err(bytes)
        }
    };
    let bytes = match decoding {
        Ok(bytes) => bytes,
        Err(sent) => {
            return Ok(pass_whole(
                status,
                origin_headers,
                sent,
                held,
                "undecodable",
            ));
        }
    };
    let mut meta = build_meta(
        &req.primary,
        status,
        headers,
        &bytes,
        decoded,
        request_time,
        response_time,
    );
    if let Some(coding) = opaque {
        meta.set_opaque_coding(coding.into_bytes());
    }
    match store(&state, &site, &req, meta, bytes, &mark) {
        Ok((entry, kept)) => Ok(Filled::Stored(entry, status, kept)),
        Err((bytes, detail)) => {
            // The bytes are the decoded ones: the origin's coding and length no longer
            // describe them.
            let mut headers = origin_headers;
            if decoded {
                headers.remove(header::CONTENT_ENCODING);
                headers.remove(header::CONTENT_LENGTH);
            }
            Ok(pass_whole(status, headers, bytes, held, detail))
        }
    }
}

/// Stores `bytes`, the whole identity body `meta` describes, under the request's key
/// or, when the response varies, its variant's key, and starts making its compressed
/// variants. The entry and whether a tier kept it; `Err` with the body and the reason
/// (`Cache-Status` detail) when the URL already has as many variants as it may, or a
/// purge since `mark` may have covered it.
fn store(
    state: &AppState,
    site: &SiteRuntime,
    req: &FillRequest,
    meta: Meta,
    bytes: Bytes,
    mark: &PurgeMark,
) -> Result<(Arc<Entry>, bool), (Bytes, &'static str)> {
    let names = vary_names(
        meta.headers
            .iter()
            .filter(|(n, _)| n == "vary")
            .map(|(_, v)| v.as_slice()),
    );
    let key = if names.is_empty() {
        req.primary.clone()
    } else {
        let key = variant_key(&req.primary, &names, &req.client_headers);
        if !admit_variant(state, site, &req.primary, &key) {
            return Err((bytes, "vary-limit"));
        }
        state.cache.set_vary(&req.primary, names.clone());
        key
    };
    let content_type = meta
        .header("content-type")
        .and_then(|v| std::str::from_utf8(v).ok());
    let compressible = meta.opaque_coding().is_none()
        && state
            .compressor
            .is_compressible(content_type, bytes.len() as u64);
    let stored =
        (state.cache).insert_unless_purged(key, meta, vec![bytes.clone()], &req.primary, mark);
    let Some((entry, kept)) = stored else {
        tracing::debug!(key = %req.primary, "purged while it was read; not stored");
        return Err((bytes, PURGED));
    };
    if compressible && kept {
        // Strong compression never holds up a response: variants are made in the
        // background on the bounded pool and serve later requests once ready.
        tokio::spawn(add_variants(state.clone(), entry.clone(), bytes, *mark));
    }
    Ok((entry, kept))
}

/// A fill whose first [`STREAM_AFTER`] bytes are read and whose body goes on: the
/// rest is read in a task of its own, each frame handed to every client streaming it
/// as it arrives (see [`feed`]), and the whole stored as any other fill's.
struct StreamingFill {
    state: AppState,
    site: SiteRuntime,
    req: FillRequest,
    status: u16,
    headers: HeaderMap,
    /// The body so far, charged to `held`.
    buf: Vec<u8>,
    held: Held,
    max: u64,
    declared: Option<u64>,
    request_time: SystemTime,
    response_time: SystemTime,
    /// Taken before the origin was asked.
    mark: PurgeMark,
}

impl StreamingFill {
    /// Hands the body read so far to the client and reads `rest` in the background.
    fn start(self, rest: Body) -> Streaming {
        let read = self.buf.len() as u64;
        let mut meta = build_meta(
            &self.req.primary,
            self.status,
            self.headers.clone(),
            &Bytes::new(),
            false,
            self.request_time,
            self.response_time,
        );
        // What is known of the length, for the compressibility check of the head.
        meta.reps[0].len = self.declared.unwrap_or(read);
        let (tap, requests) = Tap::new(Arc::new(meta), self.declared);
        let mut feeds = Feeds::new(requests);
        let body = feeds.add(&self.buf);
        let (done_tx, done) = oneshot::channel();
        tokio::spawn(async move {
            match self.finish(rest, feeds).await {
                Finished::Outcome(outcome) => {
                    let _ = done_tx.send(outcome);
                }
                Finished::Unstored(rest) => {
                    // Followers need not wait for the clients to take the rest.
                    let _ = done_tx.send(Outcome::Pass);
                    rest.pass().await;
                }
            }
        });
        Streaming {
            tap,
            body,
            done: Some(done),
        }
    }

    /// Reads the rest, stores the whole and tells the clients how the body ended; or,
    /// once the body turns out too large to store, hands back the rest to pass on.
    async fn finish(mut self, mut rest: Body, mut feeds: Feeds) -> Finished {
        loop {
            let frame = tokio::select! {
                frame = rest.frame() => frame,
                event = feeds.event() => {
                    match event {
                        Event::Taken => feeds.catch_up(&self.buf),
                        Event::Tapped(reply) => feeds.tapped(reply, &self.buf),
                    }
                    continue;
                }
            };
            let data = match frame {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Some(Err(error)) => {
                    let error = body_error(&self.site, &error);
                    return Finished::Outcome(self.failed(feeds, error));
                }
            };
            if let Err(reason) = append(&mut self.buf, &data, self.max, &mut self.held) {
                // Too large or out of fill memory: the rest goes to the clients alone.
                tracing::debug!(key = %self.req.primary, reason, "streamed fill not stored");
                return Finished::Unstored(Box::new(Unstored {
                    read: Bytes::from(self.buf),
                    frame: data,
                    rest,
                    feeds,
                    held: self.held,
                    site: self.site,
                }));
            }
            feeds.offer(&data, &self.buf);
        }
        let bytes = Bytes::from(std::mem::take(&mut self.buf));
        if let Some(len) = self.declared
            && len != bytes.len() as u64
        {
            let error = self.site.origin_error(OriginFailure::Protocol(format!(
                "Content-Length {len} but {} bytes received",
                bytes.len()
            )));
            return Finished::Outcome(self.failed(feeds, error));
        }
        feeds.complete(bytes.clone());
        let meta = build_meta(
            &self.req.primary,
            self.status,
            self.headers,
            &bytes,
            false,
            self.request_time,
            self.response_time,
        );
        let stored = store(&self.state, &self.site, &self.req, meta, bytes, &self.mark);
        drop(self.held);
        Finished::Outcome(match stored {
            Ok((entry, _)) => Outcome::Stored(entry),
            // Followers still waiting fetch afresh, coalesced again.
            Err((_, PURGED)) => Outcome::Abandoned,
            Err(_) => Outcome::Pass,
        })
    }

    fn failed(&self, feeds: Feeds, error: EdgeError) -> Outcome {
        tracing::warn!(key = %self.req.primary, %error, "streamed fill failed; its responses are cut short");
        feeds.fail(&error.to_string());
        match error {
            EdgeError::Origin { origin, kind } => Outcome::Failed(kind, origin),
            _ => Outcome::Abandoned,
        }
    }
}

/// How a streaming fill's reading ended.
enum Finished {
    /// Stored, refused or failed: the fill's outcome.
    Outcome(Outcome),
    /// Too large to store: the rest is only passed on.
    Unstored(Box<Unstored>),
}

/// The rest of a streamed body that will not be stored.
struct Unstored {
    /// The body read so far.
    read: Bytes,
    /// The frame that did not fit.
    frame: Bytes,
    rest: Body,
    feeds: Feeds,
    /// Kept until the clients have the rest: they may still be taking `read`.
    held: Held,
    site: SiteRuntime,
}

impl Unstored {
    /// Passes the rest on: the bytes each client has not had yet (`read`, then
    /// `frame`), then the origin's frames as the slowest client takes them.
    async fn pass(self) {
        let Unstored {
            read,
            frame,
            mut rest,
            mut feeds,
            held,
            site,
        } = self;
        feeds.unbuffered(read);
        if !feeds.paced(frame).await {
            return;
        }
        while let Some(frame) = rest.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data()
                        && !feeds.paced(data).await
                    {
                        // Every client is gone and nothing is stored: stop reading.
                        return;
                    }
                }
                Err(error) => {
                    feeds.fail(&body_error(&site, &error).to_string());
                    return;
                }
            }
        }
        feeds.complete(Bytes::new());
        drop(held);
    }
}

/// Makes the br, zstd and gzip variants of a stored identity body and adds them to the
/// entry, if it is still the one stored under its key.
async fn add_variants(state: AppState, filled: Arc<Entry>, identity: Bytes, mark: PurgeMark) {
    let variants = state.compressor.variants(identity.clone()).await;
    if variants.is_empty() {
        return;
    }
    // The entry may have been revalidated (keep its newer metadata), replaced or
    // purged (then the variants are dropped) while compression ran.
    let current = match state.cache.lookup(&filled.key, state.clock.now()).await {
        crate::cache::Lookup::Fresh(hit) | crate::cache::Lookup::Stale(hit) => hit.entry,
        crate::cache::Lookup::Miss => return,
    };
    let identity_rep = current.meta.identity().clone();
    if identity_rep.hash != filled.meta.identity().hash || current.meta.reps.len() > 1 {
        return;
    }
    let mut meta = current.meta.clone();
    let identity_len = identity.len() as u64;
    let mut bodies = vec![identity];
    let origin_etag = current
        .meta
        .header("etag")
        .and_then(|v| std::str::from_utf8(v).ok());
    for (encoding, body) in variants {
        state
            .metrics
            .compressed(encoding.as_str(), identity_len, body.len() as u64);
        let hash = BlobHash::of(&body);
        meta.reps.push(Rep {
            encoding,
            hash,
            len: body.len() as u64,
            etag: variant_etag(origin_etag, encoding, &hash),
        });
        bodies.push(body);
    }
    // A purge that landed while compressing must not be undone by this store.
    let key = current.key.clone();
    let _ = (state.cache).insert_unless_purged(key, meta, bodies, &current.key, &mark);
}

/// A representation's own strong ETag (RFC 9110 §8.8.3): the origin's strong ETag with
/// the coding as a suffix, or one derived from the variant's bytes.
fn variant_etag(origin: Option<&str>, encoding: Encoding, hash: &BlobHash) -> String {
    match origin.map(str::trim) {
        Some(tag) if tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"') => {
            format!("\"{}-{}\"", &tag[1..tag.len() - 1], encoding.as_str())
        }
        _ => derived_etag(hash),
    }
}

/// Whether one more `Vary` variant of `primary` may be stored: at most the site's
/// `max_variants` distinct variants per URL, so that a header with unbounded values
/// cannot flood the cache with copies of one resource.
fn admit_variant(state: &AppState, site: &SiteRuntime, primary: &CacheKey, key: &CacheKey) -> bool {
    let mut variants = state.variants.lock().expect("variants lock poisoned");
    let known = variants.entry(primary.clone()).or_default();
    if known.contains(key) || known.len() < site.config.max_variants {
        known.insert(key.clone());
        true
    } else {
        false
    }
}

/// Updates a stale entry from a 304 (RFC 9111 §4.3.4, §3.2): the 304's fields replace
/// the stored ones, except `Content-Length` and what this cache manages itself, and
/// freshness is recomputed from the new times. `None` when the 304's strong ETag
/// names another representation than the stored one, or when a purge since `mark`
/// may have covered the URL (either way the response is fetched whole).
fn revalidated(
    state: &AppState,
    stale: &Arc<Entry>,
    fresh: &HeaderMap,
    (request_time, response_time): (SystemTime, SystemTime),
    (primary, mark): (&CacheKey, &PurgeMark),
) -> Option<Arc<Entry>> {
    if let (Some(new), Some(old)) = (fresh.get(header::ETAG), stale.meta.header("etag"))
        && !crate::http::conditional::weak_eq(
            new.to_str().unwrap_or(""),
            std::str::from_utf8(old).unwrap_or(""),
        )
    {
        return None;
    }
    let mut headers = stale.meta.header_map();
    let replaced: Vec<&HeaderName> = fresh
        .keys()
        .filter(|n| {
            !matches!(
                n.as_str(),
                "content-length" | "content-encoding" | "transfer-encoding"
            )
        })
        .collect();
    for name in replaced {
        headers.remove(name);
        for v in fresh.get_all(name) {
            headers.append(name.clone(), v.clone());
        }
    }
    if !fresh.contains_key(header::DATE)
        && let Ok(v) = HeaderValue::from_str(&crate::http::date::format(response_time))
    {
        headers.insert(header::DATE, v);
    }
    let mut meta = stale.meta.clone();
    meta.freshness = freshness::analyze(meta.status, &headers, request_time, response_time);
    meta.request_time = to_unix(request_time);
    meta.response_time = to_unix(response_time);
    meta.last_modified = headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| crate::http::date::parse(v.as_bytes()))
        .map(to_unix);
    meta.headers = stored_fields(&headers);
    // The body is unchanged, so is the coding it was stored in.
    if let Some(coding) = stale.meta.opaque_coding() {
        meta.set_opaque_coding(coding.to_vec());
    }
    meta.invalidated = false;
    (state.cache).update_meta_unless_purged(stale, meta, primary, mark)
}

/// Whether nothing says this response may be reused and nothing could validate it: no
/// freshness (explicit or heuristic), no `no-cache` to store it for revalidation, no
/// `ETag` or valid `Last-Modified`. Storing it would only waste space (issue #2: no
/// default TTL), so it streams through without its body being read first: an API or
/// page without cache headers gets its first byte when the origin sends it.
fn nothing_to_reuse(
    status: u16,
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> bool {
    let freshness = freshness::analyze(status, headers, request_time, response_time);
    freshness.lifetime == 0
        && !freshness.no_cache
        && !headers.contains_key(header::ETAG)
        && headers
            .get(header::LAST_MODIFIED)
            .and_then(|v| crate::http::date::parse(v.as_bytes()))
            .is_none()
}

/// A response whose whole body was read but may not be stored, passed on as the
/// origin sent it.
fn pass_whole(
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    held: Held,
    reason: &'static str,
) -> Filled {
    let mut response = Response::new(holding(Body::from(body), held));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    *response.headers_mut() = headers;
    Filled::Pass(response, reason)
}

/// Why a response must not be stored, checked before its body is read.
fn refuse_to_store(
    site: &SiteRuntime,
    target: &str,
    request: &HeaderMap,
    response: &Response<Body>,
) -> Option<&'static str> {
    let headers = response.headers();
    match freshness::storable(&Method::GET, request, response.status().as_u16(), headers) {
        Storability::Store => {}
        Storability::DontStore(reason) => return Some(reason),
    }
    if headers.contains_key(header::SET_COOKIE) && site.config.set_cookie == SetCookiePolicy::Pass {
        return Some("set-cookie");
    }
    if site.config.deception_guard && contradicts_extension(target, headers) {
        return Some("content-type-mismatch");
    }
    None
}

/// Web cache deception: HTML answered for a path whose file name says it is a static
/// asset (`/account/settings.css` → `text/html`) is a personal page, not the asset.
fn contradicts_extension(target: &str, headers: &HeaderMap) -> bool {
    let path = target.split('?').next().unwrap_or(target);
    let Some(guess) = mime_guess::from_path(path).first() else {
        return false;
    };
    let served = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let html = |t: &str| t == "text/html" || t == "application/xhtml+xml";
    html(&served) && !html(guess.essence_str())
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
    /// What was read (the buffer, then the frame that did not fit) and the rest of the
    /// stream, with why reading stopped (`too-large`, `fill-memory`).
    Stopped([Bytes; 2], Body, &'static str),
    /// The first `stream_after` bytes (or more) were read and the body goes on.
    Unfinished(Vec<u8>, Body),
}

/// Reads a whole body, or stops once it passes `max` or its buffer cannot grow (`held`
/// cannot take more of [`FillMemory`], or the allocation fails), and hands back what
/// was read with the rest of the stream; with `stream_after`, also once that much is
/// read. A body whose length was `declared` (and taken from `held`) is read into one
/// buffer of that size; otherwise the buffer doubles as it fills, and `held` is charged
/// what it allocates. A body that fails or times out is an origin error.
async fn collect(
    mut body: Body,
    max: u64,
    declared: Option<u64>,
    held: &mut Held,
    site: &SiteRuntime,
    stream_after: Option<usize>,
) -> Result<Collected, EdgeError> {
    let mut buf: Vec<u8> = Vec::new();
    if let Some(len) = declared
        && buf.try_reserve_exact(len as usize).is_err()
    {
        return Ok(Collected::Stopped(Default::default(), body, "fill-memory"));
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(site, &e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Err(reason) = append(&mut buf, &data, max, held) {
            return Ok(Collected::Stopped([buf.into(), data], body, reason));
        }
        if stream_after.is_some_and(|after| buf.len() >= after)
            && declared.is_none_or(|len| len > buf.len() as u64)
        {
            return Ok(Collected::Unfinished(buf, body));
        }
    }
    Ok(Collected::Complete(buf.into()))
}

/// Appends `data` to a body being read, or says why it cannot (`too-large`: past
/// `max`; `fill-memory`: the buffer cannot grow).
fn append(buf: &mut Vec<u8>, data: &[u8], max: u64, held: &mut Held) -> Result<(), &'static str> {
    let needed = buf.len() + data.len();
    if needed as u64 > max {
        return Err("too-large");
    }
    if needed > buf.capacity() {
        let grown = needed.max(buf.capacity() * 2);
        if !held.take((grown - buf.capacity()) as u64)
            || buf.try_reserve_exact(grown - buf.len()).is_err()
        {
            return Err("fill-memory");
        }
    }
    buf.extend_from_slice(data);
    Ok(())
}

/// The origin error for a body that failed while it was read.
fn body_error(site: &SiteRuntime, error: &axum::Error) -> EdgeError {
    let text = crate::error::chain(error);
    if text.contains("timed out") {
        site.origin_error(OriginFailure::Timeout("reading the body"))
    } else {
        site.origin_error(OriginFailure::Protocol(text))
    }
}

/// `body`, keeping `held` until it is dropped: the bytes it passes on stay counted
/// while a slow client reads them.
fn holding(body: Body, held: Held) -> Body {
    Body::new(crate::body::Guarded::new(body, held))
}

/// The memory fills in progress may hold in body buffers (`[cache] fill_memory`),
/// counted while they read and, for a response passed on uncached, until its body is
/// dropped. Without it, concurrent misses on large objects each buffered up to
/// `max_object_size`: six 200 MB misses at once peaked at 1.76 GB of RSS. A fill that
/// cannot take more streams the response through uncached instead (`Cache-Status`
/// `detail=fill-memory`); a fill alone may always take what it needs, so any object up
/// to `max_object_size` is stored when its miss is the only one reading.
#[derive(Debug)]
pub struct FillMemory {
    limit: u64,
    held: AtomicU64,
}

impl FillMemory {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        FillMemory {
            limit,
            held: AtomicU64::new(0),
        }
    }

    /// A fill's share, empty until it takes some.
    pub fn hold(self: &Arc<Self>) -> Held {
        Held {
            memory: self.clone(),
            bytes: 0,
        }
    }

    /// Bytes held by fills now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

/// One fill's share of [`FillMemory`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    memory: Arc<FillMemory>,
    bytes: u64,
}

impl Held {
    /// The most bytes [`Held::take`] would grant now: all it asks while no other fill
    /// holds any, else what is left under the limit.
    pub fn room(&self) -> u64 {
        let now = self.memory.held.load(Ordering::Acquire);
        match now - self.bytes {
            0 => u64::MAX,
            _ => self.memory.limit.saturating_sub(now),
        }
    }

    /// Takes `n` more bytes; false (and nothing taken) when that would pass the limit
    /// while other fills hold some.
    pub fn take(&mut self, n: u64) -> bool {
        let all = &self.memory.held;
        let mut now = all.load(Ordering::Acquire);
        loop {
            // Our own bytes are in `now` until we are dropped: no underflow.
            let others = now - self.bytes;
            if others > 0 && now.saturating_add(n) > self.memory.limit {
                return false;
            }
            match all.compare_exchange_weak(now, now + n, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.bytes += n;
                    return true;
                }
                Err(actual) => now = actual,
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.memory.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Header fields held elsewhere in [`Meta`] or recomputed on every response.
const NOT_STORED: [&str; 5] = [
    "content-length",
    "content-encoding",
    "age",
    "accept-ranges",
    // Only stored at all under `set_cookie = "strip"`; a cookie is never shared.
    "set-cookie",
];

fn stored_fields(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(name, _)| !NOT_STORED.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect::<Vec<_>>()
        // Kept with the entry for its life: no spare capacity.
        .into_boxed_slice()
        .into_vec()
}

fn build_meta(
    key: &CacheKey,
    status: u16,
    mut headers: HeaderMap,
    body: &Bytes,
    decoded: bool,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Meta {
    // RFC 9110 §6.6.1: a cache must add Date to a response that lacks one.
    if !headers.contains_key(header::DATE)
        && let Ok(v) = HeaderValue::from_str(&crate::http::date::format(response_time))
    {
        headers.insert(header::DATE, v);
    }
    let hash = BlobHash::of(body);
    let freshness = freshness::analyze(status, &headers, request_time, response_time);
    // The origin's ETag names the encoded body it sent; a decoded identity body gets
    // its own. (The origin's ETag stays stored as the validator for revalidation.)
    let etag = headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|_| !decoded)
        .map(str::to_owned)
        .unwrap_or_else(|| derived_etag(&hash));
    if !headers.contains_key(header::CONTENT_TYPE)
        && let Some(guess) =
            mime_guess::from_path(key.path_and_query().split('?').next().unwrap_or("")).first()
        && let Ok(v) = HeaderValue::from_str(guess.essence_str())
    {
        headers.insert(header::CONTENT_TYPE, v);
    }
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
    Meta {
        url: format!("{}{}", key.host(), key.path_and_query()),
        status,
        headers: stored_fields(&headers),
        request_time: to_unix(request_time),
        response_time: to_unix(response_time),
        freshness,
        last_modified,
        tags,
        reps: vec![Rep {
            encoding: Encoding::Identity,
            hash,
            len: body.len() as u64,
            etag,
        }],
        generation: 0,
        invalidated: false,
    }
}

/// The response's content codings, every `Content-Encoding` line joined in order
/// (RFC 9110 §5.3); `None` without the field, `Err` when a line is not visible ASCII
/// (such a body can be neither decoded nor labelled).
fn content_coding(headers: &HeaderMap) -> Option<Result<String, ()>> {
    let mut lines = headers.get_all(header::CONTENT_ENCODING).iter().peekable();
    lines.peek()?;
    let lines: Result<Vec<&str>, _> = lines.map(HeaderValue::to_str).collect();
    Some(lines.map(|lines| lines.join(", ")).map_err(|_| ()))
}

/// Whether the origin's `Vary` names `Accept-Encoding` (or is `*`): its coding then
/// depends on the client, and a body edge cannot decode must not be shared.
fn varies_on_accept_encoding(headers: &HeaderMap) -> bool {
    crate::http::field_members(headers, &header::VARY)
        .any(|m| m == b"*" || m.eq_ignore_ascii_case(b"accept-encoding"))
}

/// The request header names a response varies on (RFC 9110 §12.5.5), lower-cased, in
/// order, without `Accept-Encoding` (edge negotiates encodings itself).
pub fn vary_names<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for value in values {
        for name in String::from_utf8_lossy(value).split(',') {
            let name = name.trim().to_ascii_lowercase();
            if !name.is_empty() && name != "accept-encoding" && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// The key of the variant a request selects (RFC 9111 §4.1): the primary key plus the
/// normalised values of the request fields named by `Vary`. Values are normalised by
/// joining field lines with commas and trimming whitespace around list members, so
/// that `en, fr` and `en,fr` select the same variant; `Accept-Language` is also
/// lower-cased (`EN, Fr` is `en, fr`).
pub fn variant_key(primary: &CacheKey, names: &[String], request: &HeaderMap) -> CacheKey {
    let mut variant = String::new();
    for name in names {
        variant.push_str(name);
        variant.push('=');
        // Language ranges are case-insensitive (RFC 4647 §2), as is a weight's `q`.
        let fold_case = name == "accept-language";
        let members: Vec<String> = request
            .get_all(name.as_str())
            .iter()
            .flat_map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split(',')
                    .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
            })
            .filter(|m| !m.is_empty())
            .map(|m| if fold_case { m.to_ascii_lowercase() } else { m })
            .collect();
        variant.push_str(&members.join(","));
        variant.push('\u{1f}');
    }
    primary.variant(&variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_alone_may_pass_the_limit_and_others_may_not() {
        let memory = Arc::new(FillMemory::new(100));
        let mut first = memory.hold();
        assert!(first.take(60));
        assert!(first.take(200), "alone, a fill takes what it needs");
        let mut second = memory.hold();
        assert!(
            !second.take(1),
            "over the limit while another fill holds some"
        );
        assert_eq!(memory.held(), 260);
        drop(first);
        assert_eq!(memory.held(), 0, "given back when the fill ends");
        assert_eq!(second.room(), u64::MAX, "alone, no bound");
        assert!(second.take(80));
        let mut third = memory.hold();
        assert_eq!(third.room(), 20, "what is left beside another");
        assert!(third.take(20), "within the limit beside another");
        assert_eq!(third.room(), 0);
        assert!(!third.take(1));
        drop((second, third));
        assert_eq!(memory.held(), 0);
    }
}
