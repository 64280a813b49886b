//! The admission step: what happens to a request, decided once for every engine (the fast
//! lane and Pingora's session, HTTP/1.x and HTTP/2). It normalises the target, looks up the
//! host and route, redirects to HTTPS, checks credentials, body limits and whether the route
//! has any backend, and fills the request's context (ticket, sticky backend, response
//! headers). The engines only carry its decision: a local answer, written by each with the
//! same header ([`LocalAnswer::header`]), or a forward to the route's backends.

use log::debug;
use pingora::http::ResponseHeader;

use super::local::{self, https_location};
use super::{sticky_backend, ProxyCore, RequestCtx};
use crate::auth::{RouteAuth, Verdict};
use crate::config::upstreams::HeaderPair;
use crate::request::RequestView;
use crate::routing::path::{normalize, PathError};
use crate::routing::{Lookup, Route};

/// What the admission step decided.
#[derive(Debug)]
pub enum Admission {
    /// The proxy answers the request itself.
    Answer(LocalAnswer),
    /// The engine that asked cannot carry this route's requests (the fast lane, a route with
    /// TLS backends): it hands the request on unanswered; nothing past routing was decided.
    Handover,
    /// Forward the request to the route's backends: `ctx` holds the route and the choices.
    Forward,
}

/// An answer the proxy writes itself.
#[derive(Debug)]
pub enum LocalAnswer {
    /// A short plain-text answer.
    Text {
        status: u16,
        body: &'static str,
        /// The connection is closed after it (the request was refused as it was framed).
        close: bool,
        /// With the table's response headers (CORS and the like).
        configured_headers: bool,
        /// With a `WWW-Authenticate: Basic` challenge.
        challenge: bool,
    },
    /// A `301` to this location, empty.
    Redirect(String),
}

impl LocalAnswer {
    fn text(status: u16, body: &'static str) -> Self {
        LocalAnswer::Text {
            status,
            body,
            close: false,
            configured_headers: true,
            challenge: false,
        }
    }

    /// The answer's status.
    pub fn status(&self) -> u16 {
        match self {
            LocalAnswer::Text { status, .. } => *status,
            LocalAnswer::Redirect(_) => 301,
        }
    }

    /// Whether the connection is closed after the answer.
    pub fn closes(&self) -> bool {
        matches!(self, LocalAnswer::Text { close: true, .. })
    }

    /// The body (sent unless the request is a HEAD).
    pub fn body(&self) -> &'static str {
        match self {
            LocalAnswer::Text { body, .. } => body,
            LocalAnswer::Redirect(_) => "",
        }
    }

    /// The answer's header, with `configured` (the table's response headers) where it takes
    /// them; both engines write this one (`Date` and `Connection` are theirs to add).
    pub fn header(&self, configured: &[HeaderPair]) -> pingora::Result<ResponseHeader> {
        match self {
            LocalAnswer::Text {
                status,
                body,
                configured_headers,
                challenge,
                ..
            } => {
                let challenge: &[HeaderPair] = if *challenge {
                    std::slice::from_ref(&*local::BASIC_CHALLENGE)
                } else {
                    &[]
                };
                let configured = if *configured_headers { configured } else { &[] };
                local::text_header(*status, body, &[challenge, configured])
            }
            LocalAnswer::Redirect(location) => local::redirect_header(location, configured),
        }
    }
}

/// What the admission step reads of a request beside its fields.
pub struct Incoming<'a> {
    /// The host it names (see `request_host`), empty without one.
    pub host: &'a str,
    /// A declared body length (`Content-Length`), if any.
    pub declared_length: Option<u64>,
    /// The client connection is TLS.
    pub tls: bool,
}

impl ProxyCore {
    /// Decides what happens to `req` (see the module's comment); `carries` says whether the
    /// engine asking can forward to a route (the fast lane: plain backends only).
    pub(crate) async fn admit<R: RequestView + ?Sized>(
        &self,
        req: &R,
        incoming: Incoming<'_>,
        ctx: &mut RequestCtx,
        carries: impl Fn(&Route) -> bool,
    ) -> Admission {
        let table = self.store.load();
        // Every answer from here on carries the table's response headers.
        ctx.response_headers = Some(table.response_headers.clone());
        ctx.tls = incoming.tls;
        // Route on the normalised path; the request goes on with the path as received.
        let path = match normalize(req.uri().path()) {
            Ok(path) => path,
            Err(e) => {
                debug!("refused with 400: {e}: {:?}", req.uri().path());
                let body = match e {
                    PathError::BadEscape => "400 Bad Request: bad % escape in the path\n",
                    PathError::Control => "400 Bad Request: control character in the path\n",
                };
                return Admission::Answer(LocalAnswer::Text {
                    status: 400,
                    body,
                    close: true,
                    configured_headers: false,
                    challenge: false,
                });
            }
        };
        let route = match table.lookup(incoming.host, &path) {
            Lookup::Found(route) => route.clone(),
            miss => {
                debug!("no route for {:?}{}", incoming.host, req.uri().path());
                let body = if matches!(miss, Lookup::NoHost) {
                    "404 Not Found: no route for this host\n"
                } else {
                    "404 Not Found: no route for this path\n"
                };
                return Admission::Answer(LocalAnswer::text(404, body));
            }
        };
        drop(path);
        drop(table);
        // Set now so that local answers (redirect, 401) are counted under the route's host.
        ctx.route = Some(route.clone());
        if route.to_https && !incoming.tls {
            if let Some(port) = self.tls_port {
                let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
                let location = https_location(&route.host, port, pq);
                return Admission::Answer(LocalAnswer::Redirect(location));
            }
        }
        if !carries(&route) {
            return Admission::Handover;
        }
        if let Some(auth) = &route.auth {
            // Boxed: most requests skip this wait, and the lane's request future would
            // otherwise hold room for it (bcrypt runs on a blocking thread).
            let verdict = Box::pin(auth.check(req)).await;
            if verdict != Verdict::Allowed {
                debug!("{verdict:?} credentials for {}{}", route.host, route.prefix);
                let body = match verdict {
                    Verdict::Missing => "missing credentials\n",
                    _ => "invalid credentials\n",
                };
                return Admission::Answer(LocalAnswer::Text {
                    status: 401,
                    body,
                    close: false,
                    configured_headers: true,
                    challenge: matches!(auth, RouteAuth::Basic(_)),
                });
            }
        }
        ctx.body_limit = route
            .max_body_size
            .or((self.max_body_size > 0).then_some(self.max_body_size));
        if let (Some(limit), Some(declared)) = (ctx.body_limit, incoming.declared_length) {
            if declared > limit {
                // Refused before any byte of the body is read; the body is not drained.
                return Admission::Answer(LocalAnswer::Text {
                    status: 413,
                    body: "413 Payload Too Large\n",
                    close: true,
                    configured_headers: true,
                    challenge: false,
                });
            }
        }
        if route.backends.is_empty() {
            // A Consul service with no passing instance keeps its route until some return.
            return Admission::Answer(LocalAnswer::text(
                503,
                "503 Service Unavailable: no instance of this service\n",
            ));
        }
        ctx.ticket = route.balancer.ticket();
        if route.sticky {
            ctx.cookie_backend = sticky_backend(&route, req);
        }
        Admission::Forward
    }
}

/// The route's backends all speak plain HTTP (what the fast lane and the direct path carry).
pub fn plain_backends(route: &Route) -> bool {
    route.backends.iter().all(|b| !b.health.protocol().tls)
}

/// Any route: Pingora's session carries them all.
pub fn any_route(_: &Route) -> bool {
    true
}
