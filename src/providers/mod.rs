//! Sources of routing documents. Each hands its document to `RouteStore::apply`.

pub mod cluster;
pub mod consul;
pub mod file;

pub use consul::ConsulProvider;
pub use file::FileProvider;
