//! The master key check shared by the API calls.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{error, ApiState};
use crate::auth::secret;

/// `?key=` of a request.
#[derive(Debug, Default, Deserialize)]
pub struct KeyQuery {
    pub key: Option<String>,
}

pub const DISABLED: &str = "config API disabled: set master_key";

/// The configured master key, or 403 when there is none.
pub fn master_key(state: &ApiState) -> Result<&str, Response> {
    state
        .master_key
        .as_deref()
        .ok_or_else(|| error(StatusCode::FORBIDDEN, DISABLED))
}

/// Accepts the request when `?key=` or `x-api-key` carries the master key.
pub fn require_key(state: &ApiState, query: &KeyQuery, headers: &HeaderMap) -> Result<(), Response> {
    let expected = master_key(state)?;
    let given = query
        .key
        .as_deref()
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match given {
        None => Err(error(StatusCode::UNAUTHORIZED, "missing key")),
        Some(k) if secret::equal(k.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(error(StatusCode::UNAUTHORIZED, "invalid key")),
    }
}
