//! The API's listeners: bound at start (so a busy port fails the start, not later), served by
//! a Pingora background service, plain and over TLS.

use std::future::IntoFuture;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use log::{error, info};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::ssl::{SslAcceptor, SslFiletype, SslMethod};
use tokio::net::TcpListener;

use super::{router, ApiState};
use crate::tls::TlsListener;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr}: another process listens there (a running aralez? `aralez -u` \
         takes over from it without dropping requests)"
    )]
    InUse { addr: String },
    #[error("config API certificate {cert} / key {key}: {message}")]
    Tls {
        cert: String,
        key: String,
        message: String,
    },
}

/// Sockets bound before the server runs.
pub struct ApiListeners {
    plain: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, SslAcceptor)>,
}

/// Binds with SO_REUSEPORT so that a new process started for a zero-downtime upgrade (`-u`)
/// can listen on the API address while the old one is still draining. Any other start first
/// checks that nobody listens there: with SO_REUSEPORT alone, a second instance started by
/// mistake would share the port and answer half of the pushes while serving no traffic.
fn bind(addr: &str, upgrading: bool) -> Result<std::net::TcpListener, ListenError> {
    let fail = |source: std::io::Error| ListenError::Bind {
        addr: addr.to_string(),
        source,
    };
    let sockaddr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| fail(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    if !upgrading {
        // A socket without SO_REUSEPORT cannot share the port with a listening one.
        match socket(sockaddr, false)
            .map_err(fail)?
            .bind(&sockaddr.into())
        {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(ListenError::InUse {
                    addr: addr.to_string(),
                })
            }
            Err(e) => return Err(fail(e)),
            Ok(()) => {}
        }
    }
    let socket = socket(sockaddr, true).map_err(fail)?;
    socket.bind(&sockaddr.into()).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

/// A TCP socket for `addr` with SO_REUSEADDR (a restart must not wait out TIME_WAIT) and,
/// when asked, SO_REUSEPORT.
fn socket(addr: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    Ok(socket)
}

/// The HTTPS API's TLS context from its certificate and key files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<SslAcceptor, ListenError> {
    let fail = |e: pingora::tls::error::ErrorStack| ListenError::Tls {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        message: e.to_string(),
    };
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(fail)?;
    builder.set_certificate_chain_file(cert).map_err(fail)?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(fail)?;
    builder.check_private_key().map_err(fail)?;
    Ok(builder.build())
}

impl ApiListeners {
    /// Binds `plain` and, with `tls = (addr, cert, key)`, the HTTPS listener; `upgrading`:
    /// started with `-u`, to take over from a running instance that holds the ports.
    pub fn bind(
        plain: &str,
        tls: Option<(&str, &Path, &Path)>,
        upgrading: bool,
    ) -> Result<ApiListeners, ListenError> {
        let plain = bind(plain, upgrading)?;
        let tls = match tls {
            Some((addr, cert, key)) => Some((bind(addr, upgrading)?, acceptor(cert, key)?)),
            None => None,
        };
        Ok(ApiListeners { plain, tls })
    }
}

/// Serves the API until shutdown.
pub struct ApiService {
    state: Arc<ApiState>,
    listeners: std::sync::Mutex<Option<ApiListeners>>,
}

impl ApiService {
    pub fn new(state: ApiState, listeners: ApiListeners) -> Self {
        ApiService {
            state: Arc::new(state),
            listeners: std::sync::Mutex::new(Some(listeners)),
        }
    }
}

async fn stopped(mut shutdown: ShutdownWatch) {
    let _ = shutdown.changed().await;
}

#[async_trait]
impl BackgroundService for ApiService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let taken = self.listeners.lock().ok().and_then(|mut l| l.take());
        let Some(listeners) = taken else {
            return;
        };
        let app = router(self.state.clone());
        let plain = match TcpListener::from_std(listeners.plain) {
            Ok(l) => l,
            Err(e) => return error!("config API listener: {e}"),
        };
        if let Ok(addr) = plain.local_addr() {
            info!("config API listening on http://{addr}");
        }
        let plain_server =
            axum::serve(plain, app.clone()).with_graceful_shutdown(stopped(shutdown.clone()));
        match listeners.tls {
            None => {
                if let Err(e) = plain_server.await {
                    error!("config API stopped: {e}");
                }
            }
            Some((std_listener, acceptor)) => {
                let tls = match TcpListener::from_std(std_listener)
                    .and_then(|l| TlsListener::start(l, acceptor))
                {
                    Ok(l) => l,
                    Err(e) => return error!("config API TLS listener: {e}"),
                };
                info!("config API listening on https://{}", tls.local_addr());
                let tls_server = axum::serve(tls, app).with_graceful_shutdown(stopped(shutdown));
                let (a, b) = tokio::join!(plain_server.into_future(), tls_server.into_future());
                if let Err(e) = a.and(b) {
                    error!("config API stopped: {e}");
                }
            }
        }
    }
}
