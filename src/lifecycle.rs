//! Process lifecycle: counting in-flight requests and shutting down gracefully.
//!
//! Pingora's graceful shutdown stops accepting, then sleeps a fixed grace period before it
//! drops the runtimes. We end the process ourselves: as soon as no request is in flight (an
//! idle proxy stops at once), or when `shutdown_timeout` cuts the rest off, saying how many.
//! Pingora's grace period is set longer (`BACKSTOP`), so that its runtime shutdown cannot end
//! requests just before we count them. The access log is drained last.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use log::{error, info, warn};
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::access_log::AccessLog;

/// The number of requests being served right now, and whether the process is draining.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<AtomicUsize>, Arc<AtomicBool>);

/// Counts one request as in flight while it lives.
#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicUsize>);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Once set, every response closes its connection, so that clients move to the new
    /// process (upgrade) or stop reusing this one before it exits.
    pub fn start_draining(&self) {
        self.1.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.1.load(Ordering::Relaxed)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// SIGTERM and SIGINT: graceful stop; SIGQUIT: graceful upgrade (hand listeners to `-u`).
pub struct ShutdownSignals {
    pub in_flight: InFlight,
    pub drain_timeout: Duration,
    /// Drained before the process exits.
    pub access_log: Option<AccessLog>,
}

async fn next(sig: &mut Option<Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    signal(kind)
        .map_err(|e| error!("cannot listen for {name}: {e}"))
        .ok()
}

#[async_trait]
impl ShutdownSignalWatch for ShutdownSignals {
    async fn recv(&self) -> ShutdownSignal {
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        let mut quit = listen(SignalKind::quit(), "SIGQUIT");
        let name = tokio::select! {
            _ = next(&mut term) => "SIGTERM",
            _ = next(&mut int) => "SIGINT",
            _ = next(&mut quit) => {
                self.in_flight.start_draining();
                info!("SIGQUIT: handing listeners over to the new process, then draining");
                // Pingora keeps accepting beside the new process for 5 s, then stops; only
                // after that can the drain end.
                self.exit_when_drained(UPGRADE_OVERLAP);
                return ShutdownSignal::GracefulUpgrade;
            }
        };
        self.in_flight.start_draining();
        info!(
            "{name}: no longer accepting; waiting up to {}s for {} in-flight requests",
            self.drain_timeout.as_secs(),
            self.in_flight.count()
        );
        self.exit_when_drained(Duration::ZERO);
        ShutdownSignal::GracefulTerminate
    }
}

/// How long an upgrading process keeps accepting beside its successor (Pingora's
/// `CLOSE_TIMEOUT`, 5 s), plus a margin.
pub const UPGRADE_OVERLAP: Duration = Duration::from_secs(6);

/// How much longer than `shutdown_timeout` Pingora's own grace period lasts (after an
/// upgrade's overlap too): only if our exit never comes does Pingora stop the runtimes.
pub const BACKSTOP: Duration = Duration::from_secs(UPGRADE_OVERLAP.as_secs() + 2);

/// Most time the access log gets to write what is queued at exit.
const ACCESS_LOG_DRAIN: Duration = Duration::from_secs(5);

impl ShutdownSignals {
    /// Exits the process once no request is in flight, looking from `after` on, or when the
    /// drain timeout is over, with the access log written out either way.
    fn exit_when_drained(&self, after: Duration) {
        let in_flight = self.in_flight.clone();
        let timeout = self.drain_timeout;
        let access_log = self.access_log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let started = Instant::now();
            let mut left = in_flight.count();
            while left > 0 && started.elapsed() < timeout {
                std::thread::sleep(Duration::from_millis(20));
                left = in_flight.count();
            }
            if left == 0 {
                info!(
                    "all in-flight requests finished after {:?}; exiting",
                    started.elapsed()
                );
            } else {
                warn!(
                    "shutdown_timeout ({}s) is over: cutting off {left} in-flight requests; exiting",
                    timeout.as_secs()
                );
            }
            if let Some(log) = access_log {
                if !log.drain(ACCESS_LOG_DRAIN) {
                    error!("the access log could not be written out before exit");
                }
            }
            log::logger().flush();
            std::process::exit(0);
        });
    }
}
