//! The client's limit in `benches/compare`: a server that answers each request with bytes
//! captured from edge's answer to the same request, and does nothing else. It finds the
//! end of each request head, picks the answer by the request target and whether
//! `If-None-Match` is present, and writes it: no cache, no lookup, no header parsing,
//! one runtime thread (as edge runs pinned). Whatever it reaches is the most any server
//! could show in that test with this client on this machine, so a ratio to a peer that
//! it cannot reach either is a limit of the client, not of the server.
//!
//! ```sh
//! cargo run --release --example replay -- --listen 127.0.0.1:18085 --answers DIR
//! ```
//!
//! `DIR/index` has one line per answer, `TARGET<TAB>INM<TAB>FILE`: the request target,
//! `1` if the request carries `If-None-Match` (else `0`), and the file under `DIR` that
//! holds the whole answer as sent on the wire (status line, header block and body).
//! Any other request is answered 404. `benches/compare/run.py` writes `DIR` from edge's
//! own answers after warm-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 10\r\ncontent-type: text/plain\r\n\r\nnot found\n";

/// One captured answer and the requests it is for.
struct Answer {
    target: Vec<u8>,
    if_none_match: bool,
    bytes: Bytes,
}

fn load(dir: &std::path::Path) -> Result<Vec<Answer>, String> {
    let index = dir.join("index");
    let text = std::fs::read_to_string(&index).map_err(|e| format!("{}: {e}", index.display()))?;
    let mut answers = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split('\t').collect();
        let [target, inm, file] = fields[..] else {
            return Err(format!(
                "{}:{}: expected TARGET<TAB>INM<TAB>FILE",
                index.display(),
                n + 1
            ));
        };
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        answers.push(Answer {
            target: target.as_bytes().to_vec(),
            if_none_match: match inm {
                "0" => false,
                "1" => true,
                other => {
                    return Err(format!(
                        "{}:{}: INM is 0 or 1, not {other:?}",
                        index.display(),
                        n + 1
                    ));
                }
            },
            bytes: Bytes::from(bytes),
        });
    }
    Ok(answers)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether a header line of `head` is named `if-none-match` (any case).
fn has_if_none_match(head: &[u8]) -> bool {
    const NAME: &[u8] = b"\nif-none-match:";
    head.windows(NAME.len())
        .any(|w| w.eq_ignore_ascii_case(NAME))
}

/// The answer for one request head (its request line's target and `If-None-Match`).
fn answer_for<'a>(answers: &'a [Answer], head: &[u8]) -> &'a [u8] {
    let mut words = head.splitn(3, |&b| b == b' ');
    let target = words.nth(1).unwrap_or_default();
    let inm = has_if_none_match(head);
    answers
        .iter()
        .find(|a| a.target == target && a.if_none_match == inm)
        .map_or(NOT_FOUND, |a| &a.bytes[..])
}

async fn serve(mut stream: TcpStream, answers: Arc<Vec<Answer>>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        // Every whole head already read, in order (pipelined requests included).
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let answer = answer_for(&answers, &buf[..end]);
            stream.write_all(answer).await?;
            buf.advance(end + 4);
        }
        if buf.len() > 64 * 1024 {
            return Ok(()); // not a request this server is for
        }
        buf.reserve(4096);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

fn args() -> Result<(SocketAddr, PathBuf), String> {
    let mut listen: SocketAddr = "127.0.0.1:18085".parse().expect("default address");
    let mut dir = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--answers" => dir = Some(PathBuf::from(value()?)),
            other => {
                return Err(format!(
                    "unknown argument `{other}` (use --listen ADDR --answers DIR)"
                ));
            }
        }
    }
    Ok((listen, dir.ok_or("--answers DIR is required")?))
}

fn main() {
    let (listen, dir) = args().unwrap_or_else(|e| {
        eprintln!("replay: {e}");
        std::process::exit(2);
    });
    let answers = Arc::new(load(&dir).unwrap_or_else(|e| {
        eprintln!("replay: {e}");
        std::process::exit(1);
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.unwrap_or_else(|e| {
            eprintln!("replay: cannot listen on {listen}: {e}");
            std::process::exit(1);
        });
        eprintln!("replay: {} answers on {listen}", answers.len());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answers = answers.clone();
            tokio::spawn(async move {
                let _ = serve(stream, answers).await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_picked_by_target_and_if_none_match() {
        let answers = vec![
            Answer {
                target: b"/a".to_vec(),
                if_none_match: false,
                bytes: Bytes::from_static(b"200"),
            },
            Answer {
                target: b"/a".to_vec(),
                if_none_match: true,
                bytes: Bytes::from_static(b"304"),
            },
        ];
        let get = b"GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*";
        assert_eq!(answer_for(&answers, get), b"200");
        let conditional = b"GET /a HTTP/1.1\r\nHost: x\r\nIF-NONE-MATCH: \"e\"";
        assert_eq!(answer_for(&answers, conditional), b"304");
        assert_eq!(
            answer_for(&answers, b"GET /b HTTP/1.1\r\nHost: x"),
            NOT_FOUND
        );
    }
}
