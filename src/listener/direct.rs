//! The direct path: HTTP/1.1 requests (plain, or over TLS) that a hit in the memory tier
//! answers are read and answered here, without hyper. A hit is the common request of a
//! CDN node, and the whole of it is a lookup and one write of a header block built when
//! the entry was first served ([`crate::respond::respond_wire`]); hyper's request and
//! response maps, its dispatcher and its encoder cost more than that. A body is written
//! from memory, or sent with `sendfile` on plain TCP from its sealed copy or, for a large
//! object the memory tier holds only open, from its disk blob ([`super::BodyFile`]).
//!
//! The path takes only requests it can read without doubt: `GET` or `HEAD`, HTTP/1.1 (or
//! HTTP/1.0 with `Connection: keep-alive`, answered as hyper answers it), an
//! origin-form target of URI characters, one `Host`, at most one `Accept-Encoding` and
//! `If-None-Match` line (`If-Modified-Since` only beside it, which then ignores it), and
//! none of the fields that would change how the request is read or answered (a body,
//! `Connection` other than `keep-alive`, `Expect`, `Upgrade`, `Authorization`, `Range`
//! and the other preconditions; `Cache-Control` and `Pragma` are noted for the handler,
//! which may ignore them). A request it takes that the handler does not answer (a miss,
//! a stale entry) is lent to hyper alone, and the connection comes back once its
//! response is sent in full (`Connection::lend`). The first request it cannot take goes
//! to hyper with every byte read and not yet answered, and the rest of the connection
//! is hyper's: hyper reads that request again from its first byte, and its errors
//! (400, 431, 414) and limits apply as before. Timeouts are those of the
//! stream it is given, and graceful shutdown closes it between requests.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use super::{BodyFile, Connection, Handler, Open, SendFile, stopped};
use crate::body::TURN;
use crate::tls::Scheme;

/// A request the direct path may answer, read from the connection's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectRequest<'a> {
    /// `HEAD` (the answer's body is not sent) rather than `GET`.
    pub head: bool,
    /// The origin-form target, as sent.
    pub target: &'a str,
    /// The one `Host` line's value.
    pub host: &'a [u8],
    /// The `Accept-Encoding` line's value, if there is one.
    pub accept_encoding: Option<&'a [u8]>,
    /// The `If-None-Match` line's value, if there is one.
    pub if_none_match: Option<&'a [u8]>,
    /// Whether it has `Cache-Control` or `Pragma` (not read here).
    pub cache_directives: bool,
    /// HTTP/1.0 with `Connection: keep-alive` (rather than HTTP/1.1): answered as
    /// hyper answers it, with an `HTTP/1.0` status line and `Connection: keep-alive`.
    pub http10: bool,
}

/// The request-head limits of the listener (see [`crate::config::Limits`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadLimits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// Fields parsed per request head; a head with more goes to hyper.
const MAX_FIELDS: usize = 64;

/// The longest head taken here: hyper refuses a target or a field value of 64 KiB or
/// more, which a longer head could hold, whatever `max_header_bytes` allows.
const MAX_HEAD: usize = 64 * 1024 - 1;

/// Requests in a row, lent to hyper and answered at once (from memory), after which a
/// connection is left to hyper for good.
const CHEAP_LENDS: u32 = 4;

/// Bytes the buffer has room for before each read.
const READ_AHEAD: usize = 4096;

/// Serves an HTTP/1.1 connection (plain, or TLS without h2): answers the requests its
/// handler answers directly, in order, lending the others it takes to hyper one at a
/// time, until a request it does not take hands the connection to hyper (see the
/// module documentation). Ends when the client closes, a timeout of `stream` fires, a
/// write fails, or `stop` turns true while no request is being answered.
pub(super) async fn serve<H, S>(
    connection: Connection<H>,
    mut stream: S,
    limits: HeadLimits,
    stop: watch::Receiver<bool>,
    scheme: Scheme,
) where
    H: Handler,
    S: AsyncRead + AsyncWrite + SendFile + Unpin + Send + 'static,
{
    let mut buf = BytesMut::new();
    if connection.handler.direct() {
        let mut head = Vec::new();
        // Requests in a row lent to hyper that it answered at once.
        let mut cheap_lends = 0;
        // One wait for the whole connection: a wait made and dropped around each read
        // would take the channel's waiter-list lock twice per request.
        let mut shutdown = std::pin::pin!({
            let mut stop = stop.clone();
            async move { stopped(&mut stop).await }
        });
        loop {
            // Every complete request already read, in order, until a graceful shutdown
            // (the one being answered when it began is finished).
            while !stopping(&stop) {
                let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
                let (len, body) = match parse(&buf, &mut fields, limits) {
                    Parsed::Partial => break,
                    Parsed::Other => return hand_over(connection, buf, stream, scheme).await,
                    Parsed::Direct(len, request) => {
                        head.clear();
                        let answer = connection
                            .handler
                            .answer_direct(&request, scheme, &mut head);
                        (len, answer)
                    }
                };
                let Some(body) = body else {
                    // Declined (a miss, a stale or varying entry): hyper answers this
                    // request, then the connection comes back.
                    let request = buf.split_to(len).freeze();
                    let Some(back) = connection.lend(stream, request, scheme, &stop).await else {
                        return;
                    };
                    stream = back.stream;
                    buf.unsplit(back.read);
                    // Lending costs hyper a new connection state each time: next to an
                    // origin's answer nothing, next to one from memory about a fifth of
                    // it. A connection whose requests hyper keeps answering at once
                    // (a varying entry, Cache-Control on a site that honours it) is
                    // left to hyper.
                    cheap_lends = if back.at_once { cheap_lends + 1 } else { 0 };
                    if cheap_lends == CHEAP_LENDS {
                        return hand_over(connection, buf, stream, scheme).await;
                    }
                    continue;
                };
                cheap_lends = 0;
                buf.advance(len);
                let open = Open::enter(&connection.activity);
                let written = match &body.file {
                    Some(file) if stream.sends_files() => {
                        write_file(&mut stream, &head, file).await
                    }
                    Some(BodyFile::Blob(..)) => {
                        // The handler answers those on plain TCP only.
                        debug_assert!(false, "a blob body on a stream that cannot send files");
                        Err(io::Error::other(
                            "a blob body on a stream that cannot send files",
                        ))
                    }
                    _ => write(&mut stream, &head, &body.bytes).await,
                };
                if let Err(error) = written {
                    tracing::debug!(peer = %connection.peer, %error, "connection ended with an error");
                    return;
                }
                drop(open);
            }
            if stopping(&stop) {
                return;
            }
            if buf.len() >= limits.max_header_bytes {
                // hyper answers 431.
                return hand_over(connection, buf, stream, scheme).await;
            }
            buf.reserve(READ_AHEAD);
            let read = tokio::select! {
                read = stream.read_buf(&mut buf) => read,
                // Between requests: nothing in flight to finish.
                _ = &mut shutdown => return,
            };
            match read {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(peer = %connection.peer, %error, "connection ended with an error");
                    return;
                }
            }
        }
    }
    hand_over(connection, buf, stream, scheme).await
}

/// Whether a graceful shutdown has begun (`stop` turned true, or its sender is gone):
/// one atomic load.
pub(super) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    !matches!(stop.has_changed(), Ok(false))
}

/// Gives the connection to hyper for good, with `read`: what was read and not answered.
async fn hand_over<H, S>(connection: Connection<H>, read: BytesMut, stream: S, scheme: Scheme)
where
    H: Handler,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stream = Rewind {
        read: read.freeze(),
        inner: stream,
    };
    connection.serve(stream, scheme).await
}

/// What the start of a buffer holds.
enum Parsed<'b> {
    /// Not yet a whole request head.
    Partial,
    /// A request for hyper: malformed, over a limit, or not one the direct path takes.
    Other,
    /// A request head of this many bytes that the direct path may answer.
    Direct(usize, DirectRequest<'b>),
}

fn parse<'b>(buf: &'b [u8], fields: &mut [httparse::Header<'b>], limits: HeadLimits) -> Parsed<'b> {
    let mut parsed = httparse::Request::new(fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    if len > limits.max_header_bytes.min(MAX_HEAD)
        || parsed.headers.len() > limits.max_headers
        || !matches!(parsed.version, Some(0 | 1))
    {
        return Parsed::Other;
    }
    let head = match parsed.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Parsed::Other,
    };
    let Some(target) = parsed.path.filter(|t| is_origin_form(t.as_bytes())) else {
        return Parsed::Other;
    };
    let mut host = None;
    let mut accept_encoding = None;
    let mut if_none_match = None;
    let mut if_modified_since = false;
    let mut cache_directives = false;
    let mut keep_alive = false;
    for field in parsed.headers.iter() {
        let name = field.name.as_bytes();
        let slot = if name.eq_ignore_ascii_case(b"host") {
            &mut host
        } else if name.eq_ignore_ascii_case(b"accept-encoding") {
            &mut accept_encoding
        } else if name.eq_ignore_ascii_case(b"if-none-match") {
            &mut if_none_match
        } else if name.eq_ignore_ascii_case(b"if-modified-since") {
            if_modified_since = true;
            continue;
        } else if name.eq_ignore_ascii_case(b"cache-control")
            || name.eq_ignore_ascii_case(b"pragma")
        {
            cache_directives = true;
            continue;
        } else if name.eq_ignore_ascii_case(b"connection") {
            if !field.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive") {
                return Parsed::Other;
            }
            keep_alive = true;
            continue;
        } else if CHANGES_THE_ANSWER
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            return Parsed::Other;
        } else {
            continue;
        };
        if slot.replace(field.value).is_some() {
            // A repeated line: hyper's reading of the whole request decides.
            return Parsed::Other;
        }
    }
    // RFC 9110 §13.1.3: If-Modified-Since is ignored beside If-None-Match (as browsers
    // revalidate), and evaluated by hyper's path alone.
    let Some(host) = host.filter(|_| !if_modified_since || if_none_match.is_some()) else {
        return Parsed::Other;
    };
    // HTTP/1.0 closes after each answer unless the client asks to keep the connection
    // (RFC 9112 §9.3): those that do not are hyper's, which closes.
    let http10 = parsed.version == Some(0);
    if http10 && !keep_alive {
        return Parsed::Other;
    }
    Parsed::Direct(
        len,
        DirectRequest {
            head,
            target,
            host,
            accept_encoding,
            if_none_match,
            cache_directives,
            http10,
        },
    )
}

/// Fields that send a request to hyper: they frame a body, change the connection, or
/// change which answer is right (the full reading of a request is the proxy's).
const CHANGES_THE_ANSWER: [&str; 11] = [
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    "te",
    "http2-settings",
    "authorization",
    "range",
    "if-range",
    "if-match",
    "if-unmodified-since",
];

/// An origin-form target (RFC 9112 §3.2.1) of URI characters only (RFC 3986 §2):
/// anything else is hyper's to accept or refuse.
fn is_origin_form(target: &[u8]) -> bool {
    target.first() == Some(&b'/')
        && target
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b))
}

/// Writes a response: `head`, then `body` — a large body in turns of [`TURN`] bytes
/// with a yield between them, as [`crate::body`] hands bodies to hyper, so that one
/// connection taking megabytes at once does not hold up the others on its thread.
async fn write<S: AsyncWrite + Unpin>(stream: &mut S, head: &[u8], body: &[u8]) -> io::Result<()> {
    let (first, mut rest) = body.split_at(body.len().min(TURN));
    let mut both = [IoSlice::new(head), IoSlice::new(first)];
    let mut slices: &mut [IoSlice<'_>] = match first.is_empty() {
        true => &mut both[..1],
        false => &mut both[..],
    };
    while !slices.is_empty() {
        match stream.write_vectored(slices).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut slices, n),
        }
    }
    while !rest.is_empty() {
        tokio::task::yield_now().await;
        let (turn, after) = rest.split_at(rest.len().min(TURN));
        stream.write_all(turn).await?;
        rest = after;
    }
    Ok(())
}

/// Writes a response whose body is in a file: `head` (sent with `MSG_MORE`, so that it
/// leaves with the body's start), then the file with `sendfile`, in turns of [`TURN`]
/// bytes as [`write`] does.
async fn write_file<S: SendFile + Unpin>(
    stream: &mut S,
    head: &[u8],
    file: &BodyFile,
) -> io::Result<()> {
    let mut head = head;
    while !head.is_empty() {
        match std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_send_more(cx, head)).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => head = &head[n..],
        }
    }
    let mut offset = 0;
    let mut turn = 0;
    while offset < file.len() {
        if turn == TURN {
            tokio::task::yield_now().await;
            turn = 0;
        }
        let want = (file.len() - offset).min((TURN - turn) as u64) as usize;
        let sent = std::future::poll_fn(|cx| {
            Pin::new(&mut *stream).poll_send_file(cx, file.fd(), &mut offset, want)
        })
        .await?;
        if sent == 0 {
            // A sealed file cannot shrink; a blob that did (truncated under us) must not
            // pass for whole: the connection ends short of its Content-Length.
            return Err(io::ErrorKind::WriteZero.into());
        }
        turn += sent;
    }
    Ok(())
}

/// A stream whose first reads return bytes already read from it.
struct Rewind<S> {
    read: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() || buf.remaining() == 0 {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

write_through!(Rewind);

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_header_bytes: 8192,
        max_headers: 100,
    };

    fn direct(head: &str) -> Option<(usize, DirectRequest<'_>)> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        match parse(head.as_bytes(), &mut fields, LIMITS) {
            Parsed::Direct(len, request) => Some((len, request)),
            _ => None,
        }
    }

    fn is_other(head: &str) -> bool {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        matches!(parse(head.as_bytes(), &mut fields, LIMITS), Parsed::Other)
    }

    #[test]
    fn a_plain_get_is_read_with_the_fields_that_matter() {
        let head = "GET /a.css?v=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\
                    Accept-Encoding: br, gzip\r\nIf-None-Match: \"x\"\r\n\
                    Connection: Keep-Alive\r\n\r\nGET /next";
        let (len, request) = direct(head).expect("direct");
        assert_eq!(&head[len..], "GET /next");
        assert_eq!(
            request,
            DirectRequest {
                head: false,
                target: "/a.css?v=1",
                host: b"example.com",
                accept_encoding: Some(b"br, gzip"),
                if_none_match: Some(b"\"x\""),
                cache_directives: false,
                http10: false,
            }
        );
        // HTTP/1.0 that keeps its connection.
        let old = "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n";
        assert!(direct(old).expect("direct").1.http10);
        let reload = "GET / HTTP/1.1\r\nHost: a\r\nCache-Control: max-age=0\r\n\r\n";
        assert!(direct(reload).expect("direct").1.cache_directives);
        let old = "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n";
        assert!(direct(old).expect("direct").1.cache_directives);
        let (_, request) = direct("HEAD / HTTP/1.1\r\nhost: a\r\n\r\n").expect("direct");
        assert!(request.head);
        // A browser's revalidation: If-Modified-Since beside If-None-Match is ignored.
        let revalidation = "GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Thu, 01 Jan 2026 \
                            00:00:00 GMT\r\nIf-None-Match: \"x\"\r\n\r\n";
        let (_, request) = direct(revalidation).expect("direct");
        assert_eq!(request.if_none_match, Some(&b"\"x\""[..]));
    }

    #[test]
    fn a_head_cut_short_waits_for_more() {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let partial = parse(b"GET / HTTP/1.1\r\nHost: a\r\n", &mut fields, LIMITS);
        assert!(matches!(partial, Parsed::Partial));
    }

    #[test]
    fn requests_the_path_does_not_read_fully_go_to_hyper() {
        for head in [
            // Other methods, versions and target forms.
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            // HTTP/1.0 that closes after the answer.
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\nConnection: close\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            // Targets with characters outside the URI set.
            "GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a{b} HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
            // No Host, or two.
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            // A repeated field the answer depends on.
            "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br\r\nAccept-Encoding: gzip\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"a\"\r\nif-none-match: \"b\"\r\n\r\n",
            // Fields that frame a body or change the connection or the answer.
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nIf-Match: *\r\nIf-None-Match: \"a\"\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
            // Malformed.
            "GET / HTTP/1.1\r\nHost a\r\n\r\n",
            "GET  HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(is_other(head), "{head:?} should go to hyper");
        }
    }

    #[test]
    fn heads_over_the_limits_go_to_hyper() {
        let many: String = (0..MAX_FIELDS + 1)
            .map(|i| format!("x-{i}: y\r\n"))
            .collect();
        assert!(is_other(&format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"
        )));
        let limits = HeadLimits {
            max_header_bytes: 30,
            max_headers: 1,
        };
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let long = b"GET /aaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(matches!(parse(long, &mut fields, limits), Parsed::Other));
        // Past 64 KiB hyper refuses what the head may hold, whatever the limit says.
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "y".repeat(MAX_HEAD)
        );
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let limits = HeadLimits {
            max_header_bytes: 1 << 20,
            max_headers: 100,
        };
        assert!(matches!(
            parse(huge.as_bytes(), &mut fields, limits),
            Parsed::Other
        ));
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let two = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
        let limits = HeadLimits {
            max_header_bytes: 8192,
            max_headers: 1,
        };
        assert!(matches!(parse(two, &mut fields, limits), Parsed::Other));
    }

    #[tokio::test]
    async fn a_rewound_stream_reads_what_was_read_first() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut rewound = Rewind {
            read: Bytes::from_static(b"first "),
            inner: client,
        };
        server.write_all(b"then the socket").await.unwrap();
        drop(server);
        let mut all = String::new();
        rewound.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "first then the socket");
    }

    #[tokio::test]
    async fn a_large_body_is_written_whole_in_turns() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let body: Vec<u8> = (0..3 * TURN + 5).map(|i| (i % 251) as u8).collect();
        let expected = body.clone();
        let writer = tokio::spawn(async move {
            write(&mut server, b"head\r\n\r\n", &body).await.unwrap();
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(&got[..8], b"head\r\n\r\n");
        assert!(got[8..] == expected[..], "body differs");
    }
}
