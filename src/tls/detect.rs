//! Detecting what a backend speaks: TLS (and whether ALPN picks h2), or plain HTTP (and
//! whether it takes h2c with prior knowledge). Self-signed certificates are accepted here:
//! detection only asks whether a handshake completes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pingora::tls::ssl::{SslConnector, SslMethod, SslVerifyMode};
use pingora::tls::tokio_ssl::SslStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::health::{BackendHealth, Protocol};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

async fn connect(addr: SocketAddr, limit: Duration) -> Option<TcpStream> {
    timeout(limit, TcpStream::connect(addr)).await.ok()?.ok()
}

/// One connector for every detection: building one loads the system CA bundle, which is far
/// too slow to repeat for each of a thousand backends.
fn connector() -> Option<&'static SslConnector> {
    static CONNECTOR: OnceLock<Option<SslConnector>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let mut builder = SslConnector::builder(SslMethod::tls()).ok()?;
            builder.set_verify(SslVerifyMode::NONE);
            builder.set_alpn_protos(b"\x02h2\x08http/1.1").ok()?;
            Some(builder.build())
        })
        .as_ref()
}

/// Some(h2) when a TLS handshake completes, None otherwise.
async fn try_tls(addr: SocketAddr, sni: &str, limit: Duration) -> Option<bool> {
    let tcp = connect(addr, limit).await?;
    let ssl = connector()?
        .configure()
        .ok()?
        .verify_hostname(false)
        .into_ssl(if sni.is_empty() { "localhost" } else { sni })
        .ok()?;
    let mut stream = SslStream::new(ssl, tcp).ok()?;
    timeout(limit, Pin::new(&mut stream).connect())
        .await
        .ok()?
        .ok()?;
    Some(stream.ssl().selected_alpn_protocol() == Some(b"h2"))
}

/// Whether a plain connection answers an HTTP/2 preface with a SETTINGS frame.
async fn try_h2c(addr: SocketAddr, limit: Duration) -> bool {
    let attempt = async {
        let mut tcp = connect(addr, limit).await?;
        tcp.write_all(H2_PREFACE).await.ok()?;
        tcp.write_all(EMPTY_SETTINGS).await.ok()?;
        let mut head = [0u8; 9];
        tcp.read_exact(&mut head).await.ok()?;
        Some(head[3] == 4)
    };
    matches!(timeout(limit, attempt).await, Ok(Some(true)))
}

/// What `addr` speaks, or None when it cannot be reached. `sni` is a host name of a route
/// that uses it.
pub async fn detect(addr: SocketAddr, sni: &str, limit: Duration) -> Option<Protocol> {
    if let Some(h2) = try_tls(addr, sni, limit).await {
        return Some(Protocol { tls: true, h2 });
    }
    // The TLS attempt failed: either the backend is plain, or it is not there.
    connect(addr, limit).await?;
    Some(Protocol {
        tls: false,
        h2: try_h2c(addr, limit).await,
    })
}

/// A backend to detect: address, SNI, and where to record the result.
pub type Target = (SocketAddr, String, Arc<BackendHealth>);

/// Detects every target concurrently, all within `limit`, and records the results.
/// Blocking: runs on its own thread and runtime, so it works from any context (start-up,
/// `spawn_blocking`). Unreachable backends stay undetected; the health task retries them.
pub fn detect_all(targets: Vec<Target>, limit: Duration) {
    if targets.is_empty() {
        return;
    }
    let work = move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime else {
            return;
        };
        runtime.block_on(async {
            let mut jobs = tokio::task::JoinSet::new();
            for (addr, sni, health) in targets {
                jobs.spawn(async move {
                    if let Some(p) = detect(addr, &sni, limit).await {
                        log::debug!("backend {addr} speaks {}", describe(p));
                        health.set_protocol(p);
                    }
                });
            }
            let all = async { while jobs.join_next().await.is_some() {} };
            let _ = timeout(limit + Duration::from_millis(100), all).await;
        });
    };
    let _ = std::thread::spawn(work).join();
}

/// `TLS+h2`, `TLS`, `h2c` or `HTTP/1.1`, for logs and status.
pub fn describe(p: Protocol) -> &'static str {
    match (p.tls, p.h2) {
        (true, true) => "TLS+h2",
        (true, false) => "TLS",
        (false, true) => "h2c",
        (false, false) => "HTTP/1.1",
    }
}
