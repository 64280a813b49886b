//! A raw HTTP/1.1 client over one TCP connection: what goes over the connection is exactly
//! what the test wrote, and every request of a test shares that connection (a pooling client
//! such as reqwest may open a second one whenever the first is not back in its pool yet).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Echo, Proxy};

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The header block as sent, names as written.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn echo(&self) -> Echo {
        Echo::parse(&String::from_utf8_lossy(&self.body))
    }
}

/// A client connection that reads responses one at a time, keeping what it read past one.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(proxy: &Proxy) -> Conn {
        Conn {
            stream: TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap(),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more; false at the end of the stream.
    pub async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("no answer within 10 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response; `head_request` when it answers a HEAD (no body).
    pub async fn response(&mut self, head_request: bool) -> Response {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            assert!(
                self.fill().await,
                "connection closed before a response head"
            );
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let status = head[9..12].parse().unwrap();
        let mut resp = Response {
            status,
            head,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return resp;
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().await, "connection closed within the body");
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await, "connection closed within a chunk size");
                };
                let size = usize::from_str_radix(
                    std::str::from_utf8(&self.buf[..line_end]).unwrap().trim(),
                    16,
                )
                .unwrap();
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await, "connection closed within a chunk");
                }
                resp.body.extend(self.buf.drain(..size));
                assert_eq!(self.buf.drain(..2).collect::<Vec<_>>(), b"\r\n");
                if size == 0 {
                    break;
                }
            }
        } else {
            while self.fill().await {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// Whether the proxy closes the connection (within 10 s) with nothing more to read.
    pub async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}
