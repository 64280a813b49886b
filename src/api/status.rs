//! `GET /status`: the live routing table as JSON.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::keys::{require_key, KeyQuery};
use super::ApiState;
use crate::config::upstreams::Strategy;
use crate::routing::RoutingTable;

pub async fn get_status(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = require_key(&state, &query, &headers) {
        return denied.into_response();
    }
    let mut status = describe(&state.store.load());
    if let Some(cluster) = &state.cluster {
        status["cluster"] = cluster.status();
    }
    Json(status).into_response()
}

/// Hosts sorted by name, paths longest first, backends in list order, each with its health
/// (`up`, `down`, or `unchecked` on paths with `healthcheck: false`).
pub fn describe(table: &RoutingTable) -> Value {
    let mut hosts: Vec<_> = table.hosts().collect();
    hosts.sort_by_key(|(name, _)| *name);
    let hosts: Vec<Value> = hosts
        .into_iter()
        .map(|(name, routes)| {
            let paths: Vec<Value> = routes
                .routes()
                .iter()
                .map(|r| {
                    let backends: Vec<Value> = r
                        .backends
                        .iter()
                        .map(|b| {
                            json!({
                                "server": &*b.name,
                                "address": b.addr.to_string(),
                                "health": match (r.healthcheck, b.health.is_up()) {
                                    (false, _) => "unchecked",
                                    (true, true) => "up",
                                    (true, false) => "down",
                                },
                                "tls": b.health.protocol().tls,
                                "protocol": crate::tls::detect::describe(b.health.protocol()),
                            })
                        })
                        .collect();
                    json!({
                        "path": &*r.prefix,
                        "to_https": r.to_https,
                        "strategy": match r.strategy {
                            Strategy::RoundRobin => "roundrobin",
                            Strategy::Failover => "failover",
                        },
                        "sticky_sessions": r.sticky,
                        "authorization": r.auth.as_ref().map(|a| a.kind()),
                        "backends": backends,
                    })
                })
                .collect();
            json!({ "host": name, "paths": paths })
        })
        .collect();
    let s = table.summary;
    json!({
        "generation": s.generation,
        "hosts_count": s.hosts,
        "routes_count": s.routes,
        "backends_count": s.backends,
        "hosts": hosts,
    })
}
