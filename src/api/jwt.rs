//! `POST /jwt`: mint a token for routes whose jwt secret is the master key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::keys::master_key;
use super::{error, ApiState};
use crate::auth::{jwt, secret};

/// Longest validity: one year, in minutes.
pub const MAX_VALID_MINUTES: u64 = 525_600;

#[derive(Debug, Deserialize)]
struct MintRequest {
    master_key: String,
    owner: String,
    /// Minutes; checked by hand so that the error can say what is wrong.
    valid: serde_json::Value,
}

pub async fn post_jwt(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let expected = match master_key(&state) {
        Ok(k) => k,
        Err(denied) => return denied.into_response(),
    };
    let req: MintRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    if !secret::equal(req.master_key.as_bytes(), expected.as_bytes()) {
        return error(StatusCode::UNAUTHORIZED, "invalid master_key");
    }
    let minutes = match req.valid.as_u64() {
        Some(m) if (1..=MAX_VALID_MINUTES).contains(&m) => m,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("valid must be a whole number of minutes from 1 to {MAX_VALID_MINUTES}"),
            )
        }
    };
    match jwt::mint(expected, &req.owner, minutes) {
        Ok(token) => Json(serde_json::json!({ "token": token })).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot sign: {e}"),
        ),
    }
}
