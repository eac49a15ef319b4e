//! The body of every response edge sends to clients.
//!
//! A memory hit is one `Bytes` handed to hyper as one frame (`http_body_util::Full`):
//! no box, no allocation.
//! Everything else (disk streams, origin bodies on a pass or a miss, the admin API's
//! answers) is an [`axum::body::Body`], which boxes what it wraps.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;

/// A response body: whole bytes, or any other body.
#[derive(Debug)]
pub enum ResponseBody {
    /// Bytes sent as one frame (none when empty).
    Whole(Full<Bytes>),
    /// Any other body, boxed.
    Boxed(Body),
}

impl ResponseBody {
    /// `bytes` as the whole body.
    pub fn whole(bytes: Bytes) -> Self {
        ResponseBody::Whole(Full::new(bytes))
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
            ResponseBody::Whole(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never| match never {}))),
            ResponseBody::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Whole(full) => full.is_end_stream(),
            ResponseBody::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Whole(full) => full.size_hint(),
            ResponseBody::Boxed(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

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

    #[tokio::test]
    async fn a_boxed_body_passes_through() {
        let body = ResponseBody::from(Body::from("boxed"));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        let bytes = body.collect().await.expect("no error").to_bytes();
        assert_eq!(bytes, "boxed");
    }
}
