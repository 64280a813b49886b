//! The Consul provider: follows the passing instances of the services named in the live
//! document's `consul:` section with blocking queries, and hands every change to the store,
//! which rebuilds the table through the same compile path as every other source.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Deserialize;

use crate::config::upstreams::ConsulSettings;
use crate::metrics::{count_failed_reload, count_reload, METRICS};
use crate::routing::{ApplyOutcome, RouteStore};

/// How long Consul may hold a blocking query.
const WAIT: &str = "30s";
/// Client timeout: the blocking wait plus margin.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
struct HealthEntry {
    #[serde(rename = "Node")]
    node: NodeInfo,
    #[serde(rename = "Service")]
    service: ServiceInfo,
}

#[derive(Debug, Deserialize)]
struct NodeInfo {
    #[serde(rename = "Address")]
    address: String,
}

#[derive(Debug, Deserialize)]
struct ServiceInfo {
    #[serde(rename = "Address", default)]
    address: String,
    #[serde(rename = "Port")]
    port: u16,
}

/// Instances of a service and the index to block on next.
struct Answer {
    instances: Vec<SocketAddr>,
    index: u64,
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

async fn query(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    service: &str,
    index: u64,
) -> Result<Answer, String> {
    let url = format!("{base}/v1/health/service/{service}?passing=true&index={index}&wait={WAIT}");
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.header("X-Consul-Token", token);
    }
    let resp = request.send().await.map_err(|e| format!("{base}: {e}"))?;
    let status = resp.status();
    let index = resp
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = resp.bytes().await.map_err(|e| format!("{base}: {e}"))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(format!("{base}: HTTP {status}: {}", text.trim()));
    }
    let entries: Vec<HealthEntry> =
        serde_json::from_slice(&body).map_err(|e| format!("{base}: unexpected answer: {e}"))?;
    let mut instances = Vec::with_capacity(entries.len());
    for e in entries {
        // Service.Address, or the node's address when the service has none.
        let host = if e.service.address.is_empty() {
            e.node.address
        } else {
            e.service.address
        };
        instances.push(resolve(&host, e.service.port).await?);
    }
    Ok(Answer { instances, index })
}

/// Follows one service until cancelled.
async fn follow(store: Arc<RouteStore>, settings: Arc<ConsulSettings>, service: String) {
    let client = match reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => return warn!("consul discovery of {service} disabled: {e}"),
    };
    let mut index = 0u64;
    let mut server = 0usize;
    let mut backoff = BACKOFF_START;
    let mut outage = false;
    loop {
        let base = &settings.servers[server % settings.servers.len()];
        match query(&client, base, settings.token.as_deref(), &service, index).await {
            Ok(answer) => {
                if outage {
                    info!("consul answers again for {service} ({base})");
                    outage = false;
                }
                backoff = BACKOFF_START;
                // Consul's rule: an index that goes backwards means start over.
                let unchanged = answer.index == index && index != 0;
                index = if answer.index < index {
                    0
                } else {
                    answer.index
                };
                if unchanged {
                    continue;
                }
                let (store, name, instances) = (store.clone(), service.clone(), answer.instances);
                let count = instances.len();
                match tokio::task::spawn_blocking(move || store.set_discovered(&name, instances))
                    .await
                {
                    Ok(Ok(Some(summary))) => {
                        count_reload("consul", &ApplyOutcome::Applied(summary));
                        info!("consul: {service} has {count} instances; {summary}")
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        count_failed_reload("consul");
                        warn!("consul: instances of {service} not applied:\n{e}")
                    }
                    Err(e) => {
                        count_failed_reload("consul");
                        warn!("consul: instances of {service} not applied: {e}")
                    }
                }
                if index == 0 {
                    // No index to block on: do not spin.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(e) => {
                METRICS.consul_errors.inc();
                if !outage {
                    warn!("consul unreachable or wrong for {service}: {e}; keeping the last known instances");
                    outage = true;
                }
                server += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Runs discovery for the live document's Consul settings, restarting when they change.
pub struct ConsulProvider {
    store: Arc<RouteStore>,
}

impl ConsulProvider {
    pub fn new(store: Arc<RouteStore>) -> Self {
        ConsulProvider { store }
    }
}

#[async_trait]
impl BackgroundService for ConsulProvider {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut settings_rx = self.store.watch_consul();
        loop {
            let settings = settings_rx.borrow_and_update().clone();
            let mut followers = tokio::task::JoinSet::new();
            if let Some(settings) = settings {
                info!(
                    "consul discovery of {} on {}",
                    settings.services.join(", "),
                    settings.servers.join(", ")
                );
                let settings = Arc::new(settings);
                for service in settings.services.clone() {
                    followers.spawn(follow(self.store.clone(), settings.clone(), service));
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                changed = settings_rx.changed() => if changed.is_err() { return },
            }
            // New service list: stop following the old one (dropping the set aborts its tasks).
            followers.abort_all();
        }
    }
}
