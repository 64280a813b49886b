//! A TLS listener for axum servers: handshakes run in their own tasks, so a slow client
//! never holds up the others. Used by the HTTPS config API (and by tests' TLS backends).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use log::debug;
use pingora::tls::ssl::{Ssl, SslAcceptor};
use pingora::tls::tokio_ssl::SslStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Time a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and hands over those that finish a TLS handshake. Handshakes run
/// in their own tasks, so a slow client never holds up the others.
pub struct TlsListener {
    ready: mpsc::Receiver<(SslStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`; connections come out of `accept` once their
    /// handshake is done.
    pub fn start(listener: TcpListener, acceptor: SslAcceptor) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = Arc::new(acceptor);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        debug!("config API accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake = async {
                        let ssl = Ssl::new(acceptor.context()).map_err(|e| e.to_string())?;
                        let mut stream = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
                        Pin::new(&mut stream)
                            .accept()
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok::<_, String>(stream)
                    };
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => debug!("config API TLS handshake with {peer} failed: {e}"),
                        Err(_) => debug!("config API TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl TlsListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = SslStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task never ends while we hold the receiver.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
