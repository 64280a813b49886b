//! Backends that misbehave on purpose: garbage instead of HTTP, a response cut in the middle.
//! The client gets a 502 (or a cut stream once the header went out) and the proxy keeps
//! serving everyone else.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP server that reads a request and answers every connection with `reply`, then closes.
async fn raw_backend(reply: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_gives_502_and_a_cut_response_is_cut() {
    let garbage = raw_backend(b"this is not http\r\n\r\n").await;
    let cut = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b").await;
    let good = TestBackend::start("good").await;
    let doc = format!(
        "upstreams:\n  g.example.com:\n    paths:\n      \"/\":\n        healthcheck: false\n        servers: [\"{garbage}\"]\n  c.example.com:\n    paths:\n      \"/\":\n        healthcheck: false\n        servers: [\"{cut}\"]\n  ok.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n",
        good.server()
    );
    let proxy = Proxy::start(&doc).await;
    let c = client();
    let (status, _) = get(&c, &proxy, "g.example.com", "/").await;
    assert_eq!(status, 502);
    // The header went out before the backend vanished: the client sees the body cut short.
    let resp = c
        .get(proxy.url("/"))
        .header("host", "c.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.bytes().await.is_err(),
        "a truncated body must not look complete"
    );
    // Everyone else is still served.
    for _ in 0..5 {
        let (status, body) = get(&c, &proxy, "ok.example.com", "/").await;
        assert_eq!(status, 200, "{body}");
    }
}
