//! Accepting client connections, plain or TLS: HTTP/1.1 and HTTP/2 (prior knowledge,
//! or ALPN over TLS) served by hyper, with the configured limits — request-head size and
//! field count (431), time to send a head (and to finish a TLS handshake), idle
//! connections, and a cap on open connections — and graceful shutdown that lets
//! in-flight requests finish.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::Limits;
use crate::tls::Scheme;

/// Serves `router` on `listener` until `stop` turns true, then waits up to `grace`
/// for open connections to finish their in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    accept(listener, Transport::Plain, router, limits, stop, grace).await
}

/// Serves `router` over TLS on `listener`, like [`serve`]: the same limits, idle
/// timeout, connection cap and draining. Each connection first completes its handshake
/// (within `header_read_timeout`), in which `acceptor` picks the certificate and, by
/// ALPN, HTTP/2 or HTTP/1.1. Requests carry [`Scheme::Https`] in their extensions.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    accept(
        listener,
        Transport::Tls(acceptor),
        router,
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

async fn accept(
    listener: TcpListener,
    transport: Transport,
    router: Router,
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
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(limits.idle_timeout));
    let builder = Arc::new(builder);
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
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            peer,
            // Taken now, so that draining waits for a connection still in its handshake.
            watcher: graceful.watcher(),
        };
        let transport = transport.clone();
        let (idle_timeout, handshake_timeout) = (limits.idle_timeout, limits.header_read_timeout);
        tokio::spawn(async move {
            let idle = IdleTimeout::new(stream, idle_timeout);
            let busy = idle.busy.clone();
            match transport {
                Transport::Plain => connection.serve(idle, busy, Scheme::Http).await,
                Transport::Tls(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(idle)).await {
                        Ok(Ok(tls)) => connection.serve(tls, busy, Scheme::Https).await,
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
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    peer: SocketAddr,
    watcher: Watcher,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 on `stream` until the client or a graceful shutdown
    /// closes it. `busy` is the idle timer's count of requests being prepared.
    async fn serve<S>(self, stream: S, busy: Arc<AtomicUsize>, scheme: Scheme)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            router,
            peer,
            watcher,
        } = self;
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(scheme);
            let busy = Busy::enter(busy.clone());
            let response = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        if let Err(error) = watcher.watch(connection.into_owned()).await {
            tracing::debug!(%peer, error = %crate::error::chain(&*error), "connection ended with an error");
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Marks a connection busy while edge prepares a response (waiting for an origin is
/// not the client idling).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(count: Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::AcqRel);
        Busy(count)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that fails with `TimedOut` once no byte has moved in either direction for
/// its timeout while no request is being prepared, so that an idle or slow-dripping
/// client cannot hold a connection.
pub struct IdleTimeout<S> {
    inner: S,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    /// When a byte last moved. The timer is not reset on every read and write (a
    /// timer-wheel operation each): when it fires early it is re-armed from here.
    last_activity: Instant,
    busy: Arc<AtomicUsize>,
}

impl<S> IdleTimeout<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            last_activity: Instant::now(),
            busy: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.busy.load(Ordering::Acquire) > 0 {
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

impl<S> IdleTimeout<S> {
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

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
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

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
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
