//! How a backend's response is framed towards an HTTP/1.x client on Pingora's sessions (the
//! direct path through `request_filter`, and Pingora's proxy path): one framing, never two.
//! Pingora's writer frames the body by `Transfer-Encoding: chunked`, else by
//! `Content-Length`, else until the connection closes, and keeps the connection alive even
//! then; the fast lane decides the same itself (`http1::server::framing`).

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::Result;

/// What the client asked that the framing depends on.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest {
    /// HTTP/1.0: no transfer codings (RFC 9112 §6.1); a chunked body goes de-chunked.
    pub http10: bool,
    /// A HEAD request: no body whatever the head says.
    pub head: bool,
}

/// Leaves `resp` with one unambiguous framing for the client: no `Content-Length` beside a
/// `Transfer-Encoding` (RFC 9112 §6.3) or on a 1xx/204, one `Content-Length` where the backend
/// repeated it, no transfer coding for an HTTP/1.0 client. True when the body then ends
/// with the connection, which must be closed after it.
pub fn settle(resp: &mut ResponseHeader, client: ClientRequest) -> Result<bool> {
    let status = resp.status;
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        resp.remove_header(&CONTENT_LENGTH);
        resp.remove_header(&TRANSFER_ENCODING);
        return Ok(false);
    }
    let codings: Vec<String> = resp
        .headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    let bodyless = client.head || status == StatusCode::NOT_MODIFIED;
    if !codings.is_empty() || resp.headers.contains_key(TRANSFER_ENCODING) {
        resp.remove_header(&CONTENT_LENGTH);
        let chunked = codings.last().is_some_and(|c| c == "chunked");
        if chunked && !client.http10 {
            return Ok(false);
        }
        // Not chunked last, or an HTTP/1.0 client: the body (de-chunked) ends with the
        // connection; an HTTP/1.0 client gets no transfer coding at all.
        resp.remove_header(&TRANSFER_ENCODING);
        let rest: Vec<&str> = codings
            .iter()
            .map(String::as_str)
            .filter(|c| *c != "chunked")
            .collect();
        if !rest.is_empty() && !client.http10 {
            resp.insert_header(TRANSFER_ENCODING, rest.join(", "))?;
        }
        return Ok(!bodyless);
    }
    let lengths = resp.headers.get_all(CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        // The backend's reader refused differing ones: these are the same.
        if let Some(first) = resp.headers.get(CONTENT_LENGTH).cloned() {
            resp.insert_header(CONTENT_LENGTH, first)?;
        }
    }
    Ok(lengths == 0 && !bodyless)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET11: ClientRequest = ClientRequest {
        http10: false,
        head: false,
    };
    const GET10: ClientRequest = ClientRequest {
        http10: true,
        head: false,
    };

    fn resp(status: u16, fields: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (n, v) in fields {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn values(r: &ResponseHeader, name: http::header::HeaderName) -> Vec<String> {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn one_framing_only() {
        let mut r = resp(
            200,
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
        );
        assert!(!settle(&mut r, GET11).unwrap());
        assert!(values(&r, CONTENT_LENGTH).is_empty());
        assert_eq!(values(&r, TRANSFER_ENCODING), ["chunked"]);

        let mut r = resp(
            200,
            &[("content-length", "5"), ("transfer-encoding", "gzip")],
        );
        assert!(settle(&mut r, GET11).unwrap(), "until close");
        assert!(values(&r, CONTENT_LENGTH).is_empty());
        assert_eq!(values(&r, TRANSFER_ENCODING), ["gzip"]);

        let mut r = resp(200, &[("content-length", "5"), ("content-length", "5")]);
        assert!(!settle(&mut r, GET11).unwrap());
        assert_eq!(values(&r, CONTENT_LENGTH), ["5"]);

        let mut r = resp(204, &[("content-length", "5")]);
        assert!(!settle(&mut r, GET11).unwrap());
        assert!(values(&r, CONTENT_LENGTH).is_empty());

        let mut r = resp(200, &[]);
        assert!(settle(&mut r, GET11).unwrap(), "no length: until close");
    }

    #[test]
    fn http10_clients_get_no_transfer_coding() {
        let mut r = resp(200, &[("transfer-encoding", "chunked")]);
        assert!(settle(&mut r, GET10).unwrap());
        assert!(values(&r, TRANSFER_ENCODING).is_empty());
        let mut r = resp(200, &[("content-length", "3")]);
        assert!(!settle(&mut r, GET10).unwrap());
    }
}
