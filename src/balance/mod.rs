//! Choosing a backend among a route's servers: round robin or failover over the healthy
//! ones, and sticky sessions.

mod pick;
mod round_robin;
pub mod sticky;

pub use pick::{pick, Tried};
pub use round_robin::RoundRobin;
