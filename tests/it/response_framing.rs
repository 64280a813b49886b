//! Issue 28, items 2, 6, 8 and 9: what a backend's response framing does to the client's
//! connection and to the backend's. A backend that answers with scripted bytes stands behind
//! the proxy; clients on raw sockets see exactly what the proxy sends. Each case runs with
//! an HTTP/1.1 client (the fast lane) and with HTTP/1.0 or `Expect: 100-continue` clients
//! (Pingora's session on the direct path), and with the lane off.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const HOST: &str = "f.example.com";

/// What the scripted backend does for one request.
#[derive(Clone)]
enum Step {
    Send(&'static [u8]),
    /// Waits until the test lets it go on.
    Wait(Arc<Notify>),
    /// Closes the connection.
    Close,
}

/// A backend that answers every request with the same script, and counts.
struct Scripted {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start(script: Vec<Step>) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s, script.clone(), r.clone()));
            }
        });
        Scripted {
            addr,
            connections,
            requests,
        }
    }

    fn doc(&self, extra: &str) -> String {
        format!(
            "upstreams:\n  {HOST}:\n    paths:\n      \"/\":\n        healthcheck: false\n        servers: [\"{}\"]\n{extra}",
            self.addr
        )
    }
}

async fn serve(mut s: TcpStream, script: Vec<Step>, requests: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        // One request head (the proxy sends no bodies here).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        requests.fetch_add(1, Ordering::SeqCst);
        for step in &script {
            match step {
                Step::Send(bytes) => {
                    if s.write_all(bytes).await.is_err() {
                        return;
                    }
                }
                Step::Wait(go) => go.notified().await,
                Step::Close => return,
            }
        }
    }
}

/// Reads a response's head (through its empty line) and returns it with what came after.
async fn read_head(s: &mut TcpStream, deadline: Duration) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buf.split_off(end + 4);
                return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(deadline, read).await.ok().flatten()
}

/// The final response's head (an interim `100 Continue` skipped) and what came after it.
async fn final_head(s: &mut TcpStream, deadline: Duration) -> Option<(String, Vec<u8>)> {
    let (head, rest) = read_head(s, deadline).await?;
    if head.starts_with("HTTP/1.1 100") {
        return Some(read_head_after(s, rest).await);
    }
    Some((head, rest))
}

/// Everything until the proxy closes the connection (within 10 s).
async fn read_to_close(s: &mut TcpStream, mut got: Vec<u8>) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the proxy did not close the connection")
        .ok();
    got
}

fn field<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// The kinds of client request, and the head each sends.
const CLIENTS: [(&str, &str); 3] = [
    (
        "HTTP/1.1 (lane)",
        "GET / HTTP/1.1\r\nHost: f.example.com\r\n\r\n",
    ),
    (
        "HTTP/1.0 keep-alive",
        "GET / HTTP/1.0\r\nHost: f.example.com\r\nConnection: keep-alive\r\n\r\n",
    ),
    (
        "Expect: 100-continue",
        "GET / HTTP/1.1\r\nHost: f.example.com\r\nExpect: 100-continue\r\n\r\n",
    ),
];

/// A new client connection to `proxy` that has sent `request`.
async fn send(proxy: &Proxy, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    s.write_all(request).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn length_beside_transfer_encoding_reaches_the_client_as_one_framing() {
    let backend = Scripted::start(vec![Step::Send(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )])
    .await;
    for (setting, proxy) in both_engines(&backend.doc("")).await {
        for (client, request) in CLIENTS {
            let before = backend.connections.load(Ordering::SeqCst);
            let mut s = send(&proxy, request.as_bytes()).await;
            let (head, rest) = final_head(&mut s, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("{setting}, {client}: no response"));
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "{setting}, {client}: {head}"
            );
            let lengths = field(&head, "content-length");
            let codings = field(&head, "transfer-encoding");
            assert!(
                lengths.is_empty() || codings.is_empty(),
                "{setting}, {client}: two framings: {head}"
            );
            let body = if codings == ["chunked"] {
                let raw = read_chunked(&mut s, rest).await;
                dechunk(&raw)
            } else {
                // HTTP/1.0: no transfer coding, the body ends with the connection.
                assert!(lengths.is_empty(), "{setting}, {client}: {head}");
                read_to_close(&mut s, rest).await
            };
            assert_eq!(body, b"hello", "{setting}, {client}");
            // The backend connection of an ambiguous response is not reused.
            let mut s = send(&proxy, request.as_bytes()).await;
            assert!(final_head(&mut s, Duration::from_secs(10)).await.is_some());
            assert_eq!(
                backend.connections.load(Ordering::SeqCst),
                before + 2,
                "{setting}, {client}: a backend connection was reused after CL with TE"
            );
        }
    }
}

async fn read_head_after(s: &mut TcpStream, mut rest: Vec<u8>) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            let after = rest.split_off(end + 4);
            return (String::from_utf8_lossy(&rest).into_owned(), after);
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the final response");
        rest.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until the last chunk's empty line is in.
async fn read_chunked(s: &mut TcpStream, mut got: Vec<u8>) -> Vec<u8> {
    while !got.ends_with(b"0\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the chunked body did not end")
            .unwrap();
        assert!(n > 0, "closed within the chunked body");
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line]).unwrap(), 16).unwrap();
        raw = &raw[line + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_chunked_coding_with_a_length_is_relayed_until_close() {
    let backend = Scripted::start(vec![
        Step::Send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
        ),
        Step::Close,
    ])
    .await;
    for (setting, proxy) in both_engines(&backend.doc("")).await {
        for (client, request) in CLIENTS {
            let mut s = send(&proxy, request.as_bytes()).await;
            let (head, rest) = final_head(&mut s, Duration::from_secs(10)).await.unwrap();
            assert!(
                field(&head, "content-length").is_empty(),
                "{setting}, {client}: {head}"
            );
            // Five bytes and then the next response would be a desync; the whole body
            // and a closed connection are not.
            let body = read_to_close(&mut s, rest).await;
            assert_eq!(body, b"helloEXTRA", "{setting}, {client}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_bytes_after_a_response_retire_the_backend_connection() {
    // More than Content-Length, then a 204 and a HEAD answer with a body after them.
    let cases: [(&str, &'static [u8], &[u8]); 3] = [
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloXXXX",
            b"hello",
        ),
        (
            "GET",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
            b"",
        ),
        (
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"",
        ),
    ];
    for (method, reply, want) in cases {
        let backend = Scripted::start(vec![Step::Send(reply)]).await;
        for (setting, proxy) in both_engines(&backend.doc("")).await {
            let before = backend.connections.load(Ordering::SeqCst);
            let mut conn = common::raw::Conn::open(&proxy).await;
            for round in 0..3 {
                conn.send(format!("{method} / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
                    .await;
                let resp = conn.response(method == "HEAD").await;
                let what = format!("{setting}, {method} round {round}: {}", resp.head);
                assert!(resp.status == 200 || resp.status == 204, "{what}");
                assert_eq!(resp.body, want, "{what}");
                if resp.status == 204 {
                    assert_eq!(resp.header("content-length"), None, "{what}");
                }
            }
            assert_eq!(
                backend.connections.load(Ordering::SeqCst) - before,
                3,
                "{setting}, {method}: a connection with bytes past the response was reused"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_lengths_are_sent_once() {
    let backend = Scripted::start(vec![Step::Send(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    )])
    .await;
    for (setting, proxy) in both_engines(&backend.doc("")).await {
        for (client, request) in CLIENTS {
            let mut s = send(&proxy, request.as_bytes()).await;
            let (head, _) = final_head(&mut s, Duration::from_secs(10)).await.unwrap();
            assert_eq!(
                field(&head, "content-length"),
                ["5"],
                "{setting}, {client}: {head}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_clients_get_a_chunked_body_dechunked_and_the_connection_closed() {
    let backend = Scripted::start(vec![Step::Send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )])
    .await;
    for (setting, proxy) in both_engines(&backend.doc("")).await {
        let mut s = send(
            &proxy,
            b"GET / HTTP/1.0\r\nHost: f.example.com\r\nConnection: keep-alive\r\n\r\n",
        )
        .await;
        let (head, rest) = final_head(&mut s, Duration::from_secs(10)).await.unwrap();
        assert!(
            field(&head, "transfer-encoding").is_empty(),
            "{setting}: {head}"
        );
        assert_eq!(
            read_to_close(&mut s, rest).await,
            b"hello world",
            "{setting}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chunk_sizes_with_signs_or_spaces_are_refused() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
    ] {
        let backend = Scripted::start(vec![Step::Send(reply)]).await;
        for (setting, proxy) in both_engines(&backend.doc("")).await {
            let mut s = send(&proxy, CLIENTS[0].1.as_bytes()).await;
            let got = read_to_close(&mut s, Vec::new()).await;
            let text = String::from_utf8_lossy(&got);
            // The first chunk came with the head: nothing was sent yet, so a 502.
            assert!(text.starts_with("HTTP/1.1 502"), "{setting}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bare_lf_response_heads_are_read() {
    let backend = Scripted::start(vec![Step::Send(
        b"HTTP/1.1 200 OK\nContent-Length: 2\nX-App: lf\n\nok",
    )])
    .await;
    for (setting, proxy) in both_engines(&backend.doc("        read_timeout: 30\n")).await {
        for (client, request) in CLIENTS {
            let before = backend.requests.load(Ordering::SeqCst);
            let mut s = send(&proxy, request.as_bytes()).await;
            // Well before the 30 s read timeout: the head is read, not waited on.
            let (head, _) = final_head(&mut s, Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{setting}, {client}: no answer"));
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "{setting}, {client}: {head}"
            );
            assert_eq!(field(&head, "x-app"), ["lf"], "{setting}, {client}");
            assert_eq!(
                backend.requests.load(Ordering::SeqCst) - before,
                1,
                "{setting}, {client}: the request was sent more than once"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_head_goes_out_before_a_late_body() {
    let go = Arc::new(Notify::new());
    let framings: [&'static [u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    ];
    for head_bytes in framings {
        let body: &'static [u8] = if head_bytes.ends_with(b"chunked\r\n\r\n") {
            b"5\r\nhello\r\n0\r\n\r\n"
        } else {
            b"hello"
        };
        let backend = Scripted::start(vec![
            Step::Send(head_bytes),
            Step::Wait(go.clone()),
            Step::Send(body),
        ])
        .await;
        for (setting, proxy) in both_engines(&backend.doc("")).await {
            // A request with a body takes Pingora's proxy path.
            let post = "POST / HTTP/1.1\r\nHost: f.example.com\r\nContent-Length: 2\r\n\r\nhi";
            for (client, request) in CLIENTS.into_iter().chain([("POST", post)]) {
                let mut s = send(&proxy, request.as_bytes()).await;
                // The body is held back until the head has reached the client.
                let got = final_head(&mut s, Duration::from_secs(5)).await;
                let (head, _) = got
                    .unwrap_or_else(|| panic!("{setting}, {client}: the head waited for the body"));
                assert!(
                    head.starts_with("HTTP/1.1 200"),
                    "{setting}, {client}: {head}"
                );
                go.notify_one();
            }
        }
    }
}
