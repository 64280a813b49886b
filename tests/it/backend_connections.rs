//! Connections to backends on the direct path: a client's keep-alive requests reuse one
//! backend connection, and a kept-alive connection the backend closes under a request costs a
//! GET nothing while a POST is never sent twice, and one it closed while idle is not used.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::raw::Conn;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Marks the test's own requests, so that health probes are not counted.
const MARK: &str = "x-test-request";

/// A raw HTTP/1.1 backend that answers up to `answers` requests on each connection, with the
/// connection's number as the body, and closes the connection without answering the request
/// after those (as a backend whose keep-alive timeout fired just as the request arrived).
/// Counts the connections that carried a marked request.
async fn keepalive_backend(answers: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, answers, counter.clone()));
        }
    });
    (addr, connections)
}

async fn serve_connection(mut stream: TcpStream, answers: usize, counter: Arc<AtomicUsize>) {
    let mut id = None;
    let mut answered = 0;
    let mut buf = Vec::new();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        if answered == answers {
            return;
        }
        if head.contains(MARK) && id.is_none() {
            id = Some(counter.fetch_add(1, Ordering::SeqCst) + 1);
        }
        let body = id.unwrap_or(0).to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        answered += 1;
    }
}

/// The proxy with one worker thread, so one pool of backend connections whichever client
/// connection a request comes on.
async fn start_proxy(backend: SocketAddr) -> Proxy {
    let options = ProxyOptions {
        threads: Some(1),
        ..ProxyOptions::default()
    };
    Proxy::start_with(&route(backend), options).await
}

fn route(backend: SocketAddr) -> String {
    format!("upstreams:\n  k.example.com:\n    paths:\n      \"/\":\n        servers: [\"{backend}\"]\n")
}

/// Sends `method` through the proxy on the test's one client connection; status and body.
/// One connection means one proxy thread, and so one pool of backend connections.
async fn send(conn: &mut Conn, method: &str) -> (u16, String) {
    let request = format!(
        "{method} / HTTP/1.1\r\nHost: k.example.com\r\n{MARK}: 1\r\nContent-Length: 0\r\n\r\n"
    );
    conn.send(request.as_bytes()).await;
    let resp = conn.response(false).await;
    (
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_connection_s_requests_share_one_backend_connection() {
    let (backend, connections) = keepalive_backend(usize::MAX).await;
    let proxy = start_proxy(backend).await;
    let mut conn = Conn::open(&proxy).await;
    for _ in 0..20 {
        assert_eq!(send(&mut conn, "GET").await, (200, "1".into()));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_connection_closed_under_a_get_is_retried_but_a_post_is_not_resent() {
    // One answer per connection: every request after the first meets a pooled connection
    // that the backend closes as the request arrives.
    let (backend, connections) = keepalive_backend(1).await;
    let proxy = start_proxy(backend).await;
    let mut conn = Conn::open(&proxy).await;
    for n in 1..=5 {
        // The only backend: no other server to move on to, so only a resend on a new
        // connection can answer.
        assert_eq!(
            send(&mut conn, "GET").await,
            (200, n.to_string()),
            "GET {n}"
        );
    }
    assert_eq!(connections.load(Ordering::SeqCst), 5);
    // The backend may have acted on a request it got before the connection broke: a POST is
    // answered 502 rather than sent again.
    let (status, _) = send(&mut conn, "POST").await;
    assert_eq!(status, 502);
    assert_eq!(connections.load(Ordering::SeqCst), 5);
    // The 502 closed the client connection (as Pingora's error answers do). The broken
    // backend connection was not put back: the next request gets a new one.
    let mut conn = Conn::open(&proxy).await;
    assert_eq!(send(&mut conn, "POST").await, (200, "6".into()));
}

/// A raw backend that answers one request per connection and then closes it at once, as a
/// backend whose keep-alive timeout fires while the connection is idle in the proxy's pool:
/// connections numbered, closes counted.
async fn idle_closing_backend() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (marked, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (counter, closes) = (marked.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (counter, closes) = (counter.clone(), closes.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let marked = String::from_utf8_lossy(&buf)
                    .to_ascii_lowercase()
                    .contains(MARK);
                let id = if marked {
                    counter.fetch_add(1, Ordering::SeqCst) + 1
                } else {
                    0
                };
                let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{id}");
                let _ = stream.write_all(reply.as_bytes()).await;
                drop(stream);
                if marked {
                    closes.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, marked, closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_the_backend_closed_while_idle_is_not_used() {
    let (backend, connections, closed) = idle_closing_backend().await;
    let proxy = start_proxy(backend).await;
    let mut conn = Conn::open(&proxy).await;
    for n in 1..=3 {
        assert_eq!(send(&mut conn, "GET").await, (200, n.to_string()));
        wait_for(
            std::time::Duration::from_secs(5),
            "the backend to close its connection",
            || {
                let done = closed.load(Ordering::SeqCst) == n;
                async move { done.then_some(()) }
            },
        )
        .await;
    }
    // A POST is never resent: had the proxy sent it on the closed connection, the answer
    // would be 502. It sees the close in the pool and opens a new connection instead.
    assert_eq!(send(&mut conn, "POST").await, (200, "4".into()));
    assert_eq!(connections.load(Ordering::SeqCst), 4);
}
