//! Requests refused before routing: too long, too many or too large headers, and framing that
//! a backend could read differently from us (request smuggling). Pingora rejects much of this
//! itself (bad bytes, folded lines, conflicting Content-Length values); these are the rest.

use pingora::http::RequestHeader;

/// Longest request target (path and query).
pub const MAX_TARGET: usize = 8 * 1024;
/// Most header fields.
pub const MAX_HEADERS: usize = 100;
/// Largest total size of header names and values.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The status and body to refuse `req` with, or None when it may go on.
pub fn refuse(req: &RequestHeader) -> Option<(u16, &'static str)> {
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

    #[test]
    fn limits_and_framing() {
        assert_eq!(refuse(&req("/", &[])), None);
        assert_eq!(
            refuse(&req(&format!("/{}", "a".repeat(9000)), &[])).map(|r| r.0),
            Some(414)
        );
        let many: Vec<(&str, String)> = (0..101).map(|_| ("x-h", "v".to_string())).collect();
        assert_eq!(refuse(&req("/", &many)).map(|r| r.0), Some(431));
        assert_eq!(
            refuse(&req("/", &[("x-big", "a".repeat(40_000))])).map(|r| r.0),
            Some(431)
        );
        let both = [
            ("content-length", "5".to_string()),
            ("transfer-encoding", "chunked".to_string()),
        ];
        assert_eq!(refuse(&req("/", &both)).map(|r| r.0), Some(400));
        assert_eq!(
            refuse(&req("/", &[("transfer-encoding", "gzip".to_string())])).map(|r| r.0),
            Some(400)
        );
        assert_eq!(
            refuse(&req(
                "/",
                &[("transfer-encoding", "gzip, chunked".to_string())]
            )),
            None
        );
    }
}
