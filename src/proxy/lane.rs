//! The fast lane: a plain HTTP/1.1 request without a body, to a route whose backends speak
//! plain HTTP, read by Aralez's own HTTP/1.1 reader (`http1::server`) and forwarded on the
//! direct path's connections, before Pingora's HTTP/1 session sees the connection. The
//! routing, auth, backend choice, retries, health marking, headers, metrics and access log
//! are the same functions as Pingora's path calls; what the lane skips is Pingora's
//! per-request session (a header with two maps, a boxed session and its digests, the request
//! future copied into new boxes), which held Aralez below nginx's requests/s (docs/performance.md).
//!
//! What happens to a request is the admission step's to decide (`admit`); the lane writes
//! its local answers (404, 401, 301, 400, 413, 503) itself, with the header Pingora's path
//! writes, and keeps the connection. A request it does not carry (a TLS backend, a head it
//! does not read: a body, an upgrade, HTTP/1.0) goes to Pingora's session unanswered, with
//! the bytes read so far, and the connection comes back after it (`downstream`).

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use log::{debug, error};
use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::admit::{plain_backends, Admission, Incoming, LocalAnswer};
use super::direct_pool::Lease;
use super::outgoing::Edited;
use super::{
    access_entry, backend_h1, error_status, local, prepare_upstream_request, Client, ProxyCore,
    RequestCtx, ResponseEdit,
};
use crate::http1::response_head::BodyFraming as Framing;
use crate::http1::server::{self as h1, Head};
use crate::metrics::METRICS;

/// How the lane dealt with a request.
pub enum Served {
    /// Answered (at this moment); the connection can take the next request.
    KeepAlive(Instant),
    /// Answered, or failed; the connection is to be closed.
    Close,
    /// Not the lane's: nothing was written. Pingora gets the head's bytes and the rest of
    /// the connection.
    Pingora(Bytes),
}

/// The client connection as the lane sees it.
pub struct Conn {
    pub ip: Option<IpAddr>,
    /// `ip` as a header value, made once for the connection's requests.
    pub ip_value: Option<http::HeaderValue>,
    pub tls: bool,
    /// Pingora's service is shutting down: answer, then close.
    pub shutting_down: bool,
}

/// Room for the fields the proxy adds to a request head.
const REQUEST_EXTRA: usize = 256;

/// Body bytes copied into the write buffer; a larger frame is written as it is.
const COALESCE: usize = 16 * 1024;

impl ProxyCore {
    /// Serves `head` when it is the lane's, writing the answer to `io`; `out` is the
    /// connection's write buffer.
    pub async fn serve_fast<W: AsyncWrite + Unpin>(
        &self,
        head: Head<'_>,
        io: &mut W,
        out: &mut BytesMut,
        conn: &Conn,
    ) -> Served {
        // Nothing is served while the process is still root (see `privileges`). The waits
        // here that most requests skip are boxed: this future is moved once per request, and
        // its size is that of its largest wait.
        if !crate::privileges::is_settled() {
            Box::pin(crate::privileges::settled()).await;
        }
        let host = head.host();
        let mut ctx = RequestCtx::new(self.in_flight.enter());
        let incoming = Incoming {
            host,
            // The lane reads no head that announces a body.
            declared_length: None,
            tls: conn.tls,
        };
        let keep_alive = !head.close && !conn.shutting_down && !self.in_flight.draining();
        match self.admit(&head, incoming, &mut ctx, plain_backends).await {
            Admission::Forward => {}
            Admission::Handover => return Served::Pingora(head.raw),
            Admission::Answer(answer) => {
                let keep_alive = keep_alive && !answer.closes();
                let entry = self
                    .access_log
                    .as_ref()
                    .map(|_| access_entry(&head.to_parts(), host, conn.ip));
                let head_request = head.method == http::Method::HEAD;
                let bytes = write_answer(io, out, &ctx, &answer, keep_alive, head_request).await;
                let failed = bytes.is_none();
                let sent = bytes.unwrap_or(0);
                let ended = self.record(&ctx, answer.status(), failed, (0, sent), entry);
                return if keep_alive && !failed {
                    Served::KeepAlive(ended)
                } else {
                    Served::Close
                };
            }
        }
        METRICS.fast_lane.inc();
        let method = &head.method;
        let entry = self
            .access_log
            .as_ref()
            .map(|_| access_entry(&head.to_parts(), host, conn.ip));
        let client = Client {
            host,
            host_value: head.host_value().map(Cow::Owned),
            path: head.uri.path(),
            ip_value: conn.ip_value.as_ref().map(Cow::Borrowed),
            tls: conn.tls,
        };

        let build = |ctx: &RequestCtx| {
            let mut upstream = Edited::of_lane(&head);
            prepare_upstream_request(&mut upstream, &client, ctx)?;
            let mut request = Vec::with_capacity(head.raw.len() + REQUEST_EXTRA);
            backend_h1::write_request(&mut request, &upstream);
            Ok(request)
        };
        let outcome = match self.send_direct(&mut ctx, &client, method, build).await {
            Ok(lease) => {
                let answer = Answer { method, keep_alive };
                self.answer(&mut ctx, lease, answer, io, out).await
            }
            Err(e) => Outcome::Failed(e),
        };
        let (status, failed, bytes, keep_alive) = match outcome {
            Outcome::Done {
                status,
                bytes,
                keep_alive,
            } => (status, None, bytes, keep_alive),
            Outcome::Broken { status, error } => {
                // The header is out: all that is left is to close the connection.
                (status, Some(error), 0, false)
            }
            Outcome::Failed(e) => {
                error!(
                    "proxying {}{} to backend {} failed: {e}",
                    client.host,
                    client.path,
                    ctx.backend_name()
                );
                let status = error_status(&e);
                let bytes = Box::pin(respond_error(io, out, status, method)).await;
                (status, Some(e), bytes, false)
            }
        };
        let ended = self.record(&ctx, status, failed.is_some(), (0, bytes), entry);
        if log::log_enabled!(log::Level::Debug) {
            debug!(
                "{method} {}{} -> {} {status} (attempts {}{})",
                client.host,
                client.path,
                ctx.backend_name(),
                ctx.tried.count,
                failed.map(|e| format!(", error: {e}")).unwrap_or_default()
            );
        }
        if keep_alive {
            Served::KeepAlive(ended)
        } else {
            Served::Close
        }
    }
}

/// What the client's request asks of the answer.
struct Answer<'a> {
    method: &'a http::Method,
    /// The client may send another request on the connection.
    keep_alive: bool,
}

impl ProxyCore {
    /// Writes the backend's response (its head and body on `lease`) to the client.
    async fn answer<W: AsyncWrite + Unpin>(
        &self,
        ctx: &mut RequestCtx,
        mut lease: Lease<'_>,
        answer: Answer<'_>,
        io: &mut W,
        out: &mut BytesMut,
    ) -> Outcome {
        let read_timeout = self.read_timeout(ctx);
        let arrived = Instant::now();
        ctx.upstream_elapsed = ctx
            .upstream_started
            .map(|t| arrived.saturating_duration_since(t));
        let head = lease.head();
        let framing = h1::framing(answer.method, head);
        // A body that ends with the connection leaves nothing to keep alive.
        let keep_alive = answer.keep_alive && framing != Framing::UntilClose;
        let status = head.status.as_u16();
        // The body's first piece, when it came with the head, is read before the head goes
        // out: a body broken from its start (a bad chunk size) is a 502, not a cut 200.
        let first = match framing {
            Framing::None => None,
            _ if lease.body_pending() => None,
            _ => match lease.next_data(read_timeout).await {
                Ok(piece) => Some(piece),
                Err(e) => return Outcome::Failed(e),
            },
        };
        out.clear();
        ResponseEdit::of(ctx).write_h1(out, lease.head(), keep_alive);
        match relay(io, out, &mut lease, framing, read_timeout, first).await {
            Ok(bytes) => {
                // Read to its end: the connection can take the next request.
                lease.release_at(arrived);
                Outcome::Done {
                    status,
                    bytes,
                    keep_alive,
                }
            }
            Err(error) => Outcome::Broken { status, error },
        }
    }
}

/// How forwarding went, before the bookkeeping.
enum Outcome {
    /// The whole response went out; `bytes` of body.
    Done {
        status: u16,
        bytes: usize,
        keep_alive: bool,
    },
    /// The response header went out, the body broke.
    Broken { status: u16, error: Box<Error> },
    /// Nothing went out.
    Failed(Box<Error>),
}

/// Writes the response header in `out` and the body after it (`first`: its first piece, read
/// already), each backend read within `read_timeout`; the body bytes sent. A body whose length is known ends with its last frame,
/// so a small response leaves in one write with its header.
async fn relay<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut BytesMut,
    body: &mut Lease<'_>,
    framing: Framing,
    read_timeout: Duration,
    mut first: Option<Option<Bytes>>,
) -> Result<usize> {
    let mut sent = 0;
    if framing != Framing::None && first.is_none() && body.body_pending() {
        // The body is not here yet: the head goes out now, not with its first bytes.
        write(io, out).await?;
        io.flush()
            .await
            .or_down(ErrorType::WriteError, "flushing the response header")?;
    }
    if framing != Framing::None {
        while let Some(data) = body.piece_after(&mut first, read_timeout).await? {
            sent += data.len();
            let chunked = framing == Framing::Chunked;
            if out.len() + data.len() <= COALESCE {
                if chunked {
                    h1::put_chunk(out, &data);
                } else {
                    out.put_slice(&data);
                }
            } else {
                if chunked {
                    out.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
                }
                write(io, out).await?;
                io.write_all(&data)
                    .await
                    .or_down(ErrorType::WriteError, "writing the response body")?;
                if chunked {
                    out.put_slice(b"\r\n");
                }
            }
            if !body.body_done() {
                // More to come, perhaps much later (a stream of events): send what is here.
                write(io, out).await?;
                io.flush()
                    .await
                    .or_down(ErrorType::WriteError, "flushing the response body")?;
            }
        }
        if framing == Framing::Chunked {
            out.put_slice(h1::LAST_CHUNK);
        }
    }
    write(io, out).await?;
    io.flush()
        .await
        .or_down(ErrorType::WriteError, "flushing the response")?;
    Ok(sent)
}

/// Writes and empties `out`.
async fn write<W: AsyncWrite + Unpin>(io: &mut W, out: &mut BytesMut) -> Result<()> {
    if !out.is_empty() {
        io.write_all(out)
            .await
            .or_down(ErrorType::WriteError, "writing the response")?;
        out.clear();
    }
    Ok(())
}

/// Writes a local answer of the admission step as Pingora's session would; the body bytes
/// sent, None when the client could not be written to.
async fn write_answer<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut BytesMut,
    ctx: &RequestCtx,
    answer: &LocalAnswer,
    keep_alive: bool,
    head_request: bool,
) -> Option<usize> {
    let configured = ctx.response_headers.as_deref().unwrap_or_default();
    out.clear();
    let built = answer
        .header(configured)
        .and_then(|resp| local::answer_bytes(out, resp, answer.body(), keep_alive, head_request));
    if let Err(e) = built {
        error!("could not build the {} answer: {e}", answer.status());
        return None;
    }
    let written = async {
        io.write_all(out).await?;
        io.flush().await
    }
    .await;
    out.clear();
    match written {
        Ok(()) if head_request => Some(0),
        Ok(()) => Some(answer.body().len()),
        Err(e) => {
            debug!("could not send the {} answer: {e}", answer.status());
            None
        }
    }
}

/// Answers a request that failed before any response with Pingora's error response for
/// `status` (and Aralez's body text), the connection to be closed; the body bytes sent.
async fn respond_error<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut BytesMut,
    status: u16,
    method: &http::Method,
) -> usize {
    if status == 0 {
        return 0;
    }
    let body = local::error_body(status);
    let mut resp = ServerSession::generate_error(status);
    if !body.is_empty() && resp.set_content_length(body.len()).is_err() {
        return 0;
    }
    out.clear();
    if h1::write_head(out, &mut resp, false).is_err() {
        return 0;
    }
    let with_body = method != http::Method::HEAD;
    if with_body {
        out.put_slice(body.as_bytes());
    }
    let written = async {
        io.write_all(out).await?;
        io.flush().await
    }
    .await;
    match written {
        Ok(()) if with_body => body.len(),
        Ok(()) => 0,
        Err(e) => {
            debug!("could not send the {status} response: {e}");
            0
        }
    }
}

/// `io::Result` into Pingora's errors, the client's side to blame.
trait OrDown<T> {
    fn or_down(self, etype: ErrorType, context: &'static str) -> Result<T>;
}

impl<T> OrDown<T> for std::io::Result<T> {
    fn or_down(self, etype: ErrorType, context: &'static str) -> Result<T> {
        self.map_err(|e| Error::because(etype, context, e).into_down())
    }
}
