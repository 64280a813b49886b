//! JSON Web Tokens: HS256 only, `exp` required, `nbf` and `iat` honoured. Verified on routes,
//! minted by `POST /jwt`.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims Aralez mints.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub owner: String,
    pub iat: u64,
    pub exp: u64,
}

/// How far `nbf` and `iat` may lie in the future (clock skew between the minting host and
/// this one), as common JWT libraries allow. `exp` gets none: an expired token is refused.
pub const LEEWAY_SECS: u64 = 60;

/// Verifies tokens signed with one secret.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.leeway = 0;
        JwtVerifier {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Whether the token is HS256, correctly signed, not expired, already valid (`nbf`) and
    /// not issued in the future (`iat`). Any other `alg` (`none` included) fails.
    pub fn verify(&self, token: &str) -> bool {
        decode::<serde_json::Value>(token, &self.key, &self.validation)
            .is_ok_and(|data| in_effect(&data.claims, now()))
    }
}

/// Whether neither `nbf` nor `iat` is later than `now` plus the leeway. A claim that is
/// present but not a number fails (RFC 7519 §4.1.5: NumericDate).
fn in_effect(claims: &serde_json::Value, now: u64) -> bool {
    ["nbf", "iat"].iter().all(|name| match claims.get(name) {
        None => true,
        Some(v) => v
            .as_f64()
            .is_some_and(|t| t <= now.saturating_add(LEEWAY_SECS) as f64),
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token for `owner`, valid for `minutes`, signed with `secret`.
pub fn mint(
    secret: &str,
    owner: &str,
    minutes: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let iat = now();
    let claims = Claims {
        owner: owner.to_string(),
        iat,
        exp: iat + minutes * 60,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn minted_tokens_verify_with_the_same_secret_only() {
        let token = mint("k", "ci", 5).unwrap();
        assert!(JwtVerifier::new("k").verify(&token));
        assert!(!JwtVerifier::new("other").verify(&token));
    }

    #[test]
    fn tampering_alg_none_and_expiry_fail() {
        let v = JwtVerifier::new("k");
        let token = mint("k", "ci", 5).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(&serde_json::json!({"owner": "root", "iat": 1, "exp": now() + 600}));
        parts[1] = &forged;
        assert!(!v.verify(&parts.join(".")), "tampered payload");
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&serde_json::json!({"owner": "x", "exp": now() + 600}))
        );
        assert!(!v.verify(&none), "alg none");
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                owner: "x".into(),
                iat: 1,
                exp: now() - 1,
            },
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(!v.verify(&expired), "expired");
        let no_exp = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"owner": "x"}),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(!v.verify(&no_exp), "exp is required");
    }

    #[test]
    fn nbf_and_iat_in_the_future_fail_beyond_the_leeway() {
        let t = 1_000_000;
        let at = |name: &str, v: serde_json::Value| in_effect(&serde_json::json!({ name: v }), t);
        for name in ["nbf", "iat"] {
            assert!(at(name, (t - 5).into()), "{name} in the past");
            assert!(
                at(name, (t + LEEWAY_SECS).into()),
                "{name} within the leeway"
            );
            assert!(!at(name, (t + LEEWAY_SECS + 1).into()), "{name} too late");
            assert!(!at(name, "0".into()), "{name} not a number");
        }
        assert!(in_effect(&serde_json::json!({}), t));
    }
}
