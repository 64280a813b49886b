//! The routing table, how it is built from a document, and the store that swaps it live.

pub mod compile;
pub mod path;
pub mod store;
pub mod table;

pub use compile::{compile, system_resolver, CompileEnv, Resolver};
pub use store::{ApplyError, ApplyOutcome, RouteStore};
pub use table::{Backend, Lookup, Route, RoutingTable, Summary};
