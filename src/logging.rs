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

/// Wraps a logger; the messages in `DEMOTED` are passed on at DEBUG.
pub struct DemoteNoise<L> {
    inner: L,
}

impl<L: Log> DemoteNoise<L> {
    pub fn new(inner: L) -> Self {
        DemoteNoise { inner }
    }
}

impl<L: Log> Log for DemoteNoise<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
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
}
