//! Route authentication: Basic, API key and JWT, decided per route before any backend is
//! chosen. Credentials the proxy consumed are removed before the request goes upstream.

mod basic;
pub mod jwt;
pub mod secret;

use crate::config::upstreams::AuthConfig;
use crate::request::{Outgoing, RequestView};

pub use basic::{user_of as basic_user, BasicAuth};
pub use jwt::JwtVerifier;

/// The query parameter that may carry a JWT.
pub const TOKEN_PARAM: &str = "araleztoken";
const API_KEY_HEADER: &str = "x-api-key";
/// The same, parsed once: removing a header by `&str` parses the name on every request.
const API_KEY_NAME: http::HeaderName = http::HeaderName::from_static(API_KEY_HEADER);

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Missing,
    Invalid,
}

/// A route's compiled authentication.
pub enum RouteAuth {
    Basic(BasicAuth),
    ApiKey(Vec<String>),
    Jwt(Box<JwtVerifier>),
}

/// Shows the kind only: never the secrets.
impl std::fmt::Debug for RouteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RouteAuth({})", self.kind())
    }
}

impl RouteAuth {
    /// None for `type: none` (an open route).
    pub fn compile(config: &AuthConfig) -> Option<RouteAuth> {
        match config {
            AuthConfig::None => None,
            AuthConfig::Basic(entries) => Some(RouteAuth::Basic(BasicAuth::new(entries.clone()))),
            AuthConfig::ApiKey(keys) => Some(RouteAuth::ApiKey(keys.clone())),
            AuthConfig::Jwt(secret) => Some(RouteAuth::Jwt(Box::new(JwtVerifier::new(secret)))),
        }
    }

    /// `basic`, `apikey` or `jwt`, for status output.
    pub fn kind(&self) -> &'static str {
        match self {
            RouteAuth::Basic(_) => "basic",
            RouteAuth::ApiKey(_) => "apikey",
            RouteAuth::Jwt(_) => "jwt",
        }
    }

    /// `req` is the client's request (Pingora's `RequestHeader` derefs to `http` parts, which
    /// are a view; so is the fast lane's head).
    pub async fn check<R: RequestView + ?Sized>(&self, req: &R) -> Verdict {
        match self {
            RouteAuth::Basic(auth) => match header(req, "authorization") {
                None => Verdict::Missing,
                Some(h) => verdict(auth.verify(h).await),
            },
            RouteAuth::ApiKey(keys) => match header(req, API_KEY_HEADER) {
                None => Verdict::Missing,
                // Every key is compared, so timing does not tell which one is close.
                Some(given) => verdict(keys.iter().fold(false, |ok, k| {
                    ok | secret::equal(given.as_bytes(), k.as_bytes())
                })),
            },
            RouteAuth::Jwt(verifier) => match bearer_token(req).or_else(|| query_token(req)) {
                None => Verdict::Missing,
                Some(token) => verdict(verifier.verify(token)),
            },
        }
    }

    /// Removes the credentials this route consumed from the request sent upstream.
    pub fn strip<'a>(&self, upstream: &mut impl Outgoing<'a>) {
        match self {
            RouteAuth::Basic(_) => upstream.remove(&http::header::AUTHORIZATION),
            RouteAuth::ApiKey(_) => upstream.remove(&API_KEY_NAME),
            RouteAuth::Jwt(_) => {
                upstream.remove(&http::header::AUTHORIZATION);
                if let Some(uri) = without_query_param(upstream.uri(), TOKEN_PARAM) {
                    upstream.set_uri(uri);
                }
            }
        }
    }
}

fn verdict(ok: bool) -> Verdict {
    if ok {
        Verdict::Allowed
    } else {
        Verdict::Invalid
    }
}

fn header<'r, R: RequestView + ?Sized>(req: &'r R, name: &str) -> Option<&'r str> {
    req.first(name)
}

fn bearer_token<R: RequestView + ?Sized>(req: &R) -> Option<&str> {
    let value = header(req, "authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn query_token<R: RequestView + ?Sized>(req: &R) -> Option<&str> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == TOKEN_PARAM && !v.is_empty()).then_some(v)
    })
}

/// The URI without `name=...` in its query, or None when it has no such parameter. The other
/// parameters keep their exact bytes and order.
pub fn without_query_param(uri: &http::Uri, name: &str) -> Option<http::Uri> {
    let query = uri.query()?;
    let is_param = |pair: &&str| pair.split('=').next() == Some(name);
    if !query.split('&').any(|p| is_param(&p)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_param(p)).collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    http::Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::RequestHeader;

    #[test]
    fn token_parameter_is_removed_exactly() {
        let strip =
            |u: &str| without_query_param(&u.parse().unwrap(), TOKEN_PARAM).map(|u| u.to_string());
        assert_eq!(strip("/x?araleztoken=abc").as_deref(), Some("/x"));
        assert_eq!(
            strip("/x?a=1&araleztoken=abc&b=%20").as_deref(),
            Some("/x?a=1&b=%20")
        );
        assert_eq!(strip("/x?a=1"), None);
        assert_eq!(strip("/x"), None);
    }

    #[tokio::test]
    async fn api_keys_and_tokens_are_found_where_documented() {
        let auth = RouteAuth::ApiKey(vec!["k1".into(), "k2".into()]);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(auth.check(&*req).await, Verdict::Missing);
        req.insert_header("x-api-key", "k2").unwrap();
        assert_eq!(auth.check(&*req).await, Verdict::Allowed);
        req.insert_header("x-api-key", "k3").unwrap();
        assert_eq!(auth.check(&*req).await, Verdict::Invalid);

        let jwt = RouteAuth::Jwt(Box::new(JwtVerifier::new("s")));
        let token = jwt::mint("s", "me", 1).unwrap();
        let req = RequestHeader::build("GET", format!("/p?araleztoken={token}").as_bytes(), None)
            .unwrap();
        assert_eq!(jwt.check(&*req).await, Verdict::Allowed);
        let mut req = RequestHeader::build("GET", b"/p", None).unwrap();
        req.insert_header("authorization", format!("Bearer {token}"))
            .unwrap();
        assert_eq!(jwt.check(&*req).await, Verdict::Allowed);
        req.insert_header("authorization", "Bearer nope").unwrap();
        assert_eq!(jwt.check(&*req).await, Verdict::Invalid);
    }
}
