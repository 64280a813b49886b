//! Hostile or broken clients, with raw sockets: oversized and malformed requests and
//! ambiguous framing are refused with the right status and the connection closed; nothing of
//! them reaches a backend.

use crate::common;

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
        ("bare LF in the header", b"GET / HTTP/1.1\r\nHost: h.example.com\nX: a\r\n\r\n".to_vec(), "400"),
        ("bare LF everywhere", b"GET / HTTP/1.1\nHost: h.example.com\n\n".to_vec(), "400"),
        ("CL with chunked", b"POST /x HTTP/1.1\r\nHost: h.example.com\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), "400"),
        ("chunked with CL", b"POST /x HTTP/1.1\r\nHost: h.example.com\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n".to_vec(), "400"),
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
async fn a_malformed_chunk_size_never_reaches_the_backend_as_sent() {
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("h.example.com", &[&b])).await;
    let raw = b"POST /__upload HTTP/1.1\r\nHost: h.example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let resp = exchange(&proxy, raw).await;
    assert!(!resp.starts_with("HTTP/1.1 200"), "{resp}");
}

/// Sends `head` at once, then trickles `tail` one byte every 100 ms, and returns what the
/// proxy answered once it closed the connection (None: still open after 15 s).
async fn trickle(proxy: &Proxy, head: &[u8], tail: &[u8]) -> Option<String> {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(head).await.unwrap();
    let tail = tail.to_vec();
    let writer = tokio::spawn(async move {
        for byte in tail {
            if wr.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Keep the write side open: only the proxy may end this connection.
        std::future::pending::<()>().await;
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), rd.read_to_end(&mut out)).await;
    writer.abort();
    read.ok()
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

const SLOW: &str = "header_timeout: 3\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_header_trickled_byte_by_byte_is_cut_off() {
    let b = TestBackend::start("b").await;
    let options = ProxyOptions {
        main_extra: SLOW.into(),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&single_route("h.example.com", &[&b]), options).await;
    // 300 header bytes at 10 bytes/s would take 30 s; the deadline is 3 s (room for a
    // loaded machine in the merely slow case below, 0.4 s of trickle).
    let tail = format!("X-Slow: {}\r\n\r\n", "a".repeat(300));
    let answer = trickle(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: h.example.com\r\n",
        tail.as_bytes(),
    )
    .await
    .expect("a trickled header kept its connection");
    assert!(!answer.contains(" 200 "), "{answer}");
    assert_eq!(b.served(), 0);
    // A client's failure is not the proxy's error: no ERROR line about it.
    let log = proxy.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("ERROR") && l.contains("Downstream")),
        "{log}"
    );

    // The same on a keep-alive connection, after a first request that was answered.
    let first = b"GET / HTTP/1.1\r\nHost: h.example.com\r\n\r\n";
    let second = format!("GET /two HTTP/1.1\r\nHost: h.example.com\r\n{tail}");
    let answer = trickle(&proxy, first, second.as_bytes())
        .await
        .expect("a trickled second header kept its connection");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert_eq!(b.served(), 1);

    // A header that is merely slow, but whole within the deadline, is served.
    let head = b"GET / HTTP/1.1\r\nHost: h.example.com\r\nConnection: close";
    let answer = trickle(&proxy, head, b"\r\n\r\n")
        .await
        .expect("the request was not answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed() {
    let b = TestBackend::start("b").await;
    let options = ProxyOptions {
        main_extra: "keepalive_timeout: 1\n".into(),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&single_route("h.example.com", &[&b]), options).await;
    // One request, then silence: the proxy must end the connection (Pingora alone never would).
    let answer = trickle(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: h.example.com\r\n\r\n",
        b"",
    )
    .await
    .expect("the idle connection was kept open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_http10_request_is_answered_with_h2c_on() {
    // 18 bytes, fewer than the 24 of the HTTP/2 preface the plain listener looks for.
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("h.example.com", &[&b])).await;
    let answer = trickle(&proxy, b"GET / HTTP/1.0\r\n\r\n", b"")
        .await
        .expect("no answer to a short HTTP/1.0 request");
    assert!(
        answer.starts_with("HTTP/1.0 404") || answer.starts_with("HTTP/1.1 404"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("h.example.com", &[&b])).await;
    let raw = b"GET /one HTTP/1.1\r\nHost: h.example.com\r\n\r\nGET /two HTTP/1.1\r\nHost: h.example.com\r\nConnection: close\r\n\r\n";
    let answer = exchange(&proxy, raw).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    let (one, two) = (answer.find("/one"), answer.find("/two"));
    assert!(one.is_some() && one < two, "{answer}");
}

/// Lowers the open-files limit of a running process.
fn limit_open_files(pid: u32, limit: u64) {
    let rlim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit reads `rlim` and writes nothing (old limit pointer is null).
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &rlim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_file_descriptors_is_survived() {
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("h.example.com", &[&b])).await;
    let c = client();
    assert_eq!(get(&c, &proxy, "h.example.com", "/").await.0, 200);
    let pid = proxy.pid();
    limit_open_files(pid, open_fds(pid) + 10);

    // Far more connections than descriptors: the proxy takes a few, the rest wait in the
    // listen queue while accept() fails with EMFILE.
    let started = std::time::Instant::now();
    let mut held = Vec::new();
    for _ in 0..60 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await {
            held.push(s);
        }
    }
    wait_for(Duration::from_secs(10), "accept errors in the log", || {
        let failed = proxy.log().contains("Too many open files");
        async move { failed.then_some(()) }
    })
    .await;
    // Let the accept loop meet the limit for a while, then free everything.
    wait_for(
        Duration::from_secs(10),
        "two seconds of exhaustion",
        || async { (started.elapsed() > Duration::from_secs(2)).then_some(()) },
    )
    .await;
    drop(held);
    wait_for(Duration::from_secs(15), "the proxy to serve again", || {
        let c = c.clone();
        let proxy = &proxy;
        async move { (get(&c, proxy, "h.example.com", "/").await.0 == 200).then_some(()) }
    })
    .await;
    // At most about one accept error line per second (Pingora backs off for a second).
    let errors = proxy.log().matches("Accept() failed").count() as u64;
    let secs = started.elapsed().as_secs() + 2;
    assert!(errors <= secs, "{errors} accept errors in {secs} s");
}

/// Issue 28 items 7 and 12: a missing or doubled Host is a 400 (RFC 9112 §3.2); a request
/// line or a field list over the limits is a 414 or 431, also past Pingora's own limits
/// (a 64 KiB URI, 256 fields), as a connection's first request or a later one.
#[tokio::test(flavor = "multi_thread")]
async fn host_rules_and_size_limits_answer_with_their_own_status() {
    let b = TestBackend::start("b").await;
    let doc = single_route("h.example.com", &[&b]);
    let fields: String = (0..1000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_line = format!(
        "GET /{} HTTP/1.1\r\nHost: h.example.com\r\n\r\n",
        "a".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: h.example.com\r\nHost: other\r\n\r\n".to_vec(),
            "400",
        ),
        ("100 KB request line", huge_line.into_bytes(), "414"),
        (
            "1000 fields",
            format!("GET / HTTP/1.1\r\nHost: h.example.com\r\n{fields}\r\n").into_bytes(),
            "431",
        ),
        (
            "200 fields",
            format!(
                "GET / HTTP/1.1\r\nHost: h.example.com\r\n{}\r\n",
                &fields[..fields.find("X-H200:").unwrap()]
            )
            .into_bytes(),
            "431",
        ),
    ];
    for (engine, proxy) in both_engines(&doc).await {
        for (name, raw, status) in &cases {
            let resp = exchange(&proxy, raw).await;
            assert!(
                resp.starts_with(&format!("HTTP/1.1 {status}")),
                "{engine}, {name}: {}",
                &resp[..resp.len().min(80)]
            );
            // The same after a first request on the connection.
            let mut conn = common::raw::Conn::open(&proxy).await;
            conn.send(b"GET / HTTP/1.1\r\nHost: h.example.com\r\n\r\n")
                .await;
            assert_eq!(conn.response(false).await.status, 200, "{engine}");
            conn.send(raw).await;
            let second = conn.response(false).await;
            assert_eq!(
                second.status.to_string(),
                *status,
                "{engine}, {name} second"
            );
        }
        // HTTP/1.0 needs no Host: it is routed (and here finds no route).
        let resp = exchange(&proxy, b"GET / HTTP/1.0\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 404"), "{engine}: {resp}");
    }
    assert_eq!(
        b.served(),
        2 * 5,
        "only the first requests reached the backend"
    );
}

/// Issue 28 item 5: the HTTP/2 preface is valid only as a connection's first bytes (RFC
/// 9113 §3.3); after an HTTP/1.1 request it is a 400 and the connection is closed.
#[tokio::test(flavor = "multi_thread")]
async fn an_h2_preface_after_an_http1_request_is_refused() {
    let b = TestBackend::start("b").await;
    let doc = single_route("h.example.com", &[&b]);
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let firsts: [&[u8]; 2] = [
        b"GET / HTTP/1.1\r\nHost: h.example.com\r\n\r\n",
        // Served by Pingora's session (a body): the connection comes back after it.
        b"POST / HTTP/1.1\r\nHost: h.example.com\r\nContent-Length: 2\r\n\r\nhi",
    ];
    for (engine, proxy) in both_engines(&doc).await {
        for first in firsts {
            let mut conn = common::raw::Conn::open(&proxy).await;
            conn.send(first).await;
            assert_eq!(conn.response(false).await.status, 200, "{engine}");
            conn.send(PREFACE).await;
            let resp = conn.response(false).await;
            assert_eq!(resp.status, 400, "{engine}: {}", resp.head);
            assert!(conn.closed().await, "{engine}: the connection stays open");
        }
        // As a connection's first bytes it still starts HTTP/2.
        let status = h2c_status(&proxy, "h.example.com", "/").await;
        assert_eq!(status, 200, "{engine}: h2c");
    }
}
