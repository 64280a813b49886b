//! The direct path's HTTP/1.1 client: one backend connection, driven by the request that
//! holds it. hyper's client connection ran as a task of its own, so each request crossed a
//! channel twice and woke two tasks, and took the response through hyper's dispatcher; on the
//! direct path (no request body, plain HTTP, one request at a time) the request's own task can
//! write the head and read the answer itself.

use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::outgoing::{Edited, Outgoing};
use crate::http1::response_head::{BodyFraming, HeadError, ResponseHead};

/// Longest response head (status line and fields).
pub const MAX_HEAD: usize = 64 * 1024;
/// Read buffer of a backend connection (it grows for a longer head).
const READ_BUFFER: usize = 8 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The connection broke (or closed) before the whole response head: most likely a
    /// kept-alive connection the backend had closed. Resending may be safe.
    #[error("connection closed before the response header: {0}")]
    Broke(std::io::Error),
    /// The backend answered something that is not an HTTP/1.x response we can relay.
    #[error("invalid response from the backend: {0}")]
    Invalid(&'static str),
}

impl From<HeadError> for ExchangeError {
    fn from(e: HeadError) -> Self {
        ExchangeError::Invalid(e.0)
    }
}

/// Where the response body stands on the backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Read to its end, or none (HEAD, 204, 304).
    Done,
    /// `Content-Length`: bytes still to come.
    Length(u64),
    /// Chunked, within a chunk's data: bytes still to come, then its CRLF.
    ChunkData(u64),
    /// Chunked: the CRLF after a chunk's data.
    ChunkEnd,
    /// Chunked: a size line.
    ChunkSize,
    /// Chunked: trailer fields after the last chunk, up to an empty line (they are dropped).
    Trailers,
    /// Neither: the body ends when the backend closes the connection.
    UntilClose,
}

/// An HTTP/1.1 connection to a backend.
pub struct BackendConn {
    stream: TcpStream,
    buf: BytesMut,
    framing: Framing,
    /// The backend keeps the connection open after this response.
    keep_alive: bool,
    /// The last response's head.
    head: ResponseHead,
    /// The read deadlines' timer, made at the first wait and kept with the connection
    /// (see [`by`]).
    timer: Option<Pin<Box<Sleep>>>,
}

impl BackendConn {
    pub fn new(stream: TcpStream) -> Self {
        BackendConn {
            stream,
            buf: BytesMut::new(),
            framing: Framing::Done,
            keep_alive: true,
            head: ResponseHead::default(),
            timer: None,
        }
    }

    /// [`exchange`](Self::exchange) by `due`; None when the response head did not come in
    /// time.
    pub async fn exchange_by(
        &mut self,
        request: &[u8],
        head_request: bool,
        due: Instant,
    ) -> Option<Result<(), ExchangeError>> {
        let mut timer = self.timer.take();
        let done = by(&mut timer, due, self.exchange(request, head_request)).await;
        self.timer = timer;
        done
    }

    /// [`next_data`](Self::next_data) within `limit`; None when no data came in time.
    pub async fn next_data_within(
        &mut self,
        limit: Duration,
    ) -> Option<std::io::Result<Option<Bytes>>> {
        let mut timer = self.timer.take();
        let done = by(&mut timer, Instant::now() + limit, self.next_data()).await;
        self.timer = timer;
        done
    }

    /// Whether this idle connection can no longer take a request, as the runtime's readiness
    /// events already tell (no system call): an idle connection has nothing to read, so
    /// readable means that the backend closed or reset it, or sent what nobody asked for. A
    /// read that drained the last response was short, which cleared the readiness it had.
    /// (Waiting for readiness instead would join and leave its waiter list: two locks.)
    pub fn is_closed(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_ready()
    }

    /// Writes `request` (a head: the request has no body) and reads the response head,
    /// skipping interim (1xx) responses. `head_request`: the request is a HEAD, so no body
    /// follows whatever the head says.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_request: bool,
    ) -> Result<(), ExchangeError> {
        self.buf.clear();
        self.stream
            .write_all(request)
            .await
            .map_err(ExchangeError::Broke)?;
        loop {
            self.read_head().await?;
            let status = self.head.status;
            if status == http::StatusCode::SWITCHING_PROTOCOLS {
                return Err(ExchangeError::Invalid("101 to a request without Upgrade"));
            }
            if status.is_informational() {
                continue;
            }
            self.framing = framing(&self.head, head_request);
            self.keep_alive = self.framing != Framing::UntilClose && self.head.keeps_alive();
            return Ok(());
        }
    }

    /// The head of the response the last exchange read.
    pub fn head(&self) -> &ResponseHead {
        &self.head
    }

    async fn read_head(&mut self) -> Result<(), ExchangeError> {
        loop {
            if let Some(len) = head_len(&self.buf) {
                let raw = self.buf.split_to(len).freeze();
                return Ok(self.head.parse(raw)?);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ExchangeError::Invalid("response head too long"));
            }
            self.buf.reserve(READ_BUFFER);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => {
                    return Err(ExchangeError::Broke(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed by the backend",
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(ExchangeError::Broke(e)),
            }
        }
    }

    /// Whether the response body has been read to its end (a last chunk already read in
    /// counts, though `next_data` was not called for it yet).
    pub fn body_done(&mut self) -> bool {
        if matches!(
            self.framing,
            Framing::ChunkEnd | Framing::ChunkSize | Framing::Trailers
        ) && self.advance().is_err()
        {
            self.keep_alive = false;
        }
        self.framing == Framing::Done
    }

    /// Whether the connection can take another request: the body was read to its end and
    /// the backend keeps the connection open.
    pub fn reusable(&mut self) -> bool {
        // Bytes past the response's end (more than its length, a body after a 204 or a HEAD
        // answer) would be read as the next response: such a backend gets a new connection.
        self.keep_alive && self.body_done() && self.buf.is_empty()
    }

    /// Whether body bytes are already here (the next `next_data` will not wait for them).
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next piece of the response body when the buffer already holds it (`Some(None)`
    /// at the end of the body); None when it must be read first.
    pub fn buffered(&mut self) -> std::io::Result<Option<Option<Bytes>>> {
        if matches!(
            self.framing,
            Framing::ChunkEnd | Framing::ChunkSize | Framing::Trailers
        ) && !self.advance()?
        {
            return Ok(None);
        }
        Ok(match self.framing {
            Framing::Done => Some(None),
            Framing::Length(left) | Framing::ChunkData(left) if !self.buf.is_empty() => {
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                let data = self.buf.split_to(n).freeze();
                let left = left - n as u64;
                self.framing = match (self.framing, left) {
                    (Framing::Length(_), 0) => Framing::Done,
                    (Framing::Length(_), _) => Framing::Length(left),
                    (_, 0) => Framing::ChunkEnd,
                    _ => Framing::ChunkData(left),
                };
                Some(Some(data))
            }
            Framing::UntilClose if !self.buf.is_empty() => Some(Some(self.buf.split().freeze())),
            _ => None,
        })
    }

    /// The next piece of the response body, None at its end.
    pub async fn next_data(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            if let Some(data) = self.buffered()? {
                return Ok(data);
            }
            if self.framing == Framing::UntilClose {
                self.buf.reserve(READ_BUFFER);
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
            } else {
                self.fill("the backend closed within the body").await?;
            }
        }
    }

    /// Reads more of the body; the end of the stream here is an error (`why`).
    async fn fill(&mut self, why: &'static str) -> std::io::Result<()> {
        self.buf.reserve(READ_BUFFER);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            self.keep_alive = false;
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why));
        }
        Ok(())
    }

    /// Moves through the chunked framing the buffer holds (CRLFs, size lines, trailers);
    /// false when it needs more bytes first.
    fn advance(&mut self) -> std::io::Result<bool> {
        loop {
            match self.framing {
                Framing::ChunkEnd => {
                    if self.buf.len() < 2 {
                        return Ok(false);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(invalid("no CRLF after a chunk"));
                    }
                    self.buf.advance(2);
                    self.framing = Framing::ChunkSize;
                }
                Framing::ChunkSize => {
                    let Some(end) = memchr::memchr(b'\n', &self.buf) else {
                        return if self.buf.len() > MAX_LINE {
                            Err(invalid("chunk size line too long"))
                        } else {
                            Ok(false)
                        };
                    };
                    let size =
                        chunk_size(&self.buf[..end]).ok_or_else(|| invalid("bad chunk size"))?;
                    self.buf.advance(end + 1);
                    self.framing = if size == 0 {
                        Framing::Trailers
                    } else {
                        Framing::ChunkData(size)
                    };
                }
                Framing::Trailers => {
                    let Some(end) = memchr::memchr(b'\n', &self.buf) else {
                        return if self.buf.len() > MAX_HEAD {
                            Err(invalid("trailers too long"))
                        } else {
                            Ok(false)
                        };
                    };
                    let empty = end == 0 || (end == 1 && self.buf[0] == b'\r');
                    self.buf.advance(end + 1);
                    if empty {
                        self.framing = Framing::Done;
                    }
                }
                _ => return Ok(true),
            }
        }
    }
}

/// Longest chunk size line (with extensions).
const MAX_LINE: usize = 4096;

fn invalid(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// The length of the head at the front of `buf` (through its empty line), when it is all
/// there. Lines may end with a bare LF, as httparse reads them (RFC 9112 §2.2 lets a
/// recipient accept that); waiting for a CRLF that never comes would end in a timeout.
fn head_len(buf: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf).find_map(|at| match &buf[at + 1..] {
        [b'\n', ..] => Some(at + 2),
        [b'\r', b'\n', ..] => Some(at + 3),
        _ => None,
    })
}

/// The size a chunk's size line gives (`1a;ext=1\r`), None when it is not hex or too large.
/// Only hex digits: a sign or white space before them is refused (`u64::from_str_radix`
/// takes a `+`), as other readers may size the chunk differently.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = match memchr::memchr(b';', line) {
        // White space may stand before an extension (RFC 9112 §7.1.1 BWS).
        Some(at) => line[..at].trim_ascii_end(),
        None => line,
    };
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 16).ok()
}

/// Where the reader starts on the body of this response ([`ResponseHead::body`]).
fn framing(head: &ResponseHead, head_request: bool) -> Framing {
    match head.body(head_request) {
        BodyFraming::None | BodyFraming::Length(0) => Framing::Done,
        BodyFraming::Length(n) => Framing::Length(n),
        BodyFraming::Chunked => Framing::ChunkSize,
        BodyFraming::UntilClose => Framing::UntilClose,
    }
}

/// Appends the request head for a backend: origin-form target, HTTP/1.1, the client's field
/// names title-cased (`X-Forwarded-For`), as most clients write them, and the ones the proxy
/// sets as written (as configured, as Pingora's path sends them).
pub fn write_request(buf: &mut Vec<u8>, req: &Edited<'_>) {
    buf.extend_from_slice(req.method().as_str().as_bytes());
    buf.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.kept() {
        // Copied whole, then cased in place: a push per byte checks the capacity per byte.
        let at = buf.len();
        buf.extend_from_slice(name);
        title_case(&mut buf[at..]);
        put_value(buf, value);
    }
    for (written, value) in req.added() {
        buf.extend_from_slice(written);
        put_value(buf, value.as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
}

fn put_value(buf: &mut Vec<u8>, value: &[u8]) {
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// Upper-cases the first letter of `name` and each one after a `-`, and lower-cases the
/// others (`x-forwarded-FOR` to `X-Forwarded-For`).
fn title_case(name: &mut [u8]) {
    let mut upper = true;
    for b in name {
        if upper {
            b.make_ascii_uppercase();
        } else {
            b.make_ascii_lowercase();
        }
        upper = *b == b'-';
    }
}

/// `work`, or None when `due` passes first. The timer in `slot` is kept from one wait to
/// the next, and moved on only when it fires before this wait's deadline (set for an
/// earlier one): a connection's requests then cost no timer each, where setting and
/// cancelling one per request cost more (as nginx's lazy timers save the same work).
async fn by<T>(
    slot: &mut Option<Pin<Box<Sleep>>>,
    due: Instant,
    work: impl Future<Output = T>,
) -> Option<T> {
    let timer = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
    let mut work = pin!(work);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= due {
                return Poll::Ready(None);
            }
            timer.as_mut().reset(due);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a\r"), Some(26));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b"ff;name=v\r"), Some(255));
        assert_eq!(chunk_size(b"zz\r"), None);
        assert_eq!(chunk_size(b"\r"), None);
        assert_eq!(chunk_size(b"1000000000000000\r"), None);
        for bad in [&b"+5\r"[..], b" 5\r", b"5 \r", b"\t5", b"0x5", b"-1"] {
            assert_eq!(chunk_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(chunk_size(b"5 ;ext\r"), Some(5));
    }

    #[test]
    fn heads_may_end_lines_with_a_bare_lf() {
        assert_eq!(head_len(b"HTTP/1.1 200 OK\r\nA: 1\r\n\r\nbody"), Some(25));
        assert_eq!(head_len(b"HTTP/1.1 200 OK\nA: 1\n\nbody"), Some(22));
        assert_eq!(head_len(b"HTTP/1.1 200 OK\nA: 1\r\n\r\n"), Some(24));
        assert_eq!(head_len(b"HTTP/1.1 200 OK\r\nA: 1\r\n"), None);
    }

    #[test]
    fn request_heads_are_title_cased() {
        let mut req = http::Request::get("/a?b=1")
            .header("host", "x")
            .header("x-forwarded-for", "1.2.3.4")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        req.headers
            .append("x-forwarded-for", "5.6.7.8".parse().unwrap());
        req.headers.append("x-drop", "1".parse().unwrap());
        let mut buf = Vec::new();
        write_request(&mut buf, &Edited::new(&req));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\nX-Drop: 1\r\n\r\n"
        );
        // The changes go out with the fields they leave.
        let xff = http::HeaderName::from_static("x-forwarded-for");
        let written = Bytes::from_static(b"X-Forwarded-For");
        let extra = http::HeaderName::from_static("x-extra");
        let extra_written = Bytes::from_static(b"x-EXTRA");
        let mut edited = Edited::new(&req);
        edited
            .set(&xff, &written, Cow::Owned("9.9.9.9".parse().unwrap()))
            .unwrap();
        edited.remove(&http::HeaderName::from_static("x-drop"));
        edited
            .set(&extra, &extra_written, Cow::Owned("a".parse().unwrap()))
            .unwrap();
        edited
            .set(&extra, &extra_written, Cow::Owned("b".parse().unwrap()))
            .unwrap();
        edited.set_uri(http::Uri::from_static("/c"));
        let mut buf = Vec::new();
        write_request(&mut buf, &edited);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "GET /c HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 9.9.9.9\r\nx-EXTRA: b\r\n\r\n"
        );
    }

    #[test]
    fn bodies_are_delimited_as_rfc_9112_says() {
        let head = |text: &str| {
            let mut head = ResponseHead::default();
            head.parse(Bytes::copy_from_slice(text.as_bytes())).unwrap();
            head
        };
        let get = |text: &str| framing(&head(text), false);
        assert_eq!(
            get("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            get("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Framing::Done
        );
        assert_eq!(
            get("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n"),
            Framing::ChunkSize
        );
        assert_eq!(get("HTTP/1.1 200 OK\r\n\r\n"), Framing::UntilClose);
        assert_eq!(
            get("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
            Framing::Done
        );
        let ok = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(framing(&ok, true), Framing::Done);
    }

    /// A chunked body split at every byte boundary reads back whole, and its end is seen.
    #[tokio::test]
    async fn chunked_bodies_read_whole_in_any_split() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: t\r\n\r\n";
        for split in [1, 2, 3, 7, wire.len()] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).await.unwrap();
                for piece in wire.chunks(split) {
                    s.write_all(piece).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
                // Keep the connection open: the body must end by its framing.
                let _ = s.read(&mut req).await;
            });
            let mut conn = BackendConn::new(TcpStream::connect(addr).await.unwrap());
            conn.exchange(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false)
                .await
                .unwrap();
            assert_eq!(conn.head().status, 200);
            let mut body = Vec::new();
            while !conn.body_done() {
                match conn.next_data().await.unwrap() {
                    Some(data) => body.extend_from_slice(&data),
                    None => break,
                }
            }
            assert_eq!(body, b"hello!", "split {split}");
            assert!(conn.reusable(), "split {split}");
            drop(conn);
            server.await.unwrap();
        }
    }
}
