//! The numbers start-up takes from main.yaml, converted and bounded in one place: `-t`
//! (through validation) and `server::Aralez::build` both call [`MainConfig::runtime`], so a
//! value `-t` accepts is one start-up accepts.
//!
//! Durations have upper bounds: far larger values are typos or attempts to switch a limit
//! off, and near `u64::MAX` seconds they overflow `Instant` arithmetic (a panic per request).

use std::time::Duration;

use super::main_conf::MainConfig;

/// One day, in seconds: the bound of timeouts that a single request or probe waits for.
pub const DAY: u64 = 86_400;
/// One week, in seconds: the bound of idle times of long-lived connections.
pub const WEEK: u64 = 7 * DAY;
/// Most worker threads: each is a runtime with its own pools.
pub const MAX_THREADS: usize = 1024;

/// The bound of every duration key of main.yaml, in seconds (also the table in docs/configuration.md).
pub const DURATION_BOUNDS: &[(&str, u64)] = &[
    ("connect_timeout", DAY),
    ("client_read_timeout", DAY),
    ("upstream_read_timeout", DAY),
    ("header_timeout", DAY),
    ("shutdown_timeout", DAY),
    ("hc_interval", DAY),
    ("keepalive_timeout", WEEK),
    ("websocket_idle_timeout", WEEK),
];

/// The bound of a path's `read_timeout` in upstreams.yaml, in seconds.
pub const MAX_READ_TIMEOUT: u64 = DAY;

/// main.yaml's numbers as the server uses them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Runtime {
    pub threads: usize,
    pub connect_timeout: Duration,
    pub client_read_timeout: Duration,
    pub upstream_read_timeout: Duration,
    pub header_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub hc_interval: Duration,
    pub keepalive_timeout: Duration,
    pub websocket_idle_timeout: Duration,
}

/// A key of main.yaml and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct BadValue {
    pub key: &'static str,
    pub message: String,
}

fn bound(key: &str) -> u64 {
    DURATION_BOUNDS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(DAY, |(_, b)| *b)
}

/// Whole seconds from 1 to the key's bound.
fn seconds(key: &'static str, value: u64, bad: &mut Vec<BadValue>) -> Duration {
    let max = bound(key);
    if (1..=max).contains(&value) {
        return Duration::from_secs(value);
    }
    bad.push(BadValue {
        key,
        message: format!("{value} is out of range: from 1 to {max} seconds"),
    });
    Duration::ZERO
}

impl MainConfig {
    /// The checked numbers, or every key whose value is out of range.
    pub fn runtime(&self) -> Result<Runtime, Vec<BadValue>> {
        let mut bad = Vec::new();
        let threads = match self.threads {
            Some(n) if !(1..=MAX_THREADS).contains(&n) => {
                bad.push(BadValue {
                    key: "threads",
                    message: format!("{n} is out of range: from 1 to {MAX_THREADS}"),
                });
                1
            }
            Some(n) => n,
            // One per CPU, capped.
            None => self.worker_threads().min(MAX_THREADS),
        };
        let max = bound("connect_timeout");
        let connect_timeout = match self.connect_timeout {
            s if s > 0.0 && s <= max as f64 => Duration::from_secs_f64(s),
            s => {
                bad.push(BadValue {
                    key: "connect_timeout",
                    message: format!("{s} is out of range: above 0 and at most {max} seconds"),
                });
                Duration::ZERO
            }
        };
        let runtime = Runtime {
            threads,
            connect_timeout,
            client_read_timeout: seconds("client_read_timeout", self.client_read_timeout, &mut bad),
            upstream_read_timeout: seconds(
                "upstream_read_timeout",
                self.upstream_read_timeout,
                &mut bad,
            ),
            header_timeout: seconds("header_timeout", self.header_timeout, &mut bad),
            shutdown_timeout: seconds("shutdown_timeout", self.shutdown_timeout, &mut bad),
            hc_interval: seconds("hc_interval", self.hc_interval, &mut bad),
            keepalive_timeout: seconds("keepalive_timeout", self.keepalive_timeout, &mut bad),
            websocket_idle_timeout: seconds(
                "websocket_idle_timeout",
                self.websocket_idle_timeout,
                &mut bad,
            ),
        };
        if bad.is_empty() {
            Ok(runtime)
        } else {
            Err(bad)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_in_range() {
        let r = MainConfig::default().runtime().unwrap();
        assert_eq!(r.connect_timeout, Duration::from_secs(2));
        assert_eq!(r.keepalive_timeout, Duration::from_secs(60));
    }

    #[test]
    fn every_out_of_range_key_is_named() {
        let c = MainConfig {
            threads: Some(0),
            connect_timeout: f64::NAN,
            keepalive_timeout: u64::MAX,
            hc_interval: 0,
            websocket_idle_timeout: WEEK,
            ..MainConfig::default()
        };
        let keys: Vec<&str> = c.runtime().unwrap_err().iter().map(|b| b.key).collect();
        assert_eq!(
            keys,
            [
                "threads",
                "connect_timeout",
                "hc_interval",
                "keepalive_timeout"
            ]
        );
    }
}
