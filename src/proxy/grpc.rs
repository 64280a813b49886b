//! gRPC-specific answers: a gRPC client understands errors only as `grpc-status`.

use http::header::CONTENT_TYPE;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;

/// Whether the request is a gRPC call (`content-type: application/grpc[+proto|...]`).
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// A Trailers-Only response with status 14 (UNAVAILABLE): no backend could take the call.
pub async fn respond_unavailable(session: &mut Session) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header(CONTENT_TYPE, "application/grpc")?;
    resp.insert_header("grpc-status", "14")?;
    resp.insert_header("grpc-message", "no backend available")?;
    super::local::write_head_only(session, resp).await
}
