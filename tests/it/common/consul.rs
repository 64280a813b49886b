//! A Consul API double for tests: `/v1/health/service/<name>` (passing filter, blocking
//! queries, X-Consul-Index, optional ACL token) and the KV endpoints (`GET /v1/kv/<key>` with
//! blocking and base64 values, `PUT` with `cas`). Real Consul cannot be installed here.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::json;

use super::TestBackend;

#[derive(Clone)]
pub struct Instance {
    node_address: String,
    service_address: String,
    port: u16,
    passing: bool,
}

pub struct DoubleState {
    pub services: Mutex<HashMap<String, Vec<Instance>>>,
    /// Key -> (value, ModifyIndex).
    pub kv: Mutex<HashMap<String, (Vec<u8>, u64)>>,
    pub index: tokio::sync::watch::Sender<u64>,
    pub token: Option<String>,
    pub malformed: AtomicBool,
    /// While true, blocking queries are not woken by changes (a partitioned watcher).
    pub frozen: tokio::sync::watch::Sender<bool>,
}

pub struct ConsulDouble {
    pub url: String,
    pub addr: SocketAddr,
    pub state: Arc<DoubleState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConsulDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn health(
    State(state): State<Arc<DoubleState>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = &state.token {
        if headers.get("x-consul-token").and_then(|v| v.to_str().ok()) != Some(token) {
            return (StatusCode::FORBIDDEN, "ACL not found").into_response();
        }
    }
    block(&state, &q).await;
    let index = *state.index.borrow();
    if state.malformed.load(Ordering::SeqCst) {
        return ([("X-Consul-Index", index.to_string())], "{not json").into_response();
    }
    let passing_only = q.contains_key("passing");
    let entries: Vec<_> = state
        .services
        .lock()
        .unwrap()
        .get(&name)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.passing || !passing_only)
        .map(|i| {
            json!({
                "Node": {"ID": "n1", "Node": "node1", "Address": i.node_address, "Datacenter": "dc1"},
                "Service": {"ID": format!("{name}-{}", i.port), "Service": name, "Tags": [], "Address": i.service_address, "Port": i.port},
                "Checks": [{"Status": if i.passing { "passing" } else { "critical" }}]
            })
        })
        .collect();
    ([("X-Consul-Index", index.to_string())], axum::Json(entries)).into_response()
}

/// Blocks a query with `index` until the index passes it (and no freeze holds it) or its
/// `wait` (default 5 minutes, as Consul's) ends.
async fn block(state: &DoubleState, q: &HashMap<String, String>) {
    let wanted: u64 = q.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    let wait = q
        .get("wait")
        .and_then(|w| w.trim_end_matches('s').parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs);
    let mut rx = state.index.subscribe();
    let mut frozen = state.frozen.subscribe();
    let _ = tokio::time::timeout(wait, async {
        loop {
            if *frozen.borrow() {
                let _ = frozen.changed().await;
                continue;
            }
            if wanted == 0 || *rx.borrow() > wanted {
                return;
            }
            let _ = rx.changed().await;
        }
    })
    .await;
}

fn authorized(state: &DoubleState, headers: &HeaderMap) -> bool {
    state.token.as_ref().is_none_or(|token| {
        headers.get("x-consul-token").and_then(|v| v.to_str().ok()) == Some(token)
    })
}

async fn kv_get(
    State(state): State<Arc<DoubleState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return (StatusCode::FORBIDDEN, "ACL not found").into_response();
    }
    block(&state, &q).await;
    // Index and value read together, under the lock writers hold while they change both.
    let (index, entry) = {
        let kv = state.kv.lock().unwrap();
        (*state.index.borrow(), kv.get(&key).cloned())
    };
    match entry {
        None => (
            StatusCode::NOT_FOUND,
            [("X-Consul-Index", index.to_string())],
        )
            .into_response(),
        Some((value, modify)) => {
            let body = json!([{
                "LockIndex": 0, "Key": key, "Flags": 0,
                "Value": base64::engine::general_purpose::STANDARD.encode(value),
                "CreateIndex": 1, "ModifyIndex": modify
            }]);
            ([("X-Consul-Index", index.to_string())], axum::Json(body)).into_response()
        }
    }
}

async fn kv_put(
    State(state): State<Arc<DoubleState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return (StatusCode::FORBIDDEN, "ACL not found").into_response();
    }
    let cas: Option<u64> = q.get("cas").and_then(|c| c.parse().ok());
    let mut kv = state.kv.lock().unwrap();
    let current = kv.get(&key).map_or(0, |(_, m)| *m);
    if cas.is_some_and(|c| c != current) {
        return "false".into_response();
    }
    let mut next = 0;
    state.index.send_modify(|i| {
        *i += 1;
        next = *i;
    });
    kv.insert(key, (body.to_vec(), next));
    "true".into_response()
}

impl ConsulDouble {
    pub async fn start(token: Option<&str>) -> ConsulDouble {
        // `consul agent -dev` runs would go here when a consul binary is available; this
        // machine has none, so say which server the test talks to.
        eprintln!("consul tests use the Consul API double (no consul binary on this machine)");
        let state = Arc::new(DoubleState {
            services: Mutex::new(HashMap::new()),
            kv: Mutex::new(HashMap::new()),
            index: tokio::sync::watch::channel(1).0,
            token: token.map(str::to_string),
            malformed: AtomicBool::new(false),
            frozen: tokio::sync::watch::channel(false).0,
        });
        Self::serve(state, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Serves `state` on `addr` (the address of a stopped double, to bring it back).
    pub async fn serve(state: Arc<DoubleState>, addr: SocketAddr) -> ConsulDouble {
        let app = Router::new()
            .route("/v1/health/service/{name}", axum::routing::get(health))
            .route("/v1/kv/{*key}", axum::routing::get(kv_get).put(kv_put))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ConsulDouble {
            url,
            addr,
            state,
            task,
        }
    }

    /// Writes a KV value directly, as another operator or tool would.
    pub fn put_kv(&self, key: &str, value: &str) {
        // The value is stored under the lock readers take, before they can see the new index,
        // so that a woken blocking query never gets the new index with the old value.
        let mut kv = self.state.kv.lock().unwrap();
        let mut next = 0;
        self.state.index.send_modify(|i| {
            *i += 1;
            next = *i;
        });
        kv.insert(key.into(), (value.as_bytes().to_vec(), next));
    }

    pub fn set_frozen(&self, frozen: bool) {
        self.state.frozen.send_replace(frozen);
    }

    pub fn change(&self, f: impl FnOnce(&mut HashMap<String, Vec<Instance>>)) {
        f(&mut self.state.services.lock().unwrap());
        self.state.index.send_modify(|i| *i += 1);
    }

    pub fn register(&self, service: &str, backend: &TestBackend, service_address: &str) {
        let instance = Instance {
            node_address: "127.0.0.1".into(),
            service_address: service_address.into(),
            port: backend.addr.port(),
            passing: true,
        };
        self.change(|s| s.entry(service.into()).or_default().push(instance));
    }

    pub fn deregister(&self, service: &str, backend: &TestBackend) {
        let port = backend.addr.port();
        self.change(|s| {
            s.entry(service.into())
                .or_default()
                .retain(|i| i.port != port)
        });
    }
}
