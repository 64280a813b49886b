//! Per-request state carried between the proxy hooks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balance::Tried;
use crate::config::upstreams::HeaderPair;
use crate::lifecycle::InFlightGuard;
use crate::routing::Route;

/// Everything one request needs after routing; one per request (per stream on h2).
pub struct RequestCtx {
    /// The response headers of the table this request was routed with. Not the table itself:
    /// a long WebSocket session would keep every replaced table alive.
    pub response_headers: Option<Arc<[HeaderPair]>>,
    pub route: Option<Arc<Route>>,
    /// This request's round-robin ticket.
    pub ticket: usize,
    /// Backends tried so far (one per connection attempt).
    pub tried: Tried,
    /// Index of the backend of the latest attempt.
    pub backend: Option<usize>,
    /// The backend the client's sticky cookie names, when valid and usable.
    pub cookie_backend: Option<usize>,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// Whether this is an upgrade (WebSocket) request.
    pub upgrade: bool,
    /// When the request arrived (the context is made then).
    pub started: Instant,
    /// When the latest upstream attempt began.
    pub upstream_started: Option<Instant>,
    /// Time from the latest attempt to the backend's response header.
    pub upstream_elapsed: Option<Duration>,
    /// The body limit of the route, if any, and the body bytes seen so far.
    pub body_limit: Option<u64>,
    pub body_read: u64,
    /// The failure was logged already (the direct path logs its own, with the backend).
    pub error_logged: bool,
    /// Counts this request as in flight until it ends, for graceful shutdown.
    pub _in_flight: InFlightGuard,
}

impl RequestCtx {
    pub fn new(in_flight: InFlightGuard) -> Self {
        RequestCtx {
            response_headers: None,
            route: None,
            ticket: 0,
            tried: Tried::default(),
            backend: None,
            cookie_backend: None,
            tls: false,
            upgrade: false,
            started: Instant::now(),
            upstream_started: None,
            upstream_elapsed: None,
            body_limit: None,
            body_read: 0,
            error_logged: false,
            _in_flight: in_flight,
        }
    }

    /// Address of the backend of the latest attempt.
    pub fn backend_addr(&self) -> Option<std::net::SocketAddr> {
        let route = self.route.as_ref()?;
        route.backends.get(self.backend?).map(|b| b.addr)
    }

    /// `host:port` of the backend of the latest attempt, for logs.
    pub fn backend_name(&self) -> &str {
        match (&self.route, self.backend) {
            (Some(r), Some(i)) => r.backends.get(i).map(|b| &*b.name).unwrap_or("-"),
            _ => "-",
        }
    }
}
