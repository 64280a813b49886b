//! Property test of main.yaml's numeric keys: for random values, the check `aralez -t` runs
//! accepts a file exactly when start-up can build the server's settings from it, nothing
//! panics, and every accepted duration can be added to the clock (the overflow that cut
//! every request when a timeout was near `u64::MAX`).

use std::time::Instant;

use aralez::check::check_main;
use aralez::config::MainConfig;
use aralez::server::{settings, ProcessFlags};
use proptest::prelude::*;

const INTEGER_KEYS: &[&str] = &[
    "threads",
    "upstream_keepalive_pool_size",
    "hc_interval",
    "hc_fall",
    "hc_rise",
    "client_read_timeout",
    "upstream_read_timeout",
    "max_body_size",
    "websocket_idle_timeout",
    "shutdown_timeout",
    "header_timeout",
    "keepalive_timeout",
];

/// Integers as YAML text: small, around the bounds (a day, a week), huge, negative.
fn integer() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..4).prop_map(|n| n.to_string()),
        (1u64..200_000).prop_map(|n| n.to_string()),
        (86_398u64..86_403).prop_map(|n| n.to_string()),
        (604_798u64..604_803).prop_map(|n| n.to_string()),
        (1020u64..1030).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("-1".to_string()),
    ]
}

/// Seconds as YAML text, fractional ones and YAML's special floats included.
fn float() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| format!("{f:?}")),
        (0.0f64..90_000.0).prop_map(|f| format!("{f:?}")),
        (0u64..100).prop_map(|n| n.to_string()),
        Just(".nan".to_string()),
        Just(".inf".to_string()),
        Just("-.inf".to_string()),
        Just("1e300".to_string()),
        Just("86400.0".to_string()),
        Just("86400.001".to_string()),
    ]
}

/// A main.yaml setting some of the numeric keys (others keep their defaults).
fn document() -> impl Strategy<Value = String> {
    let integers = proptest::collection::vec(proptest::option::weighted(0.4, integer()), 12);
    (integers, proptest::option::of(float())).prop_map(|(values, connect)| {
        let mut text = String::from("upstreams_conf: /nonexistent/upstreams.yaml\n");
        for (key, value) in INTEGER_KEYS.iter().zip(values) {
            if let Some(v) = value {
                text.push_str(&format!("{key}: {v}\n"));
            }
        }
        if let Some(v) = connect {
            text.push_str(&format!("connect_timeout: {v}\n"));
        }
        text
    })
}

proptest! {
    // A fixed seed: the same 600 documents on every run.
    #![proptest_config(ProptestConfig {
        cases: 600,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0c0f),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn check_accepts_exactly_what_start_up_accepts(text in document()) {
        // Start-up reads main.yaml with the check `aralez -t` runs (`MainConfig::load`), so
        // both refuse the same files; what is left to prove is that start-up then builds
        // its settings from every file the check accepts.
        let checked = check_main(&text, "main.yaml");
        let started = checked.as_ref().ok().map(|c| settings(c, ProcessFlags::default()));
        prop_assert!(
            checked.is_err() || matches!(started, Some(Ok(_))),
            "\n{}\naccepted by the check, refused at start: {:?}",
            text,
            started.as_ref().map(|r| r.as_ref().err().map(ToString::to_string))
        );
        // Values that never went through the check (serde alone) may be refused by the
        // settings, but never make them panic.
        if let Ok(raw) = serde_yaml::from_str::<MainConfig>(&text) {
            let _ = settings(&raw, ProcessFlags::default());
        }
        if let Some(Ok((_, r))) = started {
            let now = Instant::now();
            for d in [
                r.connect_timeout,
                r.client_read_timeout,
                r.upstream_read_timeout,
                r.header_timeout,
                r.shutdown_timeout,
                r.hc_interval,
                r.keepalive_timeout,
                r.websocket_idle_timeout,
            ] {
                let far = d.checked_mul(1000).and_then(|d| now.checked_add(d));
                prop_assert!(far.is_some(), "{:?} overflows the clock", d);
            }
        }
    }
}

#[test]
fn huge_timeouts_are_refused_with_their_place() {
    let err = check_main(
        "keepalive_timeout: 18446744073709551615\nconnect_timeout: 1e300\nthreads: 4\n",
        "main.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("main.yaml:1:20: keepalive_timeout: 18446744073709551615 is out of range: from 1 to 604800 seconds"),
        "{err}"
    );
    assert!(err.contains("main.yaml:2:18: connect_timeout: "), "{err}");
}
