//! A request as the admission step, auth and stickiness read it: its target and its fields by
//! name. Implemented by `http`'s request parts (Pingora's `RequestHeader` derefs to them) and
//! by the fast lane's head, which keeps its fields where they lie in the bytes received, so
//! that deciding about a request builds no header map.

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
