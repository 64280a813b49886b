//! Sticky sessions: a cookie naming the backend that served the client.
//!
//! The id is a keyed hash of the backend's address: stable across reloads and across
//! instances that share the key (the master key), and it does not reveal the address.

use pingora::tls::hash::{hash, MessageDigest};

pub const COOKIE: &str = "aralez_sticky";

/// Key used when no master key is configured: ids are still stable, but guessable by someone
/// who knows this source. Set master_key to make them opaque.
const DEFAULT_KEY: &[u8] = b"aralez sticky sessions";

/// The cookie id of a backend address (16 hex characters).
pub fn backend_id(key: &[u8], addr: &std::net::SocketAddr) -> String {
    let key = if key.is_empty() { DEFAULT_KEY } else { key };
    let mut input = Vec::with_capacity(key.len() + 64);
    input.extend_from_slice(key);
    input.push(0);
    input.extend_from_slice(addr.to_string().as_bytes());
    match hash(MessageDigest::sha256(), &input) {
        Ok(d) => d.iter().take(8).map(|b| format!("{b:02x}")).collect(),
        // Without a digest no id can match; the route still balances normally.
        Err(_) => String::new(),
    }
}

/// The value of our cookie in a `Cookie` header, if present.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE).then(|| value.trim_matches('"'))
    })
}

/// The `Set-Cookie` value for a backend id.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_keyed_and_opaque() {
        let addr = "10.1.2.3:8080".parse().unwrap();
        let a = backend_id(b"k1", &addr);
        assert_eq!(a, backend_id(b"k1", &addr));
        assert_ne!(a, backend_id(b"k2", &addr));
        assert_ne!(a, backend_id(b"k1", &"10.1.2.3:8081".parse().unwrap()));
        assert_eq!(a.len(), 16);
        assert!(!a.contains("10"), "id must not show the address: {a}");
    }

    #[test]
    fn cookie_parsing() {
        assert_eq!(cookie_value("a=1; aralez_sticky=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("aralez_sticky=\"abc\""), Some("abc"));
        assert_eq!(cookie_value("x_aralez_sticky=abc"), None);
        assert_eq!(
            set_cookie("abc", true),
            "aralez_sticky=abc; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
