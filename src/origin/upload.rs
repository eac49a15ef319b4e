//! A client's request body on its way to the origin (a pass of `POST`, `PUT`, …).
//!
//! The body is streamed, not buffered, so the origin's wait for it and the client's
//! sending of it overlap. What goes wrong on the client's side must not look like the
//! origin's failure: a chunked body the client frames badly is its `400`, a body past
//! `server.max_request_body` its `413`, and a client that stops sending for
//! `server.idle_timeout` its `408` — none of them an origin error, and none counted by
//! the origin's circuit breaker. [`UploadBody`] wraps the body and records which of
//! these happened in an [`Upload`] the request to the origin carries, which
//! [`super::Origin::send`] reads to let the origin's first-byte timeout wait while the
//! client is still sending, and the caller reads to answer for the client's fault.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// How a client's request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// Malformed (a bad chunk size line, a connection closed mid-body, a reset stream).
    Malformed,
    /// More than `server.max_request_body` bytes.
    TooLarge,
    /// No byte arrived for `server.idle_timeout` while the body was unfinished.
    Stalled,
}

/// What a request body on its way to the origin has done so far; shared between the
/// body hyper's client polls and the request's own task.
#[derive(Clone, Debug)]
pub struct Upload(Arc<State>);

#[derive(Debug)]
struct State {
    /// The first fault; set once.
    fault: OnceLock<ClientFault>,
    /// Whether the body is waiting for the client's next bytes (hyper asked for them
    /// and the client has not sent them).
    waiting: AtomicBool,
    /// Frames received from the client so far: progress, whatever their size.
    frames: AtomicU64,
}

impl Default for Upload {
    fn default() -> Self {
        Upload(Arc::new(State {
            fault: OnceLock::new(),
            waiting: AtomicBool::new(false),
            frames: AtomicU64::new(0),
        }))
    }
}

impl Upload {
    /// The client's fault, if its body failed.
    pub fn fault(&self) -> Option<ClientFault> {
        self.0.fault.get().copied()
    }

    /// Whether the body is, right now, waiting for the client to send more.
    pub fn waiting_on_client(&self) -> bool {
        self.0.waiting.load(Ordering::Relaxed)
    }

    /// Frames received from the client so far.
    pub fn frames(&self) -> u64 {
        self.0.frames.load(Ordering::Relaxed)
    }

    fn fail(&self, fault: ClientFault) {
        self.0.waiting.store(false, Ordering::Relaxed);
        let _ = self.0.fault.set(fault);
    }

    /// `body`, counted against `max` bytes and timed out after `idle` without a byte,
    /// reporting to this upload.
    pub fn body<B>(&self, body: B, max: u64, idle: Duration) -> UploadBody<B> {
        UploadBody {
            body,
            upload: self.clone(),
            max,
            received: 0,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
            ended: false,
        }
    }
}

/// A client's request body that reports to its [`Upload`] (see the module docs).
pub struct UploadBody<B> {
    body: B,
    upload: Upload,
    max: u64,
    received: u64,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` runs: from the first wait after a frame until the next frame.
    armed: bool,
    /// An error was returned: the body is over.
    ended: bool,
}

impl<B> UploadBody<B> {
    fn end(
        &mut self,
        fault: ClientFault,
        error: BoxError,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.upload.fail(fault);
        self.ended = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl<B> http_body::Body for UploadBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending => {
                if !this.armed {
                    let deadline = Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    let idle = this.idle;
                    return this.end(
                        ClientFault::Stalled,
                        format!("the client sent no request body bytes for {idle:?}").into(),
                    );
                }
                this.upload.0.waiting.store(true, Ordering::Relaxed);
                Poll::Pending
            }
            Poll::Ready(None) => {
                this.upload.0.waiting.store(false, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => this.end(ClientFault::Malformed, error.into()),
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                this.upload.0.waiting.store(false, Ordering::Relaxed);
                this.upload.0.frames.fetch_add(1, Ordering::Relaxed);
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.max {
                        let max = this.max;
                        return this.end(
                            ClientFault::TooLarge,
                            format!("request body over {max} bytes").into(),
                        );
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            return SizeHint::with_exact(0);
        }
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;

    type Sent = Result<Frame<Bytes>, BoxError>;

    fn channel() -> (mpsc::Sender<Sent>, StreamBody<ReceiverStream<Sent>>) {
        let (tx, rx) = mpsc::channel(8);
        (tx, StreamBody::new(ReceiverStream::new(rx)))
    }

    #[tokio::test]
    async fn a_whole_body_passes_unchanged_and_counts_its_frames() {
        let (tx, inner) = channel();
        let upload = Upload::default();
        let body = upload.body(inner, 10, Duration::from_secs(5));
        tx.send(Ok(Frame::data(Bytes::from_static(b"hello"))))
            .await
            .unwrap();
        tx.send(Ok(Frame::data(Bytes::from_static(b"world"))))
            .await
            .unwrap();
        drop(tx);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"helloworld");
        assert_eq!(upload.frames(), 2);
        assert_eq!(upload.fault(), None);
        assert!(!upload.waiting_on_client());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_the_clients_fault() {
        let (tx, inner) = channel();
        let upload = Upload::default();
        let body = upload.body(inner, 4, Duration::from_secs(5));
        tx.send(Ok(Frame::data(Bytes::from_static(b"hello"))))
            .await
            .unwrap();
        assert!(body.collect().await.is_err());
        assert_eq!(upload.fault(), Some(ClientFault::TooLarge));
    }

    #[tokio::test]
    async fn a_broken_body_is_the_clients_fault() {
        let (tx, inner) = channel();
        let upload = Upload::default();
        let body = upload.body(inner, 100, Duration::from_secs(5));
        tx.send(Ok(Frame::data(Bytes::from_static(b"ok"))))
            .await
            .unwrap();
        tx.send(Err("invalid chunk size line".into()))
            .await
            .unwrap();
        assert!(body.collect().await.is_err());
        assert_eq!(upload.fault(), Some(ClientFault::Malformed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_sending_times_out_after_the_idle_time() {
        let (tx, inner) = channel();
        let upload = Upload::default();
        let mut body = upload.body(inner, 100, Duration::from_secs(60));
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let started = Instant::now();
        let mut next = std::pin::pin!(body.frame());
        // Waiting on the client, not yet timed out.
        assert!(
            futures_util::poll!(next.as_mut()).is_pending(),
            "no bytes yet"
        );
        assert!(upload.waiting_on_client());
        let ended = next.await.expect("a frame or an error");
        assert!(ended.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert_eq!(upload.fault(), Some(ClientFault::Stalled));
        assert!(!upload.waiting_on_client());
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn each_frame_restarts_the_idle_time() {
        let (tx, inner) = channel();
        let upload = Upload::default();
        let body = upload.body(inner, 100, Duration::from_secs(10));
        let sender = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .unwrap();
            }
        });
        let all = body
            .collect()
            .await
            .expect("a slow but steady body is whole");
        assert_eq!(all.to_bytes().len(), 5);
        sender.await.unwrap();
        assert_eq!(upload.fault(), None);
    }
}
