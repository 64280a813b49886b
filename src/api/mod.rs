//! The config API (axum): `POST /conf`, `POST /jwt`, `GET /status`, on `config_address` and,
//! over HTTPS, on `config_tls_address`. It never serves proxy traffic.

mod conf;
mod jwt;
mod keys;
pub mod listen;
mod status;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use listen::{ApiListeners, ApiService};

use crate::lifecycle::InFlight;
use crate::metrics::METRICS;
use crate::routing::RouteStore;

/// Largest `POST /conf` body.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// What the handlers share.
pub struct ApiState {
    pub store: Arc<RouteStore>,
    /// None disables every call that needs it (403).
    pub master_key: Option<String>,
    /// Where pushed documents are saved, so that a restart serves them.
    pub upstreams_path: PathBuf,
    /// Requests in flight, for the metrics.
    pub in_flight: InFlight,
    /// Fleet mode: pushes go to the shared key first (`providers::cluster`).
    pub cluster: Option<Arc<dyn Publish>>,
}

/// Where a pushed document goes before it is applied here, in fleet mode: the key every
/// instance applies. The API knows only this, not the provider behind it.
#[async_trait::async_trait]
pub trait Publish: Send + Sync {
    /// Writes `text` for every instance, unless someone changed it concurrently.
    async fn publish(&self, text: &str) -> Result<(), PublishError>;

    /// What `GET /status` shows of it.
    fn status(&self) -> serde_json::Value;
}

/// Why a document was not published (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Changed concurrently: fetch the current one and retry (409).
    #[error("{0}")]
    Conflict(String),
    /// The shared store cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
}

/// The API's routes. Wrong methods get 405, bodies over `MAX_BODY` get 413, both as JSON.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/conf", post(conf::post_conf))
        .route("/jwt", post(jwt::post_jwt))
        .route("/status", get(status::get_status))
        .route("/metrics", get(get_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// The answers axum gives by itself (wrong method, body over the limit) are plain text:
/// they get the shape of the API's other errors, keeping their headers (`Allow`).
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => format!("the body is over the limit of {MAX_BODY} bytes"),
        _ => return resp,
    };
    let json = resp
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        return resp;
    }
    let (parts, _) = resp.into_parts();
    let mut answer = error(status, message);
    let ours = answer.headers().clone();
    for (name, value) in parts.headers.iter() {
        if !ours.contains_key(name) && name != CONTENT_LENGTH {
            answer.headers_mut().append(name, value.clone());
        }
    }
    answer
}

/// `GET /metrics`: Prometheus text format, no key (scrapers rarely carry one).
async fn get_metrics(axum::extract::State(state): axum::extract::State<Arc<ApiState>>) -> Response {
    let body = METRICS.render(&state.store.load(), state.in_flight.count());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A JSON `{"error": "..."}` answer.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}
