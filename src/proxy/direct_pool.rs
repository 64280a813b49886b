//! The direct path's backend connections: hyper HTTP/1.1 connections, kept idle per backend
//! address in one pool per worker thread. Each connection is served by a task on the thread
//! that opened it, so handing it only to requests on that thread keeps a request's work on
//! one thread. A thread's pool is a map lookup and a `Vec` pop; hyper's general client (its
//! pool keyed by hashed URI parts behind a shared lock, racing a lazy connect against the
//! checkout) cost about a tenth of a proxied request's instructions for the same job.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use log::debug;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

type Sender = http1::SendRequest<Empty<Bytes>>;

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
    Dropped(hyper::Error),
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
    by_backend: foldhash::HashMap<SocketAddr, Vec<(Sender, Instant)>>,
}

impl Idle {
    /// Drops connections idle longer than `IDLE_TIMEOUT` or closed by their backend.
    fn sweep(&mut self) {
        self.by_backend.retain(|_, list| {
            list.retain(|(sender, since)| usable(sender, *since));
            !list.is_empty()
        });
    }
}

fn usable(sender: &Sender, since: Instant) -> bool {
    !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT
}

/// A connection lent to one request: back to its thread's pool when the response was read
/// to its end (`release`), closed when dropped before (hyper cannot reuse a connection with
/// an unread response on it).
pub struct Lease<'a> {
    pools: &'a ConnectionPools,
    addr: SocketAddr,
    sender: Sender,
}

impl Lease<'_> {
    /// Puts the connection back in this thread's pool, unless its backend closed it or the
    /// pool holds enough for this backend.
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let mut idle = self.pools.idle();
        let list = idle.by_backend.entry(self.addr).or_default();
        if list.len() < self.pools.max_idle {
            list.push((self.sender, Instant::now()));
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

    /// The most recently used idle connection to `addr` that is still open.
    fn checkout(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle();
        let list = idle.by_backend.get_mut(&addr)?;
        while let Some((sender, since)) = list.pop() {
            if usable(&sender, since) {
                return Some(sender);
            }
        }
        None
    }

    /// A new connection to `addr`, its I/O driven by a task on this thread.
    async fn connect(&self, addr: SocketAddr) -> std::io::Result<Sender> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", self.connect_timeout),
                )
            })??;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::Builder::new()
            // Header names go out as `X-Proxy-From`, as configured and as most clients write
            // them (hyper would send them lowercase).
            .title_case_headers(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!("connection to backend {addr} ended: {e}");
            }
        });
        Ok(sender)
    }

    /// Sends `req` (origin-form target, `Host` set) to `addr` and waits up to `read_timeout`
    /// for the response header, on an idle connection when there is one.
    ///
    /// An idle connection can be closed by its backend at any moment (a Node.js backend's
    /// keep-alive timeout is 5 s). One that closed before taking the request hands it back and
    /// the next one gets it. One that took it and closed without a response header most
    /// likely did so before reading it: the request goes once more, on a new connection,
    /// when `resend` gives it again (the caller's rule; `None` for methods that must not be
    /// repeated), as nginx gives a failed keep-alive connection an extra try. Otherwise, and
    /// on a new connection, a break is `Dropped`, for the caller's retry rules.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: http::Request<Empty<Bytes>>,
        resend: impl FnOnce() -> Option<http::Request<Empty<Bytes>>>,
        read_timeout: Duration,
    ) -> Result<(http::Response<Incoming>, Lease<'_>), SendError> {
        while let Some(mut sender) = self.checkout(addr) {
            let attempt = async {
                if sender.ready().await.is_err() {
                    // Closed while idle: the request was never handed over.
                    return Attempt::Unsent(req);
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => Attempt::Answered(resp),
                    Err(mut e) => match e.take_message() {
                        Some(req) => Attempt::Unsent(req),
                        None => Attempt::Broke(e.into_error()),
                    },
                }
            };
            match tokio::time::timeout(read_timeout, attempt).await {
                Err(_) => return Err(SendError::TimedOut),
                Ok(Attempt::Answered(resp)) => return Ok((resp, self.lease(addr, sender))),
                Ok(Attempt::Unsent(unsent)) => req = unsent,
                Ok(Attempt::Broke(e)) => match resend() {
                    Some(again) => {
                        debug!("idle connection to backend {addr} broke ({e}); sending again on a new one");
                        return Box::pin(self.send_new(addr, again, read_timeout)).await;
                    }
                    None => return Err(SendError::Dropped(e)),
                },
            }
        }
        // Boxed: a new connection is the rare case, and its handshake future would make every
        // request's future larger (they are moved, so copied, once per request).
        Box::pin(self.send_new(addr, req, read_timeout)).await
    }

    /// Sends `req` on a new connection to `addr`.
    async fn send_new(
        &self,
        addr: SocketAddr,
        req: http::Request<Empty<Bytes>>,
        read_timeout: Duration,
    ) -> Result<(http::Response<Incoming>, Lease<'_>), SendError> {
        let mut sender = self.connect(addr).await.map_err(SendError::Connect)?;
        match tokio::time::timeout(read_timeout, sender.send_request(req)).await {
            Err(_) => Err(SendError::TimedOut),
            Ok(Err(e)) => Err(SendError::Dropped(e)),
            Ok(Ok(resp)) => Ok((resp, self.lease(addr, sender))),
        }
    }

    fn lease(&self, addr: SocketAddr, sender: Sender) -> Lease<'_> {
        Lease {
            pools: self,
            addr,
            sender,
        }
    }
}

/// How a request on a pooled connection went.
enum Attempt {
    Answered(http::Response<Incoming>),
    /// The connection closed before taking the request, which is handed back.
    Unsent(http::Request<Empty<Bytes>>),
    /// The connection broke after taking it.
    Broke(hyper::Error),
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
