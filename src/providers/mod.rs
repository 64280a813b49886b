//! Sources of routing documents. Each hands its document to `RouteStore::apply`.

pub mod file;

pub use file::FileProvider;
