//! The Pingora `ProxyHttp` implementation. Each hook is short and calls into `routing`,
//! `balance` and the helpers here; the order of hooks is Pingora's (see PINGORA.md §1.2).

mod admit;
mod backend_h1;
mod context;
mod direct;
mod direct_pool;
pub(crate) mod forwarded;
mod framing;
mod grpc;
pub(crate) mod guard;
pub mod lane;
pub(crate) mod local;
mod outgoing;
mod response_edit;
mod upstream;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::HeaderValue;
use log::{debug, error, warn};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

pub use context::RequestCtx;
pub use direct_pool::ConnectionPools;
use direct_pool::SendError;
pub use outgoing::Outgoing;

use crate::access_log::{millis, AccessLog, Entry};
use crate::auth::{without_query_param, TOKEN_PARAM};
use crate::balance::{pick, sticky};
use crate::downstream::guarded;
use crate::lifecycle::InFlight;
use crate::metrics::METRICS;
use crate::request::RequestView;
use crate::routing::Route;
use crate::routing::RouteStore;
use admit::{Admission, Incoming, LocalAnswer};
use response_edit::ResponseEdit;

/// The proxy service: routes each request with the live table and forwards it. Pingora's
/// hooks and the fast lane (`lane`) share one [`ProxyCore`].
pub struct AralezProxy {
    core: Arc<ProxyCore>,
}

impl AralezProxy {
    pub fn new(core: Arc<ProxyCore>) -> Self {
        AralezProxy { core }
    }
}

impl std::ops::Deref for AralezProxy {
    type Target = ProxyCore;

    fn deref(&self) -> &ProxyCore {
        &self.core
    }
}

/// What forwarding a request needs: the live table, the timeouts and limits, the backend
/// connections, the access log.
pub struct ProxyCore {
    pub store: Arc<RouteStore>,
    /// Port of the TLS listener, for `to_https` redirects.
    pub tls_port: Option<u16>,
    pub connect_timeout: Duration,
    /// Read timeout of client connections (HTTP/1.x).
    pub client_read_timeout: Duration,
    /// Idle limit of upgraded (WebSocket) connections, both sides.
    pub websocket_idle_timeout: Duration,
    /// Per-read timeout towards backends unless a path sets its own.
    pub upstream_read_timeout: Duration,
    /// Largest request body unless a path sets its own (0: no limit).
    pub max_body_size: u64,
    /// Seconds an idle HTTP/1.x keep-alive connection stays open.
    pub keepalive_timeout: u64,
    pub in_flight: InFlight,
    /// None when the access log is off.
    pub access_log: Option<AccessLog>,
    /// The direct path's backend connections (`direct_pool`).
    pub direct: ConnectionPools,
}

/// The host a request names: the URI authority (HTTP/2 `:authority`), the authority of an
/// absolute-form HTTP/1.x target (RFC 9112 §3.2.2: it wins over Host), else the Host header,
/// else empty (HTTP/1.0 without Host).
fn request_host(req: &RequestHeader) -> &str {
    if let Some(host) = req.uri.authority() {
        return host.as_str();
    }
    if let Some(host) = absolute_form_authority(req.raw_path()) {
        return host;
    }
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
}

/// `http://host:port/path` -> `host:port`. Pingora keeps only the path in the URI.
fn absolute_form_authority(target: &[u8]) -> Option<&str> {
    let rest = if target.len() > 8 && target[..8].eq_ignore_ascii_case(b"https://") {
        &target[8..]
    } else if target.len() > 7 && target[..7].eq_ignore_ascii_case(b"http://") {
        &target[7..]
    } else {
        return None;
    };
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = std::str::from_utf8(&rest[..end]).ok()?;
    // Drop any userinfo: `user@host`.
    Some(authority.rsplit('@').next().unwrap_or(authority))
}

/// The backend a sticky cookie names, when it is one of the route's and usable.
fn sticky_backend<R: RequestView + ?Sized>(route: &Route, req: &R) -> Option<usize> {
    let id = req.each("cookie").find_map(sticky::cookie_value)?;
    route
        .backends
        .iter()
        .position(|b| &*b.sticky_id == id && (!route.healthcheck || b.health.is_up()))
}

/// The body length a request declares, when it declares one that can be read.
fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// `example.com:8080` -> `example.com` (for SNI).
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

#[async_trait]
impl ProxyHttp for AralezProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.in_flight.enter())
    }

    /// No downstream modules. Pingora's default adds a response-compression module, switched
    /// off, that still runs its filters on every request; Aralez does not compress.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// The header is in: stop its deadline, and bound the idle time before the next request
    /// (Pingora keeps an HTTP/1.1 connection open forever between requests).
    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(conn) = guarded(session) {
            conn.header_done();
        }
        // Nothing is served while the process is still root (see `privileges`).
        crate::privileges::settled().await;
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.keepalive_timeout));
        }
        // Without this Pingora answers 400 when the next request arrives before this one is
        // done (RFC 9112 §9.3.2 pipelining); requests are still served one at a time.
        session.set_pipelining_enabled(true);
        Ok(())
    }

    /// Routes the request; answers 404 and HTTPS redirects itself.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.in_flight.draining() {
            session.set_keepalive(None);
        }
        let raw = session.as_http1().map(|h1| h1.get_headers_raw_bytes());
        if let Some((status, body)) = guard::refuse(session.req_header(), raw.as_deref()) {
            debug!("refused with {status}: {}", body.trim_end());
            session.set_keepalive(None);
            local::respond_text(session, status, body, &[]).await?;
            return Ok(true);
        }
        let req = session.req_header();
        let incoming = Incoming {
            host: request_host(req),
            declared_length: declared_length(req),
            tls: is_tls(session),
        };
        if let Admission::Answer(answer) = self.admit(req, incoming, ctx, admit::any_route).await {
            self.answer_locally(session, ctx, &answer).await?;
            return Ok(true);
        }
        let Some(route) = ctx.route.clone() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "admitted without a route",
            ));
        };
        ctx.upgrade = session.is_upgrade_req();
        // Pingora's 60 s default would cut idle WebSockets; they get their own limit.
        session.set_read_timeout(Some(if ctx.upgrade {
            self.websocket_idle_timeout
        } else {
            self.client_read_timeout
        }));
        if direct::eligible(session, &route, ctx.upgrade) {
            if let Err(e) = self.forward_direct(session, ctx).await {
                error!(
                    "proxying {}{} to backend {} failed: {e}",
                    route.host,
                    session.req_header().uri.path(),
                    ctx.backend_name()
                );
                ctx.error_logged = true;
                return Err(e);
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Pingora logs failures of `request_filter` as such; the direct path has logged its own.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        ctx.error_logged
    }

    /// The backend for this attempt: the sticky one first, then healthy backends in the
    /// route's order, then the rest; each at most once.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (route, index) = next_backend(ctx)?;
        let backend = &route.backends[index];
        let sni = host_without_port(request_host(session.req_header())).to_string();
        let peer = upstream::peer(
            backend,
            sni,
            &upstream::PeerSettings {
                connect_timeout: self.connect_timeout,
                websocket_idle_timeout: self.websocket_idle_timeout,
                verify: route.tls_verify,
                upgrade: ctx.upgrade,
                downstream_h2: session.is_http2(),
                read_timeout: route.read_timeout.unwrap_or(self.upstream_read_timeout),
            },
        );
        Ok(Box::new(peer))
    }

    /// Nothing was sent yet, so a refused or timed-out connection moves on to the next server.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if self.connect_failed(&Client::of(session), ctx, &e) {
            e.set_retry(true);
        }
        e
    }

    /// A backend that drops the connection (or, over h2, resets the stream) before answering
    /// (it was killed, restarted, or closed an idle connection) gets the request retried on the next server when that is
    /// safe: an idempotent method with its body still buffered, and no response header yet.
    /// nginx's `proxy_next_upstream error` does the same; Pingora alone retries only on
    /// reused connections. Timeouts are not retried (they would multiply the wait).
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let safe = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        if !safe {
            e.set_retry(false);
            return e;
        }
        let dropped = e.esource == ErrorSource::Upstream
            && matches!(
                e.etype,
                ErrorType::ConnectionClosed
                    | ErrorType::ReadError
                    | ErrorType::WriteError
                    // h2: the stream was reset before a response, or the pooled connection
                    // had broken when the request was to be sent on it.
                    | ErrorType::H2Error
            );
        if dropped && retry_dropped(ctx) {
            e.set_retry(true);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    /// Counts body bytes against the limit when no Content-Length announced them.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(limit), Some(chunk)) = (ctx.body_limit, body.as_ref()) {
            ctx.body_read += chunk.len() as u64;
            if ctx.body_read > limit {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body over max_body_size",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        prepare_upstream_request(upstream, &Client::of(session), ctx)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        finish_response_header(upstream_response, ctx)?;
        if !session.is_http2() && !ctx.upgrade {
            settle_framing(session, upstream_response)?;
        }
        // Pingora holds a head with a Content-Length until body bytes follow it; the body
        // may come much later (a slow download, a long poll).
        if let Some(conn) = guarded(session) {
            conn.flush_next_write();
        }
        Ok(())
    }

    /// Like Pingora's default, but with short plain-text bodies for the errors we answer.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = error_status(e);
        if code >= 500 && grpc::is_grpc(session.req_header()) {
            // gRPC clients read errors from grpc-status, not from the HTTP status.
            if let Err(err) = grpc::respond_unavailable(session).await {
                debug!("could not send the gRPC error: {err}");
            }
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        }
        if code > 0 {
            let body = local::error_body(code);
            if let Err(err) = session
                .respond_error_with_body(code, bytes::Bytes::from_static(body.as_bytes()))
                .await
            {
                debug!("could not send the {code} response: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(conn) = guarded(session) {
            conn.request_done(session.was_upgraded());
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let entry = self.access_log.as_ref().map(|_| {
            let req = session.req_header();
            access_entry(req, request_host(req), client_ip(session))
        });
        self.record(
            ctx,
            status,
            e.is_some(),
            (session.body_bytes_read(), session.body_bytes_sent()),
            entry,
        );
        if log::log_enabled!(log::Level::Debug) {
            let req = session.req_header();
            debug!(
                // The path only: the query may carry a token.
                "{} {}{} -> {} {} (attempts {}{})",
                req.method,
                request_host(req),
                req.uri.path(),
                ctx.backend_name(),
                status,
                ctx.tried.count,
                e.map(|e| format!(", error: {e}")).unwrap_or_default()
            );
        }
    }
}

/// The client's side of a request as the direct path's request building, retry rules and
/// log lines need it, from either front (Pingora's session or the fast lane).
pub(crate) struct Client<'a> {
    /// The host the request named (empty without one).
    pub host: &'a str,
    /// `host` as a header value (`X-Forwarded-Host`), when there is one.
    pub host_value: Option<Cow<'a, HeaderValue>>,
    /// The path, for log lines (never the query: it may carry a token).
    pub path: &'a str,
    /// The client's address as a header value (`X-Forwarded-For`, `X-Real-IP`).
    pub ip_value: Option<Cow<'a, HeaderValue>>,
    pub tls: bool,
}

impl<'a> Client<'a> {
    fn of(session: &'a Session) -> Self {
        let req = session.req_header();
        let host = request_host(req);
        Client {
            host,
            host_value: header_value_of(req, host),
            path: req.uri.path(),
            ip_value: client_ip(session)
                .and_then(|ip| forwarded::ip_value(ip).ok())
                .map(Cow::Owned),
            tls: is_tls(session),
        }
    }
}

/// `host` (from [`request_host`]) as a header value: the `Host` field's own when it is
/// that, a copy when it came from the target.
fn header_value_of<'a>(req: &'a RequestHeader, host: &str) -> Option<Cow<'a, HeaderValue>> {
    match req.headers.get(http::header::HOST) {
        Some(field) if field.as_bytes() == host.as_bytes() => Some(Cow::Borrowed(field)),
        _ if host.is_empty() => None,
        _ => HeaderValue::from_str(host).ok().map(Cow::Owned),
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

impl AralezProxy {
    /// Writes the admission step's local answer through Pingora's session.
    async fn answer_locally(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        answer: &LocalAnswer,
    ) -> Result<()> {
        let configured = ctx.response_headers.as_deref().unwrap_or_default();
        let resp = answer.header(configured)?;
        if answer.closes() {
            session.set_keepalive(None);
        }
        local::write_answer(session, resp, answer.body()).await
    }

    /// Forwards the request on the direct path and writes the answer through Pingora's
    /// session.
    async fn forward_direct(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let req = session.req_header();
        let client = Client::of(session);
        let mut lease = self
            .send_direct(ctx, &client, &req.method, |ctx| {
                direct_request(req, &client, ctx)
            })
            .await?;
        let read_timeout = self.read_timeout(ctx);
        // The body's first piece, when it came with the head, is read before the head goes
        // out: a body broken from its start (a bad chunk size) is a 502, as on the lane.
        let first = if lease.body_done() || lease.body_pending() {
            None
        } else {
            Some(lease.next_data(read_timeout).await?)
        };
        let mut header = direct::response_header(lease.head(), keeps_case(ctx))?;
        finish_response_header(&mut header, ctx)?;
        settle_framing(session, &mut header)?;
        if lease.body_pending() {
            // The body is not here yet: the head goes out now, not with its first bytes.
            if let Some(conn) = guarded(session) {
                conn.flush_next_write();
            }
        }
        session
            .write_response_header(Box::new(header), false)
            .await?;
        direct::relay_body(session, &mut lease, read_timeout, first).await?;
        // Read to its end: the connection can take the next request.
        lease.release();
        Ok(())
    }
}

impl ProxyCore {
    /// The per-read timeout towards this request's backends.
    fn read_timeout(&self, ctx: &RequestCtx) -> Duration {
        ctx.route
            .as_ref()
            .and_then(|r| r.read_timeout)
            .unwrap_or(self.upstream_read_timeout)
    }

    /// Sends the request head `build` writes to the route's backends on the direct path
    /// (`backend_h1`), with the same backend choice, retries and health marking as Pingora's path
    /// (the hooks above); the first response header, with the lease of its connection.
    async fn send_direct(
        &self,
        ctx: &mut RequestCtx,
        client: &Client<'_>,
        method: &http::Method,
        build: impl FnOnce(&RequestCtx) -> Result<Vec<u8>>,
    ) -> Result<direct_pool::Lease<'_>> {
        let read_timeout = self.read_timeout(ctx);
        let idempotent = method.is_idempotent();
        let head = method == http::Method::HEAD;
        // The same bytes for every backend: nothing in them depends on which one.
        let request = build(ctx)?;
        loop {
            let (route, index) = next_backend(ctx)?;
            let addr = route.backends[index].addr;
            let started = ctx.upstream_started.unwrap_or_else(Instant::now);
            match self
                .direct
                .send(addr, &request, head, idempotent, read_timeout, started)
                .await
            {
                Ok(response) => return Ok(response),
                Err(SendError::Connect(e)) => {
                    if !self.connect_failed(client, ctx, &e) {
                        return Err(Error::because(ErrorType::ConnectError, "connect", e).into_up());
                    }
                }
                Err(SendError::Dropped(e)) => {
                    if !(idempotent && retry_dropped(ctx)) {
                        let why = "connection closed before the response header";
                        return Err(Error::because(ErrorType::ConnectionClosed, why, e).into_up());
                    }
                    debug!(
                        "backend {} dropped a request for {}{}: {e}; trying the next server",
                        ctx.backend_name(),
                        route.host,
                        client.path
                    );
                }
                Err(SendError::Invalid(what)) => {
                    return Err(Error::explain(ErrorType::InvalidHTTPHeader, what).into_up());
                }
                Err(SendError::TimedOut) => {
                    let why = "no response header within the read timeout";
                    return Err(Error::explain(ErrorType::ReadTimedout, why).into_up());
                }
            }
        }
    }

    /// Bookkeeping of a failed connection attempt (log, health, metrics); true when another
    /// backend is left to try.
    fn connect_failed(
        &self,
        client: &Client<'_>,
        ctx: &RequestCtx,
        e: &dyn std::fmt::Display,
    ) -> bool {
        let tried_all = ctx
            .route
            .as_ref()
            .is_none_or(|r| ctx.tried.count >= r.backends.len());
        warn!(
            "connect to backend {} failed for {}{}: {}{}",
            ctx.backend_name(),
            client.host,
            client.path,
            e,
            if tried_all {
                "; no server left"
            } else {
                "; trying the next server"
            }
        );
        if let (Some(route), Some(i)) = (&ctx.route, ctx.backend) {
            if route.healthcheck && route.backends[i].health.mark_down() {
                warn!(
                    "backend {} of {}{} is down: connection failed while proxying",
                    route.backends[i].addr, route.host, route.prefix
                );
            }
        }
        if let Some(addr) = ctx.backend_addr() {
            METRICS
                .connect_errors
                .with_label_values(&[&addr.to_string()])
                .inc();
        }
        if !tried_all {
            METRICS.retries.inc();
        }
        !tried_all
    }
}

/// One framing for the response towards an HTTP/1.x client (`framing::settle`); a body that
/// ends with the connection closes it.
fn settle_framing(session: &mut Session, resp: &mut ResponseHeader) -> Result<()> {
    let req = session.req_header();
    let client = framing::ClientRequest {
        http10: req.version == http::Version::HTTP_10,
        head: req.method == http::Method::HEAD,
    };
    if framing::settle(resp, client)? {
        session.set_keepalive(None);
    }
    Ok(())
}

/// Whether the backend's response header is built with Pingora's name-case map: when
/// configured response headers will be added, to go out as written.
fn keeps_case(ctx: &RequestCtx) -> bool {
    ctx.response_headers
        .as_deref()
        .is_some_and(|h| !h.is_empty())
}

/// The status a failed request is answered with; 0 when the client is gone (nothing to send).
fn error_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ReadTimedout if e.esource() == &ErrorSource::Upstream => 504,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// The backend for the next attempt: the sticky one first, then healthy backends in the
/// route's order, then the rest; each at most once.
fn next_backend(ctx: &mut RequestCtx) -> Result<(Arc<Route>, usize)> {
    let route = ctx
        .route
        .clone()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route to pick a backend of"))?;
    let index = match ctx.cookie_backend.filter(|_| ctx.tried.count == 0) {
        Some(i) => {
            ctx.tried.mark(i);
            i
        }
        None => pick(&route, ctx.ticket, &mut ctx.tried)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no backend left to try"))?,
    };
    ctx.backend = Some(index);
    ctx.upstream_started = Some(Instant::now());
    Ok((route, index))
}

/// The backend's request head on the direct path. Without Pingora's name-case map: every
/// name is written title-cased.
fn direct_request(req: &RequestHeader, client: &Client<'_>, ctx: &RequestCtx) -> Result<Vec<u8>> {
    let parts = direct::upstream_parts(req);
    let mut upstream = outgoing::Edited::new(&parts);
    prepare_upstream_request(&mut upstream, client, ctx)?;
    let mut head = Vec::with_capacity(REQUEST_HEAD);
    backend_h1::write_request(&mut head, &upstream);
    Ok(head)
}

/// Room for a typical request head towards a backend.
const REQUEST_HEAD: usize = 512;

/// Whether a request whose backend dropped the connection before any response header goes
/// to the next backend (the caller has checked that resending it is safe); counts the retry.
fn retry_dropped(ctx: &RequestCtx) -> bool {
    let untried = ctx
        .route
        .as_ref()
        .is_some_and(|r| ctx.tried.count < r.backends.len());
    let retry = untried && ctx.upstream_elapsed.is_none();
    if retry {
        METRICS.retries.inc();
    }
    retry
}

/// The request header as the backend gets it: forwarding headers, credentials removed, the
/// route's headers added.
fn prepare_upstream_request<'a>(
    upstream: &mut impl Outgoing<'a>,
    client: &'a Client<'_>,
    ctx: &'a RequestCtx,
) -> Result<()> {
    forwarded::set_forwarded_headers(
        upstream,
        client.ip_value.as_deref(),
        client.tls,
        client.host_value.as_deref(),
    )?;
    if let Some(route) = &ctx.route {
        if let Some(auth) = &route.auth {
            auth.strip(upstream);
        }
        // A route's header replaces the client's of the same name (set, not add), but never
        // the client address chain the proxy extends.
        for h in route.request_headers.iter() {
            if !forwarded::is_client_chain(&h.name) {
                upstream.set(&h.name, &h.written, Cow::Borrowed(&h.value))?;
            }
        }
    }
    Ok(())
}

/// The backend's response header as the client gets it ([`ResponseEdit`]); notes when it
/// arrived.
fn finish_response_header(resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    ctx.upstream_elapsed = ctx.upstream_started.map(|t| t.elapsed());
    ResponseEdit::of(ctx).apply(resp)
}

/// The request's fields of its access log line (the `araleztoken` parameter left out); the
/// outcome's are set by [`ProxyCore::record`].
fn access_entry(req: &http::request::Parts, host: &str, client: Option<IpAddr>) -> Entry {
    let path = match without_query_param(&req.uri, TOKEN_PARAM) {
        Some(uri) => uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        None => req
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
    };
    // Bytes beyond ASCII are kept; the combined format escapes them.
    let header = |name: http::header::HeaderName| {
        req.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    Entry {
        time: std::time::SystemTime::now(),
        client: client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        method: req.method.to_string(),
        host: host.to_string(),
        path,
        protocol: match req.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2",
            _ => "HTTP/1.1",
        },
        status: 0,
        bytes_sent: 0,
        duration_ms: 0.0,
        upstream: None,
        upstream_duration_ms: None,
        referer: header(http::header::REFERER),
        user_agent: header(http::header::USER_AGENT),
        user: req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::basic_user),
    }
}

impl ProxyCore {
    /// The end of a request, from either front: metrics, and the access log line when the log
    /// is on (`entry` from [`access_entry`]). `bytes` are the body bytes read and sent.
    /// Counts the request in the metrics and writes its access log line; when it ended (the
    /// clock read, for the caller's further use).
    fn record(
        &self,
        ctx: &RequestCtx,
        status: u16,
        failed: bool,
        bytes: (usize, usize),
        entry: Option<Entry>,
    ) -> Instant {
        let ended = Instant::now();
        let elapsed = ended.saturating_duration_since(ctx.started);
        let host = ctx
            .route
            .as_ref()
            .map(|r| r.metrics.get_or_init(|| METRICS.host(&r.host)));
        METRICS.record_request(host, status, elapsed, failed, bytes.0, bytes.1);
        if let (Some(log), Some(mut entry)) = (&self.access_log, entry) {
            entry.time = std::time::SystemTime::now() - elapsed;
            entry.status = status;
            entry.bytes_sent = bytes.1;
            entry.duration_ms = millis(elapsed);
            entry.upstream = ctx.backend_addr().map(|a| a.to_string());
            entry.upstream_duration_ms = ctx.upstream_elapsed.map(millis);
            log.log(entry);
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_targets_name_their_host() {
        assert_eq!(absolute_form_authority(b"http://a.com/x"), Some("a.com"));
        assert_eq!(
            absolute_form_authority(b"HTTPS://a.com:8443?q"),
            Some("a.com:8443")
        );
        assert_eq!(absolute_form_authority(b"http://u:p@a.com"), Some("a.com"));
        assert_eq!(absolute_form_authority(b"/x"), None);
        assert_eq!(absolute_form_authority(b"http://"), None);
    }

    #[test]
    fn host_header_is_the_fallback() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        assert_eq!(request_host(&req), "");
        req.insert_header("host", "b.com").unwrap();
        assert_eq!(request_host(&req), "b.com");
        let req = RequestHeader::build("GET", b"http://c.com/x", None).unwrap();
        assert_eq!(request_host(&req), "c.com");
    }
}
