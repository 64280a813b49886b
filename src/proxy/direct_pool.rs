//! The direct path's backend connections (`backend_h1`), kept idle per backend address in
//! one pool per worker thread. A connection's socket is registered with the runtime of the
//! thread that opened it, so handing it only to requests on that thread keeps a request's
//! work on one thread. A thread's pool is a map lookup and a `Vec` pop; hyper's general client
//! (its pool keyed by hashed URI parts behind a shared lock, racing a lazy connect against the
//! checkout) cost about a tenth of a proxied request's instructions for the same job.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::debug;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

use super::backend_h1::{BackendConn, ExchangeError};
use crate::http1::response_head::ResponseHead;

/// How long an idle backend connection is kept (below nginx's default keepalive_timeout of
/// 75 s, so that the proxy, not the backend, closes it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often each thread drops the idle connections that timed out or closed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Why sending a request failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, connect timeout).
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The connection broke before a response header.
    #[error("{0}")]
    Dropped(std::io::Error),
    /// The backend's answer is not an HTTP/1.x response that can be relayed.
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    /// No response header within the read timeout.
    #[error("no response header within the read timeout")]
    TimedOut,
}

/// The idle connections of every worker thread.
pub struct ConnectionPools {
    threads: ThreadLocal<Arc<Mutex<Idle>>>,
    connect_timeout: Duration,
    /// Idle connections kept per backend on each thread.
    max_idle: usize,
}

/// One thread's idle connections, most recently used last.
#[derive(Default)]
struct Idle {
    by_backend: foldhash::HashMap<Backend, Vec<(Pooled, Instant)>>,
}

/// A connection as the pools hold and lend it: boxed, as it moves from the pool to a
/// request and back, and through the request's futures, each move a copy of the whole.
type Pooled = Box<BackendConn>;

/// A backend address as the pools' key: an IPv4 address and port hashed as one number,
/// where `SocketAddr`'s own `Hash` feeds the hasher field by field (twice per request).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Backend(SocketAddr);

impl std::hash::Hash for Backend {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self.0 {
            SocketAddr::V4(v4) => {
                state.write_u64(u64::from(v4.ip().to_bits()) << 16 | u64::from(v4.port()))
            }
            SocketAddr::V6(v6) => v6.hash(state),
        }
    }
}

impl Idle {
    /// Drops connections idle longer than `IDLE_TIMEOUT` or closed by their backend.
    fn sweep(&mut self) {
        self.by_backend.retain(|_, list| {
            let now = Instant::now();
            list.retain(|(conn, since)| usable(conn, *since, now));
            !list.is_empty()
        });
    }
}

/// Whether an idle connection, idle since `since`, can take a request at `now`.
fn usable(conn: &BackendConn, since: Instant, now: Instant) -> bool {
    !conn.is_closed() && now.saturating_duration_since(since) < IDLE_TIMEOUT
}

/// A connection lent to one request, its response body still to be read from it: back to its
/// thread's pool when the body was read to its end (`release`), closed when dropped before.
pub struct Lease<'a> {
    pools: &'a ConnectionPools,
    addr: SocketAddr,
    conn: Pooled,
}

impl Lease<'_> {
    /// The response head.
    pub fn head(&self) -> &ResponseHead {
        self.conn.head()
    }

    /// The next piece of the response body, None at its end; each read from the backend
    /// within `read_timeout`.
    pub async fn next_data(&mut self, read_timeout: Duration) -> pingora::Result<Option<Bytes>> {
        let why = "backend response body";
        // Mostly the body came in with the header: no timer (and no clock read) for that.
        match self.conn.buffered() {
            Ok(Some(data)) => return Ok(data),
            Ok(None) => {}
            Err(e) => {
                return Err(
                    pingora::Error::because(pingora::ErrorType::ReadError, why, e).into_up(),
                )
            }
        }
        match self.conn.next_data_within(read_timeout).await {
            None => {
                let why = "backend sent no body data in time";
                Err(pingora::Error::explain(pingora::ErrorType::ReadTimedout, why).into_up())
            }
            Some(Ok(data)) => Ok(data),
            Some(Err(e)) => {
                Err(pingora::Error::because(pingora::ErrorType::ReadError, why, e).into_up())
            }
        }
    }

    /// The next piece of the body: `first` when it holds one (read before the head went out),
    /// else the backend's next; None at the end.
    pub async fn piece_after(
        &mut self,
        first: &mut Option<Option<Bytes>>,
        read_timeout: Duration,
    ) -> pingora::Result<Option<Bytes>> {
        match first.take() {
            Some(piece) => Ok(piece),
            None if self.body_done() => Ok(None),
            None => self.next_data(read_timeout).await,
        }
    }

    /// Whether the response body has been read to its end.
    pub fn body_done(&mut self) -> bool {
        self.conn.body_done()
    }

    /// Whether the next piece of the body must be waited for: the head goes to the client
    /// first (a stream of events, a long poll, a slow download).
    pub fn body_pending(&mut self) -> bool {
        !self.body_done() && !self.conn.has_buffered()
    }

    /// Puts the connection back in this thread's pool, unless the response was not read to
    /// its end, the backend closes the connection, or the pool holds enough for this backend.
    pub fn release(self) {
        self.release_at(Instant::now());
    }

    /// [`release`](Self::release), idle from `now` (a clock read the caller made anyway).
    pub fn release_at(mut self, now: Instant) {
        if !self.conn.reusable() {
            return;
        }
        let mut idle = self.pools.idle();
        let list = idle.by_backend.entry(Backend(self.addr)).or_default();
        if list.len() < self.pools.max_idle {
            list.push((self.conn, now));
        }
    }
}

impl ConnectionPools {
    /// Pools that open connections within `connect_timeout` and keep up to `max_idle` idle
    /// ones per backend, on each thread.
    pub fn new(connect_timeout: Duration, max_idle: usize) -> Self {
        ConnectionPools {
            threads: ThreadLocal::new(),
            connect_timeout,
            max_idle,
        }
    }

    /// This thread's pool, made (with its sweeper task) on the thread's first request.
    fn idle(&self) -> MutexGuard<'_, Idle> {
        let idle = self.threads.get_or(|| {
            let idle = Arc::new(Mutex::new(Idle::default()));
            tokio::spawn(sweep(Arc::downgrade(&idle)));
            idle
        });
        // Only this thread and its sweeper take the lock, neither while holding another one;
        // a panic under it leaves a consistent map.
        idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection to `addr` that is still open at `now`.
    fn checkout(&self, addr: SocketAddr, now: Instant) -> Option<Pooled> {
        let mut idle = self.idle();
        let list = idle.by_backend.get_mut(&Backend(addr))?;
        while let Some((conn, since)) = list.pop() {
            if usable(&conn, since, now) {
                return Some(conn);
            }
        }
        None
    }

    /// A new connection to `addr`.
    async fn connect(&self, addr: SocketAddr) -> std::io::Result<Pooled> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", self.connect_timeout),
                )
            })??;
        stream.set_nodelay(true)?;
        Ok(Box::new(BackendConn::new(stream)))
    }

    /// Sends `request` (a request head; the request has no body) to `addr` and waits up to
    /// `read_timeout` from `started` (the attempt's start) for the response header, on an
    /// idle connection when there is one. `head_request`: it is a HEAD (no response body).
    ///
    /// An idle connection can be closed by its backend at any moment (a Node.js backend's
    /// keep-alive timeout is 5 s). One seen closed is dropped and the next one taken. One that
    /// breaks without a response header most likely closed before reading the request: it
    /// goes once more, on a new connection, when `resend` allows (the caller's rule; false
    /// for methods that must not be repeated), as nginx gives a failed keep-alive connection
    /// an extra try. Otherwise, and on a new connection, a break is `Dropped`, for the
    /// caller's retry rules.
    pub async fn send(
        &self,
        addr: SocketAddr,
        request: &[u8],
        head_request: bool,
        resend: bool,
        read_timeout: Duration,
        started: Instant,
    ) -> Result<Lease<'_>, SendError> {
        let due = tokio::time::Instant::from_std(started) + read_timeout;
        if let Some(mut conn) = self.checkout(addr, started) {
            match conn.exchange_by(request, head_request, due).await {
                None => return Err(SendError::TimedOut),
                Some(Ok(())) => return Ok(self.lease(addr, conn)),
                Some(Err(ExchangeError::Invalid(what))) => return Err(SendError::Invalid(what)),
                Some(Err(ExchangeError::Broke(e))) if resend => {
                    debug!(
                        "idle connection to backend {addr} broke ({e}); sending again on a new one"
                    );
                }
                Some(Err(ExchangeError::Broke(e))) => return Err(SendError::Dropped(e)),
            }
        }
        // Boxed: a new connection is the rare case, and its connect future would make every
        // request's future larger (they are moved, so copied, once per request).
        Box::pin(self.send_new(addr, request, head_request, read_timeout)).await
    }

    /// Sends `request` on a new connection to `addr`.
    async fn send_new(
        &self,
        addr: SocketAddr,
        request: &[u8],
        head_request: bool,
        read_timeout: Duration,
    ) -> Result<Lease<'_>, SendError> {
        let mut conn = self.connect(addr).await.map_err(SendError::Connect)?;
        // The deadline counts from the new connection's start, as it did before it.
        let due = tokio::time::Instant::now() + read_timeout;
        match conn.exchange_by(request, head_request, due).await {
            None => Err(SendError::TimedOut),
            Some(Err(ExchangeError::Broke(e))) => Err(SendError::Dropped(e)),
            Some(Err(ExchangeError::Invalid(what))) => Err(SendError::Invalid(what)),
            Some(Ok(())) => Ok(self.lease(addr, conn)),
        }
    }

    fn lease(&self, addr: SocketAddr, conn: Pooled) -> Lease<'_> {
        Lease {
            pools: self,
            addr,
            conn,
        }
    }
}

/// Drops the timed-out and closed idle connections of one thread every `SWEEP_EVERY`, until
/// the pools are gone.
async fn sweep(idle: Weak<Mutex<Idle>>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let Some(idle) = idle.upgrade() else { return };
        idle.lock().unwrap_or_else(|p| p.into_inner()).sweep();
    }
}
