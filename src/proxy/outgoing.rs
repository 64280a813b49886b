//! The request header a backend gets, as either path holds it while it is prepared: Pingora's
//! `RequestHeader` (its proxy path, which sends names as written) or the client's `http`
//! request parts with the changes beside them ([`Edited`]), which the direct path writes
//! (`backend_h1`): the client's names title-cased, the ones the proxy sets as written. The forwarding headers,
//! the credential stripping and the route's headers are written once, against this trait.

use std::borrow::Cow;

use bytes::Bytes;
use http::uri::Uri;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::Result;
use smallvec::SmallVec;

/// `'a`: how long what a field is set from (the route, the client, statics) lives; the
/// direct path's [`Edited`] keeps the borrows instead of copies.
pub trait Outgoing<'a> {
    fn headers(&self) -> &HeaderMap;
    fn uri(&self) -> &Uri;
    fn set_uri(&mut self, uri: Uri);
    /// Sets `name` to `value`, replacing every earlier value; `written` is the name as it
    /// goes on the wire where the header keeps case.
    fn set(
        &mut self,
        name: &'a HeaderName,
        written: &'a Bytes,
        value: Cow<'a, HeaderValue>,
    ) -> Result<()>;
    fn remove(&mut self, name: &HeaderName);
}

impl<'a> Outgoing<'a> for RequestHeader {
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn uri(&self) -> &Uri {
        &self.uri
    }

    fn set_uri(&mut self, uri: Uri) {
        RequestHeader::set_uri(self, uri);
    }

    fn set(
        &mut self,
        _name: &'a HeaderName,
        written: &'a Bytes,
        value: Cow<'a, HeaderValue>,
    ) -> Result<()> {
        self.insert_header(written.clone(), value.into_owned())
    }

    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

/// The direct path's request to a backend while it is prepared: the client's request parts
/// as they came and the preparation's changes, kept apart, so that no header map is
/// rewritten (inserting into and removing from one cost more than writing the head);
/// `backend_h1::write_request` writes the two together. `headers()` gives the client's
/// fields: the preparation reads a field (`X-Forwarded-For`) only before it sets it. The
/// changes borrow what they are set from: cloning and dropping them cost more than writing.
pub struct Edited<'a> {
    base: &'a http::request::Parts,
    uri: Option<Uri>,
    /// Fields set (name, name as written, value), each in place of every value of its
    /// name, in order.
    set: SmallVec<[(&'a HeaderName, &'a Bytes, Cow<'a, HeaderValue>); 8]>,
    /// Names removed.
    removed: SmallVec<[HeaderName; 2]>,
}

impl<'a> Edited<'a> {
    pub fn new(base: &'a http::request::Parts) -> Self {
        Edited {
            base,
            uri: None,
            set: SmallVec::new(),
            removed: SmallVec::new(),
        }
    }

    pub fn method(&self) -> &http::Method {
        &self.base.method
    }

    /// The client's fields the backend gets: those neither set nor removed.
    pub fn kept(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> + use<'_, 'a> {
        self.base.headers.iter().filter(|(name, _)| {
            !self.removed.contains(name) && !self.set.iter().any(|(n, _, _)| *n == *name)
        })
    }

    /// The fields the preparation set, in order: the name as written, and the value.
    pub fn added(&self) -> impl Iterator<Item = (&[u8], &HeaderValue)> + use<'_, 'a> {
        self.set
            .iter()
            .map(|(_, written, v)| (&written[..], v.as_ref()))
    }
}

impl<'a> Outgoing<'a> for Edited<'a> {
    fn headers(&self) -> &HeaderMap {
        &self.base.headers
    }

    fn uri(&self) -> &Uri {
        self.uri.as_ref().unwrap_or(&self.base.uri)
    }

    fn set_uri(&mut self, uri: Uri) {
        self.uri = Some(uri);
    }

    fn set(
        &mut self,
        name: &'a HeaderName,
        written: &'a Bytes,
        value: Cow<'a, HeaderValue>,
    ) -> Result<()> {
        match self.set.iter_mut().find(|(n, _, _)| *n == name) {
            Some(field) => field.2 = value,
            None => self.set.push((name, written, value)),
        }
        Ok(())
    }

    fn remove(&mut self, name: &HeaderName) {
        self.set.retain(|(n, _, _)| *n != name);
        if !self.removed.contains(name) {
            self.removed.push(name.clone());
        }
    }
}
