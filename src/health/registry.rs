//! Health state by backend address. It outlives routing-table swaps: a reload keeps what is
//! known about the backends that stay, and new backends start as up.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

/// Identifies a backend across routes and reloads. Whether it speaks TLS is detected, not
/// configured, so it is part of the backend's state rather than of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendKey {
    pub addr: SocketAddr,
}

/// What a backend speaks, as detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Protocol {
    pub tls: bool,
    /// HTTP/2: chosen by ALPN over TLS, or h2c with prior knowledge in plain.
    pub h2: bool,
}

const DETECTED: u8 = 1;
const TLS: u8 = 2;
const H2: u8 = 4;

/// What is known about one backend. Read on every request: atomics only.
#[derive(Debug)]
pub struct BackendHealth {
    up: AtomicBool,
    fails: AtomicU32,
    passes: AtomicU32,
    /// A probe is running; the next round skips this backend rather than pile up.
    probing: AtomicBool,
    /// `DETECTED | TLS | H2` bits.
    protocol: AtomicU8,
}

impl Default for BackendHealth {
    fn default() -> Self {
        BackendHealth {
            up: AtomicBool::new(true),
            fails: AtomicU32::new(0),
            passes: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            protocol: AtomicU8::new(0),
        }
    }
}

impl BackendHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records a probe result. Returns the new state when it changed: down after `fall`
    /// failures in a row, up after `rise` passes in a row.
    pub fn record(&self, ok: bool, fall: u32, rise: u32) -> Option<bool> {
        if ok {
            self.fails.store(0, Ordering::Relaxed);
            let passes = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
            (passes >= rise && !self.up.swap(true, Ordering::Relaxed)).then_some(true)
        } else {
            self.passes.store(0, Ordering::Relaxed);
            let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
            (fails >= fall && self.up.swap(false, Ordering::Relaxed)).then_some(false)
        }
    }

    /// A connection failed while proxying: out of rotation at once, until a probe passes.
    /// True when this changed the state.
    pub fn mark_down(&self) -> bool {
        self.passes.store(0, Ordering::Relaxed);
        self.up.swap(false, Ordering::Relaxed)
    }

    /// Claims the right to probe; false when a probe is already running.
    pub fn start_probe(&self) -> bool {
        !self.probing.swap(true, Ordering::AcqRel)
    }

    pub fn end_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// The detected protocol (plain HTTP/1.1 until detection succeeds).
    pub fn protocol(&self) -> Protocol {
        let bits = self.protocol.load(Ordering::Relaxed);
        Protocol {
            tls: bits & TLS != 0,
            h2: bits & H2 != 0,
        }
    }

    /// Whether detection has succeeded at least once.
    pub fn detected(&self) -> bool {
        self.protocol.load(Ordering::Relaxed) & DETECTED != 0
    }

    pub fn set_protocol(&self, p: Protocol) {
        let bits = DETECTED | if p.tls { TLS } else { 0 } | if p.h2 { H2 } else { 0 };
        self.protocol.store(bits, Ordering::Relaxed);
    }
}

/// All backends' health, shared by the proxy, the compiler and the health task.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    backends: DashMap<BackendKey, Arc<BackendHealth>>,
}

impl HealthRegistry {
    /// The health of `key`, created (up) when it is new.
    pub fn entry(&self, key: BackendKey) -> Arc<BackendHealth> {
        self.backends.entry(key).or_default().clone()
    }

    /// The health of `key` if it is known.
    pub fn get(&self, key: &BackendKey) -> Option<Arc<BackendHealth>> {
        self.backends.get(key).map(|e| e.clone())
    }

    /// Forgets backends that no live route uses any more.
    pub fn retain(&self, live: &HashSet<BackendKey>) {
        self.backends.retain(|k, _| live.contains(k));
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_and_rise_count_results_in_a_row() {
        let h = BackendHealth::default();
        assert!(h.is_up());
        assert_eq!(h.record(false, 2, 2), None);
        assert_eq!(h.record(true, 2, 2), None, "a pass resets the failures");
        assert_eq!(h.record(false, 2, 2), None);
        assert_eq!(h.record(false, 2, 2), Some(false));
        assert!(!h.is_up());
        assert_eq!(h.record(false, 2, 2), None, "reported once");
        assert_eq!(h.record(true, 2, 2), None);
        assert_eq!(h.record(true, 2, 2), Some(true));
        assert!(h.mark_down());
        assert!(!h.mark_down());
    }

    #[test]
    fn registry_keeps_state_for_the_same_key() {
        let r = HealthRegistry::default();
        let key = BackendKey {
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        r.entry(key).mark_down();
        assert!(!r.entry(key).is_up());
        r.retain(&HashSet::new());
        assert!(r.entry(key).is_up(), "forgotten, then new again");
    }
}
