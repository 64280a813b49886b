//! Limits towards clients and backends: body size (413), backend read timeout (504).

use crate::common;

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

/// Lines of `log` about file descriptor exhaustion.
fn fd_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("Too many open files"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_file_descriptors_is_logged_about_once_a_second() {
    use std::os::unix::process::CommandExt;
    // About 40 descriptors are open once the proxy has started.
    const NOFILE: libc::rlim_t = 64;
    const WINDOW: Duration = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes");
    std::fs::create_dir(&routes).unwrap();
    let (port, api) = (free_port(), free_port());
    // A backend that refuses: every request needs one more descriptor to find that out.
    std::fs::write(
        routes.join("upstreams.yaml"),
        format!(
            "upstreams:\n  fd.example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:{}\"]\n",
            free_port()
        ),
    )
    .unwrap();
    let main = format!(
        "threads: 2\nproxy_address_http: 127.0.0.1:{port}\nconfig_address: 127.0.0.1:{api}\nupstreams_conf: routes/upstreams.yaml\npid_file: {d}/aralez.pid\nupgrade_sock: {d}/aralez.sock\n",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("main.yaml"), main).unwrap();
    let log_path = dir.path().join("aralez.log");
    let mut command = std::process::Command::new(BIN);
    command
        .arg("-c")
        .arg(dir.path().join("main.yaml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    // SAFETY: setrlimit(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _proxy = Kill(command.spawn().expect("cannot start aralez"));
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for(Duration::from_secs(20), "the proxy to accept", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    // More clients than descriptors, all sending requests: accepts and backend connections fail.
    let mut clients = Vec::new();
    for _ in 0..2 * NOFILE {
        if let Ok(c) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            clients.push(c);
        }
    }
    let request = b"GET / HTTP/1.1\r\nHost: fd.example.com\r\n\r\n";
    // Requests keep coming over a window that starts at the first line about exhaustion.
    let started = std::time::Instant::now();
    let mut first_line = None;
    loop {
        for c in &clients {
            let _ = c.try_write(request);
        }
        if first_line.is_none() && !fd_lines(&log()).is_empty() {
            first_line = Some(std::time::Instant::now());
        }
        match first_line {
            Some(t) if t.elapsed() >= WINDOW => break,
            None if started.elapsed() > Duration::from_secs(10) => {
                panic!("descriptors never ran out:\n{}", log())
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let text = log();
    let lines = fd_lines(&text);
    let most = WINDOW.as_secs() as usize + 2;
    assert!(
        (1..=most).contains(&lines.len()),
        "{} lines about exhaustion:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l.contains("more like it left out")),
        "no count of the lines left out:\n{}",
        lines.join("\n")
    );
}
