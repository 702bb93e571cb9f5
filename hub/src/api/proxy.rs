//! `/proxy` (hub-protocol §1.3, §7): the hub's routes as the proxy has them (`GET`), an
//! immediate route reconciliation (`POST`), and pointing the hub at another proxy API
//! (`PATCH` with `api_url` and/or `auth_token`, then a reconciliation). Scope `proxy`.
//!
//! Without a proxy (`state.proxy` is `None`) every call answers 503 with a message saying so.

use axum::Json;
use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use crate::api::extract::{Caller, db_error, require};
use crate::api::pagination::Page;
use crate::api::pagination::request_url;
use crate::api::users::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::proxy::{ProxyControl, ProxyRoute};
use crate::rbac::{NoGroups, Target};
use crate::spawn;
use crate::state::AppState;

/// Routes under `/hub/api`.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/proxy",
        get(get_routes).post(sync_routes).patch(patch_proxy),
    )
}

fn proxy_of(state: &AppState) -> ApiResult<&ProxyControl> {
    state.proxy.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This hub runs without a proxy: there are no routes to show or change",
        )
    })
}

fn proxy_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("proxy API: {e}");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "The proxy could not be reached or gave an unexpected answer; the hub's log has the details",
    )
}

/// One route as JupyterHub shows it: `routespec`, `target`, and `data` without the target and
/// the `jupyterhub` marker.
fn route_model(route: &ProxyRoute) -> Value {
    let mut data = match serde_json::to_value(&route.data) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    data.remove("target");
    data.remove("jupyterhub");
    let mut m = Map::new();
    m.insert("routespec".into(), Value::String(route.routespec.clone()));
    m.insert("target".into(), Value::String(route.target.clone()));
    m.insert("data".into(), Value::Object(data));
    Value::Object(m)
}

async fn get_routes(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Json<Value>> {
    require(&caller, &["proxy"], &Target::None, &NoGroups)?;
    let page = Page::parse(
        &headers,
        uri.query(),
        usize::try_from(state.config.hub.api_page_default_limit.get()).unwrap_or(50),
        usize::try_from(state.config.hub.api_page_max_limit.get()).unwrap_or(200),
    )?;
    let routes = proxy_of(&state)?
        .get_all_routes()
        .await
        .map_err(proxy_error)?;
    let total = routes.len();
    let items: Map<String, Value> = routes
        .iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|(spec, route)| (spec.clone(), route_model(route)))
        .collect();
    let items = Value::Object(items);
    Ok(Json(if page.envelope {
        page.wrap(items, total, &request_url(&headers, &uri))
    } else {
        items
    }))
}

/// Reconciles now and reports failures of single routes in the log.
async fn sync_now(state: &AppState, proxy: &ProxyControl) -> ApiResult<()> {
    let desired = spawn::desired_routes(state).await.map_err(db_error)?;
    let report = proxy.sync(&desired).await.map_err(proxy_error)?;
    tracing::info!("route sync (API): {report}");
    for failure in &report.failed {
        tracing::warn!(
            "route {} {} failed: {}",
            failure.action,
            failure.routespec,
            failure.error
        );
    }
    Ok(())
}

fn empty_ok() -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "text/plain")],
        "",
    )
        .into_response()
}

async fn sync_routes(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    require(&caller, &["proxy"], &Target::None, &NoGroups)?;
    let proxy = proxy_of(&state)?;
    sync_now(&state, proxy).await?;
    Ok(empty_ok())
}

async fn patch_proxy(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<Response> {
    require(&caller, &["proxy"], &Target::None, &NoGroups)?;
    let Some(Value::Object(body)) = body.into_value()? else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object with api_url and/or auth_token",
        ));
    };
    let proxy = proxy_of(&state)?;
    let api_url = match body.get("api_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            let url = url::Url::parse(text)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("api_url {text:?} is not an http(s) URL"))
                })?;
            Some(url)
        }
        Some(_) => return Err(ApiError::bad_request("api_url must be a string")),
    };
    let auth_token = match body.get("auth_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => Some(token.clone()),
        Some(_) => return Err(ApiError::bad_request("auth_token must be a string")),
    };
    proxy
        .set_api(api_url, auth_token)
        .map_err(|e| ApiError::bad_request(format!("Cannot use the new proxy settings: {e}")))?;
    tracing::info!(caller = %caller.principal.name(), "proxy API settings changed");
    sync_now(&state, proxy).await?;
    Ok(empty_ok())
}
