//! The process logger: env_logger, with Pingora's per-client failures and handled races moved
//! to DEBUG.
//!
//! Pingora logs every client that misbehaves or goes away at ERROR or WARN ("Fail to proxy:
//! Downstream ...", "Downstream handshake error ..."): a header timeout, a reset, a scanner's
//! broken TLS hello. Under a slowloris or a port scan that floods the error log with lines
//! about clients, not about the proxy. nginx logs the same events at `info`; here they go to
//! DEBUG, and the metrics count them (`aralez_client_header_timeouts_total`, ...).
//!
//! It also logs "failed to acquire reusable stream" at ERROR when a pooled backend connection
//! is still held by its idle watcher: the request simply opens a new connection. Around a
//! backend restart that is one ERROR line per request (thousands in our soak) for nothing
//! that failed, so it goes to DEBUG too.

//!
//! Running out of file descriptors makes every accept loop (Pingora's, the API's) and every
//! backend connection fail at once, each with its own ERROR line, dozens a second. Those
//! lines ("Too many open files", EMFILE and ENFILE) are let through at most once a second,
//! the next one saying how many were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Starts of messages (from Pingora's targets) that describe a client's failure or a race
/// Pingora handled by itself.
const DEMOTED: &[&str] = &[
    "Fail to proxy: Downstream",
    "Downstream handshake error",
    "failed to acquire reusable stream",
];

fn is_demoted(record: &Record<'_>) -> bool {
    if record.level() > Level::Warn || !record.target().starts_with("pingora") {
        return false;
    }
    let text = match record.args().as_str() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(record.args().to_string()),
    };
    DEMOTED.iter().any(|p| text.starts_with(p))
}

/// What file descriptor exhaustion looks like in an error's text (EMFILE, ENFILE).
const FD_EXHAUSTION: &str = "Too many open files";

/// Most one line of a kind a second.
const THROTTLE_EVERY: Duration = Duration::from_secs(1);

/// Lets one message through per `THROTTLE_EVERY`, counting the ones it holds back.
#[derive(Default)]
struct Throttle(Mutex<ThrottleState>);

#[derive(Default)]
struct ThrottleState {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// None: leave this one out. Some(n): log it, and say that `n` were left out before it.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if state
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < THROTTLE_EVERY)
        {
            state.held_back += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.held_back))
    }
}

fn is_fd_exhaustion(record: &Record<'_>) -> bool {
    record.level() <= Level::Warn
        && match record.args().as_str() {
            Some(s) => s.contains(FD_EXHAUSTION),
            None => record.args().to_string().contains(FD_EXHAUSTION),
        }
}

/// Wraps a logger; the messages in `DEMOTED` are passed on at DEBUG, and file descriptor
/// exhaustion at most once a second.
pub struct DemoteNoise<L> {
    inner: L,
    fd_exhaustion: Throttle,
}

impl<L: Log> DemoteNoise<L> {
    pub fn new(inner: L) -> Self {
        DemoteNoise {
            inner,
            fd_exhaustion: Throttle::default(),
        }
    }

    /// Passes `record` on, or nothing when it is held back.
    fn throttled(&self, record: &Record<'_>) {
        let Some(held_back) = self.fd_exhaustion.admit(Instant::now()) else {
            return;
        };
        if held_back == 0 {
            return self.inner.log(record);
        }
        self.inner.log(
            &Record::builder()
                .level(record.level())
                .target(record.target())
                .args(format_args!(
                    "{} ({held_back} more like it left out since the last one)",
                    record.args()
                ))
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }
}

impl<L: Log> Log for DemoteNoise<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        if is_fd_exhaustion(record) {
            return self.throttled(record);
        }
        if !is_demoted(record) {
            return self.inner.log(record);
        }
        let demoted = Record::builder()
            .level(Level::Debug)
            .target(record.target())
            .args(*record.args())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        if self.inner.enabled(demoted.metadata()) {
            self.inner.log(&demoted);
        }
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// Installs the process logger at `level` (`RUST_LOG` may refine it).
pub fn init(level: &str) {
    let filter = level.parse().unwrap_or(LevelFilter::Info);
    let logger = env_logger::Builder::new()
        .filter_level(filter)
        .format_timestamp_millis()
        .parse_default_env()
        .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(DemoteNoise::new(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// Sends everything written to stderr (the log, panics) to `path`, appended: what Pingora
/// does with `error_log` when it daemonizes, done in the foreground too.
pub fn redirect_stderr(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // SAFETY: both descriptors are open; dup2 replaces fd 2 atomically and `file` may close.
    if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records (level, message) of what reaches it, at DEBUG and above.
    #[derive(Default)]
    struct Capture(Mutex<Vec<(Level, String)>>);

    impl Log for Capture {
        fn enabled(&self, m: &Metadata<'_>) -> bool {
            m.level() <= Level::Debug
        }
        fn log(&self, r: &Record<'_>) {
            if self.enabled(r.metadata()) {
                self.0
                    .lock()
                    .unwrap()
                    .push((r.level(), r.args().to_string()));
            }
        }
        fn flush(&self) {}
    }

    fn send(logger: &DemoteNoise<Capture>, level: Level, target: &str, msg: &str) {
        logger.log(
            &Record::builder()
                .level(level)
                .target(target)
                .args(format_args!("{msg}"))
                .build(),
        );
    }

    #[test]
    fn client_failures_and_pool_races_go_to_debug_and_the_rest_is_untouched() {
        let logger = DemoteNoise::new(Capture::default());
        send(&logger, Level::Error, "pingora_proxy", "Fail to proxy: Downstream ReadError context: while reading request headers cause: request header not complete within header_timeout");
        send(
            &logger,
            Level::Error,
            "pingora_core::services::listening",
            "Downstream handshake error from 1.2.3.4:5: bad hello",
        );
        send(
            &logger,
            Level::Error,
            "pingora_proxy",
            "Fail to proxy: Upstream ConnectRefused",
        );
        send(
            &logger,
            Level::Error,
            "aralez::proxy",
            "Fail to proxy: Downstream is ours, kept",
        );
        send(&logger, Level::Warn, "aralez", "backend down");
        send(
            &logger,
            Level::Error,
            "pingora_core::connectors",
            "failed to acquire reusable stream",
        );
        let seen = logger.inner.0.lock().unwrap().clone();
        let levels: Vec<Level> = seen.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            levels,
            [
                Level::Debug,
                Level::Debug,
                Level::Error,
                Level::Error,
                Level::Warn,
                Level::Debug
            ]
        );
        assert!(seen[0].1.contains("header_timeout"));
    }

    #[test]
    fn fd_exhaustion_is_logged_once_a_second_with_a_count() {
        let throttle = Throttle::default();
        let t = Instant::now();
        assert_eq!(throttle.admit(t), Some(0));
        for ms in [1, 200, 999] {
            assert_eq!(throttle.admit(t + Duration::from_millis(ms)), None);
        }
        assert_eq!(throttle.admit(t + Duration::from_millis(1000)), Some(3));
        assert_eq!(throttle.admit(t + Duration::from_millis(1500)), None);

        let logger = DemoteNoise::new(Capture::default());
        let msg = "Accept() failed Fail to accept() cause: Too many open files (os error 24)";
        for _ in 0..5 {
            send(
                &logger,
                Level::Error,
                "pingora_core::services::listening",
                msg,
            );
        }
        send(&logger, Level::Error, "aralez", "something else");
        let seen = logger.inner.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], (Level::Error, msg.to_string()));
    }
}
