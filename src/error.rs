//! Errors by who failed — the client, the origin, or edge itself — and the one place
//! where each becomes a response.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Everything that can end a request early.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// No `[[site]]` names the requested host.
    #[error("no site serves host `{0}`")]
    UnknownHost(String),
    /// The request itself is unusable.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The origin could not be reached or answered badly.
    #[error("origin {origin} failed: {kind}")]
    Origin {
        /// Which origin (URL or `dir:` path).
        origin: String,
        /// What went wrong.
        kind: OriginFailure,
    },
    /// The request target is longer than `server.max_uri_length`.
    #[error("request target longer than {0} bytes")]
    UriTooLong(usize),
    /// The request body is larger than `server.max_request_body`.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(u64),
    /// A method edge does not serve as a CDN (`CONNECT`: it is no forward proxy;
    /// `TRACE`: it would echo the client's cookies back through the page).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A request whose framing edge will not trust (RFC 9112 §6.1): a transfer coding
    /// other than one final `chunked` (501), or `chunked` twice (400). The connection
    /// closes after the answer.
    #[error("{1}")]
    Framing(StatusCode, &'static str),
    /// The client stopped sending its request body for `server.idle_timeout`.
    #[error("no request body bytes for {0:?}")]
    BodyTimeout(std::time::Duration),
    /// `only-if-cached` and nothing usable is stored.
    #[error("not cached")]
    NotCached,
    /// A bug or an unexpected local failure; details go only to the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How an origin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginFailure {
    /// TCP or TLS connection could not be opened.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The connect, first-byte or body deadline passed.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The response was malformed, reset or cut short.
    #[error("bad response: {0}")]
    Protocol(String),
    /// The origin's circuit breaker is open after repeated failures.
    #[error("circuit breaker open after repeated failures")]
    CircuitOpen,
}

impl OriginFailure {
    /// The `Cache-Status` `detail` token for this failure.
    pub fn detail(&self) -> &'static str {
        match self {
            OriginFailure::Connect(_) => "origin-connect",
            OriginFailure::Timeout(_) => "origin-timeout",
            OriginFailure::Protocol(_) => "origin-protocol",
            OriginFailure::CircuitOpen => "origin-circuit-open",
        }
    }
}

impl EdgeError {
    /// The status a client receives for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            EdgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EdgeError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            EdgeError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            EdgeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            EdgeError::Framing(status, _) => *status,
            EdgeError::Origin {
                kind: OriginFailure::Timeout(_),
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            EdgeError::Origin { .. } => StatusCode::BAD_GATEWAY,
            EdgeError::NotCached => StatusCode::GATEWAY_TIMEOUT,
            EdgeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `Cache-Status` value describing this error.
    pub fn cache_status(&self) -> String {
        match self {
            EdgeError::Origin { kind, .. } => format!(
                "edge; fwd=uri-miss; fwd-status={}; detail={}",
                self.status().as_u16(),
                kind.detail()
            ),
            EdgeError::NotCached => "edge; fwd=miss; detail=only-if-cached".into(),
            EdgeError::UnknownHost(_) => "edge; detail=unknown-host".into(),
            EdgeError::BadRequest(_) => "edge; detail=bad-request".into(),
            EdgeError::UriTooLong(_) => "edge; detail=uri-too-long".into(),
            EdgeError::PayloadTooLarge(_) => "edge; detail=body-too-large".into(),
            EdgeError::BodyTimeout(_) => "edge; detail=body-timeout".into(),
            EdgeError::MethodNotAllowed => "edge; detail=method-not-allowed".into(),
            EdgeError::Framing(..) => "edge; detail=bad-framing".into(),
            EdgeError::Internal(_) => "edge; detail=internal".into(),
        }
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            // Internal details stay in the log.
            EdgeError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error\n".to_owned()
            }
            EdgeError::Origin { .. } => {
                tracing::warn!(error = %self, "origin error");
                format!("{}\n", status.canonical_reason().unwrap_or("origin error"))
            }
            other => format!("{other}\n"),
        };
        let cache_status = self.cache_status();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        match self {
            EdgeError::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            }
            // What follows the head cannot be read as the next request.
            EdgeError::Framing(..) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&cache_status) {
            headers.insert("cache-status", v);
        }
        response
    }
}

/// The methods edge serves: GET and HEAD from the cache, OPTIONS and the unsafe ones
/// passed through to the origin (other methods the origin knows pass through too).
pub const ALLOW: &str = "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE";

/// An error and its sources, joined with `: `, for logs and `Cache-Status` details.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
