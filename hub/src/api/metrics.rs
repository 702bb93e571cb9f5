//! `GET /hub/metrics` and `/hub/api/metrics`: Prometheus text. Needs `read:metrics` unless
//! `hub.authenticate_prometheus` is off.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{TimeDelta, Utc};
use http::HeaderValue;
use http::header::CONTENT_TYPE;

use crate::api::extract::{MaybeCaller, db_error, require};
use crate::db::models::{spawners, users};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Gauges;
use crate::rbac::{NoGroups, Target};
use crate::state::AppState;

/// `/metrics` under the API.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// `/hub/metrics`.
pub fn hub_routes(prefix: &str) -> Router<AppState> {
    Router::new().route(&format!("{prefix}metrics"), get(metrics))
}

async fn metrics(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
) -> ApiResult<Response> {
    if state.config.hub.authenticate_prometheus {
        let Some(caller) = caller else {
            return Err(ApiError::forbidden(
                crate::rbac::scope_set::MISSING_CREDENTIALS_MESSAGE,
            ));
        };
        require(&caller, &["read:metrics"], &Target::None, &NoGroups)?;
    }
    let gauges = state
        .db
        .run(|conn| {
            let now = Utc::now().naive_utc();
            Ok(Gauges {
                total_users: users::count(conn)?,
                running_servers: spawners::count_active(conn)?,
                active_users_24h: users::count_active_since(conn, now - TimeDelta::hours(24))?,
                active_users_7d: users::count_active_since(conn, now - TimeDelta::days(7))?,
                active_users_30d: users::count_active_since(conn, now - TimeDelta::days(30))?,
            })
        })
        .await
        .map_err(db_error)?;
    let text = state
        .metrics
        .render(state.config.hub.metrics_prefix.as_str(), gauges);
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}
