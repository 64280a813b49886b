//! The soak test behind `make soak`: the release proxy under mixed traffic (HTTP/1.1, h2 with
//! prior knowledge, WebSocket echo) while a new config is pushed every second and a backend is
//! killed (SIGKILL) and restarted every 10 seconds.
//!
//! `SOAK_MINUTES` (default 10) sets the length. It prints a report and writes it to
//! `benches/results/soak.md`; it exits non-zero when a request failed that was not in flight
//! on a killed backend, or when the proxy's RSS grew more than 10 % from the first minute.
//!
//! Requests that fail while a kill happened between their start and their end are counted
//! apart: they were in flight on the killed backend, and no proxy can save them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "soak-master-key";
const HOST: &str = "soak.local";
const BACKENDS: usize = 3;
/// Default clients of each kind; `SOAK_H1`, `SOAK_H2`, `SOAK_WS` override them.
const H1_CLIENTS: usize = 8;
const H2_CLIENTS: usize = 4;
const WS_CLIENTS: usize = 4;

fn clients(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn bin(name: &str) -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"));
    let direct = dir.join(name);
    if direct.exists() {
        direct
    } else {
        dir.join("examples").join(name)
    }
}

/// The routing document of push number `n`: the same backends, a request header that changes.
fn document(n: u64, ports: &[u16]) -> String {
    let servers: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!(
        "upstreams:\n  {HOST}:\n    paths:\n      \"/\":\n        servers: [{}]\n        headers: [\"X-Soak-Push:{n}\"]\n",
        servers.join(", ")
    )
}

/// Counters of one kind of traffic.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Failures of requests in flight when a backend was killed.
    killed: AtomicU64,
}

struct Soak {
    kills: Mutex<Vec<Instant>>,
    h1: Tally,
    h2: Tally,
    ws: Tally,
    /// WebSocket sessions closed right after their 101 (Pingora issue #946).
    ws_torn_down: AtomicU64,
    /// Answers that were for another request (never excused, not even at a kill).
    crossed: AtomicU64,
    /// Numbers each HTTP request, so that its answer can be told from another's.
    next_request: AtomicU64,
    pushes: Tally,
    /// The first few unexplained failures, for the report.
    samples: Mutex<Vec<String>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Soak {
    fn record(&self, tally: &Tally, started: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let now = Instant::now();
                let in_flight_on_kill = self
                    .kills
                    .lock()
                    .map(|k| k.iter().any(|t| *t >= started && *t <= now))
                    .unwrap_or(false);
                if in_flight_on_kill {
                    tally.killed.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    let since_kill = self
                        .kills
                        .lock()
                        .ok()
                        .and_then(|k| k.last().map(|t| now.duration_since(*t)));
                    if let Ok(mut s) = self.samples.lock() {
                        if s.len() < 10 {
                            s.push(format!(
                                "{} {e} (after {:.1} s, {:.1} s after the last kill)",
                                chrono::Utc::now().format("%H:%M:%S%.3f"),
                                now.duration_since(started).as_secs_f64(),
                                since_kill.map_or(f64::NAN, |d| d.as_secs_f64())
                            ));
                        }
                    }
                }
            }
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

fn spawn_backend(port: u16) -> Child {
    Command::new(bin("demo_backend"))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start demo_backend: {e}"))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

async fn http_loop(soak: Arc<Soak>, client: reqwest::Client, url: String, h2: bool) {
    let tally = if h2 { &soak.h2 } else { &soak.h1 };
    while !soak.stopped() {
        let started = Instant::now();
        // The demo backend echoes the request line: an answer without this request's own path
        // was meant for another request (an upstream connection shared by two requests).
        let n = soak.next_request.fetch_add(1, Ordering::Relaxed);
        let path = format!("check/{n}");
        let result = async {
            let url = format!("{url}{path}");
            // HTTP/1.1 names the host in Host; h2 in :authority (from the URL).
            let request = if h2 {
                client.get(&url)
            } else {
                client.get(&url).header("host", HOST)
            };
            let resp = request.send().await.map_err(|e| format!("{e}"))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
            if status != 200 {
                return Err(format!("status {status}"));
            }
            // The second line is the request's method and URI as the backend saw them: the
            // path alone over HTTP/1.1, with scheme and authority when it came over h2c.
            let text = String::from_utf8_lossy(&body);
            let ours = text
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("GET ") && l.ends_with(&format!("/{path}")));
            if !ours {
                soak.crossed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut s) = soak.samples.lock() {
                    if s.len() < 10 {
                        s.push(format!(
                            "{} answer of another request for /{path}: {:?}",
                            chrono::Utc::now().format("%H:%M:%S%.3f"),
                            text.lines().take(2).collect::<Vec<_>>()
                        ));
                    }
                }
            }
            Ok(())
        }
        .await;
        soak.record(
            tally,
            started,
            result.map_err(|e| format!("{}: {e}", if h2 { "h2" } else { "h1" })),
        );
    }
}

/// A session that got its 101 and then EOF before the first echo: Pingora 0.9.1 tears an
/// upgrade down when the upstream's 101 is read before the request's empty body
/// (cloudflare/pingora#946, fixes in review). Counted apart, and not a soak failure.
const TORN_DOWN: &str = "torn down right after the 101";

async fn ws_loop(soak: Arc<Soak>, url: String) {
    while !soak.stopped() {
        let started = Instant::now();
        let result = async {
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    url.as_str(),
                )
                .map_err(|e| format!("{e}"))?;
            request
                .headers_mut()
                .insert("host", http::HeaderValue::from_static(HOST));
            let (mut ws, _) = tokio_tungstenite::connect_async(request)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            // A session of 200 echoes, then a clean close.
            for i in 0..200 {
                if soak.stopped() {
                    break;
                }
                let text = format!("soak {i}");
                ws.send(Message::text(text.clone()))
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.as_str() == text => {
                        soak.ws.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(tokio_tungstenite::tungstenite::Error::Protocol(
                        tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ))) if i == 0 => return Err(TORN_DOWN.to_string()),
                    other => return Err(format!("echo: {other:?}")),
                }
            }
            let _ = ws.close(None).await;
            Ok(())
        }
        .await;
        match result {
            Err(e) if e == TORN_DOWN => {
                soak.ws_torn_down.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => soak.record(&soak.ws, started, Err(format!("ws: {e}"))),
            Ok(()) => {}
        }
    }
}

async fn push_loop(soak: Arc<Soak>, api: String, ports: Vec<u16>) {
    let client = reqwest::Client::new();
    let mut n = 0;
    while !soak.stopped() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        n += 1;
        let started = Instant::now();
        let result = match client.post(&api).body(document(n, &ports)).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(format!("push: status {}", r.status())),
            Err(e) => Err(format!("push: {e}")),
        };
        soak.record(&soak.pushes, started, result);
    }
}

/// Returns the backends (still running) once the soak stops.
async fn kill_loop(soak: Arc<Soak>, mut backends: Vec<(u16, Child)>) -> Vec<(u16, Child)> {
    let mut victim = 0;
    let mut stop = soak.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = stop.changed() => break,
        }
        let (port, child) = &mut backends[victim];
        // Noted first: clients see the kill before `wait` returns.
        if let Ok(mut k) = soak.kills.lock() {
            k.push(Instant::now());
        }
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "soak: {} killed backend 127.0.0.1:{port}",
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        *child = spawn_backend(*port);
        wait_accepting(*port).await;
        println!(
            "soak: {} restarted backend 127.0.0.1:{port}",
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        victim = (victim + 1) % backends.len();
    }
    backends
}

async fn wait_accepting(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report(soak: &Soak, minutes: f64, rss: (u64, u64)) -> (String, bool) {
    let row = |name: &str, t: &Tally| {
        format!(
            "| {name} | {} | {} | {} |\n",
            t.ok.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
            t.killed.load(Ordering::Relaxed)
        )
    };
    let failed: u64 = [&soak.h1, &soak.h2, &soak.ws, &soak.pushes]
        .iter()
        .map(|t| t.failed.load(Ordering::Relaxed))
        .sum();
    let growth = if rss.0 > 0 {
        (rss.1 as f64 - rss.0 as f64) / rss.0 as f64 * 100.0
    } else {
        0.0
    };
    let kills = soak.kills.lock().map(|k| k.len()).unwrap_or(0);
    let mut out = format!(
        "# Soak: {minutes} min, {H1_CLIENTS} HTTP/1.1 + {H2_CLIENTS} h2 + {WS_CLIENTS} WebSocket clients, a push every second, {kills} backend kills\n\n\
         | traffic | ok | failed | failed in flight on a killed backend |\n|---|---|---|---|\n"
    );
    out.push_str(&row("HTTP/1.1 requests", &soak.h1));
    out.push_str(&row("h2 requests", &soak.h2));
    out.push_str(&row("WebSocket echoes (failures: sessions)", &soak.ws));
    out.push_str(&row("config pushes", &soak.pushes));
    let torn = soak.ws_torn_down.load(Ordering::Relaxed);
    if torn > 0 {
        out.push_str(&format!(
            "\nWebSocket sessions closed right after their 101 by Pingora 0.9.1's upgrade race \
             (cloudflare/pingora#946, not counted as failures): {torn}.\n"
        ));
    }
    out.push_str(&format!(
        "\nRSS after the first minute: {} KiB; at the end: {} KiB ({growth:+.1} %).\n",
        rss.0, rss.1
    ));
    if let Ok(samples) = soak.samples.lock() {
        if !samples.is_empty() {
            out.push_str("\nUnexplained failures (first ones):\n");
            for s in samples.iter() {
                out.push_str(&format!("- {s}\n"));
            }
        }
    }
    let crossed = soak.crossed.load(Ordering::Relaxed);
    out.push_str(&format!(
        "\nAnswers that belonged to another request: {crossed}.\n"
    ));
    let pass = failed == 0 && crossed == 0 && growth <= 10.0;
    out.push_str(&format!(
        "\nResult: {}\n",
        if pass { "PASS" } else { "FAIL" }
    ));
    (out, pass)
}

#[tokio::main]
async fn main() {
    let minutes: f64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10.0);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let ports: Vec<u16> = (0..BACKENDS).map(|_| free_port()).collect();
    let backends: Vec<(u16, Child)> = ports.iter().map(|p| (*p, spawn_backend(*p))).collect();
    for p in &ports {
        wait_accepting(*p).await;
    }
    let (proxy_port, api_port) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("main.yaml"),
        format!(
            "threads: 2\nproxy_address_http: 127.0.0.1:{proxy_port}\nconfig_address: 127.0.0.1:{api_port}\nmaster_key: {KEY}\nupstreams_conf: upstreams.yaml\nhc_interval: 1\nlog_level: warn\npid_file: {pid}\nupgrade_sock: {sock}\n",
            pid = dir.path().join("aralez.pid").display(),
            sock = dir.path().join("aralez.sock").display(),
        ),
    )
    .unwrap_or_else(|e| panic!("main.yaml: {e}"));
    std::fs::write(dir.path().join("upstreams.yaml"), document(0, &ports))
        .unwrap_or_else(|e| panic!("upstreams.yaml: {e}"));
    let log = std::fs::File::create("soak-aralez.log").unwrap_or_else(|e| panic!("log: {e}"));
    let mut proxy = Command::new(bin("aralez"))
        .arg("-c")
        .arg(dir.path().join("main.yaml"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start aralez: {e}"));
    wait_accepting(proxy_port).await;
    println!(
        "soak: {minutes} min against aralez pid {} (log: soak-aralez.log)",
        proxy.id()
    );

    let (stop, _) = tokio::sync::watch::channel(false);
    let soak = Arc::new(Soak {
        kills: Mutex::new(Vec::new()),
        h1: Tally::default(),
        h2: Tally::default(),
        ws: Tally::default(),
        ws_torn_down: AtomicU64::new(0),
        crossed: AtomicU64::new(0),
        next_request: AtomicU64::new(0),
        pushes: Tally::default(),
        samples: Mutex::new(Vec::new()),
        stop,
    });
    let url = format!("http://127.0.0.1:{proxy_port}/");
    let mut tasks = Vec::new();
    for _ in 0..clients("SOAK_H1", H1_CLIENTS) {
        let client = reqwest::Client::builder().http1_only().no_proxy().build();
        let client = client.unwrap_or_else(|e| panic!("client: {e}"));
        tasks.push(tokio::spawn(http_loop(
            soak.clone(),
            client,
            url.clone(),
            false,
        )));
    }
    for _ in 0..clients("SOAK_H2", H2_CLIENTS) {
        // h2 routes by :authority, so name the host in the URL and resolve it to the proxy.
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .no_proxy()
            .resolve(HOST, ([127, 0, 0, 1], proxy_port).into())
            .build()
            .unwrap_or_else(|e| panic!("client: {e}"));
        let url = format!("http://{HOST}:{proxy_port}/");
        tasks.push(tokio::spawn(http_loop(soak.clone(), client, url, true)));
    }
    for _ in 0..clients("SOAK_WS", WS_CLIENTS) {
        let url = format!("ws://127.0.0.1:{proxy_port}/ws");
        tasks.push(tokio::spawn(ws_loop(soak.clone(), url)));
    }
    let api = format!("http://127.0.0.1:{api_port}/conf?key={KEY}");
    tasks.push(tokio::spawn(push_loop(soak.clone(), api, ports.clone())));
    let killer = tokio::spawn(kill_loop(soak.clone(), backends));

    let total = Duration::from_secs_f64(minutes * 60.0);
    let warmup = total.min(Duration::from_secs(60));
    tokio::time::sleep(warmup).await;
    let rss_start = rss_kib(proxy.id());
    let mut left = total.saturating_sub(warmup);
    while !left.is_zero() {
        let step = left.min(Duration::from_secs(60));
        tokio::time::sleep(step).await;
        left -= step;
        println!(
            "soak: h1 {} h2 {} ws {} pushes {}; unexplained failures {}; rss {} KiB",
            soak.h1.ok.load(Ordering::Relaxed),
            soak.h2.ok.load(Ordering::Relaxed),
            soak.ws.ok.load(Ordering::Relaxed),
            soak.pushes.ok.load(Ordering::Relaxed),
            [&soak.h1, &soak.h2, &soak.ws, &soak.pushes]
                .iter()
                .map(|t| t.failed.load(Ordering::Relaxed))
                .sum::<u64>(),
            rss_kib(proxy.id())
        );
    }
    let rss_end = rss_kib(proxy.id());
    soak.stop.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
    // Backends go only after every client is done, or their last requests would fail.
    if let Ok(mut backends) = killer.await {
        for (_, child) in &mut backends {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let _ = proxy.kill();
    let _ = proxy.wait();

    let (text, pass) = report(&soak, minutes, (rss_start, rss_end));
    println!("\n{text}");
    let out = Path::new("benches/results/soak.md");
    if let Err(e) = std::fs::write(out, &text) {
        eprintln!("cannot write {}: {e}", out.display());
    }
    std::process::exit(if pass { 0 } else { 1 });
}
