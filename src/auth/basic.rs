//! HTTP Basic authentication against plain or bcrypt (`htpasswd -B`) passwords.

use base64::Engine;
use dashmap::DashSet;

use super::secret;
use crate::config::upstreams::{BasicCredential, BasicSecret};

/// Verified bcrypt credentials are remembered (by digest) so that bcrypt's deliberate
/// slowness is paid once per client secret, not per request. Bounded.
const CACHE_LIMIT: usize = 10_000;

pub struct BasicAuth {
    entries: Vec<BasicCredential>,
    verified: DashSet<[u8; 32]>,
}

/// The user and password of an `Authorization: Basic` header value.
fn decode(header: &str) -> Option<(String, String)> {
    let (scheme, payload) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The user named by an `Authorization: Basic` header value, checked or not (for the access
/// log, as nginx's `$remote_user`).
pub fn user_of(header: &str) -> Option<String> {
    decode(header).map(|(user, _)| user)
}

fn digest(user: &str, pass: &str, hash: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(user.len() + pass.len() + hash.len() + 2);
    for part in [user, pass, hash] {
        input.extend_from_slice(part.as_bytes());
        input.push(0);
    }
    let mut out = [0u8; 32];
    if let Ok(d) = pingora::tls::hash::hash(pingora::tls::hash::MessageDigest::sha256(), &input) {
        out.copy_from_slice(&d);
    }
    out
}

impl BasicAuth {
    pub fn new(entries: Vec<BasicCredential>) -> Self {
        BasicAuth {
            entries,
            verified: DashSet::new(),
        }
    }

    /// Checks an `Authorization` header value. bcrypt checks run on the blocking pool so
    /// that they never stall a proxy thread.
    pub async fn verify(&self, header: &str) -> bool {
        let Some((user, pass)) = decode(header) else {
            return false;
        };
        let mut ok = false;
        for entry in &self.entries {
            let user_matches = secret::equal(user.as_bytes(), entry.user.as_bytes());
            match &entry.secret {
                BasicSecret::Plain(p) => {
                    ok |= user_matches & secret::equal(pass.as_bytes(), p.as_bytes())
                }
                BasicSecret::Bcrypt(hash) if user_matches => {
                    ok |= self.verify_bcrypt(&user, &pass, hash).await;
                }
                BasicSecret::Bcrypt(_) => {}
            }
        }
        ok
    }

    async fn verify_bcrypt(&self, user: &str, pass: &str, hash: &str) -> bool {
        let key = digest(user, pass, hash);
        if self.verified.contains(&key) {
            return true;
        }
        let (pass, hash) = (pass.to_string(), hash.to_string());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok {
            if self.verified.len() >= CACHE_LIMIT {
                self.verified.clear();
            }
            self.verified.insert(key);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::upstreams::parse_basic;

    fn header(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[tokio::test]
    async fn plain_and_bcrypt_entries() {
        let hash = bcrypt::hash("hunter2", 4).unwrap();
        let auth = BasicAuth::new(vec![
            parse_basic("alice:wonderland").unwrap(),
            parse_basic(&format!("bob:{hash}")).unwrap(),
        ]);
        assert!(auth.verify(&header("alice", "wonderland")).await);
        assert!(auth.verify(&header("bob", "hunter2")).await);
        assert!(auth.verify(&header("bob", "hunter2")).await, "cached");
        assert!(!auth.verify(&header("bob", "hunter3")).await);
        assert!(!auth.verify(&header("alice", "hunter2")).await);
        assert!(!auth.verify(&header("mallory", "wonderland")).await);
        assert!(!auth.verify("Bearer abc").await);
        assert!(!auth.verify("Basic !!!").await);
    }
}
