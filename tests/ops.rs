//! Operations: Prometheus metrics, the access log, SIGHUP, daemon mode, zero-downtime upgrade.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const KEY: &str = "ops-key";

async fn metrics(proxy: &Proxy) -> String {
    client()
        .get(proxy.api_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample line `name` (with labels), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_after_a_known_sequence_of_requests() {
    let a = TestBackend::start("a").await;
    let dead = free_port();
    let doc = format!(
        "upstreams:\n  a.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n  down.example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:{dead}\"]\n",
        a.server()
    );
    let options = ProxyOptions {
        main_extra: format!("master_key: {KEY}\nhc_interval: 1\n"),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&doc, options).await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, &proxy, "a.example.com", "/").await.0, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&c, &proxy, "nobody.example.com", "/").await.0, 404);
    }
    assert_eq!(get(&c, &proxy, "down.example.com", "/").await.0, 502);
    // Requests are counted when their logging phase ends, just after the response.
    let text = wait_for(Duration::from_secs(5), "six requests counted", || async {
        let text = metrics(&proxy).await;
        (sample(&text, "aralez_requests_total") == Some(6.0)).then_some(text)
    })
    .await;
    let expect = [
        ("aralez_responses_total{status=\"200\"}", 3.0),
        ("aralez_responses_total{status=\"404\"}", 2.0),
        ("aralez_responses_total{status=\"502\"}", 1.0),
        ("aralez_errors_total", 1.0),
        ("aralez_response_latency_seconds_count", 6.0),
        ("aralez_host_requests_total{host=\"a.example.com\"}", 3.0),
        ("aralez_host_requests_total{host=\"down.example.com\"}", 1.0),
        ("aralez_host_requests_total{host=\"other\"}", 2.0),
        ("aralez_config_generation", 1.0),
        (
            "aralez_config_reloads_total{result=\"applied\",source=\"startup\"}",
            1.0,
        ),
        (
            &format!("aralez_upstream_connect_errors_total{{backend=\"127.0.0.1:{dead}\"}}"),
            1.0,
        ),
        (
            &format!("aralez_backend_up{{backend=\"{}\"}}", a.server()),
            1.0,
        ),
    ];
    for (name, value) in expect {
        assert_eq!(sample(&text, name), Some(value), "{name} in:\n{text}");
    }
    assert!(
        text.contains("process_resident_memory_bytes"),
        "process metrics missing"
    );
    // The dead backend is reported down once health checks have seen it.
    let down = format!("aralez_backend_up{{backend=\"127.0.0.1:{dead}\"}}");
    wait_for(Duration::from_secs(5), "the dead backend at 0", || async {
        (sample(&metrics(&proxy).await, &down) == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_lines_are_json_without_the_token() {
    let a = TestBackend::start("a").await;
    let dir_log = "access.log";
    let options = ProxyOptions {
        main_extra: format!("access_log: {dir_log}\n"),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&single_route("log.example.com", &[&a]), options).await;
    let c = client();
    let resp = c
        .get(proxy.url("/page?x=1&araleztoken=s3cr3t&y=2"))
        .header("host", "log.example.com")
        .header("user-agent", "ops-test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let path = proxy.dir.path().join(dir_log);
    let line = wait_for(Duration::from_secs(5), "an access log line", || async {
        std::fs::read_to_string(&path)
            .ok()?
            .lines()
            .next()
            .map(str::to_string)
    })
    .await;
    assert!(!line.contains("s3cr3t"), "token in the access log: {line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["host"], "log.example.com");
    assert_eq!(v["path"], "/page?x=1&y=2");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["upstream"], a.server());
    assert_eq!(v["user_agent"], "ops-test");
    assert!(v["bytes_sent"].as_u64().unwrap() > 0);
    assert!(v["duration_ms"].as_f64().unwrap() >= v["upstream_duration_ms"].as_f64().unwrap());
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_routing_file() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = Proxy::start(&single_route("hup.example.com", &[&a])).await;
    write_atomic(
        &proxy.upstreams_path(),
        &single_route("hup.example.com", &[&b]),
    );
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(proxy.pid() as libc::pid_t, libc::SIGHUP) };
    wait_for(Duration::from_secs(5), "the SIGHUP reload", || async {
        proxy.log().contains("SIGHUP: reloading").then_some(())
    })
    .await;
    let c = client();
    wait_for(Duration::from_secs(5), "the new route", || async {
        let (status, body) = get(&c, &proxy, "hup.example.com", "/").await;
        (status == 200 && Echo::parse(&body).backend == "b").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_mode_writes_the_pid_file_and_serves() {
    let a = TestBackend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pid_file = dir.path().join("aralez.pid");
    std::fs::write(
        dir.path().join("main.yaml"),
        format!(
            "daemon: true\nthreads: 1\nproxy_address_http: 127.0.0.1:{port}\nconfig_address: 127.0.0.1:{}\npid_file: aralez.pid\nerror_log: error.log\nupgrade_sock: aralez.sock\nupstreams_conf: upstreams.yaml\n",
            free_port()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("upstreams.yaml"),
        single_route("d.example.com", &[&a]),
    )
    .unwrap();
    // Started with a relative config path from the folder: the daemon changes to `/`, so
    // every path must already be absolute.
    let status = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args(["-c", "main.yaml"])
        .status()
        .unwrap();
    assert!(status.success(), "the foreground part must exit 0");
    let pid: i32 = wait_for(Duration::from_secs(10), "the PID file", || {
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        async move { pid }
    })
    .await;
    let c = client();
    let url = format!("http://127.0.0.1:{port}/");
    let served = wait_for(Duration::from_secs(10), "the daemon to serve", || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let resp = c
                .get(url)
                .header("host", "d.example.com")
                .send()
                .await
                .ok()?;
            Some(resp.status().as_u16())
        }
    })
    .await;
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(
        served,
        200,
        "{}",
        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
    );
    wait_for(
        Duration::from_secs(10),
        "the daemon to exit",
        || async move {
            // SAFETY: signal 0 only checks that the process exists.
            (unsafe { libc::kill(pid, 0) } != 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_under_load_fails_no_request() {
    let a = TestBackend::start("a").await;
    let proxy = Arc::new(tokio::sync::Mutex::new(
        Proxy::start(&single_route("up.example.com", &[&a])).await,
    ));
    let url = proxy.lock().await.url("/");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, stop, ok) = (url.clone(), stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let c = client();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).header("host", "up.example.com").send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
            }
            failures
        }));
    }
    wait_for(Duration::from_secs(5), "load", || async {
        (ok.load(Ordering::Relaxed) > 50).then_some(())
    })
    .await;
    let old_pid = proxy.lock().await.pid();
    proxy.lock().await.upgrade().await;
    let new_pid = proxy.lock().await.pid();
    assert_ne!(old_pid, new_pid);
    let after = ok.load(Ordering::Relaxed);
    wait_for(
        Duration::from_secs(5),
        "load on the new process",
        || async { (ok.load(Ordering::Relaxed) > after + 50).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn privileges_are_dropped_to_user_and_group() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: privilege drop cannot be tested here");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let a = TestBackend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    // The unprivileged process must still read its folder and routing file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("main.yaml"),
        format!(
            "daemon: true\nuser: nobody\ngroup: nogroup\nthreads: 1\nproxy_address_http: 127.0.0.1:{port}\nconfig_address: 127.0.0.1:{}\npid_file: /tmp/aralez-privdrop-{port}.pid\nerror_log: error.log\nupgrade_sock: /tmp/aralez-privdrop-{port}.sock\n",
            free_port()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("upstreams.yaml"), single_route("p.example.com", &[&a])).unwrap();
    let status = std::process::Command::new(BIN)
        .arg("-c")
        .arg(dir.path().join("main.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    let pid_file = format!("/tmp/aralez-privdrop-{port}.pid");
    let pid: i32 = wait_for(Duration::from_secs(10), "the PID file", || {
        let pid = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse().ok());
        async move { pid }
    })
    .await;
    let c = client();
    let url = format!("http://127.0.0.1:{port}/");
    let served = wait_for(Duration::from_secs(10), "the daemon to serve", || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let resp = c.get(url).header("host", "p.example.com").send().await.ok()?;
            Some(resp.status().as_u16())
        }
    })
    .await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = std::fs::remove_file(&pid_file);
    assert_eq!(served, 200);
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let gid = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    assert!(uid.split_whitespace().skip(1).all(|id| id == "65534"), "{uid}");
    assert!(gid.split_whitespace().skip(1).all(|id| id == "65534"), "{gid}");
}
