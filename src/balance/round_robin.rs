//! Round robin with failover: each request starts at the next server, and a retry after a
//! failed connection moves on to the one after it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A lock-free round-robin cursor shared by all requests of one route.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// The index where a new request starts, in `0..len`. `len` must not be zero.
    pub fn start(&self, len: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % len
    }

    /// The server for the `attempt`-th try (0-based) of a request that started at `start`.
    pub fn failover(start: usize, attempt: usize, len: usize) -> usize {
        (start + attempt) % len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_evenly() {
        let rr = RoundRobin::default();
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[rr.start(3)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn failover_visits_every_server_once() {
        let mut seen: Vec<usize> = (0..4).map(|a| RoundRobin::failover(2, a, 4)).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3]);
    }
}
