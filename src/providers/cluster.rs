//! Fleet mode: every instance follows one Consul KV key that holds upstreams.yaml. Changes in
//! the key are applied through the same path as a file or a push; `POST /conf` writes the key
//! with a check-and-set, so concurrent pushes through different instances cannot overwrite
//! each other. The last applied value is cached in `upstreams_conf` for boots without Consul.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Deserialize;

use crate::config::main_conf::ClusterConfig;
use crate::metrics::{count_failed_reload, count_reload, METRICS};
use crate::routing::{ApplyOutcome, RouteStore};

const WAIT: &str = "30s";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
struct KvEntry {
    #[serde(rename = "Value")]
    value: Option<String>,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
}

/// Why a push through the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the config in Consul changed concurrently; fetch the current one and retry")]
    Conflict,
    #[error("Consul unreachable, nothing changed: {0}")]
    Unreachable(String),
}

#[async_trait::async_trait]
impl crate::api::Publish for Cluster {
    async fn publish(&self, text: &str) -> Result<(), crate::api::PublishError> {
        use crate::api::PublishError;
        self.put(text).await.map_err(|e| match e {
            PushError::Conflict => PublishError::Conflict(e.to_string()),
            PushError::Unreachable(_) => PublishError::Unavailable(e.to_string()),
        })
    }

    fn status(&self) -> serde_json::Value {
        Cluster::status(self)
    }
}

/// The shared key and what this instance knows about it.
pub struct Cluster {
    config: ClusterConfig,
    client: reqwest::Client,
    /// ModifyIndex of the value last seen (0: no value yet); the CAS of the next push.
    modify_index: AtomicU64,
    connected: AtomicBool,
    server: AtomicUsize,
}

/// A value of the key: its text and ModifyIndex, plus the index to block on next.
struct KvValue {
    text: Option<String>,
    modify_index: u64,
    index: u64,
}

impl Cluster {
    pub fn new(config: ClusterConfig) -> reqwest::Result<Arc<Cluster>> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Arc::new(Cluster {
            config,
            client,
            modify_index: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            server: AtomicUsize::new(0),
        }))
    }

    fn base(&self) -> &str {
        let servers = &self.config.consul;
        &servers[self.server.load(Ordering::Relaxed) % servers.len()]
    }

    fn next_server(&self) {
        self.server.fetch_add(1, Ordering::Relaxed);
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let request = self.client.request(method, url);
        match &self.config.token {
            Some(token) => request.header("X-Consul-Token", token),
            None => request,
        }
    }

    async fn get(&self, index: u64) -> Result<KvValue, String> {
        let base = self.base();
        let url = format!("{base}/v1/kv/{}?index={index}&wait={WAIT}", self.config.key);
        let resp = self
            .request(reqwest::Method::GET, url)
            .send()
            .await
            .map_err(|e| format!("{base}: {e}"))?;
        let status = resp.status();
        let next = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(KvValue {
                text: None,
                modify_index: 0,
                index: next,
            });
        }
        let body = resp.bytes().await.map_err(|e| format!("{base}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{base}: HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        let entries: Vec<KvEntry> =
            serde_json::from_slice(&body).map_err(|e| format!("{base}: unexpected answer: {e}"))?;
        let Some(entry) = entries.into_iter().next() else {
            return Ok(KvValue {
                text: None,
                modify_index: 0,
                index: next,
            });
        };
        let text = match entry.value {
            None => None,
            Some(v) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|e| format!("{base}: value is not base64: {e}"))?;
                Some(String::from_utf8(raw).map_err(|_| format!("{base}: value is not UTF-8"))?)
            }
        };
        Ok(KvValue {
            text,
            modify_index: entry.modify_index,
            index: next,
        })
    }

    /// Writes `text` to the key if nobody changed it since this instance last saw it.
    pub async fn put(&self, text: &str) -> Result<(), PushError> {
        let cas = self.modify_index.load(Ordering::Relaxed);
        let mut last_error = String::new();
        for _ in 0..self.config.consul.len() {
            let base = self.base();
            let url = format!("{base}/v1/kv/{}?cas={cas}", self.config.key);
            match self
                .request(reqwest::Method::PUT, url)
                .body(text.to_string())
                .send()
                .await
            {
                Ok(resp) if resp.status().is_success() => {
                    let answer = resp.text().await.unwrap_or_default();
                    return if answer.trim() == "true" {
                        Ok(())
                    } else {
                        Err(PushError::Conflict)
                    };
                }
                Ok(resp) => last_error = format!("{base}: HTTP {}", resp.status()),
                Err(e) => last_error = format!("{base}: {e}"),
            }
            METRICS.consul_errors.inc();
            self.next_server();
        }
        Err(PushError::Unreachable(last_error))
    }

    /// The key, the ModifyIndex applied last, and whether the watch is connected.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "key": self.config.key,
            "index": self.modify_index.load(Ordering::Relaxed),
            "connected": self.connected.load(Ordering::Relaxed),
        })
    }
}

/// Follows the key and applies every new value.
pub struct ClusterWatcher {
    pub cluster: Arc<Cluster>,
    pub store: Arc<RouteStore>,
    /// upstreams_conf: the cache of the last applied value.
    pub cache: PathBuf,
}

impl ClusterWatcher {
    async fn apply(&self, text: String) {
        let (store, cache, key) = (
            self.store.clone(),
            self.cache.clone(),
            self.cluster.config.key.clone(),
        );
        let source = format!("consul key {key}");
        let result =
            tokio::task::spawn_blocking(move || store.apply_and_persist(&text, &source, &cache))
                .await;
        match result {
            Ok(Ok(outcome)) => {
                count_reload("cluster", &outcome);
                if let ApplyOutcome::Applied(summary) = outcome {
                    info!("applied consul key {key}: {summary}");
                }
            }
            Ok(Err(e)) => {
                count_failed_reload("cluster");
                warn!("invalid value in consul key {key} ignored; the last good table stays:\n{e}");
            }
            Err(e) => warn!("consul key {key} not applied: {e}"),
        }
    }
}

#[async_trait]
impl BackgroundService for ClusterWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let cluster = &self.cluster;
        info!(
            "fleet mode: routing follows consul key {}",
            cluster.config.key
        );
        let mut index = 0u64;
        let mut backoff = BACKOFF_START;
        let mut outage = false;
        loop {
            let answer = tokio::select! {
                _ = shutdown.changed() => return,
                answer = cluster.get(index) => answer,
            };
            match answer {
                Ok(value) => {
                    cluster.connected.store(true, Ordering::Relaxed);
                    if std::mem::take(&mut outage) {
                        info!("consul key {} reachable again", cluster.config.key);
                    }
                    backoff = BACKOFF_START;
                    let changed = value.modify_index
                        != cluster.modify_index.load(Ordering::Relaxed)
                        || index == 0;
                    cluster
                        .modify_index
                        .store(value.modify_index, Ordering::Relaxed);
                    if let (true, Some(text)) = (changed, value.text) {
                        self.apply(text).await;
                    }
                    let next = if value.index < index { 0 } else { value.index };
                    if next == index || next == 0 {
                        // Nothing to block on: do not spin.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    index = next;
                }
                Err(e) => {
                    METRICS.consul_errors.inc();
                    cluster.connected.store(false, Ordering::Relaxed);
                    if !std::mem::replace(&mut outage, true) {
                        warn!(
                            "consul key {} unreachable: {e}; serving the last good table",
                            cluster.config.key
                        );
                    }
                    cluster.next_server();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}
