//! The request header a backend gets, as either path holds it while it is prepared: Pingora's
//! `RequestHeader` (its proxy path, which sends names as written) or the `http` request parts
//! the direct path writes with every name title-cased (`backend_h1`). The forwarding headers,
//! the credential stripping and the route's headers are written once, against this trait.

use bytes::Bytes;
use http::uri::Uri;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::Result;

pub trait Outgoing {
    fn headers(&self) -> &HeaderMap;
    fn uri(&self) -> &Uri;
    fn set_uri(&mut self, uri: Uri);
    /// Sets `name` to `value`, replacing every earlier value; `written` is the name as it
    /// goes on the wire where the header keeps case.
    fn set(&mut self, name: &HeaderName, written: Bytes, value: HeaderValue) -> Result<()>;
    fn remove(&mut self, name: &HeaderName);
}

impl Outgoing for RequestHeader {
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn uri(&self) -> &Uri {
        &self.uri
    }

    fn set_uri(&mut self, uri: Uri) {
        RequestHeader::set_uri(self, uri);
    }

    fn set(&mut self, _name: &HeaderName, written: Bytes, value: HeaderValue) -> Result<()> {
        self.insert_header(written, value)
    }

    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

impl Outgoing for http::request::Parts {
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn uri(&self) -> &Uri {
        &self.uri
    }

    fn set_uri(&mut self, uri: Uri) {
        self.uri = uri;
    }

    fn set(&mut self, name: &HeaderName, _written: Bytes, value: HeaderValue) -> Result<()> {
        self.headers.insert(name.clone(), value);
        Ok(())
    }

    fn remove(&mut self, name: &HeaderName) {
        self.headers.remove(name);
    }
}
