//! Choosing a backend among a route's servers.

mod round_robin;

pub use round_robin::RoundRobin;
