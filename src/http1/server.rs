//! The fast lane's HTTP/1.1 wire format (see `proxy::lane`): a request head read into `http`
//! request parts when it is of the plain kind the lane serves, and a response head and body
//! framing written back. A head of any other kind is `Unsupported` and goes, byte for byte,
//! to Pingora's HTTP/1 code, which handles every case and answers the malformed ones, so this
//! reader can refuse anything unusual instead of handling it.

use std::mem::MaybeUninit;
use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

use crate::config::upstreams::HeaderPair;
use crate::http1::fields::{BACKEND_CONNECTION, HOP_BY_HOP, PROTECTED};
use crate::http1::limits::{MAX_HEADERS, MAX_HEADER_BYTES, MAX_TARGET};
use crate::http1::response_head::{BodyFraming, ResponseHead};

/// Longest head the lane waits for; a longer one is Pingora's to refuse or serve.
const MAX_HEAD: usize = MAX_TARGET + MAX_HEADER_BYTES + 1024;

/// Room for the fields the proxy adds (forwarding headers and a few of the route's), when a
/// head is made into request parts.
const ADDED: usize = 6;

/// Where a field of a request head is in the head's bytes: its name's and its value's
/// start and end.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpan {
    name: (u32, u32),
    value: (u32, u32),
}

/// A request head the fast lane can serve: `GET`-like (no body), HTTP/1.1, origin-form. The
/// fields stay where they are in the bytes received, found by their spans (kept in a list
/// the connection reuses): building a header map for them cost more than the rest of the
/// read. [`Head::to_parts`] makes `http` request parts for what needs them (auth, sticky
/// cookies, the access log).
pub struct Head<'f> {
    pub method: http::Method,
    /// The target: path and query, sharing `raw`'s bytes.
    pub uri: http::Uri,
    /// The fields the backend may get: without the hop-by-hop ones (RFC 9110 §7.6.1) and
    /// those the `Connection` field names, in the order received.
    fields: &'f [FieldSpan],
    /// The value of the one `Host` field: text (visible ASCII).
    host: (u32, u32),
    /// The client asked to close the connection after this request.
    pub close: bool,
    /// The head as received: read again for a resend, or handed to Pingora.
    pub raw: Bytes,
}

impl Head<'_> {
    fn text(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.raw[start as usize..end as usize]
    }

    /// The `Host` field's value.
    pub fn host(&self) -> &str {
        std::str::from_utf8(self.text(self.host)).unwrap_or_default()
    }

    /// [`host`](Self::host) as a header value, sharing the head's bytes.
    pub fn host_value(&self) -> Option<HeaderValue> {
        let (start, end) = self.host;
        HeaderValue::from_maybe_shared(self.raw.slice(start as usize..end as usize)).ok()
    }

    /// The fields the backend may get (name as the client wrote it, value), in order.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .map(|f| (self.text(f.name), self.text(f.value)))
    }

    /// The request as `http` parts, its header map holding [`fields`](Self::fields).
    pub fn to_parts(&self) -> http::request::Parts {
        let mut headers = HeaderMap::with_capacity(self.fields.len() + ADDED);
        for f in self.fields {
            let (start, end) = f.value;
            // Both were checked when the head was read (httparse takes no others).
            let name = HeaderName::from_bytes(self.text(f.name));
            let value =
                HeaderValue::from_maybe_shared(self.raw.slice(start as usize..end as usize));
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        crate::http1::fields::http11_parts(self.method.clone(), self.uri.clone(), headers)
    }
}

impl crate::request::RequestView for Head<'_> {
    fn uri(&self) -> &http::Uri {
        &self.uri
    }

    fn first(&self, name: &str) -> Option<&str> {
        let (_, value) = self
            .fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))?;
        std::str::from_utf8(value).ok().filter(|v| v.is_ascii())
    }

    fn each<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        // Every field was checked to be visible ASCII or obs-text when the head was read;
        // values that are not UTF-8 text are left out, as `HeaderValue::to_str` leaves them.
        self.fields()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok().filter(|v| v.is_ascii()))
    }
}

/// What the bytes read so far hold.
// Moved once per request; boxing the head would cost an allocation per request instead.
#[allow(clippy::large_enum_variant)]
pub enum Read<'f> {
    /// Not a whole head yet.
    Partial,
    /// A head the lane serves, taken out of the buffer.
    Head(Head<'f>),
    /// Anything else; `taken` is what was taken out of the buffer (its front), for Pingora.
    Unsupported { taken: Bytes },
    /// Over a limit that no path serves: answered with this status and body, then the
    /// connection is closed (Pingora's reader would answer 400 before any hook ran).
    Refused(u16, &'static str),
}

/// The refusal of a request line longer than any path takes.
pub const URI_TOO_LONG: (u16, &str) = (414, "414 URI Too Long\n");
/// The refusal of a head with too many fields or too many bytes of them.
pub const FIELDS_TOO_LARGE: (u16, &str) = (431, "431 Request Header Fields Too Large\n");

/// Why a head that did not end within [`MAX_HEAD`] bytes is refused: its request line is
/// too long (no line end within the target's limit), or its fields are.
fn oversized(buf: &[u8]) -> Read<'static> {
    let line_end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
    let (status, body) = if line_end > MAX_TARGET + REQUEST_LINE_EXTRA {
        URI_TOO_LONG
    } else {
        FIELDS_TOO_LARGE
    };
    Read::Refused(status, body)
}

/// Room on a request line beside its target: method, spaces, version.
const REQUEST_LINE_EXTRA: usize = 32;

/// Where the empty line that ends a head starts in `bytes`, if it is there. The searcher is
/// built once: `memmem::find` builds one per call, which cost more than the search itself.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    static EMPTY_LINE: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    EMPTY_LINE.find(bytes)
}

/// Takes the next request head out of `buf` when it is complete; `fields` is the
/// connection's list for the spans of its fields.
pub fn read_head<'f>(buf: &mut BytesMut, fields: &'f mut Vec<FieldSpan>) -> Read<'f> {
    let Some(end) = head_end(buf) else {
        // A head ended by bare LFs is Pingora's (to refuse with 400: see `guard`).
        if memchr::memmem::find(buf, b"\n\n").is_some() {
            return Read::Unsupported {
                taken: Bytes::new(),
            };
        }
        return if buf.len() > MAX_HEAD {
            oversized(buf)
        } else {
            Read::Partial
        };
    };
    if end + 4 > MAX_HEAD {
        return oversized(&buf[..end]);
    }
    let raw = buf.split_to(end + 4).freeze();
    match parse_head(&raw, fields) {
        Some(head) => Read::Head(head),
        // More fields than any path takes (Pingora's reader stops at 256 with a 400).
        None if field_lines(&raw) > MAX_HEADERS => {
            Read::Refused(FIELDS_TOO_LARGE.0, FIELDS_TOO_LARGE.1)
        }
        None => Read::Unsupported { taken: raw },
    }
}

/// How many field lines a whole head has: its lines but the request line and the empty one.
fn field_lines(raw: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', raw).count().saturating_sub(2)
}

/// What a request field is to the lane.
enum Kind {
    Host,
    ContentLength,
    Connection,
    /// Hop-by-hop: not forwarded.
    HopByHop,
    /// Announces a body or an upgrade: the request is Pingora's.
    NotLane,
    Other,
}

/// The kind of the field named `name` (any case). Compared by length first: most names
/// are none of these, and matching them as `HeaderName`s parsed and hashed each one.
fn kind(name: &[u8]) -> Kind {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    match name.len() {
        4 if is("host") => Kind::Host,
        14 if is("content-length") => Kind::ContentLength,
        10 if is("connection") => Kind::Connection,
        17 if is("transfer-encoding") => Kind::NotLane,
        7 if is("upgrade") => Kind::NotLane,
        6 if is("expect") => Kind::NotLane,
        _ if HOP_BY_HOP
            .iter()
            .any(|h| h.as_str().len() == name.len() && is(h.as_str())) =>
        {
            Kind::HopByHop
        }
        _ => Kind::Other,
    }
}

/// Parses a whole head (`raw` ends with its empty line), or None when the lane leaves it to
/// Pingora: not HTTP/1.1, a body or an upgrade announced, `CONNECT`, not exactly one `Host`
/// (of visible ASCII), bare LFs, over the limits of `guard`, or anything httparse or the
/// `http` types refuse.
pub fn parse_head<'f>(raw: &Bytes, fields: &'f mut Vec<FieldSpan>) -> Option<Head<'f>> {
    // Uninitialised: filling 100 empty slots per request cost more than parsing it.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(raw, &mut slots) {
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
    // httparse's slices are into `raw`: their offsets are the spans.
    let base = raw.as_ptr() as usize;
    let span = |part: &[u8]| {
        let start = part.as_ptr() as usize - base;
        (start as u32, (start + part.len()) as u32)
    };
    fields.clear();
    let mut close = false;
    let mut host = None;
    let mut hosts = 0;
    let mut lengths = 0;
    let mut size = 0;
    let mut named: Vec<HeaderName> = Vec::new();
    for field in req.headers.iter() {
        size += field.name.len() + field.value.len() + 4;
        match kind(field.name.as_bytes()) {
            Kind::NotLane => return None,
            Kind::ContentLength => {
                lengths += 1;
                if field.value != b"0" || lengths > 1 {
                    return None;
                }
            }
            Kind::Host => {
                hosts += 1;
                // Text, as `HeaderValue::to_str` takes it; anything else is Pingora's.
                if !field.value.iter().all(|&b| (0x20..0x7f).contains(&b)) {
                    return None;
                }
                host = Some(span(field.value));
            }
            Kind::Connection => {
                for token in std::str::from_utf8(field.value)
                    .ok()?
                    .split(',')
                    .map(str::trim)
                {
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case("keep-alive") {
                        let named_field = HeaderName::from_bytes(token.as_bytes()).ok()?;
                        if !PROTECTED.contains(&named_field) {
                            named.push(named_field);
                        }
                    }
                }
                continue;
            }
            Kind::HopByHop => continue,
            Kind::Other => {}
        }
        fields.push(FieldSpan {
            name: span(field.name.as_bytes()),
            value: span(field.value),
        });
    }
    let host = host.filter(|_| hosts == 1 && size <= MAX_HEADER_BYTES)?;
    if !named.is_empty() {
        fields.retain(|f| {
            let name = &raw[f.name.0 as usize..f.name.1 as usize];
            !named
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
        });
    }
    Some(Head {
        method,
        uri: http::Uri::from(path),
        fields,
        host,
        close,
        raw: raw.clone(),
    })
}

/// How a response body goes to the client: as the backend delimited it ([`ResponseHead::body`]);
/// a chunked body is re-chunked from the backend's decoded one.
pub fn framing(request_method: &http::Method, resp: &ResponseHead) -> BodyFraming {
    resp.body(request_method == http::Method::HEAD)
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

    fn read<'f>(bytes: &[u8], fields: &'f mut Vec<FieldSpan>) -> (Read<'f>, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        (read_head(&mut buf, fields), buf)
    }

    #[test]
    fn a_plain_get_is_read_without_its_hop_by_hop_fields() {
        let mut fields = Vec::new();
        let (got, rest) = read(
            b"GET /a?b=1 HTTP/1.1\r\nHost: x.example\r\nConnection: keep-alive, X-Secret\r\n\
              X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Kept: 2\r\nx-kept: 3\r\n\r\nGET /next",
            &mut fields,
        );
        let Read::Head(head) = got else {
            panic!("not read")
        };
        assert_eq!(head.method, http::Method::GET);
        assert_eq!(head.uri, "/a?b=1");
        assert_eq!(head.host(), "x.example");
        let got: Vec<(&[u8], &[u8])> = head.fields().collect();
        let want: [(&[u8], &[u8]); 3] = [
            (b"Host", b"x.example"),
            (b"X-Kept", b"2"),
            (b"x-kept", b"3"),
        ];
        assert_eq!(got, want);
        let parts = head.to_parts();
        assert_eq!(parts.uri, "/a?b=1");
        let kept: Vec<&str> = parts
            .headers
            .get_all("x-kept")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(kept, ["2", "3"]);
        assert_eq!(parts.headers.len(), 3);
        assert!(!head.close);
        // A pipelined request stays in the buffer.
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn connection_close_is_seen_and_a_partial_head_waits() {
        let mut fields = Vec::new();
        let (got, _) = read(
            b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n",
            &mut fields,
        );
        assert!(matches!(got, Read::Head(h) if h.close));
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\nHost: a\r\n", &mut fields).0,
            Read::Partial
        ));
    }

    #[test]
    fn anything_unusual_is_left_to_pingora_with_its_bytes() {
        let mut fields = Vec::new();
        for head in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nEXPECT: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\n",
        ] {
            let (got, rest) = read(head, &mut fields);
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
        assert_eq!(framed("HTTP/1.1 200 OK\r\n\r\n"), BodyFraming::UntilClose);
        assert_eq!(
            framed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"),
            BodyFraming::Length(3)
        );
        let length = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(framing(&http::Method::HEAD, &length), BodyFraming::None);
        assert_eq!(
            framed(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            ),
            BodyFraming::Chunked
        );
        assert_eq!(
            framed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n"),
            BodyFraming::UntilClose
        );
        assert_eq!(
            framed("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"),
            BodyFraming::None
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
