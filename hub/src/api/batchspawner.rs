//! `POST /batchspawner`: batchspawner's API extension. A server started as a batch job picks
//! its port on its node and reports it here (`batchspawner-singleuser` does), with its own API
//! token: `{"port": N}`. The report goes to the spawner (`Spawner::server_reported`), which
//! combines it with the host the scheduler names.
//!
//! Mirrors batchspawner's `api.py` `BatchSpawnerAPIHandler.post`, which finds the spawner
//! whose API token the request carries. Here only a server's own token is accepted (any other
//! credential gets 403), and only the `port` key is read: the address a server reports can
//! never send the hub elsewhere than the node its job runs on. The reply is 200 with
//! `{"message": "BatchSpawner data configured"}`, what batchspawner's handler ends up sending.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;
use hub_plugin::{ServerRef, ServerReport, SpawnError};
use serde_json::{Value, json};

use crate::access::Principal;
use crate::api::extract::{Caller, db_error};
use crate::api::users::JsonBody;
use crate::db::models::spawners;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new().route("/batchspawner", post(post_report))
}

/// The port in a report body: an integer (or an integer in a string, as older wrappers send
/// it) from 1 to 65535.
fn port_of(body: &Value) -> Result<u16, ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request("body must be a json dict"));
    };
    let port = match map.get("port") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    port.and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| ApiError::bad_request("port must be an integer from 1 to 65535"))
}

async fn post_report(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<Response> {
    let forbidden =
        || ApiError::forbidden("Only a server's own API token can report where the server listens");
    let (Principal::User(user), Some(spawner_id)) = (
        &caller.principal,
        caller.token.as_ref().and_then(|t| t.spawner_id),
    ) else {
        return Err(forbidden());
    };
    let row = state
        .db
        .run(move |conn| spawners::find_by_id(conn, spawner_id))
        .await
        .map_err(db_error)?
        .filter(|row| row.user_id == user.id)
        .ok_or_else(forbidden)?;
    let body = body.into_value()?.unwrap_or(Value::Null);
    let report = ServerReport {
        port: port_of(&body)?,
    };
    let server = ServerRef {
        user: user.name.clone(),
        name: row.name.clone(),
    };
    match state.spawner.server_reported(&server, &report).await {
        Ok(()) => Ok((
            StatusCode::OK,
            Json(json!({"message": "BatchSpawner data configured"})),
        )
            .into_response()),
        Err(SpawnError::Refused { message, status }) => Err(ApiError::new(
            StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_REQUEST),
            message,
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port_of(&json!({"port": 8888})).unwrap(), 8888);
        assert_eq!(port_of(&json!({"port": "8888"})).unwrap(), 8888);
        for bad in [
            json!({"port": 0}),
            json!({"port": 70000}),
            json!({"port": -1}),
            json!({"port": "x"}),
            json!({"port": 1.5}),
            json!({}),
            json!([8888]),
        ] {
            let err = port_of(&bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
