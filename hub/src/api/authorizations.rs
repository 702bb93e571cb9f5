//! The deprecated authorization endpoints (hub-protocol §1.3), kept for old services:
//!
//! - `GET /authorizations/token/{token}`: the model of the path token's owner, for a caller
//!   authenticated by a token (cookies are refused);
//! - `POST /authorizations/token`: removed in JupyterHub 2.0, always 404;
//! - `GET /authorizations/cookie/{name}[/{value}]`: the model of the user a hub-signed cookie
//!   value belongs to (the value may also be the request body).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::Value;

use crate::access::{self, Identity, Principal, Via};
use crate::api::extract::{Caller, db_error};
use crate::api::models;
use crate::db::models::users;
use crate::error::{ApiError, ApiResult};
use crate::identity::cookies;
use crate::state::AppState;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authorizations/token", post(post_token))
        .route("/authorizations/token/{token}", get(get_token))
        .route("/authorizations/cookie/{name}", get(get_cookie_body))
        .route("/authorizations/cookie/{name}/{value}", get(get_cookie))
}

/// Refuses callers not authenticated by a token.
fn require_token(caller: &Identity) -> ApiResult<()> {
    if caller.via == Via::Token {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "This deprecated endpoint requires token authentication",
        ))
    }
}

fn deprecated(path: &str) {
    tracing::warn!("{path} is deprecated since JupyterHub 2.0; use /hub/api/user instead");
}

// === GET /authorizations/token/{token} ===

async fn get_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(token): Path<String>,
) -> ApiResult<Json<Value>> {
    require_token(&caller)?;
    deprecated("/authorizations/token/:token");
    let st = state.clone();
    let owner = state
        .db
        .run(move |conn| access::resolve_token(&st, conn, &token))
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found("No such token"))?;
    let model = match &owner.principal {
        Principal::User(user) => models::whoami_user_model(&state, &caller, user, false).await?,
        Principal::Service(service) => {
            models::whoami_service_model(&state, &caller, service).await?
        }
    };
    Ok(Json(model))
}

// === POST /authorizations/token ===

async fn post_token() -> ApiError {
    ApiError::not_found(
        "Deprecated endpoint /hub/api/authorizations/token was removed in JupyterHub 2.0; \
         create tokens with POST /hub/api/users/:name/tokens",
    )
}

// === GET /authorizations/cookie/{name}[/{value}] ===

async fn get_cookie(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((name, value)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    cookie_user(&state, &caller, &name, &value).await
}

async fn get_cookie_body(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let value = String::from_utf8_lossy(&body).trim().to_owned();
    cookie_user(&state, &caller, &name, &value).await
}

async fn cookie_user(
    state: &AppState,
    caller: &Identity,
    name: &str,
    value: &str,
) -> ApiResult<Json<Value>> {
    require_token(caller)?;
    deprecated("/authorizations/cookie");
    let not_found = || ApiError::not_found("No user for this cookie");
    // As sent in a `Cookie` header, the value may be quoted.
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let max_age = state.config.hub.cookie_max_age_days.duration();
    let cookie_id = cookies::decode_signed_value(
        state.cookie_secret.as_bytes(),
        name,
        value,
        max_age,
        Utc::now().timestamp(),
    )
    .ok()
    .and_then(|bytes| String::from_utf8(bytes).ok())
    .ok_or_else(not_found)?;
    let user = state
        .db
        .run(move |conn| users::find_by_cookie_id(conn, &cookie_id))
        .await
        .map_err(db_error)?
        .ok_or_else(not_found)?;
    Ok(Json(
        models::whoami_user_model(state, caller, &user, false).await?,
    ))
}
