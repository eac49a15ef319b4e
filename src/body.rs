//! The body of every response edge sends to clients.
//!
//! A memory hit is one `Bytes` handed to hyper without a box or an allocation: as one
//! frame when it is at most [`TURN`] bytes, otherwise in frames of [`TURN`] bytes with
//! a yield to the runtime between them (see [`TURN`]).
//! Everything else (disk streams, origin bodies on a pass or a miss, the admin API's
//! answers) is an [`axum::body::Body`], which boxes what it wraps.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Most bytes one response hands to hyper before it lets the other connections on its
/// thread go first.
///
/// hyper writes a frame until the socket refuses more, and a socket to a fast client
/// takes megabytes at once; a 5 MiB body sent as one frame holds the thread until it is
/// all in the kernel, so whichever response starts first finishes first and the others
/// queue behind it. Measured with 64 connections fetching a 5 MiB object on one core
/// (`benches/compare`), that put edge's p99 at 4 to 8 times its median while nginx's,
/// which sends at most `sendfile_max_chunk` per turn, stayed near twice its median. In
/// turns of 128 KiB every response moves a little each round. A yield with nothing else
/// to run returns at once, so a lone download loses nothing.
pub const TURN: usize = 128 * 1024;

/// A response body: whole bytes, or any other body.
#[derive(Debug)]
pub enum ResponseBody {
    /// Bytes in memory, sent in turns of at most [`TURN`] bytes.
    Whole(Turns),
    /// Any other body, boxed.
    Boxed(Body),
}

impl ResponseBody {
    /// `bytes` as the whole body.
    pub fn whole(bytes: Bytes) -> Self {
        ResponseBody::Whole(Turns {
            rest: bytes,
            yield_first: false,
        })
    }

    /// No body.
    pub fn empty() -> Self {
        ResponseBody::whole(Bytes::new())
    }
}

impl From<Body> for ResponseBody {
    fn from(body: Body) -> Self {
        ResponseBody::Boxed(body)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.get_mut() {
            ResponseBody::Whole(turns) => turns.poll_frame(cx),
            ResponseBody::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Whole(turns) => turns.rest.is_empty(),
            ResponseBody::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Whole(turns) => SizeHint::with_exact(turns.rest.len() as u64),
            ResponseBody::Boxed(body) => body.size_hint(),
        }
    }
}

/// Bytes handed out [`TURN`] at a time, with a yield to the runtime between turns.
#[derive(Debug)]
pub struct Turns {
    /// What is still to send.
    rest: Bytes,
    /// Whether the next poll yields before the next frame.
    yield_first: bool,
}

impl Turns {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        if self.yield_first {
            // Woken at once: the task goes to the back of its thread's run queue, and
            // hyper flushes the frame before it.
            self.yield_first = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let frame = if self.rest.len() > TURN {
            self.yield_first = true;
            self.rest.split_to(TURN)
        } else {
            std::mem::take(&mut self.rest)
        };
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }
}

/// A body and a guard that must live exactly as long as it (a request counted as
/// open, a fill's share of memory): hyper drops both once the body has been sent.
pub struct Guarded<B, G> {
    body: B,
    _guard: G,
}

impl<B, G> Guarded<B, G> {
    /// `body`, keeping `guard` until it is dropped.
    pub fn new(body: B, guard: G) -> Self {
        Guarded {
            body,
            _guard: guard,
        }
    }
}

impl<B, G> http_body::Body for Guarded<B, G>
where
    B: http_body::Body + Unpin,
    G: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use http_body_util::BodyExt;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn whole_bytes_are_one_frame_of_known_length() {
        let mut body = ResponseBody::whole(Bytes::from_static(b"hello"));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        assert!(!http_body::Body::is_end_stream(&body));
        let frame = body.frame().await.expect("a frame").expect("no error");
        assert_eq!(frame.into_data().expect("data"), "hello");
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn empty_bytes_are_no_frame_at_all() {
        let body = ResponseBody::whole(Bytes::new());
        assert!(http_body::Body::is_end_stream(&body));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(0));
        assert!(
            body.collect()
                .await
                .expect("no error")
                .to_bytes()
                .is_empty()
        );
    }

    #[test]
    fn a_large_body_goes_in_turns_with_a_yield_between_them() {
        let bytes: Bytes = (0..(2 * TURN + 10)).map(|i| (i % 251) as u8).collect();
        let mut body = ResponseBody::whole(bytes.clone());
        let wakes = Arc::new(Wakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut poll =
            |body: &mut ResponseBody| http_body::Body::poll_frame(Pin::new(body), &mut cx);
        let mut sent = Vec::new();
        let mut pendings = 0;
        loop {
            match poll(&mut body) {
                Poll::Ready(None) => break,
                Poll::Ready(Some(frame)) => {
                    let data = frame.expect("no error").into_data().expect("data");
                    assert!(data.len() <= TURN, "a frame of {} bytes", data.len());
                    sent.extend_from_slice(&data);
                    assert_eq!(
                        http_body::Body::size_hint(&body).exact(),
                        Some((bytes.len() - sent.len()) as u64)
                    );
                }
                Poll::Pending => pendings += 1,
            }
        }
        assert_eq!(sent, bytes, "every byte, in order");
        assert_eq!(
            pendings, 2,
            "one yield between each two of the three frames"
        );
        assert!(http_body::Body::is_end_stream(&body));
    }

    #[tokio::test]
    async fn a_body_of_exactly_one_turn_is_one_frame() {
        let mut body = ResponseBody::whole(Bytes::from(vec![7u8; TURN]));
        let frame = body.frame().await.expect("a frame").expect("no error");
        assert_eq!(frame.into_data().expect("data").len(), TURN);
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_boxed_body_passes_through() {
        let body = ResponseBody::from(Body::from("boxed"));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        let bytes = body.collect().await.expect("no error").to_bytes();
        assert_eq!(bytes, "boxed");
    }
}
