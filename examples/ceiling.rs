//! The ceiling of `benches/compare`: a minimal hyper server that answers from memory
//! with the same bytes a cache would send, and does nothing else a cache does.
//!
//! It loads every file under `--dir` at start-up, with a stored gzip (`NAME.gz` beside
//! `NAME`) and a brotli variant made once here for compressible types, then answers
//! `GET` by exact path: `304` when `If-None-Match` names the file's ETag, otherwise the
//! best encoding the client accepts (`br`, then `gzip`, then identity). No cache, no
//! origin, no logging: what is left is hyper, tokio and the socket, which is the
//! throughput a cache built on them can approach but not pass.
//!
//! ```sh
//! cargo run --release --example ceiling -- --listen 127.0.0.1:18084 --dir target/compare/assets
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_compression::Level;
use async_compression::tokio::bufread::BrotliEncoder;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// One file and its encoded variants, with the header values built once.
struct Asset {
    identity: Bytes,
    gzip: Option<Bytes>,
    br: Option<Bytes>,
    content_type: HeaderValue,
    /// The identity ETag, quoted; encoded variants add a suffix inside the quotes.
    etag: String,
    /// The bare hash an `If-None-Match` must contain to match any representation.
    tag: String,
}

/// Media types worth a brotli variant (the stored gzip is used whatever its type).
fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.contains("javascript")
        || content_type.contains("json")
        || content_type.contains("svg")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

async fn brotli(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = BrotliEncoder::with_quality(bytes, Level::Best);
    let mut out = Vec::new();
    encoder.read_to_end(&mut out).await?;
    Ok(out)
}

/// Loads every file under `root`, keyed by URL path.
async fn load(root: &Path) -> std::io::Result<HashMap<String, Asset>> {
    let mut paths = Vec::new();
    files_under(root, &mut paths)?;
    paths.sort();
    let mut assets = HashMap::new();
    for path in &paths {
        if path.extension().is_some_and(|e| e == "gz") {
            continue;
        }
        let rel = path.strip_prefix(root).expect("under root");
        let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
        let identity = Bytes::from(std::fs::read(path)?);
        let mime = mime_guess::from_path(path).first_or_octet_stream();
        let content_type = mime.essence_str().to_owned();
        let mut gz_name = path.as_os_str().to_owned();
        gz_name.push(".gz");
        let gzip = std::fs::read(PathBuf::from(gz_name)).ok().map(Bytes::from);
        let br = if compressible(&content_type) && identity.len() >= 256 {
            let encoded = brotli(&identity).await?;
            (encoded.len() < identity.len()).then(|| Bytes::from(encoded))
        } else {
            None
        };
        let tag = blake3::hash(&identity).to_hex()[..32].to_owned();
        assets.insert(
            url,
            Asset {
                etag: format!("\"{tag}\""),
                tag,
                identity,
                gzip,
                br,
                content_type: HeaderValue::from_str(&content_type)
                    .expect("a mime type is a header value"),
            },
        );
    }
    Ok(assets)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn answer(
    assets: &HashMap<String, Asset>,
    cache_control: &HeaderValue,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(asset) = assets.get(request.uri().path()) else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let headers = request.headers();
    if let Some(inm) = headers.get(header::IF_NONE_MATCH)
        && contains(inm.as_bytes(), asset.tag.as_bytes())
    {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        let h = response.headers_mut();
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&asset.etag).expect("etag is ASCII"),
        );
        h.insert(header::CACHE_CONTROL, cache_control.clone());
        return response;
    }
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let (body, encoding, suffix) = match (&asset.br, &asset.gzip) {
        (Some(br), _) if contains(accept, b"br") => (br.clone(), Some("br"), "-br"),
        (_, Some(gz)) if contains(accept, b"gzip") => (gz.clone(), Some("gzip"), "-gz"),
        _ => (asset.identity.clone(), None, ""),
    };
    let mut response = Response::new(Full::new(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, asset.content_type.clone());
    h.insert(header::CACHE_CONTROL, cache_control.clone());
    let etag = format!("\"{}{suffix}\"", asset.tag);
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("etag is ASCII"),
    );
    if asset.br.is_some() || asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(encoding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

struct Args {
    listen: SocketAddr,
    dir: PathBuf,
    cache_control: String,
}

fn args() -> Result<Args, String> {
    let mut listen: SocketAddr = "127.0.0.1:18084".parse().expect("default address");
    let mut dir = None;
    let mut cache_control = "public, max-age=86400".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--cache-control" => cache_control = value()?,
            other => {
                return Err(format!(
                    "unknown argument `{other}` (use --listen ADDR --dir PATH [--cache-control V])"
                ));
            }
        }
    }
    Ok(Args {
        listen,
        dir: dir.ok_or("--dir PATH is required")?,
        cache_control,
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("ceiling: {message}");
            std::process::exit(2);
        }
    };
    let assets = Arc::new(load(&args.dir).await?);
    let cache_control =
        HeaderValue::from_str(&args.cache_control).map_err(std::io::Error::other)?;
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "ceiling: {} assets on http://{}",
        assets.len(),
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let assets = assets.clone();
        let cache_control = cache_control.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = answer(&assets, &cache_control, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
