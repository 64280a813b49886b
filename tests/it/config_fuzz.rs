//! Property tests of the routing document: random and mutated documents never panic the
//! parser, validator or compiler, and an invalid one never changes the live table.

use std::sync::Arc;

use aralez::config::{UpstreamsConfig, ValidationContext};
use aralez::routing::RouteStore;
use proptest::prelude::*;

const GOOD: &str = "provider: file\nheaders: [\"A:b\"]\nupstreams:\n  a.example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:8000\", \"[::1]:81\"]\n        headers: [\"X-A: 1\"]\n        authorization: {type: apikey, creds: k}\n      \"/api\":\n        strategy: failover\n        servers: [\"127.0.0.1:8001\"]\n";

/// Names never leave the machine: a resolver that knows nothing.
fn offline(_: &str, _: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, "offline"))
}

fn store() -> RouteStore {
    let s = RouteStore::new(ValidationContext::default(), Box::new(offline));
    s.apply(GOOD, "good").expect("the good document applies");
    s
}

/// A mutation of the good document: a byte replaced, a span deleted, or a span duplicated.
fn mutated() -> impl Strategy<Value = String> {
    let len = GOOD.len();
    (0..len, 0..len, any::<u8>(), 0..3u8).prop_map(move |(a, b, byte, kind)| {
        let (lo, hi) = (a.min(b), a.max(b));
        let mut bytes = GOOD.as_bytes().to_vec();
        match kind {
            0 => bytes[lo] = byte,
            1 => {
                bytes.drain(lo..hi);
            }
            _ => {
                let span = bytes[lo..hi].to_vec();
                bytes.splice(hi..hi, span);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

proptest! {
    // A fixed seed: the same documents on every run.
    #![proptest_config(ProptestConfig {
        cases: 400,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xf022_0001),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        let _ = UpstreamsConfig::parse(&text, "fuzz", ValidationContext::default());
    }

    #[test]
    fn mutations_never_panic_and_bad_ones_change_nothing(text in mutated()) {
        let s = store();
        let before = s.load();
        match s.apply(&text, "fuzz") {
            Ok(_) => {}
            Err(_) => prop_assert!(Arc::ptr_eq(&before, &s.load()), "an invalid document changed the table"),
        }
    }
}

mod jwt {
    use aralez::auth::jwt::{mint, JwtVerifier};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 300,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xf022_0002),
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_tokens_are_rejected(token in "[A-Za-z0-9_.-]{0,300}") {
            prop_assert!(!JwtVerifier::new("secret").verify(&token));
        }

        #[test]
        fn truncated_tokens_are_rejected(cut in 1usize..200) {
            let token = mint("secret", "me", 10).unwrap();
            let cut = cut.min(token.len() - 1);
            prop_assert!(!JwtVerifier::new("secret").verify(&token[..token.len() - cut]));
        }

        #[test]
        fn keys_one_byte_off_are_rejected(pos in 0usize..6, byte in any::<u8>()) {
            let mut key = b"secret".to_vec();
            prop_assume!(key[pos] != byte);
            key[pos] = byte;
            let other = String::from_utf8_lossy(&key).into_owned();
            prop_assume!(other != "secret");
            let token = mint(&other, "me", 10).unwrap();
            prop_assert!(!JwtVerifier::new("secret").verify(&token));
        }
    }
}
