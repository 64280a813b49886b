//! The Consul provider against a Consul API double: a small HTTP server implementing
//! `/v1/health/service/<name>` with the documented JSON shape, `passing`, `X-Consul-Index`,
//! blocking queries and an optional ACL token. (No `consul` binary is installable here, so
//! these tests use the double.)

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::*;
use serde_json::json;

#[derive(Clone)]
struct Instance {
    node_address: String,
    service_address: String,
    port: u16,
    passing: bool,
}

struct DoubleState {
    services: Mutex<HashMap<String, Vec<Instance>>>,
    index: tokio::sync::watch::Sender<u64>,
    token: Option<String>,
    malformed: AtomicBool,
}

struct ConsulDouble {
    url: String,
    state: Arc<DoubleState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConsulDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn health(
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
    let wanted: u64 = q.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    let wait = q
        .get("wait")
        .and_then(|w| w.trim_end_matches('s').parse().ok())
        .map_or(Duration::from_secs(300), Duration::from_secs);
    let mut rx = state.index.subscribe();
    if wanted > 0 && *rx.borrow() <= wanted {
        let _ = tokio::time::timeout(wait, rx.changed()).await;
    }
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

impl ConsulDouble {
    async fn start(token: Option<&str>) -> ConsulDouble {
        let state = Arc::new(DoubleState {
            services: Mutex::new(HashMap::new()),
            index: tokio::sync::watch::channel(1).0,
            token: token.map(str::to_string),
            malformed: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/v1/health/service/{name}", axum::routing::get(health))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ConsulDouble { url, state, task }
    }

    fn change(&self, f: impl FnOnce(&mut HashMap<String, Vec<Instance>>)) {
        f(&mut self.state.services.lock().unwrap());
        self.state.index.send_modify(|i| *i += 1);
    }

    fn register(&self, service: &str, backend: &TestBackend, service_address: &str) {
        let instance = Instance {
            node_address: "127.0.0.1".into(),
            service_address: service_address.into(),
            port: backend.addr.port(),
            passing: true,
        };
        self.change(|s| s.entry(service.into()).or_default().push(instance));
    }

    fn deregister(&self, service: &str, backend: &TestBackend) {
        let port = backend.addr.port();
        self.change(|s| {
            s.entry(service.into())
                .or_default()
                .retain(|i| i.port != port)
        });
    }
}

fn consul_doc(servers: &[&str], token: Option<&str>, extra_static: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let token = token
        .map(|t| format!("  token: \"{t}\"\n"))
        .unwrap_or_default();
    format!(
        "provider: consul\nconsul:\n  servers: [{}]\n{token}  services:\n    - proxy: web.example.com\n      real: web\n{extra_static}",
        servers.join(", ")
    )
}

async fn who(c: &reqwest::Client, proxy: &Proxy, host: &str) -> (u16, String) {
    let (status, body) = get(c, proxy, host, "/").await;
    (status, Echo::parse(&body).backend)
}

/// Waits until requests to web.example.com reach exactly the backends in `names`.
async fn serves_exactly(proxy: &Proxy, names: &[&str]) {
    let c = client();
    let want: std::collections::BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    wait_for(
        Duration::from_secs(10),
        &format!("traffic to exactly {names:?}"),
        || {
            let (c, want) = (c.clone(), want.clone());
            async move {
                let mut seen = std::collections::BTreeSet::new();
                for _ in 0..(names.len() * 4).max(4) {
                    let (status, backend) = who(&c, proxy, "web.example.com").await;
                    if status != 200 {
                        return None;
                    }
                    seen.insert(backend);
                }
                (seen == want).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_follow_registration_and_static_routes_stay() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let s = TestBackend::start("static").await;
    consul.register("web", &a, "127.0.0.1");
    consul.register("web", &b, "127.0.0.1");
    let static_routes = format!(
        "upstreams:\n  static.example.com:\n    paths:\n      \"/\":\n        servers: [\"{}\"]\n",
        s.server()
    );
    let proxy = Proxy::start(&consul_doc(&[&consul.url], None, &static_routes)).await;
    serves_exactly(&proxy, &["a", "b"]).await;
    assert_eq!(
        who(&client(), &proxy, "static.example.com").await,
        (200, "static".into())
    );
    consul.deregister("web", &b);
    serves_exactly(&proxy, &["a"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_service_address_uses_the_node_address() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    consul.register("web", &a, "");
    let proxy = Proxy::start(&consul_doc(&[&consul.url], None, "")).await;
    serves_exactly(&proxy, &["a"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_sent_and_its_absence_reported() {
    let consul = ConsulDouble::start(Some("s3cret")).await;
    let a = TestBackend::start("a").await;
    consul.register("web", &a, "127.0.0.1");
    let with = Proxy::start(&consul_doc(&[&consul.url], Some("s3cret"), "")).await;
    serves_exactly(&with, &["a"]).await;
    let without = Proxy::start(&consul_doc(&[&consul.url], None, "")).await;
    wait_for(
        Duration::from_secs(5),
        "the ACL error in the log",
        || async {
            without
                .log()
                .contains("HTTP 403 Forbidden: ACL not found")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        get(&client(), &without, "web.example.com", "/").await.0,
        503
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_server_is_used_and_last_known_instances_survive() {
    let consul = ConsulDouble::start(None).await;
    let a = TestBackend::start("a").await;
    consul.register("web", &a, "127.0.0.1");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&consul_doc(&[&dead, &consul.url], None, "")).await;
    serves_exactly(&proxy, &["a"]).await;
    // Answers that are not JSON: the last known instances stay.
    consul.state.malformed.store(true, Ordering::SeqCst);
    consul.state.index.send_modify(|i| *i += 1);
    wait_for(
        Duration::from_secs(5),
        "the bad answer in the log",
        || async { proxy.log().contains("unexpected answer").then_some(()) },
    )
    .await;
    serves_exactly(&proxy, &["a"]).await;
    // Every server down: still the last known instances.
    drop(consul);
    serves_exactly(&proxy, &["a"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_instance_means_503_until_one_appears() {
    let consul = ConsulDouble::start(None).await;
    let proxy = Proxy::start(&consul_doc(&[&consul.url], None, "")).await;
    let c = client();
    let (status, body) = get(&c, &proxy, "web.example.com", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no instance"), "{body}");
    let a = TestBackend::start("a").await;
    consul.register("web", &a, "127.0.0.1");
    serves_exactly(&proxy, &["a"]).await;
}

#[test]
fn a_host_both_static_and_discovered_is_an_error() {
    let doc = consul_doc(
        &["http://127.0.0.1:8500"],
        None,
        "upstreams:\n  web.example.com:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:1\"]\n",
    );
    let err =
        aralez::config::UpstreamsConfig::parse(&doc, "u.yaml", Default::default()).unwrap_err();
    assert!(
        err.to_string().contains("is also listed under upstreams"),
        "{err}"
    );
}
