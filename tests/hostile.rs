//! Hostile or broken clients, with raw sockets: oversized and malformed requests and
//! ambiguous framing are refused with the right status and the connection closed; nothing of
//! them reaches a backend.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `raw` and returns the response, which must end with the connection closed.
async fn exchange(proxy: &Proxy, raw: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the connection was not closed")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_ambiguous_requests_are_refused() {
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("h.example.com", &[&b])).await;
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("long target", format!("GET /{} HTTP/1.1\r\nHost: h.example.com\r\n\r\n", "a".repeat(10_000)).into_bytes(), "414"),
        ("many headers", format!("GET / HTTP/1.1\r\nHost: h.example.com\r\n{many_headers}\r\n").into_bytes(), "431"),
        ("big header", format!("GET / HTTP/1.1\r\nHost: h.example.com\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000)).into_bytes(), "431"),
        ("bad header name", b"GET / HTTP/1.1\r\nHost: h.example.com\r\nBad Name: v\r\n\r\n".to_vec(), "400"),
        ("bad header value", b"GET / HTTP/1.1\r\nHost: h.example.com\r\nX: a\x01b\r\n\r\n".to_vec(), "400"),
        ("two CLs", b"POST / HTTP/1.1\r\nHost: h.example.com\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".to_vec(), "400"),
        ("TE not chunked", b"POST / HTTP/1.1\r\nHost: h.example.com\r\nTransfer-Encoding: gzip\r\n\r\nxx".to_vec(), "400"),
        ("folded header", b"GET / HTTP/1.1\r\nHost: h.example.com\r\nX: a\r\n b\r\n\r\n".to_vec(), "400"),
    ];
    for (name, raw, status) in cases {
        let resp = exchange(&proxy, &raw).await;
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: {}",
            &resp[..resp.len().min(80)]
        );
    }
    assert_eq!(b.served(), 0, "a refused request reached the backend");
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_chunked_reaches_the_backend_unambiguously() {
    // Pingora drops the Content-Length of a chunked request (RFC 9112 §6.3) before our hooks
    // run, so the backend gets one framing only: chunked.
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("h.example.com", &[&b])).await;
    let raw = b"POST /x HTTP/1.1\r\nHost: h.example.com\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let resp = exchange(&proxy, raw).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    let echo = Echo::parse(body);
    assert!(!echo.headers.contains_key("content-length"), "{body}");
}
