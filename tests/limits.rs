//! Limits towards clients and backends: body size (413), backend read timeout (504).

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn doc(b: &TestBackend) -> String {
    format!(
        "upstreams:\n  l.example.com:\n    paths:\n      \"/\":\n        servers: [\"{s}\"]\n      \"/small\":\n        max_body_size: 1024\n        servers: [\"{s}\"]\n      \"/patient\":\n        read_timeout: 5\n        servers: [\"{s}\"]\n",
        s = b.server()
    )
}

async fn proxy(b: &TestBackend) -> Proxy {
    let options = ProxyOptions {
        main_extra: "upstream_read_timeout: 1\nmax_body_size: 65536\n".into(),
        ..Default::default()
    };
    Proxy::start_with(&doc(b), options).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_get_413() {
    let b = TestBackend::start("b").await;
    let proxy = proxy(&b).await;
    let c = client();
    let post = |path: &str, size: usize| {
        c.post(proxy.url(path))
            .header("host", "l.example.com")
            .body(vec![b'x'; size])
            .send()
    };
    assert_eq!(post("/__upload", 1000).await.unwrap().status(), 200);
    assert_eq!(
        post("/__upload", 70_000).await.unwrap().status(),
        413,
        "global limit"
    );
    assert_eq!(post("/small/__upload", 1000).await.unwrap().status(), 200);
    let before = b.served();
    assert_eq!(
        post("/small/__upload", 2000).await.unwrap().status(),
        413,
        "path limit"
    );
    assert_eq!(
        b.served(),
        before,
        "a refused body never reaches the backend"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_bodies_over_the_limit_are_refused() {
    let b = TestBackend::start("b").await;
    let proxy = proxy(&b).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let chunk = "x".repeat(1500);
    let req = format!(
        "POST /small/__upload HTTP/1.1\r\nHost: l.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_backend_gives_504() {
    let b = TestBackend::start("b").await;
    let proxy = proxy(&b).await;
    let c = client();
    let (status, _) = get(&c, &proxy, "l.example.com", "/__slow/3000").await;
    assert_eq!(status, 504, "main.yaml's 1 s upstream_read_timeout");
    let (status, body) = get(&c, &proxy, "l.example.com", "/patient/__slow/2000").await;
    assert_eq!(status, 200, "the path's own 5 s read_timeout: {body}");
    // Once the client is gone, the proxy holds no connection for it.
    drop(c);
    wait_for(
        Duration::from_secs(10),
        "no open client connection",
        || async {
            let text = client()
                .get(proxy.api_url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .any(|l| l == "aralez_downstream_connections{listener=\"http\"} 0")
                .then_some(())
        },
    )
    .await;
}
