//! TLS, HTTP/2 and live reload, over real sockets: certificates made at test time with
//! rcgen (one test CA, a leaf per site), clients built on tokio-rustls and hyper, and the
//! real `edge` binary for signals (SIGHUP reload, SIGTERM drain).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Misbehaviour, Route, TestEdge, TestOrigin};
use edge::reload::Reload;
use edge::tls::CertReload;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

// ---------------------------------------------------------------------------------
// Certificates

/// A test certificate authority.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM, and the certificate as DER.
struct Leaf {
    pem: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "edge test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca }
    }

    /// A leaf for `names`, the first one its common name.
    fn issue(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            pem: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client that trusts this CA and offers `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

impl Leaf {
    /// Writes `<name>.pem` and `<name>.key` into `dir`.
    fn write(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(format!("{name}.pem")), &self.pem).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &self.key).unwrap();
    }
}

// ---------------------------------------------------------------------------------
// Clients

/// Connects to `addr` over TLS naming `sni`; the handshake verifies the certificate
/// against the test CA and `sni`.
async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

/// The leaf certificate edge presented on `stream`.
fn peer_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// The ALPN protocol negotiated on `stream`.
fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// A collected response.
struct Answer {
    status: StatusCode,
    version: Version,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn collect(response: Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// An HTTP/2 connection over `stream` (TLS, or plain with prior knowledge).
async fn h2<S>(stream: S) -> hyper::client::conn::http2::SendRequest<Full<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// An HTTP/2 connection to `b.test` over TLS (ALPN `h2` only).
async fn h2_to_b(f: &Fixture) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = connect(&f.pki.client(&[b"h2"]), f.tls(), "b.test")
        .await
        .unwrap();
    h2(stream).await
}

/// An HTTP/2 connection over `stream` that sends a PING every 200 ms, idle or not.
async fn h2_pinging<S>(stream: S) -> hyper::client::conn::http2::SendRequest<Full<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(200))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn h2_send(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    method: &str,
    url: &str,
    body: &'static str,
) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    collect(sender.send_request(request).await.unwrap()).await
}

/// One HTTP/1.1 request on a new connection over `stream` (plain or TLS).
async fn h1<S>(stream: S, method: &str, host: &str, path: &str, body: &'static str) -> Answer
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    collect(sender.send_request(request).await.unwrap()).await
}

/// GET `path` from `host` over plain HTTP/1.1.
async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> Answer {
    h1(
        TcpStream::connect(addr).await.unwrap(),
        "GET",
        host,
        path,
        "",
    )
    .await
}

/// GET `path` from `host` over TLS and HTTP/2.
async fn tls_get(pki: &Pki, addr: SocketAddr, host: &str, path: &str) -> Answer {
    let stream = connect(&pki.client(&[b"h2"]), addr, host).await.unwrap();
    h2_send(
        &mut h2(stream).await,
        "GET",
        &format!("https://{host}{path}"),
        "",
    )
    .await
}

// ---------------------------------------------------------------------------------
// An in-process edge with two TLS sites

/// Two sites on one origin: `a.test` (redirects plain HTTP, sends HSTS) and `b.test` /
/// `*.b.test` (neither), each with its own certificate.
struct Fixture {
    pki: Pki,
    a: Leaf,
    b: Leaf,
    origin: TestOrigin,
    edge: TestEdge,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with("").await
    }

    /// With `server_extra` lines added to `[server]`.
    async fn start_with(server_extra: &str) -> Fixture {
        Fixture::start_sites(server_extra, "").await
    }

    /// With `server_extra` lines added to `[server]` and `a_extra` to site a's hosts.
    async fn start_sites(server_extra: &str, a_extra: &str) -> Fixture {
        let pki = Pki::new();
        let a = pki.issue(&["a.test"]);
        let b = pki.issue(&["b.test", "*.b.test"]);
        let origin = TestOrigin::start().await;
        origin.route(
            "/asset.css",
            Route::ok("body{}").header("content-type", "text/css"),
        );
        let dir = tempfile::tempdir().unwrap();
        a.write(dir.path(), "a");
        b.write(dir.path(), "b");
        let toml = two_sites(&origin, "127.0.0.1:0", "127.0.0.1:0", a_extra).replacen(
            "[server]\n",
            &format!("[server]\n{server_extra}\n"),
            1,
        );
        std::fs::write(dir.path().join("edge.toml"), &toml).unwrap();
        let edge = TestEdge::start_toml(&toml, dir).await;
        Fixture {
            pki,
            a,
            b,
            origin,
            edge,
        }
    }

    fn plain(&self) -> SocketAddr {
        self.edge.running.addr
    }

    fn tls(&self) -> SocketAddr {
        self.edge.running.tls_addr.expect("a TLS listener")
    }

    fn dir(&self) -> &Path {
        self.edge.dir.path()
    }

    fn config_path(&self) -> PathBuf {
        self.dir().join("edge.toml")
    }
}

/// The two-site configuration, with `a_extra` lines added to site `a`.
fn two_sites(origin: &TestOrigin, listen: &str, tls_listen: &str, a_extra: &str) -> String {
    format!(
        r#"[server]
listen = "{listen}"
tls_listen = "{tls_listen}"
shutdown_grace = "10s"
[admin]
listen = "127.0.0.1:0"
[cache]
dir = "cache"
[origin]
connect_timeout = "1s"
[[site]]
name = "a"
hosts = ["a.test"{a_extra}]
origin = "{origin}"
tls_cert = "a.pem"
tls_key = "a.key"
https_redirect = true
hsts = "max-age=600; includeSubDomains"
[[site]]
name = "b"
hosts = ["b.test", "*.b.test"]
origin = "{origin}"
tls_cert = "b.pem"
tls_key = "b.key"
"#,
        origin = origin.url()
    )
}

// ---------------------------------------------------------------------------------
// Handshakes and HTTP/2

#[tokio::test]
async fn each_sni_name_gets_its_sites_certificate() {
    let f = Fixture::start().await;
    let client = f.pki.client(&[b"h2", b"http/1.1"]);

    let a = connect(&client, f.tls(), "a.test").await.unwrap();
    assert_eq!(peer_leaf(&a), f.a.der, "a.test gets a's certificate");
    let b = connect(&client, f.tls(), "b.test").await.unwrap();
    assert_eq!(peer_leaf(&b), f.b.der, "b.test gets b's certificate");
    let sub = connect(&client, f.tls(), "img.b.test").await.unwrap();
    assert_eq!(
        peer_leaf(&sub),
        f.b.der,
        "a wildcard host gets its site's certificate"
    );
    let version = a.get_ref().1.protocol_version();
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn a_name_no_site_serves_fails_the_handshake() {
    let f = Fixture::start().await;
    let client = f.pki.client(&[b"h2"]);
    assert!(connect(&client, f.tls(), "unknown.test").await.is_err());
}

#[tokio::test]
async fn tls_1_2_is_accepted_and_older_versions_are_not_offered() {
    let f = Fixture::start().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(f.pki.ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let stream = connect(&TlsConnector::from(Arc::new(config)), f.tls(), "a.test")
        .await
        .unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn_and_used() {
    let f = Fixture::start().await;
    let stream = connect(&f.pki.client(&[b"h2", b"http/1.1"]), f.tls(), "b.test")
        .await
        .unwrap();
    assert_eq!(alpn(&stream).as_deref(), Some(&b"h2"[..]));
    let mut sender = h2(stream).await;
    let first = h2_send(&mut sender, "GET", "https://b.test/asset.css", "").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.version, Version::HTTP_2);
    assert_eq!(first.body, "body{}");
    // The same connection again: a hit.
    let second = h2_send(&mut sender, "GET", "https://b.test/asset.css", "").await;
    assert_eq!(second.version, Version::HTTP_2);
    assert!(
        second.header("cache-status").unwrap().contains("hit"),
        "{:?}",
        second.headers
    );
    assert_eq!(f.origin.hits(), 1);
}

#[tokio::test]
async fn a_large_memory_hit_arrives_whole_over_h2() {
    // Above 128 KiB a memory body goes out in turns, a yield between frames; h2 adds
    // its own flow control (a 64 KiB initial window) on top.
    let f = Fixture::start().await;
    let body: Bytes = (0..(1usize << 20) + 7).map(|i| (i % 253) as u8).collect();
    f.origin.route(
        "/big.bin",
        Route::ok(body.clone()).header("content-type", "application/octet-stream"),
    );
    let mut sender = h2_to_b(&f).await;
    let miss = h2_send(&mut sender, "GET", "https://b.test/big.bin", "").await;
    assert_eq!(miss.status, 200);
    assert!(miss.body == body, "the miss, whole");
    let hit = h2_send(&mut sender, "GET", "https://b.test/big.bin", "").await;
    assert!(
        hit.header("cache-status").unwrap().contains("hit"),
        "{:?}",
        hit.headers
    );
    assert_eq!(hit.version, Version::HTTP_2);
    assert!(hit.body == body, "the memory hit, whole and in order");
}

#[tokio::test]
async fn head_is_answered_without_a_body_over_h2_and_h1() {
    // hyper leaves out a HEAD response's body over HTTP/1.1 but not over HTTP/2, where
    // DATA after a HEAD's headers is a protocol error (curl: PROTOCOL_ERROR).
    let f = Fixture::start().await;
    let body: Bytes = (0..300_000usize).map(|i| (i % 251) as u8).collect();
    f.origin.route(
        "/big.bin",
        Route::ok(body.clone()).header("content-type", "application/octet-stream"),
    );
    let mut sender = h2_to_b(&f).await;
    // A miss (streamed, above 256 KiB), a small hit, a large hit.
    for path in ["/big.bin", "/asset.css", "/big.bin"] {
        let url = format!("https://b.test{path}");
        let get = h2_send(&mut sender, "GET", &url, "").await;
        let request = Request::builder()
            .method("HEAD")
            .uri(&url)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let head = collect(sender.send_request(request).await.unwrap()).await;
        assert_eq!(head.status, 200, "{path}");
        assert_eq!(head.version, Version::HTTP_2);
        assert!(head.body.is_empty(), "{path}: a HEAD answer has no body");
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str()),
            "{path}: the length GET would send"
        );
    }
    let stream = connect(&f.pki.client(&[b"http/1.1"]), f.tls(), "b.test")
        .await
        .unwrap();
    let head = h1(stream, "HEAD", "b.test", "/big.bin", "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn http1_is_served_over_tls_when_the_client_offers_only_http1() {
    let f = Fixture::start().await;
    let stream = connect(&f.pki.client(&[b"http/1.1"]), f.tls(), "b.test")
        .await
        .unwrap();
    assert_eq!(alpn(&stream).as_deref(), Some(&b"http/1.1"[..]));
    let answer = h1(stream, "GET", "b.test", "/asset.css", "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.version, Version::HTTP_11);
    assert_eq!(answer.body, "body{}");
}

/// Sends `request` on `stream` and reads one answer with a `Content-Length`: the head's
/// lines (lower-cased names, sorted, without the status line) and the body.
async fn raw_exchange(stream: &mut TlsStream<TcpStream>, request: &str) -> (Vec<String>, Vec<u8>) {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let head_end = loop {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the head ended");
        got.extend_from_slice(&buf[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8(got[..head_end].to_vec()).unwrap();
    let mut lines: Vec<String> = head
        .trim_end()
        .lines()
        .skip(1)
        .map(|l| {
            let (name, value) = l.split_once(": ").unwrap();
            format!("{}: {value}", name.to_ascii_lowercase())
        })
        .collect();
    lines.sort();
    let len: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.parse().unwrap());
    while got.len() < head_end + len {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed mid-body");
        got.extend_from_slice(&buf[..n]);
    }
    (lines, got[head_end..].to_vec())
}

#[tokio::test]
async fn an_http1_hit_over_tls_is_answered_directly_with_the_sites_hsts_once() {
    let f = Fixture::start().await;
    // The origin's own HSTS: the site's replaces it, on either path.
    f.origin.route(
        "/own-hsts.css",
        Route::ok("own{}")
            .header("content-type", "text/css")
            .header("strict-transport-security", "max-age=1"),
    );
    let client = f.pki.client(&[b"http/1.1"]);
    for path in ["/asset.css", "/own-hsts.css"] {
        let get = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let mut warm = connect(&client, f.tls(), "a.test").await.unwrap();
        raw_exchange(&mut warm, &get).await;
        // Age moves with the clock: a pair straddling a second is tried again.
        let mut tries = 0;
        let (direct, by_hyper) = loop {
            let mut stream = connect(&client, f.tls(), "a.test").await.unwrap();
            let direct = raw_exchange(&mut stream, &get).await;
            // `If-Match: *` sends the connection to hyper; the same GET follows on it.
            let mut stream = connect(&client, f.tls(), "a.test").await.unwrap();
            let to_hyper = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nIf-Match: *\r\n\r\n");
            raw_exchange(&mut stream, &to_hyper).await;
            let by_hyper = raw_exchange(&mut stream, &get).await;
            tries += 1;
            if direct == by_hyper || tries == 5 {
                break (direct, by_hyper);
            }
        };
        assert_eq!(direct, by_hyper, "{path}");
        let (fields, _) = &direct;
        assert!(
            fields
                .iter()
                .any(|l| l.starts_with("cache-status: edge; hit")),
            "{fields:?}"
        );
        let hsts: Vec<&String> = fields
            .iter()
            .filter(|l| l.starts_with("strict-transport-security"))
            .collect();
        assert_eq!(
            hsts,
            ["strict-transport-security: max-age=600; includeSubDomains"],
            "{path}"
        );
    }
    // A site without HSTS sends none over TLS on the direct path either.
    let mut stream = connect(&client, f.tls(), "b.test").await.unwrap();
    let get = "GET /asset.css HTTP/1.1\r\nHost: b.test\r\n\r\n";
    raw_exchange(&mut stream, get).await;
    let (fields, body) = raw_exchange(&mut stream, get).await;
    assert_eq!(body, b"body{}");
    assert!(
        fields
            .iter()
            .any(|l| l.starts_with("cache-status: edge; hit")),
        "{fields:?}"
    );
    assert!(
        !fields
            .iter()
            .any(|l| l.starts_with("strict-transport-security"))
    );
}

#[tokio::test]
async fn a_slow_request_head_over_tls_gets_408_inside_the_tls_session() {
    let f = Fixture::start_with("header_read_timeout = \"1s\"").await;
    let mut stream = connect(&f.pki.client(&[b"http/1.1"]), f.tls(), "b.test")
        .await
        .unwrap();
    stream
        .write_all(b"GET /asset.css HTTP/1.1\r\nhost: b.test\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection must be closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn http2_connections_are_not_cut_by_the_head_timeout() {
    let f = Fixture::start_with("header_read_timeout = \"1s\"").await;
    let tls = connect(&f.pki.client(&[b"h2"]), f.tls(), "b.test")
        .await
        .unwrap();
    // Clients that ping every 200 ms: bytes arrive between requests.
    let mut over_tls = h2_pinging(tls).await;
    let mut prior_knowledge = h2_pinging(TcpStream::connect(f.plain()).await.unwrap()).await;
    for round in 0..2 {
        for (sender, scheme) in [(&mut over_tls, "https"), (&mut prior_knowledge, "http")] {
            let url = format!("{scheme}://b.test/asset.css");
            let answer = h2_send(sender, "GET", &url, "").await;
            assert_eq!(answer.status, 200, "round {round} over {scheme}");
            assert_eq!(answer.version, Version::HTTP_2);
        }
        // Quiet for longer than header_read_timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

#[tokio::test]
async fn requests_over_tls_are_forwarded_with_proto_https() {
    let f = Fixture::start().await;
    f.origin.route("/form", Route::ok("thanks").status(201));
    let stream = connect(&f.pki.client(&[b"h2"]), f.tls(), "b.test")
        .await
        .unwrap();
    let answer = h2_send(&mut h2(stream).await, "POST", "https://b.test/form", "x=1").await;
    assert_eq!(answer.status, 201);
    let plain = h1(
        TcpStream::connect(f.plain()).await.unwrap(),
        "POST",
        "b.test",
        "/form",
        "x=2",
    )
    .await;
    assert_eq!(plain.status, 201);
    let protos: Vec<String> = f
        .origin
        .seen()
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.header("x-forwarded-proto").unwrap_or("").to_owned())
        .collect();
    assert_eq!(protos, ["https", "http"]);
}

// ---------------------------------------------------------------------------------
// HTTPS redirect and HSTS

#[tokio::test]
async fn https_redirect_sends_plain_http_to_the_same_url_over_https() {
    let f = Fixture::start().await;
    let answer = plain_get(f.plain(), "a.test", "/asset.css?v=1").await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        answer.header("location"),
        Some(format!("https://a.test:{}/asset.css?v=1", f.tls().port()).as_str())
    );
    assert!(
        answer.header("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    assert_eq!(f.origin.hits(), 0, "a redirect never reaches the origin");

    // 308 keeps the method: an upload is redirected too, not forwarded in the clear.
    let post = h1(
        TcpStream::connect(f.plain()).await.unwrap(),
        "POST",
        "a.test",
        "/form",
        "secret=1",
    )
    .await;
    assert_eq!(post.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(f.origin.hits(), 0);

    // Over TLS the same URL is served; a site without https_redirect is served on both.
    assert_eq!(
        tls_get(&f.pki, f.tls(), "a.test", "/asset.css")
            .await
            .status,
        200
    );
    assert_eq!(
        plain_get(f.plain(), "b.test", "/asset.css").await.status,
        200
    );
}

#[tokio::test]
async fn an_http10_request_without_host_to_a_redirecting_catch_all_gets_400() {
    // Site a (https_redirect) is also the `*` site: there is no host to redirect to.
    let f = Fixture::start_sites("", ", \"*\"").await;
    let mut stream = TcpStream::connect(f.plain()).await.unwrap();
    stream
        .write_all(b"GET /asset.css HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    assert!(!answer.contains("location"), "{answer}");
    assert_eq!(f.origin.hits(), 0);
    let named = plain_get(f.plain(), "other.test", "/asset.css").await;
    assert_eq!(
        named.status,
        StatusCode::PERMANENT_REDIRECT,
        "a named host still is"
    );
}

#[tokio::test]
async fn hsts_is_sent_over_tls_only_on_its_sites_responses() {
    let f = Fixture::start().await;
    let hit = tls_get(&f.pki, f.tls(), "a.test", "/asset.css").await;
    assert_eq!(hit.status, 200);
    assert_eq!(
        hit.header("strict-transport-security"),
        Some("max-age=600; includeSubDomains")
    );
    let missing = tls_get(&f.pki, f.tls(), "a.test", "/missing").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("strict-transport-security"),
        Some("max-age=600; includeSubDomains"),
        "errors carry HSTS too"
    );
    let other = tls_get(&f.pki, f.tls(), "b.test", "/asset.css").await;
    assert_eq!(other.status, 200);
    assert!(other.header("strict-transport-security").is_none());
    let plain = plain_get(f.plain(), "b.test", "/asset.css").await;
    assert!(plain.header("strict-transport-security").is_none());
}

// ---------------------------------------------------------------------------------
// Certificate reload

#[tokio::test]
async fn a_replaced_certificate_is_used_and_a_broken_one_keeps_the_old() {
    let f = Fixture::start().await;
    let client = f.pki.client(&[b"h2"]);
    let sites = || f.edge.running.state.sites();

    // Broken files: reported, and the running certificate stays.
    std::fs::write(f.dir().join("a.pem"), "not a certificate").unwrap();
    let outcomes = edge::tls::reload_certs(&sites(), false);
    let a = &outcomes.iter().find(|(name, _)| &**name == "a").unwrap().1;
    assert!(matches!(a, CertReload::Failed(_)), "{a:?}");
    let b = &outcomes.iter().find(|(name, _)| &**name == "b").unwrap().1;
    assert!(matches!(b, CertReload::Unchanged), "{b:?}");
    let stream = connect(&client, f.tls(), "a.test").await.unwrap();
    assert_eq!(peer_leaf(&stream), f.a.der);
    // The same broken files are not reported again on the next poll.
    let again = edge::tls::reload_certs(&sites(), false);
    assert!(matches!(again[0].1, CertReload::Unchanged), "{again:?}");

    // A renewed certificate: new handshakes get it.
    let renewed = f.pki.issue(&["a.test"]);
    renewed.write(f.dir(), "a");
    let outcomes = edge::tls::reload_certs(&sites(), false);
    assert!(
        matches!(outcomes[0].1, CertReload::Reloaded),
        "{outcomes:?}"
    );
    let stream = connect(&client, f.tls(), "a.test").await.unwrap();
    assert_eq!(peer_leaf(&stream), renewed.der);
    assert_ne!(renewed.der, f.a.der);
}

#[tokio::test]
async fn certificate_files_are_watched_for_changes() {
    let f = Fixture::start().await;
    let client = f.pki.client(&[b"h2"]);
    let _watcher =
        edge::tls::CertWatcher::start(f.edge.running.state.clone(), Duration::from_millis(50));
    let renewed = f.pki.issue(&["b.test", "*.b.test"]);
    renewed.write(f.dir(), "b");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stream = connect(&client, f.tls(), "b.test").await.unwrap();
        if peer_leaf(&stream) == renewed.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher did not pick up the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_key_that_does_not_match_its_certificate_is_refused_at_start() {
    let pki = Pki::new();
    let origin = TestOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    pki.issue(&["a.test"]).write(dir.path(), "a");
    pki.issue(&["b.test"]).write(dir.path(), "b");
    // a's certificate with b's key.
    std::fs::copy(dir.path().join("b.key"), dir.path().join("a.key")).unwrap();
    let toml = two_sites(&origin, "127.0.0.1:0", "127.0.0.1:0", "");
    let config = edge::config::Config::parse(&toml, dir.path()).unwrap();
    let error = match edge::server::start(Arc::new(config)).await {
        Ok(_) => panic!("started with a mismatched key"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("site[0].tls_key"), "{error}");
    assert!(!error.contains("site[1]"), "{error}");

    std::fs::write(dir.path().join("b.pem"), "garbage").unwrap();
    let config = edge::config::Config::parse(&toml, dir.path()).unwrap();
    let errors = edge::tls::check(&config);
    let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["site[0].tls_key", "site[1].tls_cert"], "{errors:?}");
}

// ---------------------------------------------------------------------------------
// Configuration

#[test]
fn tls_settings_are_validated_naming_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), "x").unwrap();
    std::fs::write(dir.path().join("c.key"), "x").unwrap();
    let parse = |text: &str| edge::config::Config::parse(text, dir.path());
    let site = "[[site]]\nhosts = [\"*\"]\norigin = \"http://127.0.0.1:1\"\n";

    let ok = parse(&format!(
        "[server]\ntls_listen = \"127.0.0.1:8443\"\n{site}tls_cert = \"c.pem\"\ntls_key = \"c.key\"\n\
         https_redirect = true\nhsts = \"max-age=31536000; includeSubDomains; preload\"\n"
    ))
    .unwrap();
    assert_eq!(
        ok.server.tls_listen,
        Some("127.0.0.1:8443".parse().unwrap())
    );
    let s = &ok.sites[0];
    assert_eq!(s.tls.as_ref().unwrap().cert, dir.path().join("c.pem"));
    assert!(s.https_redirect);
    assert_eq!(
        s.hsts.as_deref(),
        Some("max-age=31536000; includeSubDomains; preload")
    );

    let defaults = parse(site).unwrap();
    assert_eq!(defaults.server.tls_listen, None);
    assert!(defaults.sites[0].tls.is_none() && !defaults.sites[0].https_redirect);
    assert_eq!(defaults.sites[0].hsts, None);

    let keys = |text: String| -> Vec<String> {
        parse(&text)
            .unwrap_err()
            .into_iter()
            .map(|e| e.key)
            .collect()
    };
    assert_eq!(
        keys(format!("[server]\ntls_listen = \"127.0.0.1:8443\"\n{site}")),
        ["server.tls_listen"],
        "a TLS listener needs a site with a certificate"
    );
    assert_eq!(
        keys(format!("{site}tls_cert = \"c.pem\"\ntls_key = \"c.key\"\n")),
        ["site[0].tls_cert"],
        "a certificate needs a TLS listener"
    );
    assert_eq!(
        keys(format!(
            "[server]\ntls_listen = \"127.0.0.1:8443\"\n{site}tls_cert = \"c.pem\"\n"
        )),
        ["site[0].tls_key"]
    );
    assert_eq!(
        keys(format!(
            "[server]\ntls_listen = \"127.0.0.1:8443\"\n{site}tls_cert = \"c.pem\"\ntls_key = \"nope.key\"\n"
        )),
        ["site[0].tls_key"]
    );
    assert_eq!(
        keys(format!(
            "{site}https_redirect = true\nhsts = \"max-age=1\"\n"
        )),
        ["site[0].https_redirect", "site[0].hsts"],
        "redirect and HSTS need the site on TLS"
    );
    assert_eq!(
        keys(format!(
            "[server]\ntls_listen = \"127.0.0.1:8443\"\n{site}tls_cert = \"c.pem\"\ntls_key = \"c.key\"\n\
             hsts = \"includeSubDomains\"\n"
        )),
        ["site[0].hsts"],
        "HSTS needs max-age"
    );
}

// ---------------------------------------------------------------------------------
// Configuration reload, in process

#[tokio::test]
async fn reload_swaps_sites_keeping_connections_and_the_cache() {
    let f = Fixture::start().await;
    let state = &f.edge.running.state;
    let stream = connect(&f.pki.client(&[b"h2"]), f.tls(), "b.test")
        .await
        .unwrap();
    let mut open = h2(stream).await;
    assert_eq!(
        h2_send(&mut open, "GET", "https://b.test/asset.css", "")
            .await
            .status,
        200
    );
    assert_eq!(
        plain_get(f.plain(), "c.test", "/asset.css").await.status,
        StatusCode::MISDIRECTED_REQUEST
    );

    // Site a also serves c.test now; the [cache] dir changes too, which needs a restart.
    let toml = two_sites(&f.origin, "127.0.0.1:0", "127.0.0.1:0", ", \"c.test\"")
        .replace("dir = \"cache\"", "dir = \"elsewhere\"");
    std::fs::write(f.config_path(), toml).unwrap();
    match edge::reload::reload(state, &f.config_path()) {
        Reload::Applied { restart_needed } => assert_eq!(restart_needed, ["cache"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(state.sites().by_host("c.test").unwrap().name.as_ref(), "a");

    // The open HTTP/2 connection carries on, and the cache still holds the asset.
    let again = h2_send(&mut open, "GET", "https://b.test/asset.css", "").await;
    assert_eq!(again.status, 200);
    assert!(again.header("cache-status").unwrap().contains("hit"));
    assert_eq!(f.origin.hits(), 1);
    // New requests see the new sites (c.test is a's: redirected to HTTPS).
    let c = plain_get(f.plain(), "c.test", "/asset.css").await;
    assert_eq!(c.status, StatusCode::PERMANENT_REDIRECT);
}

#[tokio::test]
async fn an_invalid_reload_changes_nothing_and_reports_every_error() {
    let f = Fixture::start().await;
    let state = &f.edge.running.state;
    let before = state.sites();

    let toml = two_sites(&f.origin, "127.0.0.1:0", "127.0.0.1:0", ", \"c.test\"")
        .replace(
            "hsts = \"max-age=600; includeSubDomains\"",
            "hsts = \"forever\"",
        )
        .replace("tls_key = \"b.key\"", "tls_key = \"missing.key\"");
    std::fs::write(f.config_path(), toml).unwrap();
    match edge::reload::reload(state, &f.config_path()) {
        Reload::Rejected(errors) => {
            let keys: Vec<_> = errors.errors.iter().map(|e| e.key.as_str()).collect();
            assert_eq!(keys, ["site[0].hsts", "site[1].tls_key"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(Arc::ptr_eq(&before, &state.sites()));

    // A valid file naming a certificate that does not load is rejected too.
    let toml = two_sites(&f.origin, "127.0.0.1:0", "127.0.0.1:0", ", \"c.test\"");
    std::fs::write(f.config_path(), toml).unwrap();
    std::fs::write(f.dir().join("b.pem"), "garbage").unwrap();
    match edge::reload::reload(state, &f.config_path()) {
        Reload::Rejected(errors) => assert_eq!(errors.errors[0].key, "site[1].tls_cert"),
        other => panic!("{other:?}"),
    }
    assert!(Arc::ptr_eq(&before, &state.sites()));
    // Still serving, with the old certificate.
    let stream = connect(&f.pki.client(&[b"h2"]), f.tls(), "b.test")
        .await
        .unwrap();
    assert_eq!(peer_leaf(&stream), f.b.der);
    assert_eq!(
        plain_get(f.plain(), "c.test", "/asset.css").await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
}

// ---------------------------------------------------------------------------------
// The real binary: signals

/// An `edge` process, killed when dropped; its log goes to `edge.log` in its directory.
struct Process {
    child: Child,
    dir: tempfile::TempDir,
    plain: SocketAddr,
    tls: SocketAddr,
}

impl Process {
    /// Starts `edge serve` with the two-site configuration and waits until it answers.
    async fn start(pki: &Pki, origin: &TestOrigin) -> Process {
        let dir = tempfile::tempdir().unwrap();
        pki.issue(&["a.test"]).write(dir.path(), "a");
        pki.issue(&["b.test", "*.b.test"]).write(dir.path(), "b");
        let (plain, tls) = (free_port(), free_port());
        let toml = two_sites(origin, &plain.to_string(), &tls.to_string(), "");
        std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
        let log = std::fs::File::create(dir.path().join("edge.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_edge"))
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("edge.toml"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let process = Process {
            child,
            dir,
            plain,
            tls,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(plain).await.is_err() || TcpStream::connect(tls).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "edge did not start:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("edge.log")).unwrap_or_default()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("edge.toml")
    }

    /// Waits until the log contains `text`.
    async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no `{text}` in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit; its success.
    async fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "edge did not exit:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn sighup_with_a_bad_config_keeps_serving_and_a_good_one_applies() {
    let pki = Pki::new();
    let origin = TestOrigin::start().await;
    origin.route("/asset.css", Route::ok("body{}"));
    let mut edge = Process::start(&pki, &origin).await;
    assert_eq!(
        plain_get(edge.plain, "b.test", "/asset.css").await.status,
        200
    );

    std::fs::write(edge.config_path(), "[server]\nlisten = 80\nbogus = true\n").unwrap();
    edge.signal("HUP");
    edge.wait_for_log("configuration not reloaded").await;
    assert!(
        edge.child.try_wait().unwrap().is_none(),
        "edge exited on SIGHUP:\n{}",
        edge.log()
    );
    assert_eq!(
        plain_get(edge.plain, "b.test", "/asset.css").await.status,
        200
    );
    assert_eq!(
        tls_get(&pki, edge.tls, "b.test", "/asset.css").await.status,
        200
    );
    assert_eq!(
        plain_get(edge.plain, "c.test", "/asset.css").await.status,
        421
    );

    let good = two_sites(
        &origin,
        &edge.plain.to_string(),
        &edge.tls.to_string(),
        ", \"c.test\"",
    );
    std::fs::write(edge.config_path(), good).unwrap();
    edge.signal("HUP");
    edge.wait_for_log("configuration reloaded").await;
    assert_eq!(
        plain_get(edge.plain, "c.test", "/asset.css").await.status,
        StatusCode::PERMANENT_REDIRECT,
        "c.test is site a's now, which redirects to HTTPS"
    );

    edge.signal("TERM");
    assert!(
        edge.wait_exit(Duration::from_secs(15)).await,
        "{}",
        edge.log()
    );
}

#[tokio::test]
async fn sighup_reloads_a_replaced_certificate() {
    let pki = Pki::new();
    let origin = TestOrigin::start().await;
    let edge = Process::start(&pki, &origin).await;
    let client = pki.client(&[b"h2"]);
    let before = peer_leaf(&connect(&client, edge.tls, "a.test").await.unwrap());

    let renewed = pki.issue(&["a.test"]);
    renewed.write(edge.dir.path(), "a");
    edge.signal("HUP");
    edge.wait_for_log("configuration reloaded").await;
    let after = peer_leaf(&connect(&client, edge.tls, "a.test").await.unwrap());
    assert_ne!(after, before);
    assert_eq!(after, renewed.der);
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_on_both_listeners() {
    let pki = Pki::new();
    let origin = TestOrigin::start().await;
    let body = "x".repeat(100_000);
    for path in ["/slow-plain", "/slow-tls"] {
        origin.route(
            path,
            Route::ok(body.clone()).misbehave(Misbehaviour::Slow(Duration::from_millis(1500))),
        );
    }
    let mut edge = Process::start(&pki, &origin).await;

    let plain = tokio::spawn(plain_get(edge.plain, "b.test", "/slow-plain"));
    let tls_stream = connect(&pki.client(&[b"h2"]), edge.tls, "b.test")
        .await
        .unwrap();
    let mut sender = h2(tls_stream).await;
    let tls =
        tokio::spawn(
            async move { h2_send(&mut sender, "GET", "https://b.test/slow-tls", "").await },
        );
    // Both requests are at the origin.
    let deadline = Instant::now() + Duration::from_secs(5);
    while origin.hits() < 2 {
        assert!(
            Instant::now() < deadline,
            "requests did not reach the origin"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    edge.signal("TERM");
    edge.wait_for_log("shutting down").await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while TcpStream::connect(edge.plain).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting while draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!plain.is_finished(), "the slow request is still in flight");
    let plain = plain.await.unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body.len(), body.len());
    let tls = tls.await.unwrap();
    assert_eq!(tls.status, 200);
    assert_eq!(tls.version, Version::HTTP_2);
    assert_eq!(tls.body.len(), body.len());
    assert!(
        edge.wait_exit(Duration::from_secs(15)).await,
        "{}",
        edge.log()
    );
    assert!(edge.log().contains("stopped"), "{}", edge.log());
}
