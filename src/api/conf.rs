//! `POST /conf`: push an upstreams.yaml document.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use log::{info, warn};

use super::keys::{require_key, KeyQuery};
use super::{error, ApiState, PublishError};
use crate::metrics::{count_failed_reload, count_reload};
use crate::routing::{ApplyError, ApplyOutcome};

/// How pushed documents are named in error messages.
const SOURCE: &str = "request body";

/// Applies the body and answers once it is live (200), or says why not (400) with nothing
/// changed. Pushes are serialised by the store; the document is saved to `upstreams_conf`
/// before it goes live, and the file watcher sees that write as unchanged.
pub async fn post_conf(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(denied) = require_key(&state, &query, &headers) {
        return denied.into_response();
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "the body is not UTF-8 text");
    };
    if let Some(cluster) = &state.cluster {
        // Fleet mode: check here, then write the shared key; every instance applies it.
        let (store, checked) = (state.store.clone(), text.clone());
        match tokio::task::spawn_blocking(move || store.check(&checked, SOURCE)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
        match cluster.publish(&text).await {
            Ok(()) => {}
            Err(e @ PublishError::Conflict(_)) => {
                return error(StatusCode::CONFLICT, e.to_string())
            }
            Err(e @ PublishError::Unavailable(_)) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
    let store = state.store.clone();
    let path = state.upstreams_path.clone();
    let result =
        tokio::task::spawn_blocking(move || store.apply_and_persist(&text, SOURCE, &path)).await;
    match result {
        Ok(Ok(outcome)) => {
            let changed = matches!(outcome, ApplyOutcome::Applied(_));
            let s = outcome.summary();
            if changed {
                info!("config pushed through the API is live: {s}");
            }
            count_reload("api", &outcome);
            Json(serde_json::json!({
                "status": "applied",
                "changed": changed,
                "generation": s.generation,
                "hosts": s.hosts,
                "routes": s.routes,
                "backends": s.backends,
            }))
            .into_response()
        }
        Ok(Err(ApplyError::Config(e))) => {
            count_failed_reload("api");
            warn!("config push refused:\n{e}");
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Ok(Err(e @ ApplyError::Persist { .. })) => {
            warn!("config push not applied: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("apply failed: {e}"),
        ),
    }
}
