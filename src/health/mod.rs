//! Backend health: the registry that survives reloads, the probe, and the task that runs it.

pub mod probe;
pub mod registry;
pub mod task;

pub use registry::{BackendHealth, BackendKey, HealthRegistry, Protocol};
pub use task::{HealthChecker, HealthSettings};
