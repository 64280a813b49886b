//! Test harness: real backends (axum) that say who they are, and the real `aralez` binary
//! started on free loopback ports with a temporary configuration.
#![allow(dead_code)]

pub mod consul;
pub mod raw;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;

/// Polls `check` until it returns Some, or panics with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port that was free a moment ago (bound and released), and not handed out before in
/// this test process: the kernel may offer a released port again, and two listeners of one
/// proxy given the same port make a config the proxy refuses.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A backend that answers with its name and the request headers it saw.
///
/// Paths: `/__upload` counts the streamed request body; `/__download/N` streams N bytes;
/// `/__slow/MS` answers after MS milliseconds; anything else echoes. Health probes (user agent
/// `aralez-health-check`) are recorded and answered with `probe_status`.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests to `/__slow/..` being served right now.
    pub slow_in_progress: Arc<AtomicUsize>,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests served that were not health probes.
    pub served: Arc<AtomicUsize>,
    /// Health probes seen: (method, Host).
    pub probes: Arc<Mutex<Vec<(String, String)>>>,
    /// Status answered to health probes (200 unless a test changes it).
    pub probe_status: Arc<AtomicU16>,
    killed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Shared {
    who: String,
    slow: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    probes: Arc<Mutex<Vec<(String, String)>>>,
    probe_status: Arc<AtomicU16>,
}

/// A listener whose connections stop reading requests once the backend is killed, as a dead
/// process would, while a response already being written still goes out.
struct KillableListener {
    inner: tokio::net::TcpListener,
    killed: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

struct KillableStream {
    inner: tokio::net::TcpStream,
    killed: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for KillableStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for KillableStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((stream, addr)) = self.inner.accept().await {
                self.connections.fetch_add(1, Ordering::SeqCst);
                return (
                    KillableStream {
                        inner: stream,
                        killed: self.killed.clone(),
                    },
                    addr,
                );
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Shared {
    /// The state of a backend named `name`, and the app that serves it.
    fn app(name: &str) -> (Arc<Shared>, Router) {
        let shared = Arc::new(Shared {
            who: name.to_string(),
            slow: Arc::new(AtomicUsize::new(0)),
            served: Arc::new(AtomicUsize::new(0)),
            probes: Arc::new(Mutex::new(Vec::new())),
            probe_status: Arc::new(AtomicU16::new(200)),
        });
        let state = shared.clone();
        let app = Router::new().fallback(move |req: Request| {
            let state = state.clone();
            async move { handle(&state, req).await }
        });
        (shared, app)
    }
}

impl TestBackend {
    pub async fn start(name: &str) -> TestBackend {
        Self::start_at(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on a given address (e.g. the address of a killed backend, to bring it back).
    pub async fn start_at(name: &str, addr: SocketAddr) -> TestBackend {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shared, app) = Shared::app(name);
        let connections = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let listener = KillableListener {
            inner: listener,
            killed: killed.clone(),
            connections: connections.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestBackend {
            name: name.to_string(),
            addr,
            slow_in_progress: shared.slow.clone(),
            connections,
            served: shared.served.clone(),
            probes: shared.probes.clone(),
            probe_status: shared.probe_status.clone(),
            killed,
            task,
        }
    }

    /// Like `start`, but speaking TLS with a self-signed certificate; ALPN offers h2 and
    /// HTTP/1.1. (Not killable.)
    pub async fn start_tls(name: &str) -> TestBackend {
        use pingora::tls::ssl::{select_next_proto, AlpnError, SslAcceptor, SslMethod};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["tls-backend.test".to_string()]).unwrap();
        let cert = pingora::tls::x509::X509::from_pem(ck.cert.pem().as_bytes()).unwrap();
        let key =
            pingora::tls::pkey::PKey::private_key_from_pem(ck.key_pair.serialize_pem().as_bytes())
                .unwrap();
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acceptor.set_certificate(&cert).unwrap();
        acceptor.set_private_key(&key).unwrap();
        acceptor.set_alpn_select_callback(|_, offered| {
            select_next_proto(b"\x02h2\x08http/1.1", offered).ok_or(AlpnError::NOACK)
        });
        let tls = aralez::tls::TlsListener::start(listener, acceptor.build()).unwrap();
        let (shared, app) = Shared::app(name);
        let task = tokio::spawn(async move {
            let _ = axum::serve(tls, app).await;
        });
        TestBackend {
            name: name.to_string(),
            addr,
            slow_in_progress: shared.slow.clone(),
            connections: Arc::new(AtomicUsize::new(0)),
            served: shared.served.clone(),
            probes: shared.probes.clone(),
            probe_status: shared.probe_status.clone(),
            killed: Arc::new(AtomicBool::new(false)),
            task,
        }
    }

    /// Stops accepting (new connections are refused) and stops reading on open connections.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.task.abort();
    }

    /// `127.0.0.1:PORT`, as written in `servers`.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    pub fn probe_count(&self) -> usize {
        self.probes.lock().unwrap().len()
    }
}

async fn handle(state: &Shared, req: Request) -> axum::response::Response {
    let is_probe = req
        .headers()
        .get("user-agent")
        .is_some_and(|v| v.as_bytes() == b"aralez-health-check");
    if is_probe {
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        state
            .probes
            .lock()
            .unwrap()
            .push((req.method().to_string(), host));
        let status = state.probe_status.load(Ordering::SeqCst);
        let mut resp = axum::response::Response::new(Body::empty());
        *resp.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
        return resp;
    }
    state.served.fetch_add(1, Ordering::SeqCst);
    let who = state.who.as_str();
    let path = req.uri().path().to_string();
    if path.starts_with("/__ws") {
        return websocket_echo(who.to_string(), req).await;
    }
    if path == "/__upload" {
        let mut stream = req.into_body().into_data_stream();
        let mut total: u64 = 0;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => total += c.len() as u64,
                Err(e) => return axum::response::Response::new(Body::from(format!("error {e}"))),
            }
        }
        return axum::response::Response::new(Body::from(format!("{total}")));
    }
    if let Some(n) = path.strip_prefix("/__download/") {
        let mut left: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::poll_fn(move |_| {
            if left == 0 {
                return std::task::Poll::Ready(None);
            }
            let n = left.min(chunk.len() as u64) as usize;
            left -= n as u64;
            std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(chunk.slice(..n))))
        });
        return axum::response::Response::new(Body::from_stream(stream));
    }
    if let Some(ms) = path.strip_prefix("/__slow/") {
        state.slow.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        state.slow.fetch_sub(1, Ordering::SeqCst);
    }
    let mut body = format!("backend={who}\npath={}\n", req.uri());
    for (name, value) in req.headers() {
        body.push_str(&format!(
            "{name}: {}\n",
            value.to_str().unwrap_or("<binary>")
        ));
    }
    axum::response::Response::new(Body::from(body))
}

/// `/__ws`: greets with `hello from NAME, x-proxy-from=VALUE`, then echoes every message.
async fn websocket_echo(who: String, req: Request) -> axum::response::Response {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::extract::FromRequest;
    use axum::response::IntoResponse;
    let header = req
        .headers()
        .get("x-proxy-from")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let upgrade = match WebSocketUpgrade::from_request(req, &()).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    // Pingora 0.9.1 tears an upgrade down at random when the backend's 101 is read before the
    // upgrade request's empty body (cloudflare/pingora#946, fix under review). A backend that
    // answers within microseconds over loopback hits that race; real ones rarely do. Answer a
    // little later so these tests check our behaviour, not that race (`make soak` measures it).
    tokio::time::sleep(Duration::from_millis(20)).await;
    upgrade.on_upgrade(move |mut socket| async move {
        let hello = format!("hello from {who}, x-proxy-from={header}");
        if socket.send(Message::Text(hello.into())).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = socket.recv().await {
            // The close reply is sent by the library on the next read.
            if !matches!(msg, Message::Close(_)) && socket.send(msg).await.is_err() {
                return;
            }
        }
    })
}

/// What an echo backend reported.
#[derive(Debug)]
pub struct Echo {
    pub backend: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

impl Echo {
    pub fn parse(body: &str) -> Echo {
        let mut backend = String::new();
        let mut path = String::new();
        let mut headers = HashMap::new();
        for line in body.lines() {
            if let Some(b) = line.strip_prefix("backend=") {
                backend = b.to_string();
            } else if let Some(p) = line.strip_prefix("path=") {
                path = p.to_string();
            } else if let Some((k, v)) = line.split_once(": ") {
                headers.insert(k.to_string(), v.to_string());
            }
        }
        Echo {
            backend,
            path,
            headers,
        }
    }
}

/// The aralez binary running on a temporary configuration.
pub struct Proxy {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The config API (plain HTTP).
    pub api_port: u16,
    /// The config API over HTTPS, with `api_tls`.
    pub api_tls_port: Option<u16>,
    pub tls_port: Option<u16>,
    upstreams: PathBuf,
    child: Child,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const BIN: &str = env!("CARGO_BIN_EXE_aralez");

/// Writes a file atomically (temp file + rename), as a careful operator or tool would.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Starts the binary on `dir/main.yaml`, appending its stderr to `dir/aralez.log`.
fn spawn(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("aralez.log"))
        .unwrap();
    Command::new(BIN)
        .arg("-c")
        .arg(dir.join("main.yaml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cannot start aralez")
}

/// Options for `Proxy::start`.
#[derive(Default)]
pub struct ProxyOptions {
    /// Extra main.yaml lines.
    pub main_extra: String,
    /// Start a TLS listener with a self-signed certificate for localhost.
    pub tls: bool,
    /// log_level (default info).
    pub log_level: Option<&'static str>,
    /// Proxy worker threads (default 2).
    pub threads: Option<usize>,
    /// connect_timeout in seconds (default 1).
    pub connect_timeout: Option<&'static str>,
    /// Serve the config API over HTTPS too, with a self-signed certificate for localhost.
    pub api_tls: bool,
    /// Keep upstreams.yaml in this folder instead of the proxy's own.
    pub upstreams_dir: Option<PathBuf>,
}

impl Proxy {
    /// Starts aralez with `upstreams` as its routing file and waits until it accepts.
    pub async fn start(upstreams: &str) -> Proxy {
        Self::start_with(upstreams, ProxyOptions::default()).await
    }

    pub async fn start_with(upstreams: &str, options: ProxyOptions) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let api_port = free_port();
        let upstreams_path = options
            .upstreams_dir
            .as_deref()
            .unwrap_or(dir.path())
            .join("upstreams.yaml");
        let mut main = format!(
            "threads: {threads}\nproxy_address_http: 127.0.0.1:{port}\nconfig_address: 127.0.0.1:{api_port}\nupstreams_conf: {upstreams}\npid_file: {pid}\nupgrade_sock: {sock}\nlog_level: {level}\nconnect_timeout: {connect}\n",
            threads = options.threads.unwrap_or(2),
            level = options.log_level.unwrap_or("info"),
            connect = options.connect_timeout.unwrap_or("1"),
            upstreams = upstreams_path.display(),
            pid = dir.path().join("aralez.pid").display(),
            sock = dir.path().join("aralez.sock").display(),
        );
        let mut tls_port = None;
        if options.tls {
            let p = free_port();
            tls_port = Some(p);
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs).unwrap();
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            std::fs::write(certs.join("localhost.crt"), ck.cert.pem()).unwrap();
            std::fs::write(certs.join("localhost.key"), ck.key_pair.serialize_pem()).unwrap();
            main.push_str(&format!(
                "proxy_address_tls: 127.0.0.1:{p}\nproxy_certificates: certs\n"
            ));
        }
        let mut api_tls_port = None;
        if options.api_tls {
            let p = free_port();
            api_tls_port = Some(p);
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            std::fs::write(dir.path().join("api.crt"), ck.cert.pem()).unwrap();
            std::fs::write(dir.path().join("api.key"), ck.key_pair.serialize_pem()).unwrap();
            main.push_str(&format!(
                "config_tls_address: 127.0.0.1:{p}\nconfig_tls_certificate: api.crt\nconfig_tls_key_file: api.key\n"
            ));
        }
        main.push_str(&options.main_extra);
        // The parity run: the whole suite with the fast lane off (`.ci/run` runs it twice).
        if !options.main_extra.contains("fast_lane:") && lane_off_by_env() {
            main.push_str("fast_lane: false\n");
        }
        std::fs::write(dir.path().join("main.yaml"), main).unwrap();
        std::fs::write(&upstreams_path, upstreams).unwrap();
        let child = spawn(dir.path());
        let mut proxy = Proxy {
            dir,
            port,
            api_port,
            api_tls_port,
            tls_port,
            upstreams: upstreams_path,
            child,
        };
        proxy.wait_accepting().await;
        proxy
    }

    /// Zero-downtime upgrade: starts a new process with `-u` on the same folder, waits for it
    /// to open the upgrade socket, sends SIGQUIT to the old one and waits for it to exit.
    pub async fn upgrade(&mut self) {
        let new = {
            let log = std::fs::OpenOptions::new()
                .append(true)
                .open(self.dir.path().join("aralez.log"))
                .unwrap();
            Command::new(BIN)
                .arg("-u")
                .arg("-c")
                .arg(self.dir.path().join("main.yaml"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("cannot start the new aralez")
        };
        let sock = self.dir.path().join("aralez.sock");
        wait_for(
            Duration::from_secs(20),
            "the new process to open the upgrade socket",
            || {
                let exists = sock.exists();
                async move { exists.then_some(()) }
            },
        )
        .await;
        let old_pid = self.child.id();
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(old_pid as libc::pid_t, libc::SIGQUIT) };
        let mut old = std::mem::replace(&mut self.child, new);
        wait_for(Duration::from_secs(30), "the old process to exit", || {
            let done = old.try_wait().ok().flatten().is_some();
            async move { done.then_some(()) }
        })
        .await;
    }

    /// Stops the process (SIGKILL) and starts it again on the same folder and ports.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.dir.path());
        self.wait_accepting().await;
    }

    async fn wait_accepting(&mut self) {
        let mut ports = vec![self.port, self.api_port];
        ports.extend(self.api_tls_port);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("aralez exited with {status}:\n{}", self.log());
            }
            let mut all = true;
            for port in &ports {
                all &= tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .is_ok();
            }
            if all {
                return;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!("aralez did not accept within 20s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    pub fn upstreams_path(&self) -> PathBuf {
        self.upstreams.clone()
    }

    /// Everything aralez logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aralez.log")).unwrap_or_default()
    }

    /// The log once it holds `needle`. Aralez logs an apply after swapping the table in, so a
    /// test that has seen the new routes answer may still be ahead of the log line.
    pub async fn log_once_it_holds(&self, needle: &str) -> String {
        wait_for(
            Duration::from_secs(5),
            &format!("{needle:?} in the log"),
            || async {
                let log = self.log();
                log.contains(needle).then_some(log)
            },
        )
        .await
    }
}

/// An HTTPS client for the proxy's self-signed listener, HTTP/1.1 only (so that a Host header
/// can name the route: an h2 client sends `:authority` from the URL instead).
pub fn tls_h1_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// A client that never uses environment proxies and never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET `path` on the proxy with a Host header; returns status and body.
pub async fn get(client: &reqwest::Client, proxy: &Proxy, host: &str, path: &str) -> (u16, String) {
    let resp = client
        .get(proxy.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {host}{path} failed: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The backend that answered `host/path`, when the answer was a 200.
pub async fn backend_of(
    client: &reqwest::Client,
    proxy: &Proxy,
    host: &str,
    path: &str,
) -> Option<String> {
    let (status, body) = get(client, proxy, host, path).await;
    (status == 200).then(|| Echo::parse(&body).backend)
}

/// The config API's `GET /metrics` text.
pub async fn metrics(proxy: &Proxy) -> String {
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
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET /status` with the master key, as JSON; None while the API does not answer.
pub async fn status(proxy: &Proxy, key: &str) -> Option<serde_json::Value> {
    client()
        .get(proxy.api_url("/status"))
        .header("x-api-key", key)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// One route `/` on `host` over the given backends.
pub fn single_route(host: &str, backends: &[&TestBackend]) -> String {
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.server()))
        .collect();
    format!(
        "upstreams:\n  {host}:\n    paths:\n      \"/\":\n        servers: [{}]\n",
        servers.join(", ")
    )
}

/// Listening sockets whose accept queues are full, so connections to them hang (their SYNs
/// are dropped) instead of being refused: backends that never answer. Keep the returned
/// value alive for as long as they are needed.
pub async fn blackholes(
    n: usize,
) -> Vec<(
    SocketAddr,
    tokio::net::TcpListener,
    Vec<tokio::net::TcpStream>,
)> {
    let mut holes = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        holes.push((listener.local_addr().unwrap(), listener));
    }
    let fill = holes.iter().map(|(addr, _)| {
        let addr = *addr;
        async move {
            let mut streams = Vec::new();
            for _ in 0..8 {
                match tokio::time::timeout(
                    Duration::from_millis(300),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                {
                    Ok(Ok(s)) => streams.push(s),
                    _ => return streams,
                }
            }
            panic!("accept queue of {addr} never filled");
        }
    });
    let filled = futures_util::future::join_all(fill).await;
    holes
        .into_iter()
        .zip(filled)
        .map(|((addr, l), streams)| (addr, l, streams))
        .collect()
}

/// Clients sending GET requests to one URL in a loop until stopped, counting successes and
/// keeping every failure.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    pub fn start(clients: usize, url: String, host: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, url, host) =
                    (stop.clone(), ok.clone(), url.clone(), host.to_string());
                tokio::spawn(async move {
                    let c = client();
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match c.get(&url).header("host", &host).send().await {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures.push(format!("status {}", r.status())),
                            Err(e) => failures.push(format!("{e:?}")),
                        }
                    }
                    failures
                })
            })
            .collect();
        Load { stop, ok, tasks }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests have succeeded.
    pub async fn wait_more(&self, n: usize) {
        let target = self.ok() + n;
        wait_for(
            Duration::from_secs(20),
            &format!("{n} more requests"),
            || async { (self.ok() >= target).then_some(()) },
        )
        .await;
    }

    /// Stops the clients and asserts that no request failed.
    pub async fn finish_without_failures(self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for t in self.tasks {
            failures.extend(t.await.unwrap_or_default());
        }
        assert!(
            failures.is_empty(),
            "{} failed requests: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
}

/// `ARALEZ_TEST_FAST_LANE=off`: every proxy a test starts without naming `fast_lane` runs
/// with the lane off, so that the suite proves both engines give the same answers.
pub fn lane_off_by_env() -> bool {
    std::env::var("ARALEZ_TEST_FAST_LANE").is_ok_and(|v| v == "off")
}

/// Options that name the fast lane's setting, whatever the parity run's.
pub fn lane(on: bool) -> ProxyOptions {
    ProxyOptions {
        main_extra: format!("fast_lane: {on}\n"),
        ..Default::default()
    }
}

/// The proxy on `doc` twice: with the fast lane on, and with it off.
pub async fn both_engines(doc: &str) -> Vec<(&'static str, Proxy)> {
    vec![
        ("lane on", Proxy::start_with(doc, lane(true)).await),
        ("lane off", Proxy::start_with(doc, lane(false)).await),
    ]
}

/// The status answered to `GET http://{host}{target}` over HTTP/2 with prior knowledge, on a
/// connection of its own; the h2 client sends the target exactly as written.
pub async fn h2c_status(proxy: &Proxy, host: &str, target: &str) -> u16 {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let uri: http::Uri = format!("http://{host}{target}").parse().unwrap();
    assert_eq!(
        uri.path(),
        target.split('?').next().unwrap(),
        "the URI keeps the path"
    );
    let req = http::Request::get(uri).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    resp.await.unwrap().status().as_u16()
}
