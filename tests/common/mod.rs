//! The test harness: a real HTTP origin on 127.0.0.1:0 that counts its hits and can
//! misbehave on purpose, and an in-process edge pointed at it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How a route misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Misbehaviour {
    /// Answers normally.
    None,
    /// Waits this long before sending the response head.
    Slow(Duration),
    /// Sends the head with the full Content-Length, half the body, then resets.
    ResetMidBody,
    /// Like `ResetMidBody`, with this pause before the reset (so that the half sent is
    /// read before the reset discards what is unread).
    PauseThenReset(Duration),
    /// Sends a chunked body and closes before the last chunk.
    TruncatedChunked,
    /// Declares a longer Content-Length than it sends, then closes.
    WrongLength,
    /// Sends the body a few bytes at a time with this pause between them.
    Drip(Duration),
    /// Sends half the body, waits this long, then sends the rest.
    PauseMidBody(Duration),
    /// Sends the whole body chunked (no `Content-Length`) in two chunks, this long apart.
    ChunkedPause(Duration),
    /// Sends something that is not an HTTP response.
    Garbage,
}

/// What the origin answers on one path.
#[derive(Debug, Clone)]
pub struct Route {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub misbehaviour: Misbehaviour,
}

impl Route {
    /// 200 with `Cache-Control: max-age=3600` and `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Route {
            status: 200,
            headers: vec![
                ("cache-control".into(), "max-age=3600".into()),
                ("content-type".into(), "text/plain".into()),
            ],
            body: body.into(),
            misbehaviour: Misbehaviour::None,
        }
    }

    /// This route with another status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// This route with `name: value` set (replacing an earlier value of `name`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// This route without header `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// This route misbehaving.
    pub fn misbehave(mut self, m: Misbehaviour) -> Self {
        self.misbehaviour = m;
        self
    }
}

/// One request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    seen: Mutex<Vec<Seen>>,
    hits: AtomicUsize,
}

/// A real HTTP/1.1 origin over TCP, written by hand so that it can misbehave in ways
/// a well-behaved server library would not allow.
#[derive(Clone)]
pub struct TestOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl TestOrigin {
    /// Starts an origin on 127.0.0.1:0. Unknown paths answer 404 without caching headers.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, state).await;
                });
            }
        });
        TestOrigin { addr, state }
    }

    /// Sets what `path` (with query) answers.
    pub fn route(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), route);
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Requests received for `path`.
    pub fn hits_on(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.target == path).count()
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The base URL, e.g. `http://127.0.0.1:4321`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Writes `chunk` as one chunk of a chunked body, and flushes.
async fn write_chunk<W: AsyncWriteExt + Unpin>(
    stream: &mut W,
    chunk: &[u8],
) -> std::io::Result<()> {
    stream
        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
        .await?;
    stream.write_all(chunk).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(len, 0);
            reader.read_exact(&mut body).await?;
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        state.hits.fetch_add(1, Ordering::SeqCst);
        let route = state.routes.lock().unwrap().get(&target).cloned();
        state.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
            body,
        });
        let route = route.unwrap_or(Route {
            status: 404,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Bytes::from_static(b"not found"),
            misbehaviour: Misbehaviour::None,
        });
        // Like a real server: a matching validator answers 304 (RFC 9110 §13.1).
        let route_header = |name: &str| {
            route
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let not_modified = route.status == 200
            && match (get("if-none-match"), route_header("etag")) {
                (Some(inm), Some(etag)) => inm
                    .split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag.trim_start_matches("W/")),
                (None, _) => matches!(
                    (get("if-modified-since"), route_header("last-modified")),
                    (Some(ims), Some(lm)) if ims == lm
                ),
                _ => false,
            };
        let route = if not_modified {
            Route {
                status: 304,
                ..route
            }
        } else {
            route
        };
        let stream = reader.get_mut();
        if let Misbehaviour::Slow(d) = route.misbehaviour {
            tokio::time::sleep(d).await;
        }
        if route.misbehaviour == Misbehaviour::Garbage {
            stream
                .write_all(b"HTCPCP/1.0 418 I'm a teapot\r\n\r\n")
                .await?;
            stream.shutdown().await?;
            return Ok(());
        }
        let mut head = format!("HTTP/1.1 {} X\r\n", route.status);
        for (n, v) in &route.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        let head_only = method == "HEAD" || route.status == 304 || route.status == 204;
        match route.misbehaviour {
            Misbehaviour::ChunkedPause(pause) if !head_only => {
                head.push_str("transfer-encoding: chunked\r\n\r\n");
                stream.write_all(head.as_bytes()).await?;
                let (first, rest) = route.body.split_at(route.body.len() / 2);
                for (i, chunk) in [first, rest].into_iter().enumerate() {
                    if i == 1 {
                        tokio::time::sleep(pause).await;
                    }
                    write_chunk(&mut *stream, chunk).await?;
                }
                stream.write_all(b"0\r\n\r\n").await?;
                stream.flush().await?;
                return Ok(());
            }
            Misbehaviour::TruncatedChunked => {
                head.push_str("transfer-encoding: chunked\r\n\r\n");
                stream.write_all(head.as_bytes()).await?;
                write_chunk(&mut *stream, &route.body[..route.body.len() / 2]).await?;
                return Ok(());
            }
            Misbehaviour::WrongLength => {
                head.push_str(&format!(
                    "content-length: {}\r\n\r\n",
                    route.body.len() + 100
                ));
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(&route.body).await?;
                stream.flush().await?;
                return Ok(());
            }
            Misbehaviour::ResetMidBody | Misbehaviour::PauseThenReset(_) => {
                head.push_str(&format!("content-length: {}\r\n\r\n", route.body.len()));
                stream.write_all(head.as_bytes()).await?;
                stream
                    .write_all(&route.body[..route.body.len() / 2])
                    .await?;
                stream.flush().await?;
                if let Misbehaviour::PauseThenReset(pause) = route.misbehaviour {
                    tokio::time::sleep(pause).await;
                }
                // SO_LINGER 0 turns the close into a reset.
                // Deprecated because it blocks on drop; a zero linger does not block, and
                // it is the one way to make the close a reset.
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return Ok(());
            }
            _ => {}
        }
        if !head_only {
            head.push_str(&format!("content-length: {}\r\n", route.body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        if !head_only {
            if let Misbehaviour::Drip(pause) = route.misbehaviour {
                for piece in route.body.chunks(4) {
                    stream.write_all(piece).await?;
                    stream.flush().await?;
                    tokio::time::sleep(pause).await;
                }
            } else if let Misbehaviour::PauseMidBody(pause) = route.misbehaviour {
                let (first, rest) = route.body.split_at(route.body.len() / 2);
                stream.write_all(first).await?;
                stream.flush().await?;
                tokio::time::sleep(pause).await;
                stream.write_all(rest).await?;
            } else {
                stream.write_all(&route.body).await?;
            }
        }
        stream.flush().await?;
    }
}

/// An edge running in this process.
pub struct TestEdge {
    pub running: edge::server::Running,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestEdge {
    /// Starts an edge whose one site (`hosts = ["*"]`) uses `origin`, with extra TOML
    /// appended to `[cache]`.
    pub async fn start(origin: &TestOrigin) -> Self {
        Self::start_with(origin, "").await
    }

    /// Starts an edge with `cache_extra` lines in `[cache]`.
    pub async fn start_with(origin: &TestOrigin, cache_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"cache\"\n{cache_extra}\n[origin]\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"2s\"\nbody_timeout = \"3s\"\n[[site]]\nname = \"test\"\nhosts = [\"*\"]\norigin = \"{}\"\n",
            origin.url()
        );
        Self::start_toml(&toml, dir).await
    }

    /// Starts an edge whose disk tier lives in `cache_dir` (which outlives the edge),
    /// with `cache_extra` lines in `[cache]`. After [`TestEdge::stop`], another edge
    /// started on the same directory is a restart.
    pub async fn start_in(
        origin: &TestOrigin,
        cache_dir: &std::path::Path,
        cache_extra: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"{}\"\n{cache_extra}\n[origin]\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"2s\"\nbody_timeout = \"3s\"\n[[site]]\nname = \"test\"\nhosts = [\"*\"]\norigin = \"{}\"\n",
            cache_dir.display(),
            origin.url()
        );
        Self::start_toml(&toml, dir).await
    }

    /// Waits for queued disk writes, then shuts the edge down gracefully (its disk tier
    /// drains and closes its index).
    pub async fn stop(self) {
        self.running.state.cache.flush().await;
        drop(self.client);
        self.running.shutdown().await;
    }

    /// Starts an edge whose one site uses `origin`, with extra lines in the
    /// `[[site]]` table (e.g. `stale_if_error = "60s"`).
    pub async fn start_site(origin: &TestOrigin, site_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"cache\"\n[origin]\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"2s\"\nbody_timeout = \"3s\"\n[[site]]\nname = \"test\"\nhosts = [\"*\"]\norigin = \"{}\"\n{site_extra}\n",
            origin.url()
        );
        Self::start_toml(&toml, dir).await
    }

    /// Moves the edge's clock forward (no sleeping).
    pub fn advance(&self, secs: u64) {
        self.running.state.clock.advance(Duration::from_secs(secs));
    }

    /// GET `path` with extra request headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        for (n, v) in headers {
            request = request.header(*n, *v);
        }
        request.send().await.unwrap()
    }

    /// Starts an edge from a whole configuration text.
    pub async fn start_toml(toml: &str, dir: tempfile::TempDir) -> Self {
        let config = edge::config::Config::parse(toml, dir.path()).expect("test config is valid");
        let running = edge::server::start(Arc::new(config)).await.unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(200)
            .build()
            .unwrap();
        TestEdge {
            running,
            client,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.addr, path)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// POST `body` to `path`.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// `http://127.0.0.1:ADMIN_PORT{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.admin_addr, path)
    }

    /// The admin listener's `/metrics` page (no token).
    pub async fn metrics_text(&self) -> String {
        let response = self.client.get(self.admin_url("/metrics")).send().await;
        response.unwrap().text().await.unwrap()
    }

    /// Purges `urls` through the admin API, which must accept it.
    pub async fn purge_urls(&self, urls: &[&str]) {
        let body = format!(r#"{{"urls": {urls:?}}}"#);
        let response = self
            .client
            .post(self.admin_url("/purge"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status.is_success(), "{}", response.text().await.unwrap());
    }

    /// The value of the unlabelled metric `name` (e.g. `edge_open_blobs`) from the
    /// admin listener's metrics.
    pub async fn gauge(&self, name: &str) -> u64 {
        let text = self.metrics_text().await;
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in the metrics"));
        line.parse().unwrap()
    }

    /// Stops this edge (draining its disk writes) and starts another with the same
    /// configuration and cache directory, on new ports, as a process restart would.
    pub async fn restart(self) -> Self {
        let TestEdge {
            running,
            client,
            dir,
        } = self;
        let config = running.state.config.clone();
        running.state.cache.flush().await;
        running.shutdown().await;
        let running = edge::server::start(config).await.unwrap();
        TestEdge {
            running,
            client,
            dir,
        }
    }
}

/// The `Cache-Status` of a response.
pub fn cache_status(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Deterministic, incompressible-looking bytes (xorshift64), `len` of them from `seed`.
pub fn incompressible(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Where the disk tier under `cache_dir` keeps the blob of `body`.
pub fn blob_of(cache_dir: &Path, body: &[u8]) -> PathBuf {
    let hex = blake3::hash(body).to_hex().to_string();
    cache_dir
        .join("blobs")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex)
}
