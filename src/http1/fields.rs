//! Which fields belong to a connection rather than to a message (RFC 9110 §7.6.1), and the
//! request parts the proxy builds from a head.

use http::header::{self, HeaderName};

/// The hop-by-hop fields (RFC 9110 §7.6.1), not forwarded. Parsed once: removing a header by
/// `&str` parses the name on every request.
pub const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Fields a client's `Connection` header may not remove: the proxy needs them.
pub const PROTECTED: [HeaderName; 4] = [
    header::HOST,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
];

/// The backend connection's own fields, not relayed.
pub const BACKEND_CONNECTION: [HeaderName; 3] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// HTTP/1.1 request parts of `method`, `uri` and `headers`.
pub fn http11_parts(
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
) -> http::request::Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    parts.headers = headers;
    parts
}
