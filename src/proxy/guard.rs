//! Requests refused before routing: too long, too many or too large headers, and framing that
//! a backend could read differently from us (request smuggling). Pingora rejects much of this
//! itself (bad bytes, folded lines, conflicting Content-Length values); these are the rest.

use pingora::http::RequestHeader;

pub use crate::http1::limits::{MAX_HEADERS, MAX_HEADER_BYTES, MAX_TARGET};

/// The status and body to refuse `req` with, or None when it may go on. `raw` is the
/// HTTP/1.x header block as received (None for HTTP/2).
pub fn refuse(req: &RequestHeader, raw: Option<&[u8]>) -> Option<(u16, &'static str)> {
    if let Some(raw) = raw {
        // RFC 9112 §3.2: an HTTP/1.1 request without Host, or any with two, is a 400.
        let hosts = req.headers.get_all(http::header::HOST).iter().count();
        if hosts > 1 {
            return Some((400, "400 Bad Request: more than one Host field\n"));
        }
        if hosts == 0 && req.version == http::Version::HTTP_11 {
            return Some((400, "400 Bad Request: no Host field\n"));
        }
        if let Some(refusal) = refuse_raw(
            raw,
            req.headers.contains_key(http::header::TRANSFER_ENCODING),
        ) {
            return Some(refusal);
        }
    }
    if req.raw_path().len() > MAX_TARGET {
        return Some((414, "414 URI Too Long\n"));
    }
    if req.headers.len() > MAX_HEADERS {
        return Some((
            431,
            "431 Request Header Fields Too Large: too many headers\n",
        ));
    }
    let bytes: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Some((431, "431 Request Header Fields Too Large\n"));
    }
    let has = |name: http::header::HeaderName| req.headers.contains_key(name);
    // Pingora already drops the Content-Length of a chunked HTTP/1.1 request; this catches
    // whatever still carries both.
    if has(http::header::CONTENT_LENGTH) && has(http::header::TRANSFER_ENCODING) {
        return Some((
            400,
            "400 Bad Request: Content-Length with Transfer-Encoding\n",
        ));
    }
    if has(http::header::TRANSFER_ENCODING) {
        // Only a final `chunked` frames a request body unambiguously.
        let last = req
            .headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .next_back();
        if last.as_deref() != Some("chunked") {
            return Some((400, "400 Bad Request: unsupported Transfer-Encoding\n"));
        }
    }
    None
}

/// What only the bytes on the wire show. httparse accepts a bare LF as a line end, and Pingora
/// removes the Content-Length of a request that also has Transfer-Encoding before our hooks
/// run; a front end and a backend that disagree on either are how requests get smuggled, so
/// both are refused (RFC 9112 §2.2 allows it, §6.1 calls it an attack indicator).
fn refuse_raw(raw: &[u8], has_te: bool) -> Option<(u16, &'static str)> {
    let bare_lf = memchr::memchr_iter(b'\n', raw).any(|i| i == 0 || raw[i - 1] != b'\r');
    if bare_lf {
        return Some((400, "400 Bad Request: line ends with LF without CR\n"));
    }
    if has_te {
        // A space before the colon is already a 400 from the parser.
        let has_cl = raw
            .split(|&b| b == b'\n')
            .skip(1)
            .any(|line| line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"content-length:"));
        if has_cl {
            return Some((
                400,
                "400 Bad Request: Content-Length with Transfer-Encoding\n",
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, String)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), v.as_str()).unwrap();
        }
        r
    }

    fn refuse_req(r: &RequestHeader) -> Option<(u16, &'static str)> {
        refuse(r, None)
    }

    #[test]
    fn bare_lf_and_hidden_content_length() {
        let ok = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(refuse_raw(ok, false), None);
        assert_eq!(
            refuse_raw(b"GET / HTTP/1.1\nHost: a\r\n\r\n", false).map(|r| r.0),
            Some(400)
        );
        assert_eq!(
            refuse_raw(b"GET / HTTP/1.1\r\nHost: a\r\n\n", false).map(|r| r.0),
            Some(400)
        );
        let both = b"POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(refuse_raw(both, true).map(|r| r.0), Some(400));
        assert_eq!(refuse_raw(both, false), None);
        let te_only = b"POST / HTTP/1.1\r\nHost: a\r\nX-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(refuse_raw(te_only, true), None);
    }

    #[test]
    fn limits_and_framing() {
        assert_eq!(refuse_req(&req("/", &[])), None);
        assert_eq!(
            refuse_req(&req(&format!("/{}", "a".repeat(9000)), &[])).map(|r| r.0),
            Some(414)
        );
        let many: Vec<(&str, String)> = (0..101).map(|_| ("x-h", "v".to_string())).collect();
        assert_eq!(refuse_req(&req("/", &many)).map(|r| r.0), Some(431));
        assert_eq!(
            refuse_req(&req("/", &[("x-big", "a".repeat(40_000))])).map(|r| r.0),
            Some(431)
        );
        let both = [
            ("content-length", "5".to_string()),
            ("transfer-encoding", "chunked".to_string()),
        ];
        assert_eq!(refuse_req(&req("/", &both)).map(|r| r.0), Some(400));
        assert_eq!(
            refuse_req(&req("/", &[("transfer-encoding", "gzip".to_string())])).map(|r| r.0),
            Some(400)
        );
        assert_eq!(
            refuse_req(&req(
                "/",
                &[("transfer-encoding", "gzip, chunked".to_string())]
            )),
            None
        );
    }
}
