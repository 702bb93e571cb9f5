//! `POST /shutdown` (scope `shutdown`): answers 202 `{"message": "Shutting down Hub"}` and asks
//! the hub to stop. `{"proxy": bool, "servers": bool}` override `cleanup_proxy` and
//! `cleanup_servers` for this shutdown.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::StatusCode;
use serde_json::{Value, json};

use crate::api::extract::{Caller, require};
use crate::api::python::py_repr;
use crate::api::users::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::rbac::{NoGroups, Target};
use crate::state::{AppState, ShutdownRequest};

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new().route("/shutdown", post(shutdown))
}

fn flag(body: &serde_json::Map<String, Value>, key: &str) -> ApiResult<Option<bool>> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be true or false, got {}",
            py_repr(other)
        ))),
    }
}

async fn shutdown(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<Response> {
    require(&caller, &["shutdown"], &Target::None, &NoGroups)?;
    let request = match body.into_value()? {
        None => ShutdownRequest::default(),
        Some(Value::Object(map)) => ShutdownRequest {
            proxy: flag(&map, "proxy")?,
            servers: flag(&map, "servers")?,
        },
        Some(_) => {
            return Err(ApiError::bad_request(
                "The request body must be a JSON object",
            ));
        }
    };
    tracing::warn!(
        caller = %caller.principal.name(),
        proxy = ?request.proxy,
        servers = ?request.servers,
        "shutdown requested through the API"
    );
    state.shutdown.request(request);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"message": "Shutting down Hub"})),
    )
        .into_response())
}
