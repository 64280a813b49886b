//! Health checks, failover and sticky sessions through the real binary.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

const INTERVAL: Duration = Duration::from_secs(1);

fn hc(extra: &str) -> ProxyOptions {
    ProxyOptions {
        main_extra: format!("hc_interval: 1\nmaster_key: sticky-key\n{extra}"),
        ..Default::default()
    }
}

fn route(host: &str, path_extra: &str, backends: &[&TestBackend]) -> String {
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.server()))
        .collect();
    format!(
        "upstreams:\n  {host}:\n    paths:\n      \"/\":\n{path_extra}        servers: [{}]\n",
        servers.join(", ")
    )
}

async fn who(c: &reqwest::Client, proxy: &Proxy, host: &str) -> Option<String> {
    let (status, body) = get(c, proxy, host, "/").await;
    (status == 200).then(|| Echo::parse(&body).backend)
}

/// Sends requests until `n` in a row come from `name`, or panics after `deadline`.
async fn settles_on(
    c: &reqwest::Client,
    proxy: &Proxy,
    host: &str,
    name: &str,
    n: usize,
    deadline: Duration,
) {
    let started = std::time::Instant::now();
    let mut streak = 0;
    while streak < n {
        assert!(
            started.elapsed() < deadline,
            "traffic did not settle on {name} within {deadline:?}"
        );
        if who(c, proxy, host).await.as_deref() == Some(name) {
            streak += 1;
        } else {
            streak = 0;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_backend_leaves_rotation_and_comes_back_without_failed_requests() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let d = TestBackend::start("c").await;
    let proxy = Proxy::start_with(&route("h.example.com", "", &[&a, &b, &d]), hc("")).await;
    let load = Load::start(8, proxy.url("/"), "h.example.com");
    wait_for(Duration::from_secs(5), "traffic on b", || async {
        (b.served() > 20).then_some(())
    })
    .await;
    let b_addr = b.addr;
    b.kill();
    wait_for(Duration::from_secs(5), "b to be marked down", || async {
        proxy
            .log()
            .contains(&format!("backend {b_addr} of h.example.com/ is down"))
            .then_some(())
    })
    .await;
    // Two intervals later nothing is sent to b any more.
    tokio::time::sleep(2 * INTERVAL).await;
    let attempts = |log: &str| {
        log.matches(&format!("connect to backend {b_addr} failed"))
            .count()
    };
    let before = attempts(&proxy.log());
    load.wait_more(200).await;
    assert_eq!(
        attempts(&proxy.log()),
        before,
        "connections still attempted to the dead backend"
    );

    // Back on the same address: traffic returns within two intervals.
    let b = TestBackend::start_at("b", b_addr).await;
    wait_for(
        2 * INTERVAL + Duration::from_millis(500),
        "b to get traffic again",
        || async { (b.served() > 0).then_some(()) },
    )
    .await;
    assert!(proxy
        .log()
        .contains(&format!("backend {b_addr} of h.example.com/ is up again")));
    load.finish_without_failures().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_use_the_configured_method_and_route_host() {
    for (setting, method) in [
        ("", "HEAD"),
        ("hc_method: GET\n", "GET"),
        ("hc_method: POST\n", "POST"),
    ] {
        let b = TestBackend::start("b").await;
        let _proxy = Proxy::start_with(&route("Probe.Example.com", "", &[&b]), hc(setting)).await;
        wait_for(Duration::from_secs(5), "a probe", || async {
            (b.probe_count() > 0).then_some(())
        })
        .await;
        let probes = b.probes.lock().unwrap().clone();
        assert_eq!(
            probes[0],
            (method.to_string(), "probe.example.com".to_string()),
            "{setting}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_probes_take_a_backend_out_unless_healthcheck_is_off() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let doc = format!(
        "{}  nocheck.example.com:\n    paths:\n      \"/\":\n        healthcheck: false\n        servers: [\"{}\", \"{}\"]\n",
        route("check.example.com", "", &[&a, &b]),
        a.server(),
        b.server()
    );
    let proxy = Proxy::start_with(&doc, hc("")).await;
    let c = client();
    b.probe_status.store(500, Ordering::SeqCst);
    settles_on(
        &c,
        &proxy,
        "check.example.com",
        "a",
        20,
        Duration::from_secs(5),
    )
    .await;
    // Without health checks b stays in rotation.
    let mut seen_b = false;
    for _ in 0..10 {
        seen_b |= who(&c, &proxy, "nocheck.example.com").await.as_deref() == Some("b");
    }
    assert!(seen_b, "healthcheck: false must keep b in rotation");
    // Probes pass again: b is back.
    b.probe_status.store(200, Ordering::SeqCst);
    let before = b.served();
    let b = &b;
    wait_for(3 * INTERVAL, "b back in rotation", || {
        let c = c.clone();
        let proxy = &proxy;
        async move {
            who(&c, proxy, "check.example.com").await;
            (b.served() > before + 10).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_prefers_the_first_healthy_server() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let d = TestBackend::start("c").await;
    let proxy = Proxy::start_with(
        &route(
            "f.example.com",
            "        strategy: failover\n",
            &[&a, &b, &d],
        ),
        hc(""),
    )
    .await;
    let c = client();
    for _ in 0..20 {
        assert_eq!(who(&c, &proxy, "f.example.com").await.as_deref(), Some("a"));
    }
    let a_addr = a.addr;
    a.kill();
    settles_on(&c, &proxy, "f.example.com", "b", 20, Duration::from_secs(5)).await;
    let _a = TestBackend::start_at("a", a_addr).await;
    settles_on(&c, &proxy, "f.example.com", "a", 20, 3 * INTERVAL).await;
}

fn cookie_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("aralez_sticky="))
        .map(str::to_string)
}

async fn sticky_get(
    c: &reqwest::Client,
    proxy: &Proxy,
    cookie: Option<&str>,
) -> (String, Option<String>) {
    let mut req = c.get(proxy.url("/")).header("host", "s.example.com");
    if let Some(cookie) = cookie {
        req = req.header("cookie", format!("theme=dark; {cookie}"));
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", proxy.log());
    let set = cookie_of(&resp);
    (Echo::parse(&resp.text().await.unwrap()).backend, set)
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_sessions_pin_and_move_on() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let d = TestBackend::start("c").await;
    let doc = format!(
        "sticky_sessions: true\n{}",
        route("s.example.com", "", &[&a, &b, &d])
    );
    let proxy = Proxy::start_with(&doc, hc("")).await;
    let c = client();
    let (first, set) = sticky_get(&c, &proxy, None).await;
    let set = set.expect("no sticky cookie");
    assert!(set.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{set}");
    assert!(
        !set.contains("127.0.0.1"),
        "cookie must not show the address: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    for _ in 0..50 {
        let (backend, set) = sticky_get(&c, &proxy, Some(&cookie)).await;
        assert_eq!(backend, first);
        assert_eq!(set, None, "a valid cookie is not replaced");
    }

    // A reload that keeps the backend keeps the cookie valid.
    let doc2 = format!("{doc}\n# reloaded\n");
    write_atomic(&proxy.upstreams_path(), &doc2);
    wait_for(Duration::from_secs(3), "the reload", || async {
        proxy.log().contains("generation 2").then_some(())
    })
    .await;
    assert_eq!(
        sticky_get(&c, &proxy, Some(&cookie)).await,
        (first.clone(), None)
    );

    // A second instance with the same config agrees on the cookie.
    let other = Proxy::start_with(&doc, hc("")).await;
    assert_eq!(
        sticky_get(&c, &other, Some(&cookie)).await,
        (first.clone(), None)
    );

    // Unknown cookies get normal balancing and a fresh cookie.
    let (_, set) = sticky_get(&c, &proxy, Some("aralez_sticky=0000000000000000")).await;
    assert!(set.is_some());

    // The pinned backend dies: the request succeeds elsewhere and the cookie is replaced.
    let pinned = [&a, &b, &d].into_iter().find(|x| x.name == first).unwrap();
    pinned.kill();
    let (backend, set) = sticky_get(&c, &proxy, Some(&cookie)).await;
    assert_ne!(backend, first);
    let new = set.expect("cookie not replaced");
    assert_ne!(new.split(';').next().unwrap(), cookie);
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_down_at_reload_time_comes_back() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let doc = route("r.example.com", "", &[&a, &b]);
    let proxy = Proxy::start_with(&doc, hc("")).await;
    let b_addr = b.addr;
    b.kill();
    wait_for(Duration::from_secs(5), "b down", || async {
        proxy
            .log()
            .contains(&format!("backend {b_addr} of r.example.com/ is down"))
            .then_some(())
    })
    .await;
    write_atomic(
        &proxy.upstreams_path(),
        &format!("{doc}# reload while b is down\n"),
    );
    wait_for(Duration::from_secs(3), "the reload", || async {
        proxy.log().contains("generation 2").then_some(())
    })
    .await;
    let b = TestBackend::start_at("b", b_addr).await;
    let c = client();
    let b = &b;
    wait_for(3 * INTERVAL, "b to get traffic after recovering", || {
        let c = c.clone();
        let proxy = &proxy;
        async move {
            who(&c, proxy, "r.example.com").await;
            (b.served() > 0).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_cookie_is_secure_on_tls() {
    let a = TestBackend::start("a").await;
    let doc = format!(
        "sticky_sessions: true\n{}",
        route("s.example.com", "", &[&a])
    );
    let options = ProxyOptions {
        tls: true,
        ..hc("")
    };
    let proxy = Proxy::start_with(&doc, options).await;
    let tls = tls_h1_client();
    let resp = tls
        .get(format!("https://127.0.0.1:{}/", proxy.tls_port.unwrap()))
        .header("host", "s.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let set = cookie_of(&resp).expect("no cookie");
    assert!(set.ends_with("; Secure"), "{set}");
    let echo = Echo::parse(&resp.text().await.unwrap());
    assert_eq!(echo.headers["x-forwarded-proto"], "https");
}

/// The id the sticky cookie had for `addr` before ids were keyed: a constant key in the source.
fn id_with_the_old_constant_key(addr: &std::net::SocketAddr) -> String {
    use pingora::tls::hash::{hash, MessageDigest};
    let input = format!("aralez sticky sessions\0{addr}");
    let digest = hash(MessageDigest::sha256(), input.as_bytes()).unwrap();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_ids_are_keyed_by_the_master_key() {
    let a = TestBackend::start("a").await;
    let doc = format!(
        "sticky_sessions: true\n{}",
        route("s.example.com", "", &[&a])
    );
    let keyed = |key: &str| ProxyOptions {
        main_extra: format!("master_key: {key}\n"),
        ..Default::default()
    };
    let c = client();
    let mut ids = Vec::new();
    for options in [
        keyed("fleet-one"),
        keyed("fleet-one"),
        keyed("fleet-two"),
        ProxyOptions::default(),
        ProxyOptions::default(),
    ] {
        let proxy = Proxy::start_with(&doc, options).await;
        let (_, set) = sticky_get(&c, &proxy, None).await;
        let set = set.expect("no sticky cookie");
        let cookie = set.split(';').next().unwrap().to_string();
        // A cookie computed with the old public key is not honoured: it is replaced.
        let forged = format!("aralez_sticky={}", id_with_the_old_constant_key(&a.addr));
        assert_ne!(cookie, forged);
        let (_, replaced) = sticky_get(&c, &proxy, Some(&forged)).await;
        assert_eq!(
            replaced.as_deref(),
            Some(set.as_str()),
            "forged cookie kept"
        );
        ids.push(cookie);
    }
    assert_eq!(ids[0], ids[1], "the same master_key gives the same id");
    assert_ne!(ids[0], ids[2], "another master_key gives another id");
    assert_ne!(
        ids[3], ids[4],
        "without master_key each process has its own key"
    );
    assert!(!ids[3..].contains(&ids[0]) && !ids[3..].contains(&ids[2]));
}
