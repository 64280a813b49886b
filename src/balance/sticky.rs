//! Sticky sessions: a cookie naming the backend that served the client.
//!
//! The id is a keyed hash of the backend's address: stable across reloads and across
//! instances that share the key (the master key), and it does not reveal the address. Without
//! a master key the key is random per process, so nobody can compute an id in advance.

use pingora::tls::hash::{hash, MessageDigest};

pub const COOKIE: &str = "aralez_sticky";

/// Length of a per-process random key.
const RANDOM_KEY_LEN: usize = 32;

/// A key nobody else knows, for a process without a master key.
pub fn random_key() -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut key = vec![0; RANDOM_KEY_LEN];
    openssl::rand::rand_bytes(&mut key)?;
    Ok(key)
}

/// The key of sticky ids: the master key when there is one, else a random one.
pub fn key_for(master_key: Option<&str>) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    match master_key {
        Some(k) => Ok(k.as_bytes().to_vec()),
        None => random_key(),
    }
}

/// The cookie id of a backend address (16 hex characters).
pub fn backend_id(key: &[u8], addr: &std::net::SocketAddr) -> String {
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
    fn keys_come_from_the_master_key_or_chance() {
        assert_eq!(key_for(Some("m")).unwrap(), b"m");
        let (r1, r2) = (key_for(None).unwrap(), key_for(None).unwrap());
        assert_eq!(r1.len(), RANDOM_KEY_LEN);
        assert_ne!(r1, r2);
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
