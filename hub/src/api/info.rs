//! `GET /hub/api` (version), `/hub/api/info`, `/hub/api/user` (who am I), and health checks.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::{Value, json};

use crate::access::{Principal, Via};
use crate::api::extract::{Caller, MaybeCaller, require};
use crate::api::models;
use crate::error::{ApiError, ApiResult};
use crate::http::VERSION;
use crate::identity::tokens::format_token_id;
use crate::rbac::{NoGroups, Target};
use crate::state::AppState;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(version))
        .route("/info", get(info))
        .route("/user", get(whoami))
        .route("/health", get(health).head(health))
}

/// Routes outside the nested API router: `/hub/api/` (the culler asks with the slash) and
/// `/hub/health`.
pub fn hub_routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}api/"), get(version))
        .route(&format!("{prefix}health"), get(health).head(health))
}

async fn version() -> Response {
    let mut resp = Json(json!({ "version": VERSION })).into_response();
    resp.headers_mut().insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        http::HeaderValue::from_static("*"),
    );
    resp
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn info(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    require(&caller, &["read:hub"], &Target::None, &NoGroups)?;
    Ok(Json(json!({
        "version": VERSION,
        "python": null,
        "sys_executable": std::env::current_exe().ok().map(|p| p.display().to_string()),
        "spawner": {"class": state.spawner.kind(), "version": env!("CARGO_PKG_VERSION")},
        "authenticator": {"class": state.authenticator.kind(), "version": env!("CARGO_PKG_VERSION")},
    })))
}

#[derive(Debug, serde::Deserialize)]
struct WhoamiQuery {
    #[serde(default)]
    include_stopped_servers: Option<String>,
}

/// `GET /user`: the caller's own model plus `scopes`, `token_id`, `session_id`. A missing or
/// invalid credential gets 403 with `"message": null`: the Python clients depend on it.
async fn whoami(
    State(state): State<AppState>,
    headers: http::HeaderMap,
    MaybeCaller(caller): MaybeCaller,
    Query(q): Query<WhoamiQuery>,
) -> ApiResult<Json<Value>> {
    let Some(caller) = caller else {
        return Err(ApiError::bare(StatusCode::FORBIDDEN));
    };
    let include_stopped = models::flag(q.include_stopped_servers.as_deref());
    // Token callers (single-user servers and services ask this on every request they check)
    // get the reply built a moment ago, invalidated like the identity itself.
    let token = (caller.via == Via::Token)
        .then(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(crate::identity::tokens::parse_authorization)
        })
        .flatten();
    if let Some(reply) = token.and_then(|t| state.identities.reply(t, include_stopped)) {
        return Ok(Json(reply));
    }
    let generation = state.identities.generation();
    let scopes = caller.scopes.to_strings();
    let mut model = match &caller.principal {
        Principal::User(user) => {
            models::whoami_user_model(&state, &caller, user, include_stopped).await?
        }
        Principal::Service(service) => {
            models::whoami_service_model(&state, &caller, service).await?
        }
    };
    if let Value::Object(map) = &mut model {
        map.insert("scopes".into(), json!(scopes));
        let token_id = caller
            .token
            .as_ref()
            .filter(|_| caller.via == Via::Token)
            .map(|t| format_token_id(i64::from(t.id)));
        map.insert("token_id".into(), json!(token_id));
        map.insert(
            "session_id".into(),
            json!(caller.token.as_ref().and_then(|t| t.session_id.clone())),
        );
    }
    if let Some(token) = token {
        state
            .identities
            .put_reply(token, include_stopped, model.clone(), generation);
    }
    Ok(Json(model))
}
