//! The health task: probes every distinct backend of the live table every `hc_interval`.
//! Probes run concurrently under a bound and never wait for each other, so a backend that
//! never answers delays no other probe.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use log::{debug, error, info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Semaphore;

use super::probe::Prober;
use super::registry::{BackendHealth, BackendKey, HealthRegistry};
use crate::routing::{RouteStore, RoutingTable};
use crate::tls::detect::{describe, detect};

/// Most probes in flight at once.
const MAX_CONCURRENT_PROBES: usize = 1024;

/// Settings of the health task, from main.yaml.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub method: http::Method,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
}

pub struct HealthChecker {
    store: Arc<RouteStore>,
    registry: Arc<HealthRegistry>,
    settings: HealthSettings,
}

/// A backend to probe, with the Host and the route named in logs.
struct Target {
    key: BackendKey,
    host: String,
    route: String,
    health: Arc<BackendHealth>,
}

/// The distinct backends of routes that want health checks, each with the first route
/// (host/path) that uses it. Also returns every backend key in the table.
fn targets(table: &RoutingTable) -> (Vec<Target>, HashSet<BackendKey>) {
    let mut all = HashSet::new();
    let mut probe: HashMap<BackendKey, Target> = HashMap::new();
    for (host, routes) in table.hosts() {
        for route in routes.routes() {
            for b in route.backends.iter() {
                all.insert(b.key);
                if route.healthcheck {
                    probe.entry(b.key).or_insert_with(|| Target {
                        key: b.key,
                        host: host.to_string(),
                        route: format!("{host}{}", route.prefix),
                        health: b.health.clone(),
                    });
                }
            }
        }
    }
    (probe.into_values().collect(), all)
}

/// Detects the protocol first if that has never succeeded, then probes in it.
async fn check(prober: &Prober, target: &Target, timeout: Duration) -> bool {
    if !target.health.detected() {
        match detect(target.key.addr, &target.host, timeout).await {
            Some(p) => target.health.set_protocol(p),
            None => return false,
        }
    }
    prober
        .probe(target.key, target.health.protocol().tls, &target.host)
        .await
}

impl HealthChecker {
    pub fn new(
        store: Arc<RouteStore>,
        registry: Arc<HealthRegistry>,
        settings: HealthSettings,
    ) -> Self {
        HealthChecker {
            store,
            registry,
            settings,
        }
    }

    fn round(&self, prober: &Prober, permits: &Arc<Semaphore>) {
        let table = self.store.load();
        let (targets, all) = targets(&table);
        self.registry.retain(&all);
        for target in targets {
            if !target.health.start_probe() {
                continue;
            }
            let (prober, permits) = (prober.clone(), permits.clone());
            let (fall, rise) = (self.settings.fall, self.settings.rise);
            let timeout = self.settings.timeout;
            tokio::spawn(async move {
                let ok = match permits.acquire().await {
                    Ok(_permit) => check(&prober, &target, timeout).await,
                    Err(_) => false,
                };
                match target.health.record(ok, fall, rise) {
                    Some(false) => warn!(
                        "backend {} of {} is down: health check failed",
                        target.key.addr, target.route
                    ),
                    Some(true) => {
                        info!(
                            "backend {} of {} is up again",
                            target.key.addr, target.route
                        );
                        // It may have come back as something else (e.g. now with TLS).
                        if let Some(p) = detect(target.key.addr, &target.host, timeout).await {
                            target.health.set_protocol(p);
                            debug!("backend {} speaks {}", target.key.addr, describe(p));
                        }
                    }
                    None => {}
                }
                target.health.end_probe();
            });
        }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let prober = match Prober::new(self.settings.method.clone(), self.settings.timeout) {
            Ok(p) => p,
            Err(e) => return error!("health checks disabled: cannot build the HTTP client: {e}"),
        };
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES));
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticks.tick() => self.round(&prober, &permits),
            }
        }
    }
}
