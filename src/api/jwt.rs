//! `POST /jwt`: mint a token for routes whose jwt secret is the master key. The key comes as
//! in every other call (`?key=`, `x-api-key`) or as `master_key` in the JSON body.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::keys::{master_key, require_key, Denied, KeyQuery};
use super::{error, ApiState};
use crate::auth::{jwt, secret};

/// Longest validity: one year, in minutes.
pub const MAX_VALID_MINUTES: u64 = 525_600;

#[derive(Debug, Deserialize)]
struct MintRequest {
    /// Optional when `?key=` or `x-api-key` carries it.
    #[serde(default)]
    master_key: Option<String>,
    owner: String,
    /// Minutes; checked by hand so that the error can say what is wrong.
    valid: serde_json::Value,
}

pub async fn post_jwt(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = match master_key(&state) {
        Ok(k) => k,
        Err(denied) => return denied.into_response(),
    };
    // A key beside the body is checked before the body is read.
    let key_beside = query.key.is_some() || headers.contains_key("x-api-key");
    if key_beside {
        if let Err(denied) = require_key(&state, &query, &headers) {
            return denied.into_response();
        }
    }
    let req: MintRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    // A key in the body must be right too, even beside a right one.
    match &req.master_key {
        None if !key_beside => return Denied::MissingKey.into_response(),
        Some(k) if !secret::equal(k.as_bytes(), expected.as_bytes()) => {
            return error(StatusCode::UNAUTHORIZED, "invalid master_key")
        }
        _ => {}
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
