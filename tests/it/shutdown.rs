//! SIGTERM/SIGINT: stop accepting, let in-flight requests finish, exit promptly when idle.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

fn signal(proxy: &Proxy, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    let rc = unsafe { libc::kill(proxy.pid() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill failed");
}

async fn wait_exit(proxy: &mut Proxy, deadline: Duration) -> std::process::ExitStatus {
    wait_for(deadline, "aralez to exit", || {
        let status = proxy.child().try_wait().unwrap();
        async move { status }
    })
    .await
}

/// Waits until the backend is serving one slow request.
async fn slow_request_arrived(b: &TestBackend) {
    let in_progress = b.slow_in_progress.clone();
    wait_for(
        Duration::from_secs(5),
        "the slow request to reach the backend",
        || {
            let n = in_progress.load(std::sync::atomic::Ordering::SeqCst);
            async move { (n == 1).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_proxy_exits_at_once_on_sigterm_and_sigint() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let b = TestBackend::start("b").await;
        let mut proxy = Proxy::start(&single_route("s.example.com", &[&b])).await;
        let (status, _) = get(&client(), &proxy, "s.example.com", "/").await;
        assert_eq!(status, 200);
        let started = Instant::now();
        signal(&proxy, sig);
        let exit = wait_exit(&mut proxy, Duration::from_secs(5)).await;
        assert!(exit.success(), "exit status {exit}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            proxy.log().contains("all in-flight requests finished"),
            "{}",
            proxy.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_request_finishes_and_new_connections_are_refused() {
    let b = TestBackend::start("slow").await;
    let mut proxy = Proxy::start(&single_route("s.example.com", &[&b])).await;
    let url = proxy.url("/__slow/2000");
    let slow = tokio::spawn(async move {
        let resp = client()
            .get(url)
            .header("host", "s.example.com")
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    slow_request_arrived(&b).await;
    signal(&proxy, libc::SIGTERM);
    // New connections are refused once the listener is closed.
    let port = proxy.port;
    wait_for(
        Duration::from_secs(3),
        "the listener to close",
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let (status, body) = slow.await.unwrap().expect("in-flight request failed");
    assert_eq!(status, 200);
    assert_eq!(Echo::parse(&body).backend, "slow");
    let exit = wait_exit(&mut proxy, Duration::from_secs(5)).await;
    assert!(exit.success(), "exit status {exit}");
}

/// At shutdown an idle keep-alive connection is closed at once, while a request in flight on
/// another connection keeps the proxy running: the idle one does not wait for its keep-alive
/// timeout or for the process to exit.
#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_close_while_a_request_is_in_flight() {
    let b = TestBackend::start("slow").await;
    let mut proxy = Proxy::start_with(
        &single_route("s.example.com", &[&b]),
        ProxyOptions {
            main_extra: "keepalive_timeout: 60\n".into(),
            ..ProxyOptions::default()
        },
    )
    .await;
    // Two requests, so that the connection has waited between requests before.
    let mut idle = raw::Conn::open(&proxy).await;
    for _ in 0..2 {
        idle.send(b"GET / HTTP/1.1\r\nHost: s.example.com\r\n\r\n")
            .await;
        assert_eq!(idle.response(false).await.status, 200);
    }
    let mut slow = raw::Conn::open(&proxy).await;
    slow.send(b"GET /__slow/3000 HTTP/1.1\r\nHost: s.example.com\r\n\r\n")
        .await;
    slow_request_arrived(&b).await;
    let in_progress = b.slow_in_progress.clone();
    signal(&proxy, libc::SIGTERM);
    assert!(idle.closed().await, "the idle connection stayed open");
    assert_eq!(
        in_progress.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the idle connection closed only after the slow request ended"
    );
    assert!(proxy.child().try_wait().unwrap().is_none());
    let resp = slow.response(false).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.echo().backend, "slow");
    let exit = wait_exit(&mut proxy, Duration::from_secs(5)).await;
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_answered_during_shutdown_are_in_the_access_log() {
    let b = TestBackend::start("slow").await;
    let options = ProxyOptions {
        main_extra: "access_log: access.log\naccess_log_format: combined\n".into(),
        ..ProxyOptions::default()
    };
    let mut proxy = Proxy::start_with(&single_route("s.example.com", &[&b]), options).await;
    let slow = slow_request_then_sigterm(&proxy, &b, "/__slow/1500").await;
    assert_eq!(slow.await.unwrap().expect("in-flight request failed"), 200);
    let exit = wait_exit(&mut proxy, Duration::from_secs(5)).await;
    assert!(exit.success(), "exit status {exit}");
    let log = std::fs::read_to_string(proxy.dir.path().join("access.log")).unwrap_or_default();
    assert!(
        log.contains("\"GET /__slow/1500 HTTP/1.1\" 200 "),
        "access log: {log:?}\n{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_timeout_says_how_many_requests_it_cut_off() {
    let b = TestBackend::start("slow").await;
    let options = ProxyOptions {
        main_extra: "shutdown_timeout: 1\n".into(),
        ..ProxyOptions::default()
    };
    let mut proxy = Proxy::start_with(&single_route("s.example.com", &[&b]), options).await;
    let _slow = slow_request_then_sigterm(&proxy, &b, "/__slow/10000").await;
    let exit = wait_exit(&mut proxy, Duration::from_secs(8)).await;
    assert!(exit.success(), "exit status {exit}");
    let log = proxy.log();
    assert!(
        log.contains("shutdown_timeout (1s) is over: cutting off 1 in-flight requests"),
        "{log}"
    );
    assert!(!log.contains("all in-flight requests finished"), "{log}");
}

/// Starts a GET of `path` on `s.example.com` (a slow one), waits until the backend has it,
/// then sends SIGTERM; the request's status, once it is answered.
async fn slow_request_then_sigterm(
    proxy: &Proxy,
    backend: &TestBackend,
    path: &str,
) -> tokio::task::JoinHandle<reqwest::Result<u16>> {
    let url = proxy.url(path);
    let slow = tokio::spawn(async move {
        client()
            .get(url)
            .header("host", "s.example.com")
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    slow_request_arrived(backend).await;
    signal(proxy, libc::SIGTERM);
    slow
}
