//! The admin API as a client: posting a purge to a node, for `edge purge` and for the
//! cluster fan-out.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::cluster::FORWARDED;

/// The most of an answer that is read.
const MAX_ANSWER: usize = 1 << 20;

/// An HTTP(S) client for admin listeners.
pub type AdminClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for admin listeners over plain HTTP or HTTPS, with `connect_timeout`.
pub fn client(connect_timeout: std::time::Duration) -> AdminClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

/// Posts a purge `body` to `{base}/purge` with an optional bearer `token`; `forwarded`
/// marks it as coming from another node. Returns the status and (up to 1 MiB of) the
/// answer; an error says why no answer arrived.
pub async fn post_purge(
    client: &AdminClient,
    base: &str,
    token: Option<&str>,
    body: Bytes,
    forwarded: bool,
) -> Result<(u16, Bytes), String> {
    let url = format!("{}/purge", base.trim_end_matches('/'));
    let mut request = Request::post(&url)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| format!("`{url}` is not a usable URL: {e}"))?;
    if forwarded {
        request
            .headers_mut()
            .insert(FORWARDED, HeaderValue::from_static("1"));
    }
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token is not a valid header value".to_owned())?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("POST {url}: {}", crate::error::chain(&e)))?;
    let status = response.status().as_u16();
    let answer = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
    Ok((status, answer))
}
