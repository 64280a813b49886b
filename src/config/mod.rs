//! Configuration: main.yaml (process settings) and upstreams.yaml (routing), with errors that
//! name file, line, column and key path.

pub mod error;
pub mod main_conf;
mod preflight;
pub mod runtime;
pub mod spans;
mod tree;
pub mod upstreams;
mod yaml;
mod yaml_block;
mod yaml_fast;
#[cfg(test)]
mod yaml_readers_tests;

pub use error::{ConfigError, Issue, Location};
pub use main_conf::MainConfig;
pub use runtime::Runtime;
pub use upstreams::{UpstreamsConfig, ValidationContext};
pub use yaml::read_file;
