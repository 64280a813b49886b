//! Operations: Prometheus metrics, the access log, SIGHUP, daemon mode, zero-downtime upgrade.

use crate::common;

use std::time::Duration;

use common::*;

const KEY: &str = "ops-key";

/// The first line of a file, once it has one.
fn first_line(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()
        .map(str::to_string)
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
        ("aralez_config_apply_seconds_count", 1.0),
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
    // A pushed change is timed; an identical push is not (nothing was applied).
    for _ in 0..2 {
        let resp = c
            .post(proxy.api_url(&format!("/conf?key={KEY}")))
            .body(single_route("pushed.example.com", &[&a]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let text = metrics(&proxy).await;
    for (name, value) in [
        ("aralez_config_generation", 2.0),
        ("aralez_config_apply_seconds_count", 2.0),
        (
            "aralez_config_reloads_total{result=\"unchanged\",source=\"api\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&text, name), Some(value), "{name} in:\n{text}");
    }
    let seconds = sample(&text, "aralez_config_apply_seconds_sum").unwrap_or(-1.0);
    assert!(seconds > 0.0 && seconds < 5.0, "apply took {seconds} s");
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
        first_line(&path)
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
    // The handler is installed with the file watcher; a SIGHUP before that is ignored.
    wait_for(Duration::from_secs(5), "the file watcher", || async {
        proxy.log().contains("for changes").then_some(())
    })
    .await;
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

/// An aralez started from its own config folder, in daemon mode (the foreground part has
/// exited 0) or as a child in the foreground.
struct Daemon {
    pid: i32,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        if let Some(child) = &mut self.child {
            let _ = child.wait();
        }
    }
}

/// A port below 1024 that is free on 127.0.0.1 (root only); never the same twice, as tests
/// run in parallel.
fn free_privileged_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(900);
    loop {
        let p = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(p < 1024, "no free port below 1024");
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The Uid: and Gid: lines of a process are all `id` (real, effective, saved, fs).
fn assert_runs_as(pid: i32, id: &str) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["Uid:", "Gid:"] {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        assert!(line.split_whitespace().skip(1).all(|v| v == id), "{line}");
    }
}

impl Daemon {
    /// Starts `aralez -c main.yaml` from the config folder (a relative path: the daemon moves
    /// to `/`, so every path must already be absolute) with `daemon: true` plus `extra`.
    async fn start(extra: &str, upstreams: &str) -> Daemon {
        Self::start_on(free_port(), true, extra, upstreams).await
    }

    async fn start_on(port: u16, daemon: bool, extra: &str, upstreams: &str) -> Daemon {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // Readable by an unprivileged user too (privilege drop).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("main.yaml"),
            format!(
                "daemon: {daemon}\nthreads: 1\nproxy_address_http: 127.0.0.1:{port}\nconfig_address: 127.0.0.1:{}\npid_file: /tmp/aralez-daemon-{port}.pid\nerror_log: /tmp/aralez-daemon-{port}.log\nupgrade_sock: /tmp/aralez-daemon-{port}.sock\nupstreams_conf: upstreams.yaml\n{extra}",
                free_port()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("upstreams.yaml"), upstreams).unwrap();
        let mut command = std::process::Command::new(BIN);
        command.current_dir(dir.path()).args(["-c", "main.yaml"]);
        if !daemon {
            let log = std::fs::File::create(dir.path().join("aralez.log")).unwrap();
            let child = command.stderr(log).spawn().unwrap();
            let pid = child.id() as i32;
            return Daemon {
                pid,
                port,
                dir,
                child: Some(child),
            };
        }
        let status = command.status().unwrap();
        assert!(status.success(), "the foreground part must exit 0");
        let pid_file = format!("/tmp/aralez-daemon-{port}.pid");
        let pid = wait_for(Duration::from_secs(10), "the PID file", || {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse().ok());
            async move { pid }
        })
        .await;
        let _ = std::fs::remove_file(&pid_file);
        Daemon {
            pid,
            port,
            dir,
            child: None,
        }
    }

    /// The status of a request for `host`, once the daemon answers.
    async fn serves(&self, host: &str) -> u16 {
        let c = client();
        let url = format!("http://127.0.0.1:{}/", self.port);
        wait_for(Duration::from_secs(10), "the daemon to serve", || {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let resp = c.get(url).header("host", host).send().await.ok()?;
                Some(resp.status().as_u16())
            }
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_mode_writes_the_pid_file_and_serves() {
    let a = TestBackend::start("a").await;
    let daemon = Daemon::start("", &single_route("d.example.com", &[&a])).await;
    assert_eq!(daemon.serves("d.example.com").await, 200);
    assert!(daemon.dir.path().join("main.yaml").exists());
    // A reload in the daemon frees the replaced table on a thread of the daemon's own (the
    // first config was applied before the fork, whose threads the daemon does not inherit).
    std::fs::write(
        daemon.dir.path().join("upstreams.yaml"),
        single_route("d2.example.com", &[&a]),
    )
    .unwrap();
    wait_for(Duration::from_secs(10), "the daemon to reload", || async {
        (daemon.serves("d2.example.com").await == 200).then_some(())
    })
    .await;
    let tasks = format!("/proc/{}/task", daemon.pid);
    wait_for(
        Duration::from_secs(5),
        "a `retire` thread in the daemon",
        || {
            let found = std::fs::read_dir(&tasks).ok().is_some_and(|dir| {
                dir.flatten().any(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "retire")
                })
            });
            async move { found.then_some(()) }
        },
    )
    .await;
    let pid = daemon.pid;
    drop(daemon);
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
    let mut proxy = Proxy::start(&single_route("up.example.com", &[&a])).await;
    let load = Load::start(4, proxy.url("/"), "up.example.com");
    load.wait_more(50).await;
    let old_pid = proxy.pid();
    proxy.upgrade().await;
    assert_ne!(old_pid, proxy.pid());
    // The new process serves on the same sockets.
    load.wait_more(50).await;
    load.finish_without_failures().await;
}

/// A second instance started on the same main.yaml without `-u` stops at once with the reason,
/// instead of sharing the config API port (SO_REUSEPORT, there for upgrades) and answering
/// pushes while it serves no traffic. The first instance keeps its API.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_instance_without_upgrade_refuses_to_start() {
    let a = TestBackend::start("a").await;
    let proxy = Proxy::start_with(
        &single_route("p.example.com", &[&a]),
        ProxyOptions {
            main_extra: format!("master_key: {KEY}\n"),
            ..Default::default()
        },
    )
    .await;
    let mut second = std::process::Command::new(BIN)
        .arg("-c")
        .arg(proxy.dir.path().join("main.yaml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for(
        Duration::from_secs(10),
        "the second instance to stop",
        || {
            let status = second.try_wait().ok().flatten();
            async move { status }
        },
    )
    .await;
    assert!(!exited.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{}: another process listens there",
            proxy.api_port
        )),
        "{stderr}"
    );
    // The first instance still answers on its API.
    assert!(status(&proxy, KEY).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn privileges_are_dropped_after_binding_a_port_below_1024() {
    if !is_root() {
        eprintln!("not root: privilege drop cannot be tested here");
        return;
    }
    let a = TestBackend::start("a").await;
    let routes = single_route("p.example.com", &[&a]);
    for daemon in [true, false] {
        let port = free_privileged_port();
        let proxy = Daemon::start_on(port, daemon, "user: nobody\ngroup: nogroup\n", &routes).await;
        assert_eq!(proxy.serves("p.example.com").await, 200, "daemon: {daemon}");
        assert_runs_as(proxy.pid, "65534");
        if !daemon {
            // The PID file, written as root, is removed by the unprivileged process at exit.
            let pid_file = format!("/tmp/aralez-daemon-{port}.pid");
            assert!(std::path::Path::new(&pid_file).exists());
            drop(proxy);
            assert!(
                !std::path::Path::new(&pid_file).exists(),
                "{pid_file} is left behind"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_works_when_privileges_were_dropped() {
    if !is_root() {
        eprintln!("not root: privilege drop cannot be tested here");
        return;
    }
    let a = TestBackend::start("a").await;
    let port = free_privileged_port();
    let old = Daemon::start_on(
        port,
        false,
        "user: nobody\ngroup: nogroup\n",
        &single_route("u.example.com", &[&a]),
    )
    .await;
    assert_eq!(old.serves("u.example.com").await, 200);
    assert_runs_as(old.pid, "65534");
    let load = Load::start(4, format!("http://127.0.0.1:{port}/"), "u.example.com");
    load.wait_more(20).await;
    // The new process starts as root and takes the sockets over from the old (unprivileged)
    // one through the upgrade socket.
    let mut new = std::process::Command::new(BIN)
        .current_dir(old.dir.path())
        .args(["-u", "-c", "main.yaml"])
        .spawn()
        .unwrap();
    let sock = format!("/tmp/aralez-daemon-{port}.sock");
    wait_for(Duration::from_secs(10), "the upgrade socket", || {
        let exists = std::path::Path::new(&sock).exists();
        async move { exists.then_some(()) }
    })
    .await;
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(old.pid, libc::SIGQUIT) };
    let old_pid = old.pid;
    let mut old = old;
    let old_child = old.child.as_mut().unwrap();
    wait_for(Duration::from_secs(30), "the old process to exit", || {
        let done = old_child.try_wait().ok().flatten().is_some();
        async move { done.then_some(()) }
    })
    .await;
    load.wait_more(20).await;
    load.finish_without_failures().await;
    // In the foreground too, the log goes to error_log once started.
    let log = std::fs::read_to_string(format!("/tmp/aralez-daemon-{port}.log")).unwrap();
    assert!(log.contains("listener sockets sent"), "{log}");
    let new_pid = new.id() as i32;
    assert_ne!(new_pid, old_pid);
    assert_runs_as(new_pid, "65534");
    // SAFETY: as above.
    unsafe { libc::kill(new_pid, libc::SIGTERM) };
    let _ = new.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_reopens_on_sigusr1_and_writes_combined() {
    let a = TestBackend::start("a").await;
    let options = ProxyOptions {
        main_extra: "access_log: access.log\naccess_log_format: combined\n".into(),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&single_route("log.example.com", &[&a]), options).await;
    let c = client();
    let path = proxy.dir.path().join("access.log");
    assert_eq!(get(&c, &proxy, "log.example.com", "/one").await.0, 200);
    wait_for(Duration::from_secs(5), "the first line", || async {
        std::fs::read_to_string(&path)
            .ok()?
            .contains("GET /one HTTP/1.1\" 200")
            .then_some(())
    })
    .await;
    // logrotate: move the file away, then ask for a reopen.
    let rotated = proxy.dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe { libc::kill(proxy.pid() as libc::pid_t, libc::SIGUSR1) };
    let line = wait_for(Duration::from_secs(5), "a line in the new file", || async {
        // Requests keep coming until the reopen has happened and one lands in the new file.
        let _ = get(&client(), &proxy, "log.example.com", "/two").await;
        first_line(&path)
    })
    .await;
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains("\"GET /two HTTP/1.1\" 200 "), "{line}");
    assert!(std::fs::read_to_string(&rotated).unwrap().contains("/one"));
}

#[tokio::test(flavor = "multi_thread")]
async fn combined_lines_escape_fields_and_name_the_basic_user() {
    use base64::Engine;
    let a = TestBackend::start("a").await;
    let doc = format!(
        "upstreams:\n  log.example.com:\n    paths:\n      \"/\":\n        servers: [\"{s}\"]\n        authorization: {{type: basic, creds: \"alice:pw\"}}\n      \"/open\":\n        servers: [\"{s}\"]\n        authorization: {{type: none}}\n",
        s = a.server()
    );
    let options = ProxyOptions {
        main_extra: "access_log: access.log\naccess_log_format: combined\n".into(),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&doc, options).await;
    let c = client();
    let basic = |creds: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    };
    for (path, auth, status) in [
        ("/page", Some(basic("alice:pw")), 200),
        ("/wrong", Some(basic("mallory:x")), 401),
        ("/open/x", None, 200),
    ] {
        let mut req = c
            .get(proxy.url(path))
            .header("host", "log.example.com")
            .header("user-agent", r#"UA "quoted" \back"#)
            .header("referer", "http://r.example/\t\u{e9}");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        assert_eq!(req.send().await.unwrap().status(), status, "{path}");
    }
    let path = proxy.dir.path().join("access.log");
    let text = wait_for(Duration::from_secs(5), "three lines", || async {
        let text = std::fs::read_to_string(&path).ok()?;
        (text.lines().count() == 3).then_some(text)
    })
    .await;
    let line = |p: &str| {
        text.lines()
            .find(|l| l.contains(&format!("\"GET {p} HTTP/1.1\"")))
            .unwrap_or_else(|| panic!("no line for {p}: {text}"))
            .to_string()
    };
    let page = line("/page");
    assert!(page.starts_with("127.0.0.1 - alice ["), "{page}");
    let escaped = r#" "http://r.example/\x09\xC3\xA9" "UA \x22quoted\x22 \x5Cback""#;
    assert!(page.ends_with(escaped), "{page}");
    // As nginx's $remote_user: the user the client named, also when refused.
    assert!(
        line("/wrong").starts_with("127.0.0.1 - mallory ["),
        "{text}"
    );
    assert!(line("/open/x").starts_with("127.0.0.1 - - ["), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn open_client_connections_are_a_gauge() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = TestBackend::start("a").await;
    let proxy = Proxy::start(&single_route("conn.example.com", &[&a])).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: conn.example.com\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        open.push(s);
    }
    let gauge = "aralez_downstream_connections{listener=\"http\"}";
    wait_for(Duration::from_secs(5), "three open connections", || async {
        (sample(&metrics(&proxy).await, gauge) == Some(3.0)).then_some(())
    })
    .await;
    drop(open);
    wait_for(Duration::from_secs(5), "no open connection", || async {
        (sample(&metrics(&proxy).await, gauge) == Some(0.0)).then_some(())
    })
    .await;
}

/// A host removed from the config takes its per-host series with it (hosts that come and go
/// would otherwise grow the exposition forever); one added again starts from zero.
#[tokio::test(flavor = "multi_thread")]
async fn removed_hosts_leave_the_metrics() {
    let a = TestBackend::start("a").await;
    let two = |hosts: &[&str]| {
        let mut doc = String::from("upstreams:\n");
        for h in hosts {
            doc.push_str(&format!(
                "  {h}:\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n",
                a.server()
            ));
        }
        doc
    };
    let options = ProxyOptions {
        main_extra: format!("master_key: {KEY}\n"),
        ..Default::default()
    };
    let proxy = Proxy::start_with(&two(&["gone.example.com", "kept.example.com"]), options).await;
    let c = client();
    let push = |doc: String| {
        let c = c.clone();
        let url = proxy.api_url(&format!("/conf?key={KEY}"));
        async move {
            let resp = c.post(url).body(doc).send().await.unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    for host in ["gone.example.com", "kept.example.com"] {
        assert_eq!(get(&c, &proxy, host, "/").await.0, 200);
    }
    let gone = "aralez_host_requests_total{host=\"gone.example.com\"}";
    let kept = "aralez_host_requests_total{host=\"kept.example.com\"}";
    wait_for(Duration::from_secs(5), "both hosts counted", || async {
        let text = metrics(&proxy).await;
        (sample(&text, gone) == Some(1.0) && sample(&text, kept) == Some(1.0)).then_some(())
    })
    .await;
    push(two(&["kept.example.com"])).await;
    let text = metrics(&proxy).await;
    assert_eq!(sample(&text, gone), None, "{text}");
    assert!(
        !text.contains("aralez_host_response_latency_seconds_count{host=\"gone.example.com\"}"),
        "{text}"
    );
    assert_eq!(sample(&text, kept), Some(1.0), "{text}");
    push(two(&["gone.example.com", "kept.example.com"])).await;
    assert_eq!(get(&c, &proxy, "gone.example.com", "/").await.0, 200);
    wait_for(Duration::from_secs(5), "the host counted again", || async {
        (sample(&metrics(&proxy).await, gone) == Some(1.0)).then_some(())
    })
    .await;
}
