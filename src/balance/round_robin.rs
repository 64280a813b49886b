//! The round-robin cursor of a route: each request takes the next ticket.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A lock-free counter shared by all requests of one route.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// This request's ticket; `pick` turns it into a backend.
    pub fn ticket(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}
