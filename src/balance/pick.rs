//! Choosing the backend for each attempt of a request: healthy backends first, in the
//! route's strategy order, each tried at most once; when none is healthy, the others are
//! still tried (health data can be stale) before the request fails.

use crate::config::upstreams::Strategy;
use crate::routing::Route;

/// The backends a request has tried so far.
#[derive(Debug, Default)]
pub struct Tried {
    small: u64,
    /// Used only for routes with more than 64 backends.
    large: Vec<bool>,
    pub count: usize,
}

impl Tried {
    pub fn has(&self, i: usize) -> bool {
        if i < 64 {
            self.small & (1 << i) != 0
        } else {
            self.large.get(i).copied().unwrap_or(false)
        }
    }

    pub fn mark(&mut self, i: usize) {
        if i < 64 {
            self.small |= 1 << i;
        } else {
            if self.large.len() <= i {
                self.large.resize(i + 1, false);
            }
            self.large[i] = true;
        }
        self.count += 1;
    }
}

fn usable(route: &Route, i: usize) -> bool {
    !route.healthcheck || route.backends[i].health.is_up()
}

/// The next backend for a request whose round-robin ticket is `ticket`, or None when every
/// backend has been tried.
pub fn pick(route: &Route, ticket: usize, tried: &mut Tried) -> Option<usize> {
    let n = route.backends.len();
    if tried.count >= n {
        return None;
    }
    let seen: &Tried = tried;
    let candidates = move |healthy: bool| {
        (0..n).filter(move |&i| !seen.has(i) && (!healthy || usable(route, i)))
    };
    let choice = match route.strategy {
        Strategy::Failover => candidates(true).next().or_else(|| candidates(false).next()),
        // Rotate over the healthy, untried backends only, so a down backend's share is
        // spread evenly instead of going to its neighbour.
        Strategy::RoundRobin => {
            let healthy = candidates(true).count();
            if healthy > 0 {
                candidates(true).nth(ticket % healthy)
            } else {
                let left = n - tried.count;
                candidates(false).nth(ticket % left)
            }
        }
    }?;
    tried.mark(choice);
    Some(choice)
}
