//! The fast lane's HTTP/1.1 wire format (see `proxy::lane`): a request head read into `http`
//! request parts when it is of the plain kind the lane serves, and a response head and body
//! framing written back. A head of any other kind is `Unsupported` and goes, byte for byte,
//! to Pingora's HTTP/1 code, which handles every case and answers the malformed ones, so this
//! reader can refuse anything unusual instead of handling it.

use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

use crate::config::upstreams::HeaderPair;
use crate::proxy::guard::{MAX_HEADERS, MAX_HEADER_BYTES, MAX_TARGET};
use crate::proxy::ResponseHead;
use crate::proxy::{BACKEND_CONNECTION, HOP_BY_HOP, PROTECTED};

/// Longest head the lane waits for; a longer one is Pingora's to refuse or serve.
const MAX_HEAD: usize = MAX_TARGET + MAX_HEADER_BYTES + 1024;

/// Room for the fields the proxy adds (forwarding headers and a few of the route's).
const ADDED: usize = 6;

/// A request head the fast lane can serve: `GET`-like (no body), HTTP/1.1, origin-form.
pub struct Head {
    /// Method, target, `HTTP/1.1`, and the fields without the hop-by-hop ones (RFC 9110
    /// §7.6.1), their values sharing `raw`'s bytes.
    pub parts: http::request::Parts,
    /// The client asked to close the connection after this request.
    pub close: bool,
    /// The head as received: read again for a resend, or handed to Pingora.
    pub raw: Bytes,
}

/// What the bytes read so far hold.
// Moved once per request; boxing the head would cost an allocation per request instead.
#[allow(clippy::large_enum_variant)]
pub enum Read {
    /// Not a whole head yet.
    Partial,
    /// A head the lane serves, taken out of the buffer.
    Head(Head),
    /// Anything else; `taken` is what was taken out of the buffer (its front), for Pingora.
    Unsupported { taken: Bytes },
}

/// Where the empty line that ends a head starts in `bytes`, if it is there. The searcher is
/// built once: `memmem::find` builds one per call, which cost more than the search itself.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    static EMPTY_LINE: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    EMPTY_LINE.find(bytes)
}

/// Takes the next request head out of `buf` when it is complete.
pub fn read_head(buf: &mut BytesMut) -> Read {
    let Some(end) = head_end(buf) else {
        // A head ended by bare LFs, or too long to wait for: Pingora's.
        let bare = memchr::memmem::find(buf, b"\n\n").is_some();
        return if bare || buf.len() > MAX_HEAD {
            Read::Unsupported {
                taken: Bytes::new(),
            }
        } else {
            Read::Partial
        };
    };
    let raw = buf.split_to(end + 4).freeze();
    match parse_head(&raw) {
        Some(head) => Read::Head(head),
        None => Read::Unsupported { taken: raw },
    }
}

/// Parses a whole head (`raw` ends with its empty line), or None when the lane leaves it to
/// Pingora: not HTTP/1.1, a body or an upgrade announced, `CONNECT`, not exactly one `Host`,
/// bare LFs, over the limits of `guard`, or anything httparse or the `http` types refuse.
pub fn parse_head(raw: &Bytes) -> Option<Head> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(n)) if n == raw.len() => {}
        _ => return None,
    }
    if req.version != Some(1) {
        return None;
    }
    let method = http::Method::from_bytes(req.method?.as_bytes()).ok()?;
    let target = req.path?;
    if method == http::Method::CONNECT || !target.starts_with('/') || target.len() > MAX_TARGET {
        return None;
    }
    // httparse takes a bare LF as a line end; a backend might not (see `guard`).
    if memchr::memchr_iter(b'\n', raw).any(|i| i == 0 || raw[i - 1] != b'\r') {
        return None;
    }
    let path = http::uri::PathAndQuery::from_maybe_shared(raw.slice_ref(target.as_bytes())).ok()?;
    // The URI must hold the target exactly (a fragment, say, would be cut off).
    if path.as_str() != target {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len() + ADDED);
    let mut close = false;
    let mut hosts = 0;
    let mut lengths = 0;
    let mut size = 0;
    let mut named: Vec<HeaderName> = Vec::new();
    for field in req.headers.iter() {
        size += field.name.len() + field.value.len() + 4;
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_maybe_shared(raw.slice_ref(field.value)).ok()?;
        if name == header::TRANSFER_ENCODING || name == header::UPGRADE || name == header::EXPECT {
            return None;
        } else if name == header::CONTENT_LENGTH {
            lengths += 1;
            if value.as_bytes() != b"0" || lengths > 1 {
                return None;
            }
        } else if name == header::HOST {
            hosts += 1;
        } else if name == header::CONNECTION {
            for token in value.to_str().ok()?.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if !token.is_empty() && !token.eq_ignore_ascii_case("keep-alive") {
                    let named_field = HeaderName::from_bytes(token.as_bytes()).ok()?;
                    if !PROTECTED.contains(&named_field) {
                        named.push(named_field);
                    }
                }
            }
        }
        if !HOP_BY_HOP.contains(&name) {
            headers.append(name, value);
        }
    }
    if hosts != 1 || size > MAX_HEADER_BYTES {
        return None;
    }
    for name in &named {
        headers.remove(name);
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = http::Uri::from(path);
    parts.version = http::Version::HTTP_11;
    parts.headers = headers;
    Some(Head {
        parts,
        close,
        raw: raw.clone(),
    })
}

/// How a response body goes to the client, decided from its header as Pingora does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, 204 or 304.
    Empty,
    /// `Content-Length` bytes.
    Length,
    /// `Transfer-Encoding: chunked`, re-chunked from the backend's decoded body.
    Chunked,
    /// Neither: the body ends when the connection closes.
    UntilClose,
}

pub fn framing(request_method: &http::Method, resp: &ResponseHead) -> Framing {
    let status = resp.status;
    if request_method == http::Method::HEAD
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
    {
        return Framing::Empty;
    }
    if resp.chunked {
        Framing::Chunked
    } else if resp.length.is_some() && !resp.transfer_encoding {
        Framing::Length
    } else {
        Framing::UntilClose
    }
}

/// Appends the status line and the fields of `resp` to `buf`, with `Date` and `Connection`
/// set as Pingora's HTTP/1 server sets them.
pub fn write_head(
    buf: &mut BytesMut,
    resp: &mut ResponseHeader,
    keep_alive: bool,
) -> pingora::Result<()> {
    resp.insert_header(
        header::DATE,
        pingora::protocols::http::date::get_cached_date(),
    )?;
    resp.insert_header(
        header::CONNECTION,
        if keep_alive { "keep-alive" } else { "close" },
    )?;
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(resp.status.as_str().as_bytes());
    buf.put_u8(b' ');
    if let Some(reason) = resp.get_reason_phrase() {
        buf.put_slice(reason.as_bytes());
    }
    buf.put_slice(b"\r\n");
    resp.header_to_h1_wire(buf);
    buf.put_slice(b"\r\n");
    Ok(())
}

/// Appends the head the client gets for a backend's response (`resp`), with the fields that
/// Pingora's path gives it (`direct::response_header`, `finish_response_header`,
/// [`write_head`]), written straight from the backend's head: the backend connection's own
/// fields and its `Date` left out (and its `Content-Length` when a `Transfer-Encoding`
/// frames the body, RFC 9112 §6.3), the configured response headers (`added`) in place of any
/// of the same name, the sticky `cookie`, then `Date` and `Connection`. Names go out as the
/// backend wrote them, as nginx relays them (Pingora's path writes most of them lowercase).
/// Building Pingora's response header on the way cost about a tenth of a proxied request's
/// instructions.
pub fn write_response_head(
    buf: &mut BytesMut,
    resp: &ResponseHead,
    added: &[HeaderPair],
    cookie: Option<&str>,
    keep_alive: bool,
) {
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(resp.status.as_str().as_bytes());
    buf.put_u8(b' ');
    if let Some(reason) = resp.status.canonical_reason() {
        buf.put_slice(reason.as_bytes());
    }
    buf.put_slice(b"\r\n");
    for (name, value) in resp.fields() {
        let ours = name.eq_ignore_ascii_case(b"date")
            || BACKEND_CONNECTION
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
            || (resp.transfer_encoding && name.eq_ignore_ascii_case(b"content-length"));
        let replaced = || {
            added
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h.name.as_str().as_bytes()))
        };
        if !ours && !replaced() {
            put_field(buf, name, value);
        }
    }
    for h in added {
        if h.name != header::DATE && h.name != header::CONNECTION {
            put_field(buf, &h.written, h.value.as_bytes());
        }
    }
    if let Some(cookie) = cookie {
        put_field(buf, b"Set-Cookie", cookie.as_bytes());
    }
    let date = pingora::protocols::http::date::get_cached_date();
    put_field(buf, b"Date", date.as_bytes());
    let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
    put_field(buf, b"Connection", connection);
    buf.put_slice(b"\r\n");
}

fn put_field(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

/// Appends one chunk of a chunked body.
pub fn put_chunk(buf: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        // An empty chunk would end the body.
        return;
    }
    let mut size = [0u8; 16];
    let mut at = size.len();
    let mut n = data.len();
    while n > 0 {
        at -= 1;
        size[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    buf.put_slice(&size[at..]);
    buf.put_slice(b"\r\n");
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
}

/// The end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> (Read, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        (read_head(&mut buf), buf)
    }

    #[test]
    fn a_plain_get_is_read_without_its_hop_by_hop_fields() {
        let (got, rest) = read(
            b"GET /a?b=1 HTTP/1.1\r\nHost: x.example\r\nConnection: keep-alive, X-Secret\r\n\
              X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Kept: 2\r\n\r\nGET /next",
        );
        let Read::Head(head) = got else {
            panic!("not read")
        };
        assert_eq!(head.parts.method, http::Method::GET);
        assert_eq!(head.parts.uri, "/a?b=1");
        let mut names: Vec<&str> = head.parts.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "x-kept"]);
        assert!(!head.close);
        // A pipelined request stays in the buffer.
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn connection_close_is_seen_and_a_partial_head_waits() {
        let (got, _) = read(b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n");
        assert!(matches!(got, Read::Head(h) if h.close));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\nHost: a\r\n").0,
            Read::Partial
        ));
    }

    #[test]
    fn anything_unusual_is_left_to_pingora_with_its_bytes() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\n",
        ] {
            let (got, rest) = read(head);
            let Read::Unsupported { taken } = got else {
                panic!("served: {}", String::from_utf8_lossy(head))
            };
            let mut all = taken.to_vec();
            all.extend_from_slice(&rest);
            assert_eq!(all, head, "bytes lost");
        }
    }

    #[test]
    fn responses_are_framed_as_pingora_frames_them() {
        let head = |text: &str| {
            let mut head = ResponseHead::default();
            head.parse(Bytes::copy_from_slice(text.as_bytes())).unwrap();
            head
        };
        let get = http::Method::GET;
        let framed = |text: &str| framing(&get, &head(text));
        assert_eq!(framed("HTTP/1.1 200 OK\r\n\r\n"), Framing::UntilClose);
        assert_eq!(
            framed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"),
            Framing::Length
        );
        let length = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(framing(&http::Method::HEAD, &length), Framing::Empty);
        assert_eq!(
            framed(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            ),
            Framing::Chunked
        );
        assert_eq!(
            framed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Framing::UntilClose
        );
        assert_eq!(
            framed("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"),
            Framing::Empty
        );
    }

    #[test]
    fn a_backend_response_head_goes_out_with_the_proxy_s_fields() {
        let mut resp = ResponseHead::default();
        let backend = "HTTP/1.0 503 Unavailable\r\nContent-Type: text/plain\r\nx-App: a\r\nX-Cors: backend\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
        resp.parse(Bytes::from_static(backend.as_bytes())).unwrap();
        let added = [HeaderPair {
            name: HeaderName::from_static("x-cors"),
            written: Bytes::from_static(b"X-CORS"),
            value: HeaderValue::from_static("proxy"),
        }];
        let mut buf = BytesMut::new();
        write_response_head(&mut buf, &resp, &added, Some("s=9"), true);
        let text = String::from_utf8(buf.to_vec()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 503 Service Unavailable");
        assert_eq!(
            &lines[1..8],
            [
                "Content-Type: text/plain",
                "x-App: a",
                "Transfer-Encoding: chunked",
                "set-cookie: a=1",
                "Set-Cookie: b=2",
                "X-CORS: proxy",
                "Set-Cookie: s=9",
            ]
        );
        assert!(lines[8].starts_with("Date: ") && !lines[8].contains("2001"));
        assert_eq!(&lines[9..], ["Connection: keep-alive", "", ""]);
    }

    #[test]
    fn heads_and_chunks_on_the_wire() {
        let mut resp = ResponseHeader::build(404, None).unwrap();
        resp.insert_header("content-length", "0").unwrap();
        let mut buf = BytesMut::new();
        write_head(&mut buf, &mut resp, false).unwrap();
        let text = String::from_utf8(buf.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.contains("Date: "), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");

        let mut buf = BytesMut::new();
        put_chunk(&mut buf, &[b'a'; 26]);
        put_chunk(&mut buf, b"");
        buf.put_slice(LAST_CHUNK);
        let mut expected = b"1a\r\n".to_vec();
        expected.extend_from_slice(&[b'a'; 26]);
        expected.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(&buf[..], &expected[..]);
    }
}
