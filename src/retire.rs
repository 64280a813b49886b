//! Freeing big values off the critical path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use log::debug;

type Garbage = Box<dyn Send>;

/// The thread that frees retired values, and the process it was started in: the first config
/// is applied before `-d` forks, and the child does not inherit the thread (sending to it
/// would only queue, never free). None until first use, or if the thread could not be started
/// (values are then freed by the caller).
static RETIREMENT: Mutex<Option<(u32, Freeing)>> = Mutex::new(None);

/// Most retired values waiting to be freed before callers free their own. An apply retires
/// three (document tree, parsed config, replaced table). On a saturated core the freeing
/// thread (nice 19) frees about one 10,000-host generation a second; pushes back to back
/// outran it and memory grew without bound (measured: +20 MB RSS per push, 2.5 GB after 120
/// pushes in 40 s). With the backlog full the apply frees what it replaced itself, so pushes
/// slow down instead.
const BACKLOG_LIMIT: usize = 12;

thread_local! {
    /// What this thread retired while a [`Held`] guard was alive, freed when it drops.
    static HELD: std::cell::RefCell<Option<Vec<Garbage>>> = const { std::cell::RefCell::new(None) };
}

/// Drops `old` on a thread of its own. For a 10,000-host table or document tree freeing takes
/// milliseconds that an API request applying a config (or a proxy thread holding the last
/// reference) should not spend.
pub fn retire<T: Send + 'static>(old: T) {
    let garbage: Garbage = Box::new(old);
    let garbage = HELD.with(|held| match held.borrow_mut().as_mut() {
        Some(list) => {
            list.push(garbage);
            None
        }
        None => Some(garbage),
    });
    if let Some(garbage) = garbage {
        send(garbage);
    }
}

/// Keeps what this thread retires until the guard drops, then hands it all to the freeing
/// thread. An apply retires the parsed document before it compiles the table: freed at once,
/// it would compete with the rest of the apply for the core (measured: a busy-core 10,000-host
/// push ~20 % slower). Nested holds keep everything until the outermost one ends.
pub fn hold() -> Held {
    let outermost = HELD.with(|held| {
        let mut held = held.borrow_mut();
        let outermost = held.is_none();
        held.get_or_insert_with(Vec::new);
        outermost
    });
    Held {
        outermost,
        _same_thread: std::marker::PhantomData,
    }
}

/// See [`hold`].
pub struct Held {
    outermost: bool,
    /// The list is the creating thread's: the guard must drop there.
    _same_thread: std::marker::PhantomData<*const ()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        let list = HELD.with(|held| held.borrow_mut().take());
        for garbage in list.into_iter().flatten() {
            send(garbage);
        }
    }
}

fn send(garbage: Garbage) {
    let refused = {
        let mut slot = RETIREMENT.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if slot
            .as_ref()
            .is_none_or(|(started_in, _)| *started_in != pid)
        {
            *slot = Freeing::start(BACKLOG_LIMIT).map(|f| (pid, f));
        }
        match slot.as_ref() {
            Some((_, freeing)) => freeing.send(garbage).err(),
            None => Some(garbage),
        }
    };
    // Freed here, outside the lock: slower for this caller, nothing lost.
    drop(refused);
}

/// The freeing thread's queue, with a count of what waits in it.
struct Freeing {
    tx: Sender<Garbage>,
    backlog: Arc<AtomicUsize>,
    limit: usize,
}

impl Freeing {
    fn start(limit: usize) -> Option<Self> {
        let (tx, rx) = channel::<Garbage>();
        let backlog = Arc::new(AtomicUsize::new(0));
        let waiting = backlog.clone();
        let spawned = std::thread::Builder::new()
            .name("retire".into())
            .spawn(move || {
                lower_own_priority();
                for garbage in rx {
                    drop(garbage);
                    waiting.fetch_sub(1, Ordering::AcqRel);
                }
            });
        match spawned {
            Ok(_) => Some(Freeing { tx, backlog, limit }),
            Err(e) => {
                debug!("cannot start the thread that frees replaced configs: {e}");
                None
            }
        }
    }

    /// Queues `garbage`, or gives it back if the backlog is full or the thread is gone.
    fn send(&self, garbage: Garbage) -> Result<(), Garbage> {
        if self.backlog.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.backlog.fetch_sub(1, Ordering::AcqRel);
            return Err(garbage);
        }
        self.tx.send(garbage).map_err(|refused| {
            self.backlog.fetch_sub(1, Ordering::AcqRel);
            refused.0
        })
    }
}

/// Freeing is background work: on a busy core it must not take CPU from the proxy threads, or
/// from the next apply when pushes come back to back (10,000-host pushes measured 10-40 %
/// slower at nice 10 than at 19, in noisy runs). At nice 19 the thread gets about a seventieth
/// of a core that is saturated, ~14 ms of freeing a second: enough for a 10,000-host
/// generation a second, and whatever waits is freed as soon as the core has idle time.
const FREEING_NICE: i32 = 19;

fn lower_own_priority() {
    // On Linux the nice value is per thread, and setpriority with a thread id sets only it.
    // SAFETY: plain syscalls on the calling thread, no memory passed.
    let done = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, FREEING_NICE)
    };
    if done != 0 {
        debug!(
            "cannot lower the priority of the freeing thread: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;
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
    fn the_freeing_thread_runs_at_a_low_priority() {
        // Start the thread (or reuse it) and find it by name.
        retire(0u8);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let nice = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(Result::ok)
                .find(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "retire")
                })
                .and_then(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                // Field 19 of stat is the nice value; the name before it may hold spaces.
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(16)?.parse::<i32>().ok()
                });
            if nice == Some(FREEING_NICE) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nice of the retire thread: {nice:?}"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn held_values_wait_for_the_outermost_guard() {
        let freed = Arc::new(AtomicUsize::new(0));
        let held_count = || HELD.with(|h| h.borrow().as_ref().map(Vec::len));
        {
            let _outer = hold();
            retire(Counted(freed.clone(), std::thread::current().id()));
            {
                let _inner = hold();
                retire(Counted(freed.clone(), std::thread::current().id()));
            }
            // The inner guard ended; both are still here, none was handed over.
            assert_eq!(held_count(), Some(2));
            assert_eq!(freed.load(Ordering::SeqCst), 0);
        }
        assert_eq!(held_count(), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while freed.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(freed.load(Ordering::SeqCst), 2);
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

    /// Blocks the thread that drops it until the test lets it go.
    struct Blocker(Receiver<()>);
    impl Drop for Blocker {
        fn drop(&mut self) {
            let _ = self.0.recv();
        }
    }

    #[test]
    fn a_full_backlog_is_given_back_to_the_caller() {
        let freeing = Freeing::start(2).expect("thread");
        let (release, blocked) = channel();
        // The thread is stuck freeing the first value; the second waits behind it.
        assert!(freeing.send(Box::new(Blocker(blocked))).is_ok());
        assert!(freeing.send(Box::new(1u8)).is_ok());
        // The third would grow the backlog past the limit: the caller gets it back.
        assert!(freeing.send(Box::new(2u8)).is_err());
        release.send(()).expect("blocker alive");
        let deadline = Instant::now() + Duration::from_secs(5);
        while freeing.backlog.load(Ordering::Acquire) > 0 {
            assert!(Instant::now() < deadline, "backlog never drained");
            std::thread::yield_now();
        }
        assert!(freeing.send(Box::new(3u8)).is_ok());
    }
}
