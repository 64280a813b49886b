//! The direct path: a request with no body from an HTTP/1.x client to a route whose backends
//! speak plain HTTP is forwarded on Aralez's own HTTP/1.1 client connections (`backend_h1`,
//! kept per backend and worker thread by `direct_pool`), from the fast lane (`lane`) or from
//! `request_filter`, which writes the answer itself.
//! Pingora's proxy path costs half the throughput on such requests (its two-halves proxy
//! loop, a task spawned per pooled connection it puts back, the request header cloned into
//! two maps; see docs/performance.md); the routing, auth, headers, balancing, retries,
//! health marking, error pages, metrics and access log are the same code on both paths.
//! Everything else (request bodies, which Pingora buffers for retries; WebSocket;
//! TLS backends; HTTP/2 clients and gRPC) takes Pingora's path.

use std::time::Duration;

use http::header::{self, HeaderName};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::direct_pool::Lease;
use crate::http1::fields::{http11_parts, BACKEND_CONNECTION, HOP_BY_HOP, PROTECTED};
use crate::http1::response_head::ResponseHead;
use crate::routing::Route;

/// Whether this request takes the direct path.
pub fn eligible(session: &Session, route: &Route, upgrade: bool) -> bool {
    if upgrade || session.as_http1().is_none() {
        return false;
    }
    let req = session.req_header();
    let headers = &req.headers;
    let bodyless = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    // Origin-form targets the URI holds exactly (absolute-form and raw non-UTF-8 paths keep
    // Pingora's handling), and a Host header to forward.
    let origin_form = req.raw_path().first() == Some(&b'/')
        && req
            .uri
            .path_and_query()
            .is_some_and(|pq| pq.as_str().as_bytes() == req.raw_path());
    bodyless
        && origin_form
        && headers.contains_key(header::HOST)
        && route.backends.iter().all(|b| !b.health.protocol().tls)
}

/// The client's request as the backend's request starts out: the same method, target and
/// fields, without what concerns only the client's connection (RFC 9110 §7.6.1): the standard
/// hop-by-hop fields and those the client's `Connection` header names (except the ones the
/// proxy must keep). Built field by field into a map sized for the headers still to come, as
/// Pingora's path removes the same before its `upstream_request_filter`.
pub fn upstream_parts(req: &RequestHeader) -> http::request::Parts {
    let named: Vec<HeaderName> = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !PROTECTED.contains(name))
        .collect();
    let mut headers = http::HeaderMap::with_capacity(req.headers.len() + ADDED);
    for (name, value) in req.headers.iter() {
        if !HOP_BY_HOP.contains(name) && !named.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    http11_parts(req.method.clone(), req.uri.clone(), headers)
}

/// Room for the fields the proxy adds (forwarding headers and a few of the route's).
const ADDED: usize = 6;

/// The backend's response header for the client, without the backend connection's own
/// fields (Pingora sets the client connection's). `Transfer-Encoding` stays: it frames the
/// body towards the client as it did from the backend. With `keep_case` (when configured
/// response headers will be added, to go out as written) it is built with Pingora's name-case
/// map; without, the backend's map is taken as it is, which writes the same names (standard
/// ones title-cased, others as the backend's head spelled them, lowercased) at a fraction of
/// the cost.
pub fn response_header(head: &ResponseHead, keep_case: bool) -> Result<ResponseHeader> {
    let headers = head.header_map().map_err(|e| {
        Error::because(ErrorType::InvalidHTTPHeader, "backend response header", e).into_up()
    })?;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = head.status;
    parts.headers = headers;
    if !keep_case {
        for name in &BACKEND_CONNECTION {
            parts.headers.remove(name);
        }
        return Ok(ResponseHeader::from(parts));
    }
    let mut resp = ResponseHeader::build(parts.status, Some(parts.headers.len() + 4))?;
    let mut name = None;
    for (key, value) in parts.headers {
        // `into_iter` names only the first value of each name.
        name = key.or(name);
        let Some(name) = &name else { continue };
        if !BACKEND_CONNECTION.contains(name) {
            resp.append_header(name.clone(), value)?;
        }
    }
    Ok(resp)
}

/// Streams the backend's response body to the client (`first`: its first piece, read already),
/// each read within `read_timeout`.
pub async fn relay_body(
    session: &mut Session,
    body: &mut Lease<'_>,
    read_timeout: Duration,
    mut first: Option<Option<bytes::Bytes>>,
) -> Result<()> {
    while let Some(data) = body.piece_after(&mut first, read_timeout).await? {
        // A body whose length the backend gave ends with its last piece: finish it in the
        // same call rather than with another round through Pingora's body writer.
        let end = body.body_done();
        session.write_response_body(Some(data), end).await?;
        if end {
            return Ok(());
        }
    }
    session.write_response_body(None, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        for (name, value) in [
            ("Host", "a.example"),
            ("Connection", "keep-alive, X-Secret, Host"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("X-Kept", "2"),
        ] {
            req.append_header(name, value).unwrap();
        }
        let parts = upstream_parts(&req);
        let mut left: Vec<&str> = parts.headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-kept"]);
    }

    #[test]
    fn the_request_keeps_the_target_in_origin_form() {
        let mut header = RequestHeader::build("GET", b"http://site.example/a/b?c=d", None).unwrap();
        header.insert_header("Host", "site.example").unwrap();
        let mut head = Vec::new();
        let parts = upstream_parts(&header);
        super::super::backend_h1::write_request(
            &mut head,
            &super::super::outgoing::Edited::new(&parts),
        );
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.starts_with("GET /a/b?c=d HTTP/1.1\r\nHost: site.example\r\n"),
            "{head}"
        );
    }

    #[test]
    fn the_backend_connection_fields_are_not_relayed() {
        let mut resp = ResponseHead::default();
        resp.parse(bytes::Bytes::from_static(
            b"HTTP/1.0 200 OK\r\nConnection: close\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-App: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        ))
        .unwrap();
        for keep_case in [false, true] {
            let header = response_header(&resp, keep_case).unwrap();
            assert!(header.headers.get("connection").is_none());
            assert!(header.headers.get("keep-alive").is_none());
            assert_eq!(header.headers["transfer-encoding"], "chunked");
            assert_eq!(header.headers["x-app"], "1");
            let cookies: Vec<_> = header.headers.get_all("set-cookie").iter().collect();
            assert_eq!(cookies, ["a=1", "b=2"]);
            // Both ways write the same names on the wire.
            let mut wire = Vec::new();
            header.header_to_h1_wire(&mut wire);
            let wire = String::from_utf8(wire).unwrap();
            assert!(wire.contains("Transfer-Encoding: chunked\r\n"), "{wire}");
            assert!(wire.contains("x-app: 1\r\n"), "{wire}");
            assert_eq!(header.version, http::Version::HTTP_11);
        }
    }
}
