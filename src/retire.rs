//! Freeing big values off the critical path.

use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;

use log::debug;

type Garbage = Box<dyn Send>;

/// The channel to the one thread that frees retired values, started on first use; None if
/// the thread could not be started (values are then freed by the caller).
static RETIREMENT: OnceLock<Option<Sender<Garbage>>> = OnceLock::new();

/// Drops `old` on a thread of its own. For a 10,000-host table or document tree freeing takes
/// milliseconds that an API request applying a config (or a proxy thread holding the last
/// reference) should not spend.
pub fn retire<T: Send + 'static>(old: T) {
    let garbage: Garbage = Box::new(old);
    let Some(sender) = RETIREMENT.get_or_init(start) else {
        return; // `garbage` is dropped here: slower for this caller, nothing lost.
    };
    // A send fails only if the thread is gone; the value then comes back and drops here.
    let _ = sender.send(garbage);
}

fn start() -> Option<Sender<Garbage>> {
    let (tx, rx) = channel::<Garbage>();
    let spawned = std::thread::Builder::new()
        .name("retire".into())
        .spawn(move || rx.into_iter().for_each(drop));
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            debug!("cannot start the thread that frees replaced configs: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    struct Counted(Arc<AtomicUsize>, std::thread::ThreadId);
    impl Drop for Counted {
        fn drop(&mut self) {
            // Counted only when freed on another thread than the one that retired it.
            if std::thread::current().id() != self.1 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn retired_values_are_freed_on_another_thread() {
        let freed = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            retire(Counted(freed.clone(), std::thread::current().id()));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while freed.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(freed.load(Ordering::SeqCst), 3);
    }
}
