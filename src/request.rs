//! A request as the modules below the data plane see it, so that they need not import it:
//! [`RequestView`], the client's request as the admission step, auth and stickiness read it
//! (implemented by `http`'s request parts, which Pingora's `RequestHeader` derefs to, and by
//! the fast lane's head, which keeps its fields where they lie in the bytes received, so
//! that deciding about a request builds no header map); and [`Outgoing`], the request a
//! backend gets while it is prepared (implemented in `proxy::outgoing`).

use std::borrow::Cow;

use bytes::Bytes;
use http::uri::Uri;
use http::{HeaderName, HeaderValue};
use smallvec::SmallVec;

/// Read access to a request's target and fields.
pub trait RequestView {
    /// The target (path and query; for HTTP/2 also the authority).
    fn uri(&self) -> &http::Uri;

    /// The first value of the field `name` (lowercase), when it is text.
    fn first(&self, name: &str) -> Option<&str>;

    /// Every value of the field `name` (lowercase) that is text, in order.
    fn each<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's;
}

impl RequestView for http::request::Parts {
    fn uri(&self) -> &http::Uri {
        &self.uri
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn each<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
    }
}

impl RequestView for pingora::http::RequestHeader {
    fn uri(&self) -> &http::Uri {
        &self.uri
    }

    fn first(&self, name: &str) -> Option<&str> {
        (**self).first(name)
    }

    fn each<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        (**self).each(name)
    }
}

/// `'a`: how long what a field is set from (the route, the client, statics) lives; the
/// direct path's [`Edited`] keeps the borrows instead of copies.
pub trait Outgoing<'a> {
    /// The values of the client's fields named `name`, in order.
    fn values(&self, name: &HeaderName) -> SmallVec<[&[u8]; 2]>;
    fn uri(&self) -> &Uri;
    fn set_uri(&mut self, uri: Uri);
    /// Sets `name` to `value`, replacing every earlier value; `written` is the name as it
    /// goes on the wire where the header keeps case.
    fn set(
        &mut self,
        name: &'a HeaderName,
        written: &'a Bytes,
        value: Cow<'a, HeaderValue>,
    ) -> pingora::Result<()>;
    fn remove(&mut self, name: &HeaderName);
}
