//! Backends that misbehave on purpose: garbage instead of HTTP, a response cut in the middle.
//! The client gets a 502 (or a cut stream once the header went out) and the proxy keeps
//! serving everyone else.

use crate::common;

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

/// A TCP server that reads each request and then resets the connection without a byte of
/// answer, as a backend does when it is killed mid-request. Counts the requests it dropped.
async fn resetting_backend() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = dropped.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                // SO_LINGER 0: close with a reset.
                let _ = socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO));
            });
        }
    });
    (addr, dropped)
}

/// r.example.com balanced over a failing server and a good one, without health checks (so
/// the failing one stays in rotation).
fn failing_then_good(failing: SocketAddr, good: &TestBackend) -> String {
    format!(
        "upstreams:\n  r.example.com:\n    paths:\n      \"/\":\n        healthcheck: false\n        servers: [\"{failing}\", \"{}\"]\n",
        good.server()
    )
}

/// A POST may have been acted upon, so it is never sent twice: with round robin over a
/// failing and a good server, four POSTs give both 502s and 200s.
async fn assert_posts_are_not_retried(post: impl Fn() -> reqwest::RequestBuilder) {
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post().send().await.unwrap().status().as_u16());
    }
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_drops_the_request_is_skipped_for_idempotent_methods() {
    let (reset, dropped) = resetting_backend().await;
    let good = TestBackend::start("good").await;
    let doc = failing_then_good(reset, &good);
    let proxy = Proxy::start(&doc).await;
    let c = client();
    // Round robin sends every other request to the resetting server first: each GET is
    // answered by the good one all the same.
    for _ in 0..6 {
        let (status, body) = get(&c, &proxy, "r.example.com", "/").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(Echo::parse(&body).backend, "good");
    }
    assert!(
        dropped.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the resetting server was never tried"
    );
    assert_posts_are_not_retried(|| {
        c.post(proxy.url("/"))
            .header("host", "r.example.com")
            .body("once")
    })
    .await;
}

/// An h2c backend (prior knowledge, as detection finds it) that answers every request with a
/// stream reset instead of a response, as a backend does when it gives up on a request or
/// its connection breaks. Counts the requests it reset.
async fn stream_resetting_h2_backend(
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reset = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reset.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(s).await else {
                    return;
                };
                while let Some(Ok((_request, mut respond))) = conn.accept().await {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    respond.send_reset(h2::Reason::INTERNAL_ERROR);
                }
            });
        }
    });
    (addr, reset)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2_backend_that_resets_the_request_is_skipped_for_idempotent_methods() {
    let (resetting, reset) = stream_resetting_h2_backend().await;
    let good = TestBackend::start("good").await;
    let doc = failing_then_good(resetting, &good);
    let proxy = Proxy::start(&doc).await;
    // Plain h2c backends are spoken to in h2 for h2 clients: this one, with prior knowledge.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve(
            "r.example.com",
            SocketAddr::from(([127, 0, 0, 1], proxy.port)),
        )
        .build()
        .unwrap();
    let url = format!("http://r.example.com:{}/", proxy.port);
    // Round robin sends every other request to the resetting server first: each GET is
    // answered by the good one all the same.
    for _ in 0..6 {
        let resp = h2.get(&url).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{body}");
        assert_eq!(Echo::parse(&body).backend, "good");
    }
    assert!(
        reset.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the resetting server was never asked over h2"
    );
    assert_posts_are_not_retried(|| h2.post(&url).body("once")).await;
}
