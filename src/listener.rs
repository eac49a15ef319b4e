//! Accepting client connections, plain or TLS: HTTP/1.1 and HTTP/2 (prior knowledge,
//! or ALPN over TLS) served by hyper, with the configured limits — request-head size and
//! field count (431), time to send an HTTP/1.1 head (408) and to finish a TLS handshake,
//! idle connections, and a cap on open connections — and graceful shutdown that lets
//! in-flight requests finish.
//!
//! A listener serves a [`Handler`]: the client path calls the proxy directly (no router
//! on the hit path); the admin listener serves an axum [`Router`]. On HTTP/1.1
//! connections a handler may answer memory hits itself, before hyper (the direct path,
//! [`DirectRequest`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd as _, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, Version, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::body::ResponseBody;
use crate::config::Limits;
use crate::tls::Scheme;

/// `impl AsyncWrite for $wrapper<S>` that passes every call to its `inner` stream, for
/// wrappers that only change how a connection is read.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

mod direct;
pub use direct::DirectRequest;

/// What a listener serves: every request, with the client's address and how it came.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Answers `request`. Errors are answered too: the future always has a response.
    fn call(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        scheme: Scheme,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + use<Self>;

    /// Whether [`Handler::answer_direct`] may answer: HTTP/1.1 connections, plain or
    /// TLS, then start on the direct path (see [`DirectRequest`]).
    fn direct(&self) -> bool {
        false
    }

    /// Answers `request` at once, without hyper, when nothing but the memory tier is
    /// needed (its bodies, or the blob files it holds open): writes the response head
    /// into `head` and returns the body to send after it (the caller sends nothing
    /// else; a [`BodyFile::Blob`] only on plain TCP). `None` leaves the request to [`Handler::call`]
    /// (through hyper), after which the connection's next requests come here again.
    fn answer_direct(
        &self,
        _request: &DirectRequest<'_>,
        _scheme: Scheme,
        _head: &mut Vec<u8>,
    ) -> Option<DirectBody> {
        None
    }
}

/// The body of a response answered on the direct path.
#[derive(Default)]
pub struct DirectBody {
    /// Its bytes (empty when they are only in `file`).
    pub bytes: Bytes,
    /// Its bytes in a file, sent with `sendfile` where the connection allows it (plain
    /// TCP).
    pub file: Option<BodyFile>,
}

/// A body's bytes in a file, whole from its start.
pub enum BodyFile {
    /// A memory body's sealed copy ([`crate::cache::sealed`]); the bytes are in memory
    /// too.
    Sealed(Arc<crate::cache::sealed::SealedBody>),
    /// A blob of the disk tier, of this many bytes: the only place they are, so it is
    /// answered only on a connection that sends files.
    Blob(Arc<std::fs::File>, u64),
}

impl BodyFile {
    /// The file, to send from.
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            BodyFile::Sealed(sealed) => sealed.fd(),
            BodyFile::Blob(file, _) => file.as_fd(),
        }
    }

    /// How many bytes to send.
    pub fn len(&self) -> u64 {
        match self {
            BodyFile::Sealed(sealed) => sealed.len(),
            BodyFile::Blob(_, len) => *len,
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The admin listener's routes. The scheme is in the request's extensions.
impl Handler for Router {
    fn call(
        &self,
        mut request: Request<Incoming>,
        _peer: SocketAddr,
        scheme: Scheme,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + use<> {
        request.extensions_mut().insert(scheme);
        let response = self.clone().oneshot(request.map(Body::new));
        async move {
            match response.await {
                Ok(response) => response.map(ResponseBody::from),
                Err(never) => match never {},
            }
        }
    }
}

/// Serves `handler` on `listener` until `stop` turns true, then waits up to `grace`
/// for open connections to finish their in-flight requests.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: H,
    limits: Limits,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    accept(listener, Transport::Plain, handler, limits, stop, grace).await
}

/// Serves `handler` over TLS on `listener`, like [`serve`]: the same limits, timeouts,
/// connection cap and draining. Each connection first completes its handshake (within
/// `header_read_timeout`), in which `acceptor` picks the certificate and, by ALPN,
/// HTTP/2 or HTTP/1.1.
pub async fn serve_tls<H: Handler>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: H,
    limits: Limits,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    accept(
        listener,
        Transport::Tls(acceptor),
        handler,
        limits,
        stop,
        grace,
    )
    .await
}

/// What is spoken on an accepted connection before HTTP.
#[derive(Clone)]
enum Transport {
    /// HTTP straight away.
    Plain,
    /// A TLS handshake first.
    Tls(TlsAcceptor),
}

async fn accept<H: Handler>(
    listener: TcpListener,
    transport: Transport,
    handler: H,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        // A client that sends its request and then shuts down its sending side
        // (`shutdown(SHUT_WR)`, `nc -N`) still gets the answer, as on the direct path;
        // hyper would otherwise drop the request at the EOF, after a pass (a POST) had
        // already reached the origin.
        .half_close(true)
        // HeadTimeout below answers 408 instead; hyper would close without a word.
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(limits.idle_timeout));
    let builder = Arc::new(builder);
    // The same HTTP/1.1 settings, for a request the direct path lends to hyper.
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .half_close(true)
        .header_read_timeout(None);
    let http1 = Arc::new(http1);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));

    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closes"),
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let accepted_at = Instant::now();
        let connection = Connection {
            builder: builder.clone(),
            http1: http1.clone(),
            handler: handler.clone(),
            peer,
            // Taken now, so that draining waits for a connection still in its handshake.
            watcher: graceful.watcher(),
            activity: Arc::new(Activity::default()),
        };
        let transport = transport.clone();
        let (idle_timeout, head_timeout) = (limits.idle_timeout, limits.header_read_timeout);
        let head_limits = direct::HeadLimits {
            max_header_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let idle = IdleTimeout::new(stream, idle_timeout, connection.activity.clone());
            match transport {
                Transport::Plain => {
                    let head = HeadTimeout::new(idle, head_timeout, accepted_at, &connection);
                    direct::serve(connection, head, head_limits, stop, Scheme::Http).await
                }
                Transport::Tls(acceptor) => {
                    match tokio::time::timeout(head_timeout, acceptor.accept(idle)).await {
                        Ok(Ok(tls)) => {
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            let mut head =
                                HeadTimeout::new(tls, head_timeout, accepted_at, &connection);
                            head.http2 = h2;
                            if h2 {
                                connection.serve(head, Scheme::Https).await
                            } else {
                                let https = Scheme::Https;
                                direct::serve(connection, head, head_limits, stop, https).await
                            }
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "shutdown grace elapsed with connections still open");
    }
    Ok(())
}

/// One accepted connection, ready to speak HTTP once its transport is up.
struct Connection<H> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// For one request at a time, lent by the direct path ([`Connection::lend`]).
    http1: Arc<http1::Builder>,
    handler: H,
    peer: SocketAddr,
    watcher: Watcher,
    activity: Arc<Activity>,
}

impl<H: Handler> Connection<H> {
    /// Serves HTTP/1.1 or HTTP/2 on `stream` until the client or a graceful shutdown
    /// closes it.
    async fn serve<S>(self, stream: S, scheme: Scheme)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            handler,
            peer,
            watcher,
            activity,
            ..
        } = self;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            answer(&handler, request, peer, scheme, &activity)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        if let Err(error) = watcher.watch(connection.into_owned()).await {
            tracing::debug!(%peer, error = %crate::error::chain(&*error), "connection ended with an error");
        }
    }

    /// Lends `stream` to hyper for one request, `head` (a whole request head, framing
    /// no body, that the direct path read and did not answer), and takes it back once
    /// the response is sent in full: the connection's later hits are the direct path's
    /// again. Returns the stream and what the client sent meanwhile (its next requests),
    /// or `None` when the connection is to end: hyper closed it (an error, or an answer
    /// with `Connection: close`). A graceful shutdown (`stop`) that begins meanwhile
    /// lets hyper finish the answer as it finishes its own, and the caller then ends
    /// the connection.
    async fn lend<S>(
        &self,
        stream: S,
        head: Bytes,
        scheme: Scheme,
        stop: &watch::Receiver<bool>,
    ) -> Option<Returned<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let lent = Arc::new(Lent::default());
        let io = Loan {
            head,
            ahead: BytesMut::new(),
            closed: false,
            inner: stream,
            lent: lent.clone(),
        };
        let (handler, peer, activity) = (&self.handler, self.peer, &self.activity);
        let received = activity.received.load(Ordering::Acquire);
        let service = hyper::service::service_fn(|request: Request<Incoming>| {
            let lent = lent.clone();
            let mut answered = Box::pin(answer(handler, request, peer, scheme, activity));
            let mut first = true;
            std::future::poll_fn(move |cx| {
                let polled = answered.as_mut().poll(cx);
                let at_once = std::mem::take(&mut first);
                if let Poll::Ready(Ok(response)) = &polled {
                    // A hit answered on the first poll: from memory (an error
                    // answered at once, such as an open circuit breaker's, is not).
                    let hit = response
                        .headers()
                        .get("cache-status")
                        .is_some_and(|v| v.as_bytes().starts_with(b"edge; hit"));
                    lent.at_once.store(at_once && hit, Ordering::Release);
                    lent.closing
                        .store(has_close(response.headers()), Ordering::Release);
                }
                polled
            })
        });
        let mut connection = self.http1.serve_connection(TokioIo::new(io), service);
        let mut ended = false;
        let served = std::future::poll_fn(|cx| {
            loop {
                let polled = connection.poll_without_shutdown(cx);
                // Sent in full: the request was received, its response body is done
                // with, and hyper's last write was flushed (hyper flushes the stream
                // only with nothing of its own left to write).
                let done = activity.received.load(Ordering::Acquire) > received
                    && activity.open.load(Ordering::Acquire) == 0
                    && lent.flushed.load(Ordering::Acquire);
                // Idle once done, so hyper ends at once, without a `Connection: close`;
                // on a shutdown before that, it closes after the answer, as its own
                // connections do.
                if polled.is_pending() && !ended && (done || direct::stopping(stop)) {
                    ended = true;
                    Pin::new(&mut connection).graceful_shutdown();
                    continue;
                }
                return polled;
            }
        })
        .await;
        if let Err(error) = served {
            tracing::debug!(peer = %self.peer, error = %crate::error::chain(&error), "connection ended with an error");
            return None;
        }
        let parts = connection.into_parts();
        let mut loan = parts.io.into_inner();
        // Ended by hyper itself (not by the shutdown above), the connection ends, as
        // hyper ends its own: with a shutdown (TLS sends its close_notify).
        if !ended || lent.closing.load(Ordering::Acquire) {
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut loan.inner).await;
            return None;
        }
        // hyper was given exactly one request head, and parsed it whole: anything left
        // in its buffer would belong before what the caller holds.
        if !parts.read_buf.is_empty() {
            return None;
        }
        Some(Returned {
            stream: loan.inner,
            read: loan.ahead,
            at_once: lent.at_once.load(Ordering::Acquire),
        })
    }
}

/// A stream back from [`Connection::lend`].
struct Returned<S> {
    stream: S,
    /// What the client sent while hyper answered.
    read: BytesMut,
    /// Whether the answer was a hit the handler gave on its first poll (from memory,
    /// not an origin or the disk): then lending cost a noticeable share of it.
    at_once: bool,
}

/// Whether `headers` close the connection after this response (RFC 9112 §9.6).
fn has_close(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|o| o.trim().eq_ignore_ascii_case("close")))
    })
}

/// Answers one request for hyper: counts it in the connection's [`Activity`] and
/// prepares its body for the wire.
fn answer<H: Handler>(
    handler: &H,
    request: Request<Incoming>,
    peer: SocketAddr,
    scheme: Scheme,
    activity: &Arc<Activity>,
) -> impl Future<Output = Result<Response<Tracked>, std::convert::Infallible>> + Send + use<H> {
    let preparing = Preparing::enter(activity);
    let open = Open::enter(activity);
    let head = request.method() == Method::HEAD;
    let http10 = request.version() <= Version::HTTP_10;
    let response = handler.call(request, peer, scheme);
    async move {
        let response = response.await;
        drop(preparing);
        // A HEAD answer keeps GET's fields and drops the body: hyper leaves it out
        // over HTTP/1.1, but over HTTP/2 it would send it as DATA, which a client
        // takes for a protocol error.
        let response = match head {
            true => response.map(|_| ResponseBody::empty()),
            false => response,
        };
        // HTTP/1.0 has no chunked coding: a body of unknown length ends with the
        // connection (RFC 9112 §6.3), as hyper sends it.
        let close_delimited = http10
            && !response.headers().contains_key(header::CONTENT_LENGTH)
            && http_body::Body::size_hint(response.body())
                .exact()
                .is_none();
        Ok(response.map(|body| Tracked::new(body, open, close_delimited)))
    }
}

/// What a [`Loan`] tells [`Connection::lend`].
#[derive(Default)]
struct Lent {
    /// Whether hyper's last use of the stream was a flush that succeeded (hyper
    /// flushes only once its own buffer is written out).
    flushed: AtomicBool,
    /// Whether the answer closes the connection.
    closing: AtomicBool,
    /// Whether the answer was a hit given on the handler's first poll.
    at_once: AtomicBool,
}

/// The stream as hyper sees it for one lent request: first the request's head, then
/// nothing; what the client sends meanwhile is kept for the direct path, which
/// answers it (a client that sends requests and then closes its side still gets
/// every answer, as from hyper alone), then sees the close itself.
struct Loan<S> {
    head: Bytes,
    ahead: BytesMut,
    closed: bool,
    inner: S,
    lent: Arc<Lent>,
}

/// Most bytes a [`Loan`] keeps from the client while hyper answers.
const LOAN_AHEAD: usize = 64 * 1024;

impl<S: AsyncRead + Unpin> AsyncRead for Loan<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.head.is_empty() {
            let n = this.head.len().min(buf.remaining());
            buf.put_slice(&this.head.split_to(n));
            return Poll::Ready(Ok(()));
        }
        if this.closed {
            return Poll::Pending;
        }
        if this.ahead.len() >= LOAN_AHEAD {
            // Enough kept; the client waits (hyper's writes wake this task).
            return Poll::Pending;
        }
        this.ahead.reserve(4096);
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.ahead) {
            // Not passed on: hyper would take it for a request cut short and drop the
            // answer. The direct path reads the close again after it.
            Poll::Ready(Ok(0)) => {
                this.closed = true;
                Poll::Pending
            }
            // Kept for later, not hyper's: it is still waiting for more.
            Poll::Ready(Ok(_)) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Loan<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.lent.flushed.store(false, Ordering::Release);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.lent.flushed.store(false, Ordering::Release);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.lent.flushed.store(true, Ordering::Release);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What a connection's requests are doing, read by its timers.
#[derive(Default)]
struct Activity {
    /// Requests whose response edge is still preparing, or whose body is waiting for
    /// its next bytes (from an origin, a fill): waiting for an origin is not the client
    /// idling.
    preparing: AtomicUsize,
    /// Requests whose response has not been sent in full.
    open: AtomicUsize,
    /// Requests received so far.
    received: AtomicU64,
    /// Whether a response body delimited by the connection's close failed part-way, so
    /// that the connection must end with a reset: a clean close would make the part
    /// sent look whole.
    cut_off: AtomicBool,
}

/// Counts a request in [`Activity::preparing`] while it lives.
struct Preparing(Arc<Activity>);

impl Preparing {
    fn enter(activity: &Arc<Activity>) -> Preparing {
        activity.preparing.fetch_add(1, Ordering::AcqRel);
        Preparing(activity.clone())
    }
}

impl Drop for Preparing {
    fn drop(&mut self) {
        self.0.preparing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a request in [`Activity::open`] (and [`Activity::received`]) until its
/// response body has been sent or dropped.
struct Open(Arc<Activity>);

impl Open {
    fn enter(activity: &Arc<Activity>) -> Open {
        activity.received.fetch_add(1, Ordering::AcqRel);
        activity.open.fetch_add(1, Ordering::AcqRel);
        Open(activity.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as open until hyper drops it, once
/// it has been sent; counts it as preparing while it waits for its next bytes; and
/// marks the connection [`Activity::cut_off`] when it fails part-way and its end is
/// the connection's close. (Otherwise the client can tell already: an HTTP/1.1 body
/// lacks its last chunk or part of its Content-Length, and HTTP/2 resets the stream.)
struct Tracked {
    body: ResponseBody,
    open: Open,
    close_delimited: bool,
    /// Whether this body is counted in [`Activity::preparing`].
    waiting: bool,
}

impl Tracked {
    fn new(body: ResponseBody, open: Open, close_delimited: bool) -> Self {
        Tracked {
            body,
            open,
            close_delimited,
            waiting: false,
        }
    }

    /// Counts the body as preparing (hyper polls it only when the client has taken
    /// what it was given, so a pending body waits for its source) or not.
    fn wait(&mut self, waiting: bool) {
        if waiting != self.waiting {
            self.waiting = waiting;
            let preparing = &self.open.0.preparing;
            match waiting {
                true => preparing.fetch_add(1, Ordering::AcqRel),
                false => preparing.fetch_sub(1, Ordering::AcqRel),
            };
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.wait(false);
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        this.wait(frame.is_pending());
        if this.close_delimited && matches!(frame, Poll::Ready(Some(Err(_)))) {
            this.open.0.cut_off.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What an HTTP/1.1 client is sent when it does not finish a request head in time.
fn request_timeout() -> Vec<u8> {
    const BODY: &str = "request head not sent in time\n";
    format!(
        "HTTP/1.1 408 Request Timeout\r\ndate: {}\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        crate::http::date::format(std::time::SystemTime::now()),
        BODY.len()
    )
    .into_bytes()
}

/// Bounds the time an HTTP/1.1 client takes to send a request head, from its first
/// byte (or from the connection's start) to its end; when it runs out, the client is
/// answered `408 Request Timeout` (if it sent part of a head) and the connection
/// closes. Sits above TLS, so the answer is written as the client reads it. HTTP/2
/// connections are left to the idle timeout and hyper's keep-alive pings.
struct HeadTimeout<S> {
    inner: S,
    timeout: Duration,
    activity: Arc<Activity>,
    /// When the head being waited for began: the first byte read while no request was
    /// open, or the connection's start; `None` between requests.
    head_since: Option<Instant>,
    /// Whether any byte of that head has arrived.
    head_bytes: bool,
    /// [`Activity::received`] when that head began: a change means it arrived.
    received: u64,
    /// Checked lazily, like the idle timer: fires at or before the deadline.
    sleep: Pin<Box<Sleep>>,
    /// HTTP/2 (by ALPN or the connection preface): no 408s.
    http2: bool,
    /// Whether the connection's first bytes have been checked for the HTTP/2 preface.
    sniffed: bool,
}

impl<S> HeadTimeout<S> {
    fn new<H>(inner: S, timeout: Duration, since: Instant, connection: &Connection<H>) -> Self {
        HeadTimeout {
            inner,
            timeout,
            activity: connection.activity.clone(),
            head_since: Some(since),
            head_bytes: false,
            received: 0,
            sleep: Box::pin(tokio::time::sleep_until(since + timeout)),
            http2: false,
            sniffed: false,
        }
    }

    /// Forgets the head being timed once hyper has received it as a request.
    fn settle(&mut self) {
        let received = self.activity.received.load(Ordering::Acquire);
        if received != self.received {
            self.received = received;
            self.head_since = None;
            self.head_bytes = false;
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        if !self.sniffed {
            self.sniffed = true;
            const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
            let n = bytes.len().min(PREFACE.len());
            self.http2 |= bytes[..n] == PREFACE[..n];
        }
        self.settle();
        if self.activity.open.load(Ordering::Acquire) == 0 {
            self.head_since.get_or_insert_with(Instant::now);
            self.head_bytes = true;
        }
    }

    /// Whether the head being waited for is overdue (registering the timer otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.settle();
        let waiting = !self.http2 && self.activity.open.load(Ordering::Acquire) == 0;
        while self.sleep.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let deadline = match self.head_since {
                Some(since) if waiting => since + self.timeout,
                _ => now + self.timeout,
            };
            if deadline <= now {
                return true;
            }
            self.sleep.as_mut().reset(deadline);
        }
        false
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.on_bytes(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending if self.expired(cx) => {
                if self.head_bytes {
                    // Best effort: one write of a few bytes into an idle connection.
                    let this = &mut *self;
                    if let Poll::Ready(Ok(_)) =
                        Pin::new(&mut this.inner).poll_write(cx, &request_timeout())
                    {
                        let _ = Pin::new(&mut this.inner).poll_flush(cx);
                    }
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not received in time",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

// Writes pass straight through: the timer is on reads.
write_through!(HeadTimeout);

impl<S: SendFile + Unpin> SendFile for HeadTimeout<S> {
    fn sends_files(&self) -> bool {
        self.inner.sends_files()
    }

    fn poll_send_more(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_send_more(cx, buf)
    }

    fn poll_send_file(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        file: BorrowedFd<'_>,
        offset: &mut u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_send_file(cx, file, offset, len)
    }
}

/// A client stream that can send bytes of a file itself (`sendfile`), as plain TCP
/// can: the direct path sends large bodies from their sealed copies this way
/// ([`crate::cache::sealed`]).
pub(crate) trait SendFile {
    /// Whether it can; the other methods are called only if it can.
    fn sends_files(&self) -> bool {
        false
    }

    /// Writes a prefix of `buf`, telling the kernel more follows at once (`MSG_MORE`),
    /// so that a head and the start of its body leave together.
    fn poll_send_more(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }

    /// Sends up to `len` bytes of `file` from `offset`, which advances by what was sent.
    fn poll_send_file(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _file: BorrowedFd<'_>,
        _offset: &mut u64,
        _len: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

/// TLS encrypts what it sends: no file goes to the socket as it is.
impl<S> SendFile for tokio_rustls::server::TlsStream<S> {}

impl SendFile for IdleTimeout {
    fn sends_files(&self) -> bool {
        true
    }

    fn poll_send_more(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let socket = &self.inner;
        let sent = poll_socket(socket, cx, || {
            rustix::net::send(socket, buf, rustix::net::SendFlags::MORE)
        });
        self.after_write(cx, sent)
    }

    fn poll_send_file(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        file: BorrowedFd<'_>,
        offset: &mut u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let socket = &self.inner;
        let sent = poll_socket(socket, cx, || {
            rustix::fs::sendfile(socket, file, Some(offset), len)
        });
        self.after_write(cx, sent)
    }
}

/// Runs `send` once `socket` is writable, until it does not fail with `EAGAIN`.
fn poll_socket(
    socket: &TcpStream,
    cx: &mut Context<'_>,
    mut send: impl FnMut() -> rustix::io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        if let Err(error) = std::task::ready!(socket.poll_write_ready(cx)) {
            return Poll::Ready(Err(error));
        }
        match socket.try_io(tokio::io::Interest::WRITABLE, || {
            send().map_err(io::Error::from)
        }) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            result => return Poll::Ready(result),
        }
    }
}

/// A client's socket that fails with `TimedOut` once no byte has moved in either
/// direction for its timeout while no request is being prepared, so that an idle or
/// slow-dripping client cannot hold a connection. Closed with a reset when a response
/// delimited by the close was cut off ([`Activity::cut_off`]).
struct IdleTimeout {
    inner: TcpStream,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    /// When a byte last moved. The timer is not reset on every read and write (a
    /// timer-wheel operation each): when it fires early it is re-armed from here.
    last_activity: Instant,
    activity: Arc<Activity>,
}

impl IdleTimeout {
    /// Wraps `inner`, idle unless `activity` has a request being prepared.
    fn new(inner: TcpStream, timeout: Duration, activity: Arc<Activity>) -> Self {
        IdleTimeout {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            last_activity: Instant::now(),
            activity,
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.activity.preparing.load(Ordering::Acquire) > 0 {
            self.touch();
        }
        while self.sleep.as_mut().poll(cx).is_ready() {
            let deadline = self.last_activity + self.timeout;
            if deadline <= Instant::now() {
                return true;
            }
            // Activity since the timer was armed: wait for the rest of the window.
            self.sleep.as_mut().reset(deadline);
        }
        false
    }
}

impl IdleTimeout {
    /// Counts a write as activity, or fails a stalled one once the connection is idle.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "client connection idle for too long",
    )
}

impl Drop for IdleTimeout {
    fn drop(&mut self) {
        // RFC 9112 §8: a client must be able to tell a response cut short from a whole
        // one. A body delimited by the close ends cleanly either way; only a reset tells.
        // Elsewhere the usual close keeps what the kernel still has to send.
        if self.activity.cut_off.load(Ordering::Acquire) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
