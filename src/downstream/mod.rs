//! Client connections before Pingora's HTTP code sees them: [`GuardedApp`] wraps the proxy
//! application so that every accepted connection becomes a [`GuardedStream`] (header deadline,
//! open-connections gauge). Every HTTP/1.x head is read here first (limits, the HTTP/2
//! preface rule); the fast lane serves the requests it carries, Pingora's HTTP/1 session the
//! others, one at a time, handing the connection back after each. HTTP/2 is Pingora's.

mod stream;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use log::debug;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{GetSocketDigest, Ssl, Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http1::server::{self as h1, Read};
use crate::proxy::lane::{Conn, Served};
use crate::proxy::ProxyCore;

pub use stream::GuardedStream;

/// A Pingora application (the HTTP proxy) whose connections are guarded, and served by the
/// fast lane (`proxy::lane`) when it is on, until a request needs Pingora.
pub struct GuardedApp<A> {
    inner: Arc<A>,
    header_timeout: Duration,
    /// Seconds an idle HTTP/1.x connection is kept between requests.
    keepalive: Duration,
    /// The fast lane, when it is on.
    lane: Option<Arc<ProxyCore>>,
}

impl<A> GuardedApp<A> {
    /// `core` serves the fast lane's requests when `fast_lane` is on.
    pub fn new(inner: A, header_timeout: Duration, core: Arc<ProxyCore>, fast_lane: bool) -> Self {
        GuardedApp {
            inner: Arc::new(inner),
            header_timeout,
            keepalive: Duration::from_secs(core.keepalive_timeout),
            lane: fast_lane.then_some(core),
        }
    }
}

/// The read buffer of a fast-lane connection (it grows for longer heads).
const READ_BUFFER: usize = 4096;
/// Least free room in the read buffer before a read.
const MIN_READ: usize = 1024;
/// How long a keep-alive connection waits for its next request with its buffers; after
/// that it gives them back (nginx does at once; a busy connection here keeps them, so
/// that a request on it allocates nothing).
const SHRINK_AFTER: Duration = Duration::from_secs(1);
/// The first read of a request on a connection that gave its buffers back.
const FIRST_READ: usize = 64;

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // A stream handed back for reuse is already guarded.
        let stream = if (*stream).as_any().is::<GuardedStream>() {
            *stream.into_any().downcast::<GuardedStream>().ok()?
        } else {
            GuardedStream::new(stream, self.header_timeout)
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.inner.process_new(Box::new(stream), shutdown).await;
        }
        self.serve_h1(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// What is next for a connection after Pingora served a request on it.
enum Back {
    /// It is back: the next request's head is read here again.
    Here(GuardedStream),
    /// It is closed, upgraded or HTTP/2: nothing left to serve here.
    Gone,
}

impl<A: HttpServerApp + Send + Sync + 'static> GuardedApp<A> {
    /// The connection is HTTP/2 with prior knowledge: Pingora's. Boxed: a fast-lane
    /// connection's task would otherwise hold room for Pingora's connection future its whole
    /// life.
    async fn to_h2c(self: &Arc<Self>, io: GuardedStream, shutdown: &ShutdownWatch) {
        Box::pin(self.inner.process_new(Box::new(io), shutdown)).await;
    }

    /// Has Pingora serve one request (or, when it read past the request's end, as many as
    /// it holds bytes of) and takes the connection back. Boxed, as [`Self::to_h2c`].
    async fn to_pingora(self: &Arc<Self>, io: GuardedStream, shutdown: &ShutdownWatch) -> Back {
        Box::pin(async {
            let mut session = ServerSession::new_http1(Box::new(io));
            session.set_keepalive((!*shutdown.borrow()).then_some(PINGORA_KEEPALIVE));
            loop {
                let Some(reused) = self.inner.process_new_http(session, shutdown).await else {
                    return Back::Gone;
                };
                let (stream, settings) = reused.consume();
                match settings {
                    // Pingora holds bytes of the next request (pipelined) that cannot be
                    // taken from it: it reads that request too.
                    Some(settings) if holds_pipelined_bytes(&settings) => {
                        session = ServerSession::new_http1(stream);
                        settings.apply_to_session(&mut session);
                    }
                    _ => {
                        return match stream.into_any().downcast::<GuardedStream>() {
                            Ok(io) => Back::Here(*io),
                            Err(_) => Back::Gone,
                        }
                    }
                }
            }
        })
        .await
    }

    /// Reads request heads and serves them: on the fast lane when it is on and the request is
    /// the lane's, else through Pingora's HTTP/1 session, one request at a time; each head is
    /// read here first, so that the limits and the HTTP/2 preface rule hold for all of them.
    async fn serve_h1(
        self: &Arc<Self>,
        mut io: GuardedStream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let ip = io
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let mut conn = Conn {
            ip,
            ip_value: ip.and_then(|ip| crate::proxy::forwarded::ip_value(ip).ok()),
            tls: io.get_ssl_digest().is_some(),
            shutting_down: false,
        };
        let keepalive = self.keepalive;
        let h2c = self.inner.server_options().is_some_and(|o| o.h2c) && !conn.tls;
        // Taken now, so that a shutdown from here on is seen however late the first wait.
        let mut watch = Some(shutdown.clone());
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let mut out = BytesMut::new();
        let mut idle = false;
        let mut idle_since = tokio::time::Instant::now();
        let mut idle_wait: Option<IdleWait> = None;
        // The spans of a head's fields, kept for the connection's heads.
        let mut fields = Vec::new();
        loop {
            let pingora_gets = match h1::read_head(&mut buf, &mut fields) {
                Read::Head(head) => {
                    io.header_done();
                    conn.shutting_down = *shutdown.borrow();
                    let served = match &self.lane {
                        Some(lane) => lane.serve_fast(head, &mut io, &mut out, &conn).await,
                        None => Served::Pingora(head.raw),
                    };
                    match served {
                        Served::KeepAlive(ended) => {
                            io.request_done(false);
                            idle = true;
                            idle_since = tokio::time::Instant::from_std(ended);
                            // An idle connection keeps no large response's buffer.
                            if out.capacity() > READ_BUFFER {
                                out = BytesMut::new();
                            }
                            continue;
                        }
                        Served::Close => {
                            pingora::protocols::Shutdown::shutdown(&mut io).await;
                            return None;
                        }
                        Served::Pingora(head) => head,
                    }
                }
                Read::Unsupported { taken } => {
                    // HTTP/2 with prior knowledge only as a connection's first bytes
                    // (RFC 9113 §3.3); later, Pingora's HTTP/1 reader refuses it.
                    if h2c && !io.served() && starts_like_preface(&taken, &buf) {
                        io.unread(&taken, &buf);
                        self.to_h2c(io, shutdown).await;
                        return None;
                    }
                    taken
                }
                Read::Refused(status, body) => {
                    io.header_done();
                    refuse(&mut io, &mut out, status, body).await;
                    return None;
                }
                Read::Partial => {
                    let read = if idle && buf.is_empty() {
                        // Between requests: the keep-alive timeout, and shutdown, end the wait.
                        if *shutdown.borrow() {
                            return None;
                        }
                        let due = idle_since + keepalive;
                        let shrink_at = idle_since + SHRINK_AFTER;
                        let wait = idle_wait
                            .get_or_insert_with(|| IdleWait::new(shrink_at.min(due), &mut watch));
                        let mut held = Buffers {
                            read: &mut buf,
                            out: &mut out,
                            fields: &mut fields,
                        };
                        // None: the wait is over, and the connection with it.
                        wait_for_request(&mut io, &mut held, wait, due, shrink_at).await?
                    } else {
                        if buf.capacity() - buf.len() < MIN_READ {
                            buf.reserve(READ_BUFFER);
                        }
                        // Within a head: `GuardedStream`'s header deadline.
                        io.read_buf(&mut buf).await
                    };
                    match read {
                        Ok(0) => return None,
                        Ok(_) => continue,
                        Err(e) => {
                            debug!("client connection read failed: {e}");
                            return None;
                        }
                    }
                }
            };
            io.unread(&pingora_gets, &buf);
            buf.clear();
            io = match self.to_pingora(io, shutdown).await {
                Back::Here(io) => io,
                Back::Gone => return None,
            };
            idle = true;
            idle_since = tokio::time::Instant::now();
        }
    }
}

/// Pingora's keep-alive for a request it serves (the proxy's `early_request_filter` sets the
/// configured one; the wait between requests is this module's).
const PINGORA_KEEPALIVE: u64 = 60;

/// Whether the bytes `first` then `then` can be the start of the HTTP/2 preface.
fn starts_like_preface(first: &[u8], then: &[u8]) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let n = first.len().min(PREFACE.len());
    let m = then.len().min(PREFACE.len() - n);
    first[..n] == PREFACE[..n] && then[..m] == PREFACE[n..n + m]
}

/// Whether Pingora kept bytes read past a request's end for the next one. Pingora 0.9.1 has
/// no getter for them; its `Debug` output names the field. Anything but a plain `None` counts
/// as held, so that a change there keeps the connection with Pingora rather than losing bytes.
fn holds_pipelined_bytes(settings: &HttpPersistentSettings) -> bool {
    !format!("{settings:?}").contains("pipelined_prefix: None")
}

/// Answers a refused head with `status` and `body` and closes the connection, as Pingora's
/// path answers the refusals of `proxy::guard`.
async fn refuse(io: &mut GuardedStream, out: &mut BytesMut, status: u16, body: &'static str) {
    out.clear();
    let written = crate::proxy::local::plain_response(out, status, body);
    if written.is_ok() {
        let _ = io.write_all(out).await;
        let _ = io.flush().await;
    }
    pingora::protocols::Shutdown::shutdown(io).await;
}

/// The buffers a fast-lane connection keeps between requests.
struct Buffers<'b> {
    read: &'b mut BytesMut,
    out: &'b mut BytesMut,
    fields: &'b mut Vec<h1::FieldSpan>,
}

impl Buffers<'_> {
    /// Gives the buffers back to the allocator; they are taken again for the next request.
    fn release(&mut self) {
        *self.read = BytesMut::new();
        *self.out = BytesMut::new();
        *self.fields = Vec::new();
    }
}

/// Waits between requests for the next one's first bytes and reads them into `held.read`.
/// After `shrink_at` the connection gives its buffers back and reads the first bytes into a
/// small array instead (one more read for that request, none for a busy connection). None:
/// the keep-alive deadline `due` passed, or the service shuts down.
async fn wait_for_request(
    io: &mut GuardedStream,
    held: &mut Buffers<'_>,
    wait: &mut IdleWait,
    due: tokio::time::Instant,
    shrink_at: tokio::time::Instant,
) -> Option<std::io::Result<usize>> {
    if held.read.capacity() - held.read.len() < MIN_READ {
        held.read.reserve(READ_BUFFER);
    }
    {
        let mut read = std::pin::pin!(io.read_buf(held.read));
        // The read first: when the next request is in, the wait's end is not looked at.
        let waited = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
            Poll::Ready(read) => Poll::Ready(Ok(read)),
            Poll::Pending => wait.poll_over(cx, due, Some(shrink_at)).map(Err),
        });
        match waited.await {
            Ok(read) => return Some(read),
            Err(IdleEnd::Over) => return None,
            Err(IdleEnd::Shrink) => {}
        }
    }
    held.release();
    let mut first = [0u8; FIRST_READ];
    let mut read = std::pin::pin!(io.read(&mut first));
    let waited = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Ready(read) => Poll::Ready(Some(read)),
        Poll::Pending => wait.poll_over(cx, due, None).map(|_| None),
    });
    let read = waited.await?;
    if let Ok(n @ 1..) = read {
        held.read.reserve(READ_BUFFER);
        held.read.extend_from_slice(&first[..n]);
    }
    Some(read)
}

/// Why a wait between requests ended without a request.
enum IdleEnd {
    /// The keep-alive deadline passed, or the service shuts down: close the connection.
    Over,
    /// The connection has waited long enough to give its buffers back.
    Shrink,
}

/// What ends a fast-lane connection's wait between requests, made at its first wait and
/// kept for its life: setting and cancelling a timer, and joining and leaving the shutdown
/// watch's waiters, once per request cost more than the clock read that the deadline takes.
struct IdleWait {
    /// Fires at the keep-alive deadline or the time to give the buffers back, or before
    /// either (set for an earlier request); moved on only when it fires early, so a busy
    /// connection resets it about once per `SHRINK_AFTER`, not per request.
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Ready when the service shuts down.
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The same watch, read without polling `shutdown`.
    probe: Option<ShutdownWatch>,
    /// `timer` and `shutdown` have been polled: they hold the waker of the connection's task.
    polled: bool,
}

impl IdleWait {
    fn new(target: tokio::time::Instant, watch: &mut Option<ShutdownWatch>) -> Self {
        let watch = watch.take();
        IdleWait {
            timer: Box::pin(tokio::time::sleep_until(target)),
            probe: watch.clone(),
            // A closed watch (its service gone) ends the connection too.
            shutdown: Box::pin(async move {
                if let Some(mut watch) = watch {
                    let _ = watch.changed().await;
                }
            }),
            polled: false,
        }
    }

    /// Ready when the wait is over (`due` has passed, or the service shuts down), or when
    /// `shrink` (if any) has passed. The timer and the watch are polled once, and then only
    /// when the flags they set say that they are ready: the waker they keep is still the
    /// task's (a connection stays on its task), and polling them for every request took a
    /// lock and a waker check each.
    fn poll_over(
        &mut self,
        cx: &mut Context<'_>,
        due: tokio::time::Instant,
        shrink: Option<tokio::time::Instant>,
    ) -> Poll<IdleEnd> {
        let shut = if self.polled {
            let seen = self.probe.as_ref().map(|w| w.has_changed());
            !matches!(seen, Some(Ok(false))) && self.shutdown.as_mut().poll(cx).is_ready()
        } else {
            self.shutdown.as_mut().poll(cx).is_ready()
        };
        if shut {
            return Poll::Ready(IdleEnd::Over);
        }
        let wanted = shrink.map_or(due, |at| at.min(due));
        let mut poll_timer = !self.polled || self.timer.is_elapsed();
        if wanted < self.timer.deadline() {
            // Set for later than this wait needs (the first wait after a shrink).
            self.timer.as_mut().reset(wanted);
            poll_timer = true;
        }
        if poll_timer {
            while self.timer.as_mut().poll(cx).is_ready() {
                let now = tokio::time::Instant::now();
                if now >= due {
                    return Poll::Ready(IdleEnd::Over);
                }
                if shrink.is_some_and(|at| now >= at) {
                    self.timer.as_mut().reset(due);
                    // The reset timer holds no waker until it is polled again.
                    self.polled = false;
                    return Poll::Ready(IdleEnd::Shrink);
                }
                self.timer.as_mut().reset(wanted);
            }
        }
        self.polled = true;
        Poll::Pending
    }
}

/// The guarded stream under an HTTP/1.x session, if any (HTTP/2 has none).
pub fn guarded(session: &pingora::protocols::http::ServerSession) -> Option<&GuardedStream> {
    session
        .stream()
        .and_then(|s| (**s).as_any().downcast_ref::<GuardedStream>())
}
