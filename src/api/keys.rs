//! The master key check shared by the API calls.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{error, ApiState};
use crate::auth::secret;

/// `?key=` of a request.
#[derive(Debug, Default, Deserialize)]
pub struct KeyQuery {
    pub key: Option<String>,
}

pub const DISABLED: &str = "config API disabled: set master_key";

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No master_key in main.yaml: 403.
    Disabled,
    /// No key given: 401.
    MissingKey,
    /// A key that is not the master key: 401.
    InvalidKey,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Disabled => error(StatusCode::FORBIDDEN, DISABLED),
            Denied::MissingKey => error(StatusCode::UNAUTHORIZED, "missing key"),
            Denied::InvalidKey => error(StatusCode::UNAUTHORIZED, "invalid key"),
        }
    }
}

/// The configured master key, or `Disabled` when there is none.
pub fn master_key(state: &ApiState) -> Result<&str, Denied> {
    state.master_key.as_deref().ok_or(Denied::Disabled)
}

/// Accepts the request when `?key=` or `x-api-key` carries the master key.
pub fn require_key(state: &ApiState, query: &KeyQuery, headers: &HeaderMap) -> Result<(), Denied> {
    let expected = master_key(state)?;
    let given = query
        .key
        .as_deref()
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match given {
        None => Err(Denied::MissingKey),
        Some(k) if secret::equal(k.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(Denied::InvalidKey),
    }
}
