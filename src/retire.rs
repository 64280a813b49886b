//! Freeing big values off the critical path.

use log::debug;

/// Drops `old` on a short-lived thread of its own. For a 10,000-host table or document tree
/// freeing takes milliseconds that an API request applying a config (or a proxy thread holding
/// the last reference) should not spend.
pub fn retire<T: Send + 'static>(old: T) {
    let spawned = std::thread::Builder::new()
        .name("retire".into())
        .spawn(move || drop(old));
    if let Err(e) = spawned {
        // The closure, and `old` with it, was dropped here instead: slower, nothing lost.
        debug!("cannot start a thread to free a replaced config: {e}");
    }
}
