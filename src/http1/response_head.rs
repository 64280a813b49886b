//! A backend's response head as the direct path's client (`proxy::backend_h1`) reads it: the status,
//! the fields where they lie in the head's bytes, and what the body's framing and the
//! connection's reuse depend on, all found in one pass. The fast lane writes the fields out
//! as they came; Pingora's path builds its header map from them (`direct::response_header`).
//! Building an `http` header map for every response (hashing, inserting, dropping each field)
//! cost about a tenth of a proxied request's instructions.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Why a response head was refused: what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HeadError(pub &'static str);

/// Most response fields read.
const MAX_FIELDS: usize = 128;

/// Where a field's name and value lie in the head's bytes.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

/// How a response's body is delimited (RFC 9112 §6.3): decided once, by
/// [`ResponseHead::body`], for the backend's reader and for the writer towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: the answer to a HEAD, a 204 or a 304.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `chunked`, the last transfer coding.
    Chunked,
    /// Neither (or another last coding): the body ends when the connection closes.
    UntilClose,
}

/// One response head; reused from one response to the next on a connection.
#[derive(Debug, Default)]
pub struct ResponseHead {
    pub status: http::StatusCode,
    /// The backend spoke HTTP/1.0.
    pub http10: bool,
    raw: Bytes,
    fields: Vec<Field>,
    /// A `Transfer-Encoding` field is there.
    pub transfer_encoding: bool,
    /// `chunked` is the last transfer coding (RFC 9112 §6.3).
    pub chunked: bool,
    /// The `Content-Length` (every one of the same value).
    pub length: Option<u64>,
    /// The `Connection` field names `close` (or cannot be read).
    pub close: bool,
    /// The `Connection` field names `keep-alive`.
    pub keep_alive: bool,
    /// Both `Content-Length` and `Transfer-Encoding` came: the body is framed by the latter
    /// (RFC 9112 §6.3), the length is not relayed, and the connection is not reused (the
    /// backend may have meant the other framing).
    pub ambiguous: bool,
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), around them optional white space.
fn decimal(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

impl ResponseHead {
    /// Reads `raw` (a whole head, ending with its empty line) into this one.
    pub fn parse(&mut self, raw: Bytes) -> Result<(), HeadError> {
        // Uninitialised: filling 128 empty slots per response cost more than parsing it.
        let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_FIELDS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, &raw, &mut slots);
        match parsed {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HeadError("incomplete head")),
            Err(_) => return Err(HeadError("malformed response head")),
        }
        self.status = resp
            .code
            .and_then(|c| http::StatusCode::from_u16(c).ok())
            .ok_or(HeadError("bad status code"))?;
        self.http10 = resp.version == Some(0);
        self.fields.clear();
        self.transfer_encoding = false;
        self.chunked = false;
        self.length = None;
        self.close = false;
        self.keep_alive = false;
        self.ambiguous = false;
        // No body, so no length to relay (RFC 9110 §8.6).
        let bodyless =
            self.status.is_informational() || self.status == http::StatusCode::NO_CONTENT;
        let base = raw.as_ptr() as usize;
        let span = |part: &[u8]| {
            let start = part.as_ptr() as usize - base;
            // A head is at most `backend_h1::MAX_HEAD` long: offsets fit.
            (start as u32, (start + part.len()) as u32)
        };
        for field in resp.headers.iter() {
            let (name, value) = (field.name, field.value);
            if name.eq_ignore_ascii_case("content-length") {
                let n = decimal(value).ok_or(HeadError("bad Content-Length"))?;
                match self.length {
                    Some(l) if l != n => return Err(HeadError("conflicting Content-Length")),
                    // The same length again is relayed once.
                    Some(_) => continue,
                    None => self.length = Some(n),
                }
                if bodyless {
                    continue;
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                self.transfer_encoding = true;
                // The last field's last coding is the last one.
                self.chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                // A field that is not text cannot be read: the connection is not reused.
                self.close |= !value.is_ascii();
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    self.close |= token.eq_ignore_ascii_case(b"close");
                    self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            self.fields.push(Field {
                name: span(name.as_bytes()),
                value: span(value),
            });
        }
        if self.transfer_encoding && self.length.is_some() {
            self.ambiguous = true;
            self.fields.retain(|f| {
                !raw[f.name.0 as usize..f.name.1 as usize].eq_ignore_ascii_case(b"content-length")
            });
        }
        self.raw = raw;
        Ok(())
    }

    /// How the body of this response is delimited; `head_request`: it answers a HEAD.
    pub fn body(&self, head_request: bool) -> BodyFraming {
        if head_request
            || self.status == http::StatusCode::NO_CONTENT
            || self.status == http::StatusCode::NOT_MODIFIED
        {
            return BodyFraming::None;
        }
        if self.transfer_encoding {
            return if self.chunked {
                BodyFraming::Chunked
            } else {
                BodyFraming::UntilClose
            };
        }
        match self.length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        }
    }

    /// Whether the backend keeps the connection open after this response (and its framing
    /// leaves no doubt where the next response starts).
    pub fn keeps_alive(&self) -> bool {
        !self.close && !self.ambiguous && (!self.http10 || self.keep_alive)
    }

    /// The fields as the backend wrote them: name and value.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields.iter().map(|f| {
            let name = &self.raw[f.name.0 as usize..f.name.1 as usize];
            let value = &self.raw[f.value.0 as usize..f.value.1 as usize];
            (name, value)
        })
    }

    /// The fields as an `http` header map (their values sharing the head's bytes), for the
    /// code that needs one.
    pub fn header_map(&self) -> Result<HeaderMap, HeadError> {
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        for f in &self.fields {
            let name = HeaderName::from_bytes(&self.raw[f.name.0 as usize..f.name.1 as usize])
                .map_err(|_| HeadError("bad field name"))?;
            let value = self.raw.slice(f.value.0 as usize..f.value.1 as usize);
            let value =
                HeaderValue::from_maybe_shared(value).map_err(|_| HeadError("bad field value"))?;
            headers.append(name, value);
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> ResponseHead {
        let mut head = ResponseHead::default();
        head.parse(Bytes::copy_from_slice(text.as_bytes())).unwrap();
        head
    }

    #[test]
    fn fields_framing_and_reuse_are_read_in_one_pass() {
        let h = head("HTTP/1.1 201 Created\r\nX-App: 1\r\nContent-Length: 5\r\nset-cookie: a\r\nSet-Cookie: b\r\n\r\n");
        assert_eq!(h.status, 201);
        assert_eq!(h.length, Some(5));
        assert!(!h.transfer_encoding && h.keeps_alive());
        let fields: Vec<_> = h.fields().collect();
        assert_eq!(fields[0], (&b"X-App"[..], &b"1"[..]));
        assert_eq!(fields.len(), 4);
        let map = h.header_map().unwrap();
        assert_eq!(map.get_all("set-cookie").iter().count(), 2);

        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(h.transfer_encoding && h.chunked);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert!(h.transfer_encoding && !h.chunked);
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keeps_alive());
        assert!(!head("HTTP/1.0 200 OK\r\n\r\n").keeps_alive());
        assert!(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n").keeps_alive());
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: x, CLOSE \r\n\r\n").keeps_alive());
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: été\r\n\r\n").keeps_alive());
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length:  18446744073709551615 \r\n\r\n").length,
            Some(u64::MAX)
        );

        let mut reused = head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n");
        reused
            .parse(Bytes::from_static(b"HTTP/1.1 204 No Content\r\n\r\n"))
            .unwrap();
        assert!(reused.keeps_alive() && reused.length.is_none());
        assert_eq!(reused.fields().count(), 0);
    }

    #[test]
    fn lengths_are_relayed_once_and_never_beside_a_transfer_encoding() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.length, Some(5));
        assert_eq!(h.fields().count(), 1);
        assert!(h.keeps_alive());
        let h = head("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX: 1\r\n\r\n");
        assert_eq!(h.fields().collect::<Vec<_>>(), [(&b"X"[..], &b"1"[..])]);
        for both in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
        ] {
            let h = head(both);
            assert!(h.ambiguous && !h.keeps_alive(), "{both}");
            assert!(
                h.fields()
                    .all(|(n, _)| !n.eq_ignore_ascii_case(b"content-length")),
                "{both}"
            );
        }
    }

    #[test]
    fn a_bad_length_or_status_is_refused() {
        let mut h = ResponseHead::default();
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
            "HTTP/1.1 099 Odd\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(
                h.parse(Bytes::from_static(bad.as_bytes())).is_err(),
                "{bad}"
            );
        }
    }
}
