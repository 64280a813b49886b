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

use crate::http1::server::Head;

pub use crate::request::Outgoing;

impl<'a> Outgoing<'a> for RequestHeader {
    fn values(&self, name: &HeaderName) -> SmallVec<[&[u8]; 2]> {
        values_in(&self.headers, name)
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

fn values_in<'m>(headers: &'m HeaderMap, name: &HeaderName) -> SmallVec<[&'m [u8]; 2]> {
    headers.get_all(name).iter().map(|v| v.as_bytes()).collect()
}

/// The direct path's request to a backend while it is prepared: the client's request as it
/// came (parts, or the fast lane's head) and the preparation's changes, kept apart, so that
/// no header map is rewritten (inserting into and removing from one cost more than writing
/// the head); `backend_h1::write_request` writes the two together. `values()` gives the
/// client's fields: the preparation reads a field (`X-Forwarded-For`) only before it sets
/// it. The changes borrow what they are set from: cloning and dropping them cost more than
/// writing.
pub struct Edited<'a> {
    base: Base<'a>,
    uri: Option<Uri>,
    /// Fields set (name, name as written, value), each in place of every value of its
    /// name, in order.
    set: SmallVec<[(&'a HeaderName, &'a Bytes, Cow<'a, HeaderValue>); 8]>,
    /// Names removed.
    removed: SmallVec<[HeaderName; 2]>,
}

/// The client's request under the changes.
#[derive(Clone, Copy)]
enum Base<'a> {
    /// Parts made from Pingora's request header, hop-by-hop fields left out.
    Parts(&'a http::request::Parts),
    /// A head the fast lane read.
    Lane(&'a Head<'a>),
}

impl<'a> Edited<'a> {
    pub fn new(base: &'a http::request::Parts) -> Self {
        Self::on(Base::Parts(base))
    }

    /// Changes to a request the fast lane read.
    pub fn of_lane(head: &'a Head<'a>) -> Self {
        Self::on(Base::Lane(head))
    }

    fn on(base: Base<'a>) -> Self {
        Edited {
            base,
            uri: None,
            set: SmallVec::new(),
            removed: SmallVec::new(),
        }
    }

    pub fn method(&self) -> &http::Method {
        match self.base {
            Base::Parts(parts) => &parts.method,
            Base::Lane(head) => &head.method,
        }
    }

    /// The client's fields the backend gets (name, in any case, and value): those neither
    /// set nor removed.
    pub fn kept(&self) -> impl Iterator<Item = (&[u8], &[u8])> + use<'_, 'a> {
        let (map, lane) = match self.base {
            Base::Parts(parts) => (Some(parts.headers.iter()), None),
            Base::Lane(head) => (None, Some(head.fields())),
        };
        map.into_iter()
            .flatten()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
            .chain(lane.into_iter().flatten())
            .filter(|(name, _)| {
                let edited = |n: &HeaderName| name.eq_ignore_ascii_case(n.as_str().as_bytes());
                !self.removed.iter().any(edited) && !self.set.iter().any(|(n, _, _)| edited(n))
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
    fn values(&self, name: &HeaderName) -> SmallVec<[&[u8]; 2]> {
        match self.base {
            Base::Parts(parts) => values_in(&parts.headers, name),
            Base::Lane(head) => head
                .fields()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_str().as_bytes()))
                .map(|(_, value)| value)
                .collect(),
        }
    }

    fn uri(&self) -> &Uri {
        let base = match self.base {
            Base::Parts(parts) => &parts.uri,
            Base::Lane(head) => &head.uri,
        };
        self.uri.as_ref().unwrap_or(base)
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
