//! The one response editor: what the proxy changes in a backend's response before the client
//! gets it, decided here for every engine. The table's response headers replace any of the
//! same name, and a sticky cookie is added when the route pins clients and the client has
//! none for the backend that answered. Pingora's sessions apply it to their response header
//! (their writer adds `Date` and `Connection`); the fast lane writes it straight from the
//! backend's head (`http1::server::write_response_head`, which also sets those two).

use bytes::BytesMut;
use pingora::http::ResponseHeader;
use pingora::Result;

use super::{local, RequestCtx};
use crate::balance::sticky;
use crate::config::upstreams::HeaderPair;
use crate::http1::response_head::ResponseHead;
use crate::http1::server::write_response_head;

/// The edits of one response.
pub struct ResponseEdit<'c> {
    /// The table's response headers (CORS and the like), in place of any of the same name.
    added: &'c [HeaderPair],
    /// `Set-Cookie` pinning the client to the backend that answered.
    cookie: Option<String>,
}

impl<'c> ResponseEdit<'c> {
    /// The edits for the response to the request of `ctx` (its route, and the backend that
    /// answered).
    pub fn of(ctx: &'c RequestCtx) -> Self {
        ResponseEdit {
            added: ctx.response_headers.as_deref().unwrap_or_default(),
            cookie: sticky_cookie(ctx),
        }
    }

    /// Applies the edits to Pingora's response header.
    pub fn apply(&self, resp: &mut ResponseHeader) -> Result<()> {
        local::add_headers(resp, self.added)?;
        if let Some(cookie) = &self.cookie {
            resp.append_header(http::header::SET_COOKIE, cookie.as_str())?;
        }
        Ok(())
    }

    /// Writes the backend's head with the edits to `out`, as the lane sends it.
    pub fn write_h1(&self, out: &mut BytesMut, head: &ResponseHead, keep_alive: bool) {
        write_response_head(out, head, self.added, self.cookie.as_deref(), keep_alive);
    }
}

/// The sticky cookie for the backend that answered, when the route pins clients and the
/// client has none for that backend.
fn sticky_cookie(ctx: &RequestCtx) -> Option<String> {
    let (route, served) = (ctx.route.as_ref()?, ctx.backend?);
    (route.sticky && ctx.cookie_backend != Some(served))
        .then(|| sticky::set_cookie(&route.backends[served].sticky_id, ctx.tls))
}
