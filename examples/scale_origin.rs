//! The origin of `benches/scale`: answers `GET /o/<n>` for any number `n` with a body
//! of `--size` bytes derived from `n` (so every object is distinct and checkable), as a
//! cacheable, incompressible static asset. Objects are made per request, so a million
//! of them cost no disk and no start-up time.
//!
//! ```sh
//! cargo run --release --example scale_origin -- --listen 127.0.0.1:18190 --size 512
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The body of object `n`: `size` bytes of a xorshift stream seeded with `n`.
fn body(n: u64, size: usize) -> Bytes {
    let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size);
    Bytes::from(out)
}

fn answer(request: &Request<Incoming>, size: usize) -> Response<Full<Bytes>> {
    let n = request
        .uri()
        .path()
        .strip_prefix("/o/")
        .and_then(|n| n.parse::<u64>().ok());
    let Some(n) = n else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let mut response = Response::new(Full::new(body(n, size)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"o{n}\"")).expect("ASCII"),
    );
    headers.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_static("Tue, 03 Jun 2025 10:00:00 GMT"),
    );
    response
}

fn args() -> Result<(SocketAddr, usize), String> {
    let mut listen: SocketAddr = "127.0.0.1:18190".parse().expect("default address");
    let mut size = 512;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value.parse().map_err(|e| format!("--listen: {e}"))?,
            "--size" => size = value.parse().map_err(|e| format!("--size: {e}"))?,
            other => return Err(format!("unknown argument `{other}` (--listen, --size)")),
        }
    }
    Ok((listen, size))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (listen, size) = args().unwrap_or_else(|message| {
        eprintln!("scale_origin: {message}");
        std::process::exit(2);
    });
    let listener = TcpListener::bind(listen).await?;
    eprintln!(
        "scale_origin: /o/<n>, {size} bytes each, on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| async move {
                Ok::<_, Infallible>(answer(&request, size))
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
