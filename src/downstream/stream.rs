//! `GuardedStream`: a client connection as Pingora's HTTP code reads it, with a deadline on
//! each HTTP/1.x request header and an entry in the open-connections gauge for its lifetime.
//!
//! Pingora's own timeouts apply to each read, so a client that trickles one byte every few
//! seconds keeps a connection (and its task and buffer) forever. Here the whole header must
//! arrive within `header_timeout`: counted from the accept for the first request, and from the
//! first byte of each later request on a keep-alive connection (idle time between requests is
//! the keep-alive timeout's business). The proxy hooks say when a header is complete
//! ([`GuardedStream::header_done`]) and when a request is over ([`GuardedStream::request_done`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::METRICS;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where the connection is in its request cycle; only `HEADER` has a deadline.
const HEADER: u8 = 0;
const BODY: u8 = 1;
const IDLE: u8 = 2;
/// HTTP/2 or an upgraded connection: no HTTP/1.x headers to time.
const OFF: u8 = 3;

pub struct GuardedStream {
    inner: Stream,
    header_timeout: Duration,
    phase: AtomicU8,
    /// Armed while a header is being read.
    deadline: Option<Pin<Box<Sleep>>>,
    /// `deadline` is set for the header being read. A keep-alive request's deadline is set at
    /// its first read that has to wait: most heads arrive whole in one read and never need
    /// one (a timer set and cancelled per request was a few percent of the proxy's CPU).
    armed: bool,
    /// Bytes read by `try_peek`, handed out again before anything else is read.
    peeked: Vec<u8>,
    peeked_pos: usize,
    /// The gauge entry this connection holds, released on drop.
    open: IntGauge,
    /// A request has been answered on this connection.
    served: AtomicBool,
    /// The next write is to be flushed at once (a response head whose body is not here yet:
    /// Pingora flushes a head with a `Content-Length` only with the body).
    flush_next: AtomicBool,
    /// A write of so many bytes is done but for its flush.
    flushing: Option<usize>,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase.load(Ordering::Relaxed))
            .finish()
    }
}

impl GuardedStream {
    pub fn new(inner: Stream, header_timeout: Duration) -> Self {
        let tls = inner.get_ssl_digest().is_some();
        let open = if tls {
            METRICS.connections_tls.clone()
        } else {
            METRICS.connections_plain.clone()
        };
        open.inc();
        let h2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2));
        GuardedStream {
            inner,
            header_timeout,
            phase: AtomicU8::new(if h2 { OFF } else { HEADER }),
            deadline: (!h2).then(|| Box::pin(tokio::time::sleep(header_timeout))),
            armed: !h2,
            peeked: Vec::new(),
            peeked_pos: 0,
            open,
            served: AtomicBool::new(false),
            flush_next: AtomicBool::new(false),
            flushing: None,
        }
    }

    /// The header of the current request has been read: no deadline until the next one.
    pub fn header_done(&self) {
        let _ = self
            .phase
            .compare_exchange(HEADER, BODY, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The current request is over; the next byte starts a new header (and its deadline).
    /// An upgraded connection carries no more HTTP/1.x requests.
    pub fn request_done(&self, upgraded: bool) {
        self.served.store(true, Ordering::Relaxed);
        let next = if upgraded { OFF } else { IDLE };
        let _ = self
            .phase
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                (p != OFF).then_some(next)
            });
    }

    /// Has the next write (a response head) flushed to the client at once.
    pub fn flush_next_write(&self) {
        self.flush_next.store(true, Ordering::Relaxed);
    }

    /// Whether a request has been answered on this connection: its bytes can no longer be
    /// the HTTP/2 preface.
    pub fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Puts bytes that were read but not consumed back in front of the stream, `first` then
    /// `then`: the next reads hand them out again (the fast lane handing a request to Pingora).
    pub fn unread(&mut self, first: &[u8], then: &[u8]) {
        let pending = &self.peeked[self.peeked_pos..];
        if first.is_empty() && then.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(first.len() + then.len() + pending.len());
        bytes.extend_from_slice(first);
        bytes.extend_from_slice(then);
        bytes.extend_from_slice(pending);
        self.peeked = bytes;
        self.peeked_pos = 0;
    }

    /// While in `HEADER`: whether the deadline has passed (registering the waker if not).
    fn header_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.phase.load(Ordering::Relaxed) != HEADER {
            return false;
        }
        match self.deadline.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }

    fn arm(&mut self) {
        self.armed = true;
        let at = Instant::now() + self.header_timeout;
        match self.deadline.as_mut() {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    fn timed_out() -> std::io::Error {
        METRICS.header_timeouts.inc();
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request header not complete within header_timeout",
        )
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.peeked_pos < this.peeked.len() {
            let rest = &this.peeked[this.peeked_pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.peeked_pos += n;
            if this.peeked_pos == this.peeked.len() {
                this.peeked = Vec::new();
                this.peeked_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() > before;
                match this.phase.load(Ordering::Relaxed) {
                    IDLE if got => {
                        // First byte of the next request on a keep-alive connection; its
                        // deadline is set once a read has to wait.
                        this.phase.store(HEADER, Ordering::Relaxed);
                        this.armed = false;
                    }
                    // A client that always has one more byte ready never sees Pending.
                    HEADER
                        if this.armed && this.deadline.as_ref().is_some_and(|d| d.is_elapsed()) =>
                    {
                        return Poll::Ready(Err(Self::timed_out()));
                    }
                    _ => {}
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.phase.load(Ordering::Relaxed) == HEADER && !this.armed {
                    this.arm();
                }
                if this.header_expired(cx) {
                    return Poll::Ready(Err(Self::timed_out()));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if let Some(n) = this.flushing {
            // The write is in the buffer below; it is over once that went out.
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
            this.flushing = None;
            return Poll::Ready(Ok(n));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if this.flush_next.swap(false, Ordering::Relaxed) {
            this.flushing = Some(n);
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
            this.flushing = None;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.flushing.is_none() && !self.flush_next.load(Ordering::Relaxed) {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        // Through `poll_write`, which knows about flushing.
        let buf = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    /// Pingora peeks the first 24 bytes of a plain connection to tell HTTP/2 with prior
    /// knowledge from HTTP/1.x. Its own peek waits for all 24, so a shorter HTTP/1.0 request
    /// (`GET / HTTP/1.0\r\n\r\n`) would hang; this one stops as soon as the bytes cannot be
    /// the preface, and under the header deadline.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.served() {
            // The preface is valid only as a connection's first bytes (RFC 9113 §3.3).
            buf.fill(0);
            return Ok(true);
        }
        let want = buf.len();
        let deadline = Instant::now() + self.header_timeout;
        let mut got = std::mem::take(&mut self.peeked);
        got.drain(..self.peeked_pos);
        self.peeked_pos = 0;
        let mut chunk = [0u8; 64];
        while got.len() < want && H2_PREFACE.starts_with(&got) {
            let read = tokio::time::timeout_at(deadline, self.inner.read(&mut chunk)).await;
            match read {
                Ok(Ok(0)) => {
                    self.peeked = got;
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    self.peeked = got;
                    return Err(e);
                }
                Err(_) => {
                    self.peeked = got;
                    return Err(Self::timed_out());
                }
            }
        }
        let n = got.len().min(want);
        buf[..n].copy_from_slice(&got[..n]);
        buf[n..].fill(0);
        if got.starts_with(H2_PREFACE) {
            self.phase.store(OFF, Ordering::Relaxed);
        }
        self.peeked = got;
        Ok(true)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}
