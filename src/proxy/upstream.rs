//! How to reach a backend for one request: TLS or not (as detected), SNI, ALPN, timeouts.

use std::time::Duration;

use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;

use crate::routing::Backend;

/// Concurrent streams per upstream h2 connection (pingora's default of 1 disables
/// multiplexing).
const MAX_H2_STREAMS: usize = 100;

pub struct PeerSettings {
    pub connect_timeout: Duration,
    pub websocket_idle_timeout: Duration,
    /// Verify the backend's certificate (route's `tls_verify`).
    pub verify: bool,
    /// A WebSocket upgrade: HTTP/1.1 only.
    pub upgrade: bool,
    /// The client speaks HTTP/2 (gRPC always does).
    pub downstream_h2: bool,
    /// Per-read timeout (response header, then each body chunk).
    pub read_timeout: Duration,
}

/// The peer for `backend`. TLS backends get `sni`; h2 is used where the backend speaks it,
/// except for upgrades; plain h2c backends get h2 only for h2 clients (HTTP/1 clients stay on
/// HTTP/1.1, which such backends may not speak otherwise).
pub fn peer(backend: &Backend, sni: String, s: &PeerSettings) -> HttpPeer {
    let protocol = backend.health.protocol();
    let mut peer = HttpPeer::new(backend.addr, protocol.tls, sni);
    peer.options.connection_timeout = Some(s.connect_timeout);
    peer.options.verify_cert = s.verify;
    peer.options.verify_hostname = s.verify;
    peer.options.alpn = match (s.upgrade, protocol.tls, protocol.h2) {
        (true, _, _) => ALPN::H1,
        (false, true, true) => ALPN::H2H1,
        (false, false, true) if s.downstream_h2 => ALPN::H2,
        _ => ALPN::H1,
    };
    if protocol.h2 {
        peer.options.max_h2_streams = MAX_H2_STREAMS;
    }
    peer.options.read_timeout = Some(if s.upgrade {
        // Stays open while frames flow; closed after this long without any.
        s.websocket_idle_timeout
    } else {
        s.read_timeout
    });
    peer
}
