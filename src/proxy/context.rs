//! Per-request state carried between the proxy hooks.

use std::sync::Arc;

use crate::lifecycle::InFlightGuard;
use crate::routing::{Route, RoutingTable};

/// Everything one request needs after routing; one per request (per stream on h2).
pub struct RequestCtx {
    /// The table snapshot this request was routed with, kept to its end.
    pub table: Option<Arc<RoutingTable>>,
    pub route: Option<Arc<Route>>,
    /// Round-robin start index among the route's backends.
    pub start: usize,
    /// Connection attempts made so far (the next backend is `start + attempts`).
    pub attempts: usize,
    /// Index of the backend of the latest attempt.
    pub backend: Option<usize>,
    /// Counts this request as in flight until it ends, for graceful shutdown.
    pub _in_flight: InFlightGuard,
}

impl RequestCtx {
    pub fn new(in_flight: InFlightGuard) -> Self {
        RequestCtx {
            table: None,
            route: None,
            start: 0,
            attempts: 0,
            backend: None,
            _in_flight: in_flight,
        }
    }

    /// `host:port` of the backend of the latest attempt, for logs.
    pub fn backend_name(&self) -> &str {
        match (&self.route, self.backend) {
            (Some(r), Some(i)) => r.backends.get(i).map(|b| &*b.name).unwrap_or("-"),
            _ => "-",
        }
    }
}
