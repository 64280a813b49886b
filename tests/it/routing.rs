//! Routing, balancing, headers, redirects and backend failure, through the real binary.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_and_longest_prefix() {
    let root = TestBackend::start("root").await;
    let api = TestBackend::start("api").await;
    let v2 = TestBackend::start("v2").await;
    let other = TestBackend::start("other").await;
    let config = format!(
        "provider: file\nupstreams:\n  App.Example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n      \"/api\":\n        servers: [\"{}\"]\n      \"/api/v2\":\n        servers: [\"{}\"]\n  only-api.example.com:\n    paths:\n      \"/api\":\n        servers: [\"{}\"]\n",
        root.server(),
        api.server(),
        v2.server(),
        other.server()
    );
    let proxy = Proxy::start(&config).await;
    let c = client();
    let cases = [
        ("app.example.com", "/", Some("root")),
        ("APP.EXAMPLE.COM", "/index.html", Some("root")),
        ("app.example.com:8080", "/api", Some("api")),
        ("app.example.com", "/api/users?id=1", Some("api")),
        ("app.example.com", "/apix", Some("root")),
        ("app.example.com", "/api/v2", Some("v2")),
        ("app.example.com", "/api/v2/x", Some("v2")),
        ("app.example.com", "/api/v20", Some("api")),
        ("only-api.example.com", "/api/x", Some("other")),
    ];
    for (host, path, want) in cases {
        assert_eq!(
            backend_of(&c, &proxy, host, path).await.as_deref(),
            want,
            "{host}{path}"
        );
    }
    // Query strings and paths arrive unchanged.
    let (_, body) = get(&c, &proxy, "app.example.com", "/api/users?id=1&x=%20").await;
    assert_eq!(Echo::parse(&body).path, "/api/users?id=1&x=%20");

    let (status, body) = get(&c, &proxy, "unknown.example.com", "/").await;
    assert_eq!(status, 404);
    assert!(body.contains("no route for this host"), "{body}");
    let (status, body) = get(&c, &proxy, "only-api.example.com", "/web").await;
    assert_eq!(status, 404);
    assert!(body.contains("no route for this path"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn older_top_level_form_routes_the_same() {
    let b = TestBackend::start("legacy").await;
    let config = format!(
        "provider: file\nsticky_sessions: false\nlegacy.example.com:\n  paths:\n    \"/\":\n      servers: [\"{}\"]\n",
        b.server()
    );
    let proxy = Proxy::start(&config).await;
    let c = client();
    assert_eq!(
        backend_of(&c, &proxy, "legacy.example.com", "/x")
            .await
            .as_deref(),
        Some("legacy")
    );
}

/// Sends a raw request and returns the whole response text.
async fn raw(proxy: &Proxy, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response not finished in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_without_host_and_absolute_form() {
    let b = TestBackend::start("abs").await;
    let proxy = Proxy::start(&single_route("abs.example.com", &[&b])).await;
    // (At least 24 bytes: the plain listener also speaks h2c and decides on the first 24.)
    let resp = raw(&proxy, "GET / HTTP/1.0\r\nUser-Agent: t\r\n\r\n").await;
    assert!(
        resp.starts_with("HTTP/1.0 404") || resp.starts_with("HTTP/1.1 404"),
        "{resp}"
    );
    let resp = raw(&proxy, "GET http://abs.example.com/x HTTP/1.0\r\n\r\n").await;
    assert!(resp.contains(" 200 "), "{resp}");
    assert!(resp.contains("backend=abs"), "{resp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_spreads_evenly() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let d = TestBackend::start("c").await;
    let proxy = Proxy::start(&single_route("rr.example.com", &[&a, &b, &d])).await;
    let c = client();
    let mut counts: HashMap<String, i32> = HashMap::new();
    for _ in 0..300 {
        let who = backend_of(&c, &proxy, "rr.example.com", "/")
            .await
            .expect("request failed");
        *counts.entry(who).or_default() += 1;
    }
    for name in ["a", "b", "c"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((99..=101).contains(&n), "{name} got {n}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_and_response_headers() {
    let b = TestBackend::start("h").await;
    let config = format!(
        "headers:\n  - \"Access-Control-Allow-Origin:*\"\n  - \"X-Served-By: aralez\"\nupstreams:\n  h.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n        headers: [\"X-Proxy-From:Aralez\", \"X-Real-IP: spoofed\", \"X-Kept: route\"]\n",
        b.server()
    );
    let proxy = Proxy::start(&config).await;
    let resp = client()
        .get(proxy.url("/"))
        .header("host", "H.example.com:1234")
        .header("x-forwarded-for", "203.0.113.7, 198.51.100.2")
        .header("x-kept", "client")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.headers()["x-served-by"], "aralez");
    let echo = Echo::parse(&resp.text().await.unwrap());
    let h = &echo.headers;
    assert_eq!(h["x-proxy-from"], "Aralez");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 198.51.100.2, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "H.example.com:1234");
    assert_eq!(
        h["host"], "H.example.com:1234",
        "Host passes through unchanged"
    );
    // The route's configured header wins over what the proxy computed, and replaces the
    // client's of the same name; the client address chain is the proxy's alone.
    assert_eq!(h["x-real-ip"], "spoofed");
    assert_eq!(h["x-kept"], "route");
}

/// A backend that hands the head of every `GET /seen` request it reads to the test and
/// answers 200 (anything else, such as a protocol probe, is just closed).
async fn head_capturing_backend() -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                if head.starts_with("GET /seen ") {
                    let _ = tx.send(head).await;
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                }
            });
        }
    });
    (addr, rx)
}

/// Configured header names go out in the case the config writes them, on both sides (as
/// nginx sends `proxy_set_header` and `add_header` names).
#[tokio::test(flavor = "multi_thread")]
async fn configured_headers_keep_their_case_on_the_wire() {
    let (backend, mut heads) = head_capturing_backend().await;
    let config = format!(
        "headers:\n  - \"X-Served-By: aralez\"\nupstreams:\n  case.example.com:\n    paths:\n      \"/\":\n        healthcheck: false\n        servers: [\"{backend}\"]\n        headers: [\"X-Proxy-From:Aralez\"]\n"
    );
    let proxy = Proxy::start(&config).await;
    let resp = raw(
        &proxy,
        "GET /seen HTTP/1.1\r\nHost: case.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\r\nX-Served-By: aralez\r\n"), "{resp}");
    let head = tokio::time::timeout(Duration::from_secs(10), heads.recv())
        .await
        .expect("the backend saw no request")
        .unwrap();
    assert!(head.contains("\r\nX-Proxy-From: Aralez\r\n"), "{head}");
    assert!(
        head.contains("\r\nX-Forwarded-For: 127.0.0.1\r\n"),
        "{head}"
    );
}

/// Fields that concern only the client's connection (the standard hop-by-hop ones and those
/// its `Connection` header names) do not reach the backend, whichever path a request takes:
/// the direct one (no body) or Pingora's (a body).
#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_fields_stay_on_the_client_connection() {
    let b = TestBackend::start("hop").await;
    let proxy = Proxy::start(&single_route("hop.example.com", &[&b])).await;
    for (method, body) in [("GET", ""), ("POST", "abc")] {
        let resp = raw(
            &proxy,
            &format!(
                "{method} /hop HTTP/1.1\r\nHost: hop.example.com\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nX-Kept: 2\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{method}: {resp}");
        let echo = Echo::parse(resp.split_once("\r\n\r\n").map_or("", |(_, b)| b));
        assert_eq!(echo.backend, "hop", "{method}: {resp}");
        assert_eq!(echo.headers.get("x-kept").map(String::as_str), Some("2"));
        for gone in ["x-secret", "keep-alive", "proxy-authorization"] {
            assert!(
                !echo.headers.contains_key(gone),
                "{method} sent {gone}: {resp}"
            );
        }
        assert_ne!(
            echo.headers.get("connection").map(String::as_str),
            Some("X-Secret, close"),
            "{method}: {resp}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn x_real_ip_is_the_client() {
    let b = TestBackend::start("ip").await;
    let proxy = Proxy::start(&single_route("ip.example.com", &[&b])).await;
    let resp = client()
        .get(proxy.url("/"))
        .header("host", "ip.example.com")
        .header("x-real-ip", "6.6.6.6")
        .send()
        .await
        .unwrap();
    let echo = Echo::parse(&resp.text().await.unwrap());
    assert_eq!(echo.headers["x-real-ip"], "127.0.0.1");
    assert_eq!(echo.headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn to_https_redirect_keeps_the_query() {
    let b = TestBackend::start("plain").await;
    let config = format!(
        "upstreams:\n  secure.example.com:\n    paths:\n      \"/\":\n        servers: [\"{s}\"]\n      \"/login\":\n        to_https: true\n        servers: [\"{s}\"]\n",
        s = b.server()
    );
    let proxy = Proxy::start_with(
        &config,
        ProxyOptions {
            tls: true,
            ..Default::default()
        },
    )
    .await;
    let tls_port = proxy.tls_port.unwrap();
    let c = client();
    let resp = c
        .get(proxy.url("/login/form?next=%2Fhome&a=1"))
        .header("host", "Secure.Example.com:80")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 301);
    assert_eq!(
        resp.headers()["location"],
        format!("https://secure.example.com:{tls_port}/login/form?next=%2Fhome&a=1").as_str()
    );
    // Other paths of the host are not redirected.
    assert_eq!(
        backend_of(&c, &proxy, "secure.example.com", "/")
            .await
            .as_deref(),
        Some("plain")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_server_is_skipped() {
    let up = TestBackend::start("up").await;
    let dead = free_port();
    let config = format!(
        "upstreams:\n  f.example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:{dead}\", \"{}\"]\n",
        up.server()
    );
    let proxy = Proxy::start(&config).await;
    let c = client();
    for i in 0..50 {
        let (status, body) = get(&c, &proxy, "f.example.com", "/").await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(Echo::parse(&body).backend, "up");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn all_servers_down_gives_a_quick_502() {
    let config = format!(
        "upstreams:\n  down.example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
        free_port(),
        free_port()
    );
    let proxy = Proxy::start(&config).await;
    let started = Instant::now();
    let (status, body) = get(&client(), &proxy, "down.example.com", "/").await;
    assert_eq!(status, 502);
    assert!(body.contains("Bad Gateway"), "{body}");
    // Refused connections fail at once; this is a bound on a hang, not a speed target.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(proxy.log().contains("no server left"), "{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_timeout_moves_to_the_next_server() {
    let holes = blackholes(1).await;
    let hole = &holes[0].1;
    let up = TestBackend::start("alive").await;
    let config = format!(
        "upstreams:\n  t.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\", \"{}\"]\n",
        hole.local_addr().unwrap(),
        up.server()
    );
    let proxy = Proxy::start(&config).await;
    let c = client();
    for _ in 0..4 {
        let (status, body) = get(&c, &proxy, "t.example.com", "/").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(Echo::parse(&body).backend, "alive");
    }
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "connect to backend {} failed",
            hole.local_addr().unwrap()
        )),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_slower_than_the_read_timeout_still_moves_to_the_next_server() {
    // The read timeout (1 s) is shorter than the connect timeout (2 s): a backend that never
    // completes the handshake must count as a failed connect, not as a backend that accepted
    // the request and then went silent (which would be a 504 with no other server tried).
    let holes = blackholes(1).await;
    let hole = holes[0].0;
    let up = TestBackend::start("alive").await;
    let config = format!(
        "upstreams:\n  t.example.com:\n    paths:\n      \"/\":\n        healthcheck: false\n        servers: [\"{hole}\", \"{}\"]\n",
        up.server()
    );
    let options = ProxyOptions {
        main_extra: "upstream_read_timeout: 1\n".into(),
        connect_timeout: Some("2"),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&config, options).await;
    let c = client();
    // Round robin: one of two requests tries the hole first.
    for _ in 0..2 {
        let (status, body) = get(&c, &proxy, "t.example.com", "/").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(Echo::parse(&body).backend, "alive");
    }
    let log = proxy.log();
    assert!(
        log.contains(&format!("connect to backend {hole} failed")),
        "{log}"
    );
}

/// A proxy routing `NAME.example.com` to one backend named NAME, without health probes (they
/// would open connections of their own), after one proxied request (protocol detection at
/// load time opens some too). Returns the backend, the proxy, a client, and the backend's
/// connection count at that point.
async fn counting_upstream_connections(name: &str) -> (TestBackend, Proxy, reqwest::Client, usize) {
    let b = TestBackend::start(name).await;
    let host = format!("{name}.example.com");
    let config = format!(
        "upstreams:\n  {host}:\n    paths:\n      \"/\":\n        healthcheck: false\n        servers: [\"{}\"]\n",
        b.server()
    );
    // What is counted is connections, not how fast they come: a wave's 300 connects at once
    // on a busy 2-core machine can outlast the harness's 1 s connect timeout.
    let options = ProxyOptions {
        connect_timeout: Some("5"),
        ..ProxyOptions::default()
    };
    let proxy = Proxy::start_with(&config, options).await;
    let c = client();
    assert_eq!(
        backend_of(&c, &proxy, &host, "/").await.as_deref(),
        Some(name)
    );
    let before = b.connections.load(std::sync::atomic::Ordering::SeqCst);
    (b, proxy, c, before)
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_reused() {
    let (b, proxy, c, before) = counting_upstream_connections("pool").await;
    for _ in 0..50 {
        assert_eq!(
            backend_of(&c, &proxy, "pool.example.com", "/")
                .await
                .as_deref(),
            Some("pool")
        );
    }
    // Sequential requests reuse the pooled connection (allow one more for the second thread).
    let new = b.connections.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        new <= 1,
        "{new} new upstream connections for 50 sequential requests"
    );
}

/// Many requests in flight at once each hold an upstream connection; with the default pool
/// they all go back to it, so the next wave reuses them instead of reconnecting.
#[tokio::test(flavor = "multi_thread")]
async fn a_wave_of_concurrent_requests_keeps_its_upstream_connections() {
    const IN_FLIGHT: usize = 300;
    const WAVES: usize = 5;
    let (b, proxy, c, before) = counting_upstream_connections("wave").await;
    for _ in 0..WAVES {
        // The backend holds each answer 200 ms, so the whole wave is in flight together.
        let wave =
            (0..IN_FLIGHT).map(|_| backend_of(&c, &proxy, "wave.example.com", "/__slow/200"));
        for who in futures_util::future::join_all(wave).await {
            assert_eq!(who.as_deref(), Some("wave"));
        }
    }
    // At most one wave's worth of connections is ever opened; a pool smaller than a wave
    // reopens the difference on every wave (with the old default, 128: about 500 in all).
    let new = b.connections.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        new <= IN_FLIGHT + IN_FLIGHT / 10,
        "{new} upstream connections opened for {WAVES} waves of {IN_FLIGHT}"
    );
}

/// `work_stealing: true` runs the proxy on one work-stealing runtime instead of one runtime
/// per thread; routing and balancing behave the same.
#[tokio::test(flavor = "multi_thread")]
async fn work_stealing_runtime_serves_the_same() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let options = ProxyOptions {
        main_extra: "work_stealing: true\n".into(),
        ..ProxyOptions::default()
    };
    let proxy = Proxy::start_with(&single_route("steal.example.com", &[&a, &b]), options).await;
    let c = client();
    let mut counts: HashMap<String, i32> = HashMap::new();
    for _ in 0..100 {
        let who = backend_of(&c, &proxy, "steal.example.com", "/")
            .await
            .expect("request failed");
        *counts.entry(who).or_default() += 1;
    }
    assert_eq!(counts.get("a"), Some(&50), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&50), "{counts:?}");
}
