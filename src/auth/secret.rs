//! Constant-time comparison of secrets.

use pingora::tls::hash::{hash, MessageDigest};
use subtle::ConstantTimeEq;

/// Whether `given` equals `expected`, in time that depends on neither. Both are hashed first
/// so that not even their lengths leak.
pub fn equal(given: &[u8], expected: &[u8]) -> bool {
    let digest = |b: &[u8]| hash(MessageDigest::sha256(), b).ok();
    match (digest(given), digest(expected)) {
        (Some(a), Some(b)) => bool::from(a.as_ref().ct_eq(b.as_ref())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares() {
        assert!(equal(b"abc", b"abc"));
        assert!(!equal(b"abc", b"abd"));
        assert!(!equal(b"abc", b"abcd"));
        assert!(!equal(b"", b"x"));
    }
}
