//! The fast lane (plain bodyless HTTP/1.1 served before Pingora's session, `proxy::lane`)
//! from a raw TCP client, so that what goes over one connection is what the test wrote: the
//! wire format of its answers, pipelining, `Connection: close`, a connection that moves on to
//! Pingora in the middle, and the same answers with the lane switched off.

use crate::common;

use std::time::Duration;

use common::raw::Conn;
use common::*;

fn get(host: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").into_bytes()
}

/// `aralez_fast_lane_requests_total`, read from the config API.
async fn lane_count(proxy: &Proxy) -> u64 {
    sample(&metrics(proxy).await, "aralez_fast_lane_requests_total").unwrap_or(0.0) as u64
}

fn routes(backend: &TestBackend) -> String {
    format!(
        "headers:\n  - \"X-Served-By:aralez\"\nupstreams:\n  lane.test:\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n        headers: [\"X-Proxy-From:Aralez\"]\n      \"/key\":\n        servers: [\"{}\"]\n        authorization:\n          type: apikey\n          creds: \"k1\"\n",
        backend.server(),
        backend.server()
    )
}

#[tokio::test]
async fn answers_go_out_as_pingora_writes_them_and_pipelined_requests_in_order() {
    let backend = TestBackend::start("one").await;
    let proxy = Proxy::start_with(&routes(&backend), lane(true)).await;
    let before = lane_count(&proxy).await;
    let mut conn = Conn::open(&proxy).await;

    conn.send(&get(
        "lane.test",
        "/a?x=1",
        "Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nX-Forwarded-For: 10.0.0.9\r\n",
    ))
    .await;
    let resp = conn.response(false).await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        resp.head
    );
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    assert!(resp.header("date").is_some(), "{}", resp.head);
    assert_eq!(resp.header("x-served-by"), Some("aralez"));
    let echo = resp.echo();
    assert_eq!(echo.path, "/a?x=1");
    assert_eq!(echo.headers["x-proxy-from"], "Aralez");
    assert_eq!(echo.headers["x-forwarded-for"], "10.0.0.9, 127.0.0.1");
    assert_eq!(echo.headers["x-forwarded-proto"], "http");
    assert_eq!(echo.headers["x-forwarded-host"], "lane.test");
    assert_eq!(echo.headers["x-real-ip"], "127.0.0.1");
    assert!(!echo.headers.contains_key("x-secret"), "{:?}", echo.headers);
    assert!(
        !echo.headers.contains_key("connection"),
        "{:?}",
        echo.headers
    );

    // Three requests in one write come back in order, on the same connection.
    let mut three = get("lane.test", "/1", "");
    three.extend(get("lane.test", "/2", ""));
    three.extend(b"HEAD /3 HTTP/1.1\r\nHost: lane.test\r\n\r\n");
    conn.send(&three).await;
    assert_eq!(conn.response(false).await.echo().path, "/1");
    assert_eq!(conn.response(false).await.echo().path, "/2");
    let head = conn.response(true).await;
    assert_eq!(head.status, 200);

    // A body the backend streams arrives whole, chunked as the backend sent it.
    conn.send(&get("lane.test", "/__download/200000", "")).await;
    let download = conn.response(false).await;
    assert_eq!(download.header("transfer-encoding"), Some("chunked"));
    assert_eq!(download.body.len(), 200_000);
    assert!(download.body.iter().all(|&b| b == b'x'));

    // Asked to close: the answer says so and the connection ends after it.
    conn.send(&get("lane.test", "/last", "Connection: close\r\n"))
        .await;
    let last = conn.response(false).await;
    assert_eq!(last.echo().path, "/last");
    assert_eq!(last.header("connection"), Some("close"));
    assert!(conn.closed().await, "the connection stayed open");

    // Every one of the six went through the lane.
    assert_eq!(lane_count(&proxy).await - before, 6);
}

#[tokio::test]
async fn a_connection_goes_to_pingora_for_the_requests_the_lane_does_not_carry_and_comes_back() {
    let backend = TestBackend::start("one").await;
    let proxy = Proxy::start_with(&routes(&backend), lane(true)).await;
    let before = lane_count(&proxy).await;
    let mut conn = Conn::open(&proxy).await;

    conn.send(&get("lane.test", "/first", "")).await;
    assert_eq!(conn.response(false).await.echo().path, "/first");
    assert_eq!(lane_count(&proxy).await - before, 1);

    // A wrong key is answered (401) on the lane, pipelined with a POST (Pingora's: a body)
    // and a GET behind it: every byte reaches whoever serves it, in order, and the GET is
    // the lane's again.
    let mut rest = get("lane.test", "/key/x", "x-api-key: nope\r\n");
    rest.extend(
        b"POST /upload HTTP/1.1\r\nHost: lane.test\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    );
    rest.extend(get("lane.test", "/after", "x-api-key: k1\r\n"));
    conn.send(&rest).await;
    let refused = conn.response(false).await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        String::from_utf8_lossy(&refused.body),
        "invalid credentials\n"
    );
    let posted = conn.response(false).await;
    assert_eq!(posted.status, 200);
    assert_eq!(posted.echo().path, "/upload");
    let after = conn.response(false).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.echo().path, "/after");
    assert_eq!(after.echo().headers["x-proxy-from"], "Aralez");
    // Pingora read /after with the POST's body (pipelined), so it served it too; the next
    // request on the connection is the lane's again.
    conn.send(&get("lane.test", "/back", "")).await;
    assert_eq!(conn.response(false).await.echo().path, "/back");

    // Unknown hosts, HTTP/1.0 and a key the route takes, on new connections.
    let mut other = Conn::open(&proxy).await;
    other.send(&get("nowhere.test", "/", "")).await;
    assert_eq!(other.response(false).await.status, 404);
    let mut old = Conn::open(&proxy).await;
    old.send(b"GET /old HTTP/1.0\r\nHost: lane.test\r\n\r\n")
        .await;
    assert_eq!(old.response(false).await.echo().path, "/old");
    let mut keyed = Conn::open(&proxy).await;
    keyed
        .send(&get("lane.test", "/key/y", "x-api-key: k1\r\n"))
        .await;
    let answer = keyed.response(false).await;
    assert_eq!(answer.status, 200);
    // The key the proxy consumed does not reach the backend.
    assert!(!answer.echo().headers.contains_key("x-api-key"));

    // The lane forwarded /first, /back and /key/y; Pingora the POST, /after and HTTP/1.0.
    assert_eq!(lane_count(&proxy).await - before, 3);
}

#[tokio::test]
async fn a_backend_that_cannot_be_reached_gets_pingora_s_502() {
    let backend = TestBackend::start("gone").await;
    let proxy = Proxy::start_with(&routes(&backend), lane(true)).await;
    backend.kill();
    drop(backend);
    let mut conn = Conn::open(&proxy).await;
    conn.send(&get("lane.test", "/", "")).await;
    let resp = conn.response(false).await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(resp.header("cache-control"), Some("private, no-store"));
    assert_eq!(
        String::from_utf8_lossy(&resp.body),
        "502 Bad Gateway: no backend of this route could be reached\n"
    );
    assert!(conn.closed().await);
}

#[tokio::test]
async fn with_the_lane_off_pingora_serves_the_same_answers() {
    let backend = TestBackend::start("one").await;
    let proxy = Proxy::start_with(
        &routes(&backend),
        ProxyOptions {
            main_extra: "fast_lane: false\n".into(),
            ..ProxyOptions::default()
        },
    )
    .await;
    let mut conn = Conn::open(&proxy).await;
    let mut two = get("lane.test", "/1", "X-Forwarded-For: 10.0.0.9\r\n");
    two.extend(get("lane.test", "/2", ""));
    conn.send(&two).await;
    let first = conn.response(false).await;
    assert_eq!(first.header("connection"), Some("keep-alive"));
    assert_eq!(first.header("x-served-by"), Some("aralez"));
    assert_eq!(
        first.echo().headers["x-forwarded-for"],
        "10.0.0.9, 127.0.0.1"
    );
    assert_eq!(conn.response(false).await.echo().path, "/2");
    assert_eq!(lane_count(&proxy).await, 0);
}

/// The keep-alive timeout counts from the end of the last request, however many came before:
/// requests 2 s apart keep a connection with a 3 s timeout open past its first 3 s, and it
/// closes about 3 s after the last one.
#[tokio::test]
async fn the_keep_alive_timeout_counts_from_the_last_request() {
    let backend = TestBackend::start("one").await;
    let proxy = Proxy::start_with(
        &routes(&backend),
        ProxyOptions {
            main_extra: "keepalive_timeout: 3\n".into(),
            ..ProxyOptions::default()
        },
    )
    .await;
    let mut conn = Conn::open(&proxy).await;
    for i in 0..3 {
        if i > 0 {
            // The gap is what is under test: shorter than the timeout, longer than half.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        conn.send(&get("lane.test", &format!("/{i}"), "")).await;
        assert_eq!(conn.response(false).await.echo().path, format!("/{i}"));
    }
    let last = std::time::Instant::now();
    assert!(conn.closed().await, "the idle connection stayed open");
    let idle = last.elapsed();
    assert!(
        idle >= Duration::from_millis(2500) && idle < Duration::from_secs(8),
        "closed after {idle:?}"
    );
}

/// A keep-alive connection that waits a second for its next request gives its buffers back
/// and reads that request's first bytes into a small array (64 bytes) before it takes a
/// buffer again. Nothing of the request may be lost on the way: a long head, and two
/// pipelined requests sent after the pause, come back whole and in order.
#[tokio::test]
async fn a_connection_that_gave_its_buffers_back_reads_every_byte_of_the_next_requests() {
    let backend = TestBackend::start("one").await;
    let proxy = Proxy::start_with(&routes(&backend), lane(true)).await;
    let mut conn = Conn::open(&proxy).await;
    conn.send(&get("lane.test", "/before", "")).await;
    assert_eq!(conn.response(false).await.echo().path, "/before");

    // The pause is what is under test: longer than the second after which buffers go.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let long_path = format!("/after/{}", "p".repeat(300));
    let mut two = get("lane.test", &long_path, "X-Long: ok\r\n");
    two.extend(get("lane.test", "/second", ""));
    conn.send(&two).await;
    let first = conn.response(false).await.echo();
    assert_eq!(first.path, long_path);
    assert_eq!(first.headers["x-long"], "ok");
    assert_eq!(conn.response(false).await.echo().path, "/second");

    // Again, the head sent in two writes (the first shorter than the small first read).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let head = get("lane.test", &format!("/pieces/{}", "q".repeat(100)), "");
    conn.send(&head[..10]).await;
    conn.send(&head[10..]).await;
    let answer = conn.response(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.echo().path, format!("/pieces/{}", "q".repeat(100)));
}

/// Issue 29 item 2: the admission step's local answers (404, 401, 400) are written by the
/// lane itself, keep the connection on the lane, and are the bytes Pingora's session writes
/// (the `Date` aside).
#[tokio::test]
async fn local_answers_stay_on_the_lane_and_match_pingora_s() {
    let backend = TestBackend::start("one").await;
    let doc = routes(&backend);
    let asks: [(&[u8], u16); 5] = [
        (b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n", 404),
        (b"GET /key/x HTTP/1.1\r\nHost: lane.test\r\n\r\n", 401),
        (
            b"GET /key/x HTTP/1.1\r\nHost: lane.test\r\nx-api-key: no\r\n\r\n",
            401,
        ),
        (b"HEAD /key/x HTTP/1.1\r\nHost: lane.test\r\n\r\n", 401),
        (b"GET /a%00 HTTP/1.1\r\nHost: lane.test\r\n\r\n", 400),
    ];
    let mut answers: Vec<Vec<String>> = Vec::new();
    for (engine, proxy) in both_engines(&doc).await {
        let before = lane_count(&proxy).await;
        let mut conn = Conn::open(&proxy).await;
        let mut seen = Vec::new();
        for (ask, status) in asks {
            conn.send(ask).await;
            let resp = conn.response(ask.starts_with(b"HEAD")).await;
            assert_eq!(resp.status, status, "{engine}: {}", resp.head);
            let head: Vec<&str> = resp
                .head
                .lines()
                .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
                .collect();
            seen.push(format!(
                "{}\n{}",
                head.join("\n"),
                String::from_utf8_lossy(&resp.body)
            ));
            if status == 400 {
                assert!(conn.closed().await, "{engine}: a refused target closes");
            }
        }
        // The connection took every answer but the last; a new one is served on the lane.
        let mut conn = Conn::open(&proxy).await;
        conn.send(&get("lane.test", "/x", "")).await;
        assert_eq!(conn.response(false).await.status, 200);
        let forwarded = lane_count(&proxy).await - before;
        assert_eq!(forwarded, u64::from(engine == "lane on"), "{engine}");
        answers.push(seen);
    }
    assert_eq!(
        answers[0], answers[1],
        "the lane's local answers differ from Pingora's"
    );
}
