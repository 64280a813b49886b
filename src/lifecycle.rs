//! Process lifecycle: counting in-flight requests and shutting down gracefully.
//!
//! Pingora's graceful shutdown stops accepting, then sleeps a fixed grace period before it
//! drops the runtimes. We set that period to `shutdown_timeout` (the most in-flight requests
//! may take) and exit as soon as no request is in flight, so an idle proxy stops at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use log::{error, info};
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};

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
                exit_when_drained(self.in_flight.clone(), UPGRADE_OVERLAP, self.drain_timeout);
                return ShutdownSignal::GracefulUpgrade;
            }
        };
        self.in_flight.start_draining();
        info!(
            "{name}: no longer accepting; waiting up to {}s for {} in-flight requests",
            self.drain_timeout.as_secs(),
            self.in_flight.count()
        );
        exit_when_drained(self.in_flight.clone(), Duration::ZERO, self.drain_timeout);
        ShutdownSignal::GracefulTerminate
    }
}

/// How long an upgrading process keeps accepting beside its successor (Pingora's
/// `CLOSE_TIMEOUT`, 5 s), plus a margin.
const UPGRADE_OVERLAP: Duration = Duration::from_secs(6);

/// Exits the process once no request is in flight, looking from `after` on. Past the timeout
/// pingora's own grace period ends and it stops the runtimes itself.
fn exit_when_drained(in_flight: InFlight, after: Duration, timeout: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let started = Instant::now();
        while in_flight.count() > 0 && started.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(20));
        }
        if in_flight.count() == 0 {
            info!(
                "all in-flight requests finished after {:?}; exiting",
                started.elapsed()
            );
            log::logger().flush();
            std::process::exit(0);
        }
    });
}
