//! Responses the proxy writes itself: 404 for unknown routes, HTTPS redirects, error pages.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::Result;

use crate::config::upstreams::HeaderPair;

/// The header of a short plain-text answer, with the `extra` fields.
pub fn text_header(
    status: u16,
    body: &'static str,
    extra: &[&[HeaderPair]],
) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    for headers in extra {
        add_headers(&mut resp, headers)?;
    }
    Ok(resp)
}

/// The header of a `301` to `location`, empty, with the `extra` fields.
pub fn redirect_header(location: &str, extra: &[HeaderPair]) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(301, Some(3 + extra.len()))?;
    resp.insert_header(LOCATION, location)?;
    resp.insert_header(CONTENT_LENGTH, 0)?;
    add_headers(&mut resp, extra)?;
    Ok(resp)
}

/// Writes a short plain-text response through Pingora's session; the connection stays
/// reusable.
pub async fn respond_text(
    session: &mut Session,
    status: u16,
    body: &'static str,
    extra: &[&[HeaderPair]],
) -> Result<()> {
    let resp = text_header(status, body, extra)?;
    write_answer(session, resp, body).await
}

/// Writes a local answer's header and `body` (none for a HEAD request) through Pingora's
/// session.
pub async fn write_answer(
    session: &mut Session,
    resp: ResponseHeader,
    body: &'static str,
) -> Result<()> {
    if body.is_empty() || session.req_header().method == http::Method::HEAD {
        return write_head_only(session, resp).await;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
        .await
}

/// Appends a local answer (`resp` and `body`) to `out` as Pingora's HTTP/1 session writes it:
/// for the answers written before Pingora has a session, or without one (the fast lane).
pub fn answer_bytes(
    out: &mut bytes::BytesMut,
    mut resp: ResponseHeader,
    body: &'static str,
    keep_alive: bool,
    head_request: bool,
) -> Result<()> {
    crate::http1::server::write_head(out, &mut resp, keep_alive)?;
    if !head_request {
        out.extend_from_slice(body.as_bytes());
    }
    Ok(())
}

/// Appends a short plain-text response that closes the connection to `out` ([`answer_bytes`]).
pub fn plain_response(out: &mut bytes::BytesMut, status: u16, body: &'static str) -> Result<()> {
    answer_bytes(out, text_header(status, body, &[])?, body, false, false)
}

/// `WWW-Authenticate` sent with 401s of basic-auth routes.
pub(crate) static BASIC_CHALLENGE: std::sync::LazyLock<HeaderPair> =
    std::sync::LazyLock::new(|| HeaderPair {
        name: http::header::WWW_AUTHENTICATE,
        written: Bytes::from_static(b"WWW-Authenticate"),
        value: http::HeaderValue::from_static("Basic realm=\"aralez\""),
    });

/// Writes a response that has no body and ends it. Pingora's session ignores the
/// end-of-stream flag of a header write: on HTTP/2 the stream stayed open, and was reset
/// (`CANCEL`) when the request ended, which gRPC clients read as a cancelled call.
pub async fn write_head_only(session: &mut Session, resp: ResponseHeader) -> Result<()> {
    if let ServerSession::H2(h2) = session.downstream_session.as_mut() {
        // One HEADERS frame with END_STREAM (for gRPC, a Trailers-Only answer).
        return h2.write_response_header(Box::new(resp), true);
    }
    session.write_response_header(Box::new(resp), true).await?;
    session.write_response_body(None, true).await
}

/// Adds configured headers, replacing any of the same name.
pub fn add_headers(resp: &mut ResponseHeader, headers: &[HeaderPair]) -> Result<()> {
    for h in headers {
        resp.insert_header(h.written.clone(), h.value.clone())?;
    }
    Ok(())
}

/// `https://host[:port]/path?query`, the port left out when it is 443.
pub fn https_location(host: &str, tls_port: u16, path_and_query: &str) -> String {
    if tls_port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{tls_port}{path_and_query}")
    }
}

/// The body of an error the proxy answers itself, by status.
pub fn error_body(status: u16) -> &'static str {
    match status {
        502 => "502 Bad Gateway: no backend of this route could be reached\n",
        503 => "503 Service Unavailable\n",
        504 => "504 Gateway Timeout: the backend did not answer in time\n",
        400 => "400 Bad Request\n",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_locations() {
        assert_eq!(
            https_location("a.com", 443, "/x?y=1"),
            "https://a.com/x?y=1"
        );
        assert_eq!(https_location("a.com", 8443, "/"), "https://a.com:8443/");
    }
}
